"""pi_ref scorer on a tiny random Llama built here: cached prefix == naive, Parquet parts, resume, CLI."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_models import build_tiny_llama, texts_from_dataset_dir

from data_prep.prepared import load_prepared, resolve_dataset_file
from scoring.__main__ import main as scoring_cli
from scoring.kernel import cached_candidate_logprobs, naive_candidate_logprobs, prefix_tree
from scoring.models import load_model_and_tokenizer
from scoring.rendering import PromptEncoder, load_template
from scoring.scorer import CandidateScorer, score_dataset
from scoring.shards import load_scores
from selection.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[2]
# Two anchors, five tails; long and non-Latin names so the tiny BPE splits them into many tokens, and two
# sharing their first words so the candidate prefix tree shares nodes.
BEHAVIORS = [
    ("sleep", True),
    ("work", True),
    ("visit a museum with friends", False),
    ("去医院看病", False),
    ("repair the bicycle", False),
    ("go to the gym", False),
    ("go to the cinema", False),
]
SYSTEM = "You predict the next daily behavior of a user."


def _write_dataset(root: Path, n_per_behavior=(6, 5, 3, 2, 1, 2, 3)) -> Path:
    """A prepared dataset dir as docs/data-preparation.md describes it (train_all + meta + stats + dataset_info)."""
    root.mkdir(parents=True)
    shutil.copy(ROOT / "dataset_info.json", root / "dataset_info.json")
    rng = np.random.default_rng(0)
    names = [b for b, _ in BEHAVIORS]
    rows, meta = [], []
    for label_id, count in enumerate(n_per_behavior):
        for _ in range(count):
            history = [names[i] for i in rng.integers(0, len(names), size=rng.integers(1, 6))]
            instruction = "History: " + ", ".join(history) + ". Candidates: " + "; ".join(names) + ". Next?"
            rows.append({"system": SYSTEM, "instruction": instruction, "input": "", "output": names[label_id]})
            meta.append(
                {
                    "sample_id": len(meta),
                    "user_id": 1,
                    "label": names[label_id],
                    "label_id": label_id,
                    "is_anchor": BEHAVIORS[label_id][1],
                    "freq_group": "head",
                    "template_id": 0,
                    "history": history,
                    "next_context": ["Mon", 8, "home"],
                }
            )
    order = rng.permutation(len(rows))  # labels interleaved, as in a real split
    for stem, items in (
        ("train_all.jsonl", [rows[i] for i in order]),
        ("train_all.meta.jsonl", [meta[i] for i in order]),
    ):
        (root / stem).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
    stats = {
        "behaviors": [
            {
                "name": n,
                "label_id": i,
                "train_count": c,
                "train_freq": c / sum(n_per_behavior),
                "is_anchor": a,
                "freq_group": "head" if a else "tail",
            }
            for i, ((n, a), c) in enumerate(zip(BEHAVIORS, n_per_behavior))
        ],
        "anchors": [n for n, a in BEHAVIORS if a],
        "tails": [n for n, a in BEHAVIORS if not a],
    }
    (root / "stats.json").write_text(json.dumps(stats, ensure_ascii=False), encoding="utf-8")
    return root


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory):
    return _write_dataset(tmp_path_factory.mktemp("sel") / "data")


@pytest.fixture(scope="session")
def tiny_model(dataset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sel_model") / "tiny"
    return build_tiny_llama(out, texts_from_dataset_dir(dataset_dir), seed=0, vocab_size=300)


@pytest.fixture(scope="session")
def loaded(tiny_model):
    model, tokenizer = load_model_and_tokenizer(tiny_model, device="cpu")
    return model, tokenizer, load_template(tokenizer, "smollm2")


def test_tiny_model_fits_smollm2_template(loaded):
    model, tokenizer, template = loaded
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None
    assert len(tokenizer) == model.get_input_embeddings().weight.shape[0]  # the template added no token
    prompt, answer = template.encode_oneturn(
        tokenizer, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "sleep"}], "S"
    )
    assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token_id in answer  # end of turn is part of the scored answer


def test_cached_prefix_equals_naive(loaded, dataset_dir):
    model, tokenizer, template = loaded
    data = load_prepared(dataset_dir)
    encoder = PromptEncoder(template, tokenizer, data.candidates, data.records[0])
    assert max(len(c) for c in encoder.cand_ids) >= 5  # multi-token labels are exercised
    tree = prefix_tree(encoder.cand_ids)
    assert len(tree.tokens) < sum(len(c) - 1 for c in encoder.cand_ids)  # shared prefixes are exercised
    records = sorted(data.records, key=lambda r: len(r["instruction"]))[::4][:4]
    prompts = [encoder.prompt(r) for r in records]
    assert len({len(p) for p in prompts}) > 1  # different lengths -> left padding is exercised
    cached, emb = cached_candidate_logprobs(model, prompts, encoder.cand_ids, tokenizer.pad_token_id)
    naive = naive_candidate_logprobs(model, prompts, encoder.cand_ids)
    np.testing.assert_allclose(cached, naive, atol=1e-4, rtol=0)
    assert emb.shape == (len(prompts), model.config.hidden_size) and np.isfinite(emb).all()


def test_scorer_outputs_and_batch_invariance(tiny_model, dataset_dir):
    data = load_prepared(dataset_dir)
    records = data.records[:7]
    a = CandidateScorer(tiny_model, "smollm2", batch_size=2, device="cpu").score(records, data.candidates)
    b = CandidateScorer(tiny_model, "smollm2", batch_size=7, device="cpu").score(records, data.candidates)
    K = len(data.candidates)
    assert a.cand_logprob.shape == (7, K) and a.probs.dtype == np.float32
    np.testing.assert_allclose(a.probs.sum(1), 1.0, atol=1e-5)
    assert (a.pred_id == a.cand_logprob.argmax(1)).all()
    np.testing.assert_allclose(a.cand_logprob, b.cand_logprob, atol=1e-4)
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-4)


def test_score_dataset_parts_and_resume(tiny_model, dataset_dir, tmp_path, monkeypatch):
    out = tmp_path / "scores"
    indices = np.arange(0, 17, 1)
    score_dataset(tiny_model, "smollm2", dataset_dir, "train_all", out, indices=indices, batch_size=4, shard_size=5)
    parts = sorted(out.glob("part-*.parquet"))  # named by their first row index
    assert [p.name for p in parts] == [f"part-{i:010d}.parquet" for i in (0, 5, 10, 15)]
    assert (out / "done-0.json").exists()
    scores = load_scores(out)
    assert scores["index"].tolist() == indices.tolist()
    assert scores["probs"].shape == (17, len(BEHAVIORS)) and scores["embedding"].shape[0] == 17
    labels = [json.loads(line)["label_id"] for line in (dataset_dir / "train_all.meta.jsonl").open()]
    assert scores["label_id"].tolist() == labels[:17]
    np.testing.assert_allclose(scores["p_true"], scores["probs"][np.arange(17), scores["label_id"]])

    # Second call: every part is there, so no model is even loaded.
    def refuse(*args, **kwargs):
        raise AssertionError("finished parts were scored again")

    monkeypatch.setattr("scoring.scorer.CandidateScorer", refuse)
    score_dataset(tiny_model, "smollm2", dataset_dir, "train_all", out, indices=indices, batch_size=4, shard_size=5)
    # An interrupted run (one part and done missing) rescoring only that part.
    monkeypatch.undo()
    mtimes = {p.name: p.stat().st_mtime_ns for p in parts}
    parts[2].unlink()
    (out / "done-0.json").unlink()
    with pytest.raises(RuntimeError, match="incomplete"):
        load_scores(out)
    score_dataset(tiny_model, "smollm2", dataset_dir, "train_all", out, indices=indices, batch_size=4, shard_size=5)
    assert all(parts[i].stat().st_mtime_ns == mtimes[parts[i].name] for i in (0, 1, 3))
    np.testing.assert_allclose(load_scores(out)["logprobs"], scores["logprobs"], atol=1e-5)
    with pytest.raises(ValueError, match="different run"):
        score_dataset(tiny_model, "smollm2", dataset_dir, "train_all", out, indices=indices[:5])


def test_data_parallel_shards(tiny_model, dataset_dir, tmp_path, monkeypatch):
    out = tmp_path / "scores"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        score_dataset(
            tiny_model,
            "smollm2",
            dataset_dir,
            "train_all",
            out,
            indices=np.arange(9),
            shard_size=3,
            with_embeddings=False,
            device="cpu",  # simulated ranks on CPU on purpose: without it, WORLD_SIZE=2 expects a GPU
        )
        if rank == 0:
            with pytest.raises(RuntimeError, match="incomplete: 4 of 9 rows"):
                load_scores(out)
    scores = load_scores(out)
    assert scores["index"].tolist() == list(range(9)) and scores["embedding"] is None


def test_resume_with_another_number_of_ranks(tiny_model, dataset_dir, tmp_path, monkeypatch):
    """Rank 0 of 2 finishes, then the run resumes on 3 ranks: its rows are reused, only the rest is scored,
    and the result equals a one-rank run (the manifest does not record the number of ranks)."""
    out, ref = tmp_path / "scores", tmp_path / "ref"
    kwargs = dict(indices=np.arange(12), batch_size=3, shard_size=2, with_embeddings=False, device="cpu")
    score_dataset(tiny_model, "smollm2", dataset_dir, "train_all", ref, **kwargs)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    score_dataset(tiny_model, "smollm2", dataset_dir, "train_all", out, **kwargs)
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    monkeypatch.setenv("WORLD_SIZE", "3")
    for rank in (0, 1, 2):
        monkeypatch.setenv("RANK", str(rank))
        score_dataset(tiny_model, "smollm2", dataset_dir, "train_all", out, **kwargs)
    assert all((out / name).stat().st_mtime_ns == t for name, t in first.items())  # reused, not rescored
    scored_now = sum(json.loads((out / f"done-{r}.json").read_text())["n_scored_now"] for r in range(3))
    assert scored_now == 12 - 6  # rank 0 of 2 had scored rows 0, 2, ..., 10
    a, b = load_scores(out), load_scores(ref)
    assert a["index"].tolist() == list(range(12))
    np.testing.assert_allclose(a["logprobs"], b["logprobs"], atol=1e-4)
    # a manifest written before world_size stopped counting still resumes
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "world_size": 2, "shard_size": 256}))
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    score_dataset(tiny_model, "smollm2", dataset_dir, "train_all", out, **kwargs)


def test_cli_score_select_writes_llamafactory_datasets(tiny_model, dataset_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(dataset_dir, data_dir)
    scores = tmp_path / "scores"
    assert scoring_cli(["score", "--model", str(tiny_model), "--template", "smollm2", "--dataset-dir", str(data_dir),
                        "--pool-per-behavior", "4", "--batch-size", "8", "--out", str(scores)]) == 0
    selected = tmp_path / "selection"
    before = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    assert cli(["select", "--scores", str(scores), "--dataset-dir", str(data_dir), "--F", "2"]) == 2  # no --out
    assert cli(["select", "--scores", str(scores), "--dataset-dir", str(data_dir), "--F", "2", "--out",
                str(data_dir)]) == 2  # never into the prepared data
    assert cli(["select", "--scores", str(scores), "--dataset-dir", str(data_dir), "--F", "2", "--out",
                str(selected)]) == 0
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == before  # the prepared data is only read
    assert json.loads((selected / "dataset_info.json").read_text()).keys() == {"behavior_dpo_pairs",
                                                                              "behavior_selected_sft"}
    pairs = _jsonl(selected / "dpo_pairs.jsonl")
    sft = _jsonl(selected / "selected_sft.jsonl")
    report = json.loads((selected / "selection_report.json").read_text(encoding="utf-8"))
    # pool: min(4, n) per behavior of (6,5,3,2,1,2,3); F=2 -> (2,2,2,2,1,2,2)
    assert report["pool_size"] == 4 + 4 + 3 + 2 + 1 + 2 + 3 and len(pairs) == len(sft) == 13
    assert [b["pairs"] for b in report["per_behavior"]] == [2, 2, 2, 2, 1, 2, 2]
    assert all(p["chosen"] != p["rejected"] for p in pairs) and (selected / "selection_report.md").exists()
    prepared = _jsonl(data_dir / "train_all.jsonl")
    assert all(
        {k: p[k] for k in ("system", "instruction", "input")}
        in [{k: r[k] for k in ("system", "instruction", "input")} for r in prepared]
        for p in pairs
    )
    # The report counts the pairs whose chosen / rejected answer is the history's last behavior, from the meta.
    meta = _jsonl(data_dir / "train_all.meta.jsonl")
    last = [meta[i]["history"][-1] for i in report["selected_index"]]
    assert report["pairs_chosen_is_last"] == sum(p["chosen"] == h for p, h in zip(pairs, last))
    assert report["pairs_rejected_is_last"] == sum(p["rejected"] == h for p, h in zip(pairs, last))
    assert "Chosen answer = the history's last behavior in" in (selected / "selection_report.md").read_text()
    # --repeat-share takes a share of each behavior's F from the samples that repeat the last behavior;
    # --max-rejected 2 lets no behavior be rejected in more than F = 2 pairs
    split = tmp_path / "split"
    assert cli(["select", "--scores", str(scores), "--dataset-dir", str(data_dir), "--F", "2", "--repeat-share", "1",
                "--max-rejected", "2", "--out", str(split)]) == 0
    split_report = json.loads((split / "selection_report.json").read_text(encoding="utf-8"))
    assert any(0 < b["pool_repeats"] < b["pool_size"] for b in split_report["per_behavior"])  # both kinds exist
    for b in split_report["per_behavior"]:
        assert b["selected_repeats"] == min(b["pool_repeats"], b["selected"]) and b["rejected"] <= 2, b
    assert cli(["select", "--scores", str(scores), "--dataset-dir", str(data_dir), "--F", "2", "--repeat-share",
                "1.5", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()

    # The registered names load through LLaMA-Factory's own parser and alpaca converter.
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    args = DataArguments(template="smollm2", dataset_dir=str(selected))
    attr_pairs, attr_sft = get_dataset_list(["behavior_dpo_pairs", "behavior_selected_sft"], str(selected))
    converted = get_dataset_converter("alpaca", attr_pairs, args)(pairs[0])
    assert [m["content"] for m in converted["_response"]] == [pairs[0]["chosen"], pairs[0]["rejected"]]
    assert converted["_prompt"][0]["content"] == pairs[0]["instruction"] and converted["_system"] == SYSTEM
    assert get_dataset_converter("alpaca", attr_sft, args)(sft[0])["_response"][0]["content"] == sft[0]["output"]


def test_clear_errors(tiny_model, dataset_dir, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_and_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model"):
        load_model_and_tokenizer(dataset_dir)
    with pytest.raises(ValueError, match="not in"):
        resolve_dataset_file(dataset_dir, "no_such_split")
    assert resolve_dataset_file(dataset_dir, "behavior_train_all") == resolve_dataset_file(dataset_dir, "train_all")
    with pytest.raises(ValueError, match="empty scoring pool"):
        score_dataset(tiny_model, "smollm2", dataset_dir, "train_all", tmp_path / "s", indices=[])
    assert (
        scoring_cli(
            [
                "score",
                "--model",
                str(tmp_path / "nope"),
                "--template",
                "smollm2",
                "--dataset-dir",
                str(dataset_dir),
                "--out",
                str(tmp_path / "s2"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert cli(["select", "--scores", str(tmp_path), "--dataset-dir", str(dataset_dir), "--F", "0"]) == 2
    assert "F must be a positive integer" in capsys.readouterr().err


def test_rendering_matches_llamafactory_dpo_preprocessing(loaded, dataset_dir, tmp_path):
    """The scored (prompt, answer) ids are exactly what LLaMA-Factory's DPO processor trains on."""
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.data.processor import PairwiseDatasetProcessor
    from llamafactory.hparams import DataArguments

    from scoring.rendering import encode_pair
    from selection.pairs import DATASET_INFO

    _, tokenizer, template = loaded
    data = load_prepared(dataset_dir)
    record = {**data.records[3], "input": "extra context"}  # the converter joins instruction and input
    pair = {k: record[k] for k in ("system", "instruction", "input")}
    pair.update(chosen=data.candidates[2], rejected=data.candidates[3])
    args = DataArguments(template="smollm2", dataset_dir=str(dataset_dir), cutoff_len=4096)
    (tmp_path / "dataset_info.json").write_text(json.dumps(DATASET_INFO))  # select's folder registers the pairs
    (attr,) = get_dataset_list(["behavior_dpo_pairs"], str(tmp_path))
    example = get_dataset_converter("alpaca", attr, args)(pair)
    batch = PairwiseDatasetProcessor(template=template, tokenizer=tokenizer, processor=None, data_args=args)
    out = batch.preprocess_dataset({k: [v] for k, v in example.items()})
    prompt_ids, chosen_ids = encode_pair(template, tokenizer, record, pair["chosen"])
    _, rejected_ids = encode_pair(template, tokenizer, record, pair["rejected"])
    assert out["chosen_input_ids"][0] == prompt_ids + chosen_ids
    assert out["rejected_input_ids"][0] == prompt_ids + rejected_ids


