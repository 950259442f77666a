"""Token lengths as LLaMA-Factory trains them, --cutoff-len refusal, and no silent CPU fallback: a tiny BPE
tokenizer and random Llama built here, a fake >1B config without weights."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_models import build_tiny_llama, train_chatml_tokenizer

from evaluation.__main__ import main as eval_cli
from scoring import budget, devices
from scoring.__main__ import main as scoring_cli
from scoring.lengths import LengthCounter, check_cutoff, sample_token_lengths, scored_token_lengths
from scoring.models import load_model_and_tokenizer
from scoring.rendering import encode_pair, load_template

ROOT = Path(__file__).resolve().parents[2]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
PLACES = ["home", "workplace", "shopping mall", "outdoors"]
BEHAVIORS = ["Food delivery", "Watching videos", "Social media", "去医院看病", "Taking a taxi", "Yoga"]
SYSTEM = "You are a smart user's mobile phone assistant. Predict the next behavior."
# Llama-3's pre-tokenizer regex: a punctuation mark may lead a word, digits go in groups of up to three.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def records(n, seed=0):
    """Alpaca records in data_prep's prompt format: "(weekday, hour, place, behavior), ..." + candidates."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        events = [f"({WEEKDAYS[rng.integers(7)]}, {rng.integers(24)}, {PLACES[rng.integers(4)]}, "
                  f"{BEHAVIORS[rng.integers(len(BEHAVIORS))]})" for _ in range(rng.integers(1, 9))]
        head = ["The behavior history of this user is: ", "This user has done behaviors "][rng.integers(2)]
        instruction = (f"{head}{', '.join(events)}. The next behavior is at ({WEEKDAYS[rng.integers(7)]}, "
                       f"{rng.integers(24)}, home). Candidates: {', '.join(BEHAVIORS)}. The answer is")
        rows.append({"system": SYSTEM, "instruction": instruction, "input": "",
                     "output": BEHAVIORS[rng.integers(len(BEHAVIORS))]})
    return rows


@pytest.fixture(scope="module", params=["gpt2", "llama3"])
def tokenizer_template(request):
    from tokenizers import Regex, pre_tokenizers

    texts = [r["instruction"] for r in records(50, seed=1)] + BEHAVIORS + [SYSTEM]
    tokenizer = train_chatml_tokenizer(texts, vocab_size=400)
    if request.param == "llama3":
        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tokenizer, load_template(tokenizer, "smollm2")


def llamafactory_lengths(tokenizer, template, rows):
    """len(input_ids) of LLaMA-Factory's own supervised processor (no truncation at this cutoff)."""
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.hparams import DataArguments

    args = DataArguments(template="smollm2", cutoff_len=100_000)
    processor = SupervisedDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=args)
    examples = {"_prompt": [[{"role": "user", "content": r["instruction"]}] for r in rows],
                "_response": [[{"role": "assistant", "content": r["output"]}] for r in rows],
                "_system": [r["system"] for r in rows], "_tools": [""] * len(rows),
                "_images": [None] * len(rows), "_videos": [None] * len(rows), "_audios": [None] * len(rows)}
    return [len(ids) for ids in processor.preprocess_dataset(examples)["input_ids"]]


def test_lengths_equal_llamafactory_encoding(tokenizer_template):
    tokenizer, template = tokenizer_template
    rows = records(300)
    rows[5]["instruction"] = rows[5]["instruction"].replace(", ", ",  ", 2)  # unsafe split: counted exactly
    rows[6]["input"] = "extra, context, here"  # joined to the instruction with a newline, as the converter does
    lengths = sample_token_lengths(template, tokenizer, rows)
    reference = llamafactory_lengths(tokenizer, template, [{**r, "instruction": "\n".join(
        p for p in (r["instruction"], r["input"]) if p)} for r in rows])
    assert lengths.tolist() == reference
    assert len(set(lengths.tolist())) > 10  # the lengths really vary