def test_prompt_sharing_is_checked():
    from scoring.rendering import encode_candidates

    class LeakyTemplate:  # a template whose prompt depends on the answer cannot share a prefix
        efficient_eos = False

        def encode_oneturn(self, tokenizer, messages, system=None):
            return [1, 2, len(messages[-1]["content"])], [7, 8]

    with pytest.raises(RuntimeError, match="different prompt"):
        encode_candidates(LeakyTemplate(), None, {"instruction": "x"}, ["a", "bb"])


def test_prefix_tree_shares_prefixes():
    tree = prefix_tree([[5, 6, 9], [5, 7, 9], [8, 9], [4]])
    assert tree.tokens == [5, 6, 7, 8] and tree.depth == [0, 1, 1, 0]
    # node 1 (5->6) and node 2 (5->7) see the shared root 5, not each other
    assert tree.ancestor.astype(int).tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]
    assert list(zip(tree.cand, tree.node, tree.target)) == [(0, 0, 6), (0, 1, 9), (1, 0, 7), (1, 2, 9), (2, 3, 9)]


def test_bf16_on_cpu_is_mixed_precision_with_fp32_logits(tiny_model, dataset_dir):
    """bf16 on a CPU: fp32 weights, the matmuls in bf16 (autocast), the logits in fp32 (bf16 logits would round
    away the gaps between candidates); the cached-prefix kernel still equals the naive path, and the candidates'
    log-probs stay near fp32's."""
    import torch

    model, tokenizer = load_model_and_tokenizer(tiny_model, dtype="bfloat16", device="cpu")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    seen = {}
    model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, o: seen.update(q=o.dtype))
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert seen["q"] == torch.bfloat16 and logits.dtype == torch.float32
    data = load_prepared(dataset_dir)
    encoder = PromptEncoder(load_template(tokenizer, "smollm2"), tokenizer, data.candidates, data.records[0])
    prompts = [encoder.prompt(r) for r in data.records[:3]]
    cached, _ = cached_candidate_logprobs(model, prompts, encoder.cand_ids, tokenizer.pad_token_id, False)
    np.testing.assert_allclose(cached, naive_candidate_logprobs(model, prompts, encoder.cand_ids), atol=0.05)
    records = data.records[:6]
    fp32 = CandidateScorer(tiny_model, "smollm2", batch_size=3, device="cpu").score(records, data.candidates, False)
    bf16 = CandidateScorer(tiny_model, "smollm2", batch_size=3, device="cpu", dtype="bfloat16").score(
        records, data.candidates, False)
    np.testing.assert_allclose(bf16.cand_logprob, fp32.cand_logprob, atol=0.02)