def test_wrong_fast_count_falls_back_to_exact(tokenizer_template, monkeypatch, caplog):
    tokenizer, template = tokenizer_template
    rows = records(40, seed=3)
    exact = [sum(map(len, encode_pair(template, tokenizer, r, r["output"]))) for r in rows]
    monkeypatch.setattr(LengthCounter, "fast_prompt", lambda self, record: self.exact_prompt(record) + 1)
    with caplog.at_level(logging.WARNING, logger="scoring.lengths"):
        assert sample_token_lengths(template, tokenizer, rows).tolist() == exact
    assert "counting every record exactly" in caplog.text


def test_check_cutoff_message():
    check_cutoff(np.array([5, 9]), 9, "x")
    check_cutoff(np.array([5, 90]), None, "x")
    with pytest.raises(ValueError, match=r"^2 of 3 train samples are longer than cutoff_len=8 tokens \(longest 12\)"
                                         r".*cutoff_len: 12"):
        check_cutoff(np.array([5, 9, 12]), 8, "train samples")


# ------------------------------------------------------------------------------ the token check of a run
def budget_dir(tmp_path, tokenizer, rows_by_split) -> tuple[Path, Path]:
    """A prepared-like dir (stats.json + <split>.jsonl, no dataset_info.json) and the tokenizer saved as a model dir."""
    data, model = tmp_path / "data", tmp_path / "tok"
    data.mkdir()
    tokenizer.save_pretrained(model)
    stats = {"behaviors": [{"name": b, "label_id": i} for i, b in enumerate(BEHAVIORS)]}
    (data / "stats.json").write_text(json.dumps(stats, ensure_ascii=False), encoding="utf-8")
    for split in budget.CHECKED_SPLITS:
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in rows_by_split.get(split, [])]
        (data / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    return data, model


def exact_lengths(loader, rows) -> list[int]:
    counter = loader.result()
    return [sum(map(len, encode_pair(counter.template, counter.tokenizer, r, r["output"]))) for r in rows]


def test_run_budget_equals_exact_encoding_of_every_record(tokenizer_template, tmp_path, monkeypatch, caplog):
    """The vectorised count over split files (several Arrow batches each) equals the exact encoding of every
    record, including records it cannot decompose; a line longer than Arrow's block and a wrong fast count
    both fall back to exact counting, with a warning."""
    rows = records(400, seed=7)
    rows[5]["instruction"] = rows[5]["instruction"].replace(", ", ",  ", 2)  # ", " then whitespace
    rows[6]["input"] = "extra, context, here"
    rows[7]["instruction"] = "short"  # one piece
    rows[8]["system"] = "Another system prompt, used once."
    valid = records(30, seed=8)
    data, model = budget_dir(tmp_path, tokenizer_template[0], {"train_all": rows, "anchor": rows[::3], "valid": valid})
    monkeypatch.setattr(budget, "BLOCK_BYTES", 1 << 14)  # ~40 records per batch
    monkeypatch.setattr(budget, "CHECKS_FIRST_BATCH", 2)

    def counted(path):
        loader = budget._TokenizerLoader(model, "smollm2")
        loader.start()
        files = budget._Files(loader)
        files.read(path)
        prompts, answers = files.lengths(path)
        return (prompts + answers).tolist(), loader

    with caplog.at_level(logging.WARNING, logger="scoring.budget"):
        total, loader = counted(data / "train_all.jsonl")
        exact = exact_lengths(loader, rows)
        assert total == exact and len(set(exact)) > 10
        assert counted(data / "valid.jsonl")[0] == exact_lengths(loader, valid)
        assert not [r for r in caplog.records if r.name == "scoring.budget"]  # no fallback: the fast path
        monkeypatch.setattr(LengthCounter, "middle_piece", lambda self, piece: 1)  # every check fails
        assert counted(data / "valid.jsonl")[0] == exact_lengths(loader, valid)
        assert "differs from LLaMA-Factory's encoding" in caplog.text
        monkeypatch.undo()
        monkeypatch.setattr(budget, "BLOCK_BYTES", 256)  # shorter than one line
        assert counted(data / "valid.jsonl")[0] == exact_lengths(loader, valid)
        assert "Arrow's JSON reader failed" in caplog.text

    report = budget.split_token_budget(data, model, "smollm2", cutoff_len=max(exact))
    assert set(report["splits"]) == {"train_all", "anchor", "valid"}  # empty splits are left out
    st = report["splits"]["anchor"]
    anchor_exact = exact[::3]
    assert (st["samples"], st["min"], st["max"]) == (len(anchor_exact), min(anchor_exact), max(anchor_exact))
    assert st["median"] == float(np.median(anchor_exact)) and st["p99"] == float(np.percentile(anchor_exact, 99))
    longest_candidate = max(loader.result().answer(b) for b in BEHAVIORS)
    prompt_max = max(e - loader.result().answer(r["output"]) for e, r in zip(exact, rows))
    assert report["max_prompt_plus_longest_candidate"] == prompt_max + longest_candidate
    assert report["fits"] == (prompt_max + longest_candidate <= max(exact))


def test_token_lengths_cli_stops_with_the_cutoff_to_set(tokenizer_template, tmp_path, capsys):
    rows = records(50, seed=9)
    data, model = budget_dir(tmp_path, tokenizer_template[0], {"train_all": rows, "test_p1": rows[:10]})
    args = ["token-lengths", "--dataset-dir", str(data), "--model", str(model), "--template", "smollm2"]
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    out = tmp_path / "token_check" / "token_lengths.json"
    assert scoring_cli([*args, "--cutoff-len", "100000", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before  # the dataset dir is only read
    assert set(report["splits"]) == {"train_all", "test_p1"}
    assert report["cutoff_len"] == 100000 and report["splits"]["train_all"]["samples"] == len(rows)
    longest = report["max_prompt_plus_longest_candidate"]
    assert report["fits"] and "every sample fits cutoff_len=100000" in capsys.readouterr().out
    assert scoring_cli([*args, "--cutoff-len", str(longest - 1), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"(longest {longest} tokens)" in err and f"cutoff_len: {longest} (or more)" in err
    assert json.loads(out.read_text())["fits"] is False  # the failing verdict is recorded too
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert scoring_cli([*args, "--cutoff-len", str(longest)]) == 0


# --------------------------------------------------------------------------------- dataset + tiny model
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("len")
    data = root / "data"
    data.mkdir()
    shutil.copy(ROOT / "dataset_info.json", data / "dataset_info.json")
    stats = {"behaviors": [{"name": b, "label_id": i, "train_count": 1, "train_freq": 0.1, "is_anchor": i < 2,
                            "freq_group": "head" if i < 2 else "tail"} for i, b in enumerate(BEHAVIORS)]}
    (data / "stats.json").write_text(json.dumps(stats, ensure_ascii=False), encoding="utf-8")
    rows = records(12, seed=5)
    meta = [{"sample_id": i, "label": r["output"], "label_id": BEHAVIORS.index(r["output"]), "history": []}
            for i, r in enumerate(rows)]
    for stem in ("train_all", "test_p1"):
        with open(data / f"{stem}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        with open(data / f"{stem}.meta.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(m, ensure_ascii=False) + "\n" for m in meta)
    texts = [r["instruction"] for r in rows] + BEHAVIORS + [SYSTEM]
    model = build_tiny_llama(root / "tiny", texts, vocab_size=400)
    _, tokenizer = load_model_and_tokenizer(model, device="cpu")
    lengths = scored_token_lengths(load_template(tokenizer, "smollm2"), tokenizer, rows, BEHAVIORS)
    return data, model, lengths


def test_score_and_predict_refuse_before_any_forward(run, tmp_path, monkeypatch, capsys):
    data, model, lengths = run
    cutoff = int(np.sort(lengths)[-3])  # two samples are longer
    over = int((lengths > cutoff).sum())

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded although the samples do not fit")

    monkeypatch.setattr("scoring.scorer.CandidateScorer", refuse)
    monkeypatch.setattr("scoring.models.load_model_and_tokenizer", refuse)
    args = ["score", "--model", str(model), "--template", "smollm2", "--dataset-dir", str(data),
            "--out", str(tmp_path / "s"), "--cutoff-len", str(cutoff)]
    assert scoring_cli(args) == 2
    err = capsys.readouterr().err
    assert f"{over} of {len(lengths)} train_all samples" in err and f"longest {lengths.max()}" in err
    for extra in ([], ["--generate"]):
        args = ["predict", "--model", str(model), "--template", "smollm2", "--dataset-dir", str(data),
                "--dataset", "test_p1", "--out", str(tmp_path / "p"), "--cutoff-len", str(cutoff), *extra]
        assert eval_cli(args) == 2
        assert f"cutoff_len={cutoff}" in capsys.readouterr().err
    monkeypatch.undo()
    args = ["predict", "--model", str(model), "--template", "smollm2", "--dataset-dir", str(data), "--dataset",
            "test_p1", "--out", str(tmp_path / "p"), "--cutoff-len", str(lengths.max()), "--device", "cpu"]
    assert eval_cli(args) == 0  # the longest sample fits exactly: predictions are written
    assert len((tmp_path / "p" / "test_p1.predictions.jsonl").read_text().splitlines()) == len(lengths)


# ------------------------------------------------------------------------------------- no silent CPU
H, INTER, LAYERS, HEADS, KV, VOCAB = 2048, 8192, 16, 16, 8, 32000
# embeddings + LM head, per layer q/o + k/v (grouped) + gated MLP + two norms, final norm: about 1.14e9
BIG_PARAMS = 2 * VOCAB * H + LAYERS * (2 * H * H + 2 * H * (KV * H // HEADS) + 3 * H * INTER + 2 * H) + H


def fake_big_model(tmp_path) -> Path:
    """config.json of a >1B Llama, no weights: enough for the parameter count."""
    from transformers import LlamaConfig

    out = tmp_path / "big"
    LlamaConfig(hidden_size=H, intermediate_size=INTER, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                num_key_value_heads=KV, vocab_size=VOCAB, tie_word_embeddings=False).save_pretrained(out)
    return out


def test_gpu_expected_and_unusable_stops_with_the_fix(run, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    big, (_, tiny, _) = fake_big_model(tmp_path), run
    assert devices.count_parameters(big) == BIG_PARAMS
    for device, model, reason in ((None, big, f"{BIG_PARAMS / 1e9:.1f}B parameters"), ("cuda", tiny, "--device cuda"),
                                  ("cuda:1", tiny, "--device cuda:1")):
        with pytest.raises(devices.NoGPUError, match=reason) as err:
            devices.select_device(device, model)
        assert f"torch {torch.__version__}" in str(err.value) and "download.pytorch.org/whl/cu126" in str(err.value)
        assert str(torch.version.cuda) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(devices.NoGPUError, match="parameters"):  # before any weight or tokenizer is read
        load_model_and_tokenizer(big)
    assert devices.select_device("cpu", big) == "cpu"  # explicit: CPU on purpose
    assert devices.select_device(None, tiny) == "cpu"  # a small model may run on CPU
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(devices.NoGPUError, match="WORLD_SIZE=4"):
        devices.select_device(None, tiny)


def test_cli_reports_no_gpu_in_one_line(run, tmp_path, monkeypatch, capsys):
    import torch

    data, _, _ = run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["score", "--model", str(fake_big_model(tmp_path)), "--template", "smollm2", "--dataset-dir", str(data),
            "--out", str(tmp_path / "s")]
    assert scoring_cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: a GPU is expected (the model has {BIG_PARAMS / 1e9:.1f}B parameters)")
    assert "\n" not in err


def test_rank_device_from_local_rank(monkeypatch):
    import torch

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(str(d)))
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert devices.select_device() == "cuda:3" and chosen == ["cuda:3"]
