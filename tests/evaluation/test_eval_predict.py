"""Predictions on a tiny random Llama: constrained = argmax of the scorer, generation parsed, resumable."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prediction_checks import assert_pred_is_argmax
from tiny_models import build_tiny_llama, texts_from_dataset_dir

from data_prep.rendering.prompts import format_candidates, format_event, format_next_context, render_instruction
from data_prep.writing.outputs import read_jsonl
from evaluation.__main__ import main
from evaluation.files import LOGPROB_DECIMALS
from evaluation.predict import parse_generation, predict_constrained, predict_generate
from evaluation.temperature import MODES, fit_temperature
from scoring.shards import load_scores

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["sleep", "work", "watch a football match", "去医院看病"]
GROUPS = ["head", "head", "medium", "tail"]


def test_parse_generation():
    cands = ["Game", "Gaming on the phone", "watch videos", "去医院看病"]
    assert parse_generation("  gAme \n", cands) == "Game"  # exact after strip / case-fold
    assert parse_generation("Gaming on the phone, then sleep", cands) == "Gaming on the phone"  # longest prefix
    assert parse_generation("Watch  videos.", cands) == "watch videos"
    assert parse_generation("Game.", cands) == "Game"
    assert parse_generation("Gamer", cands) is None  # "game" + a letter is another word
    assert parse_generation("去医院看病。", cands) == "去医院看病"
    assert parse_generation("I think the user will sleep", cands) is None
    assert parse_generation("", cands) is None


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalpred") / "data"
    root.mkdir()
    shutil.copy(ROOT / "dataset_info.json", root / "dataset_info.json")
    rng = np.random.default_rng(0)
    records, meta = [], []
    for i in range(7):
        label_id = int(rng.integers(0, len(NAMES)))
        history = [NAMES[j] for j in rng.integers(0, len(NAMES), size=4)]
        events = ", ".join(format_event(0, 8, "home", h) for h in history)
        records.append({"system": "Predict the next behavior.", "input": "", "output": NAMES[label_id],
                        "instruction": render_instruction(i % 3, events, format_next_context(0, 8, "home"),
                                                          format_candidates(NAMES))})
        meta.append({"sample_id": f"s{i}", "user_id": f"u{i}", "label": NAMES[label_id], "label_id": label_id,
                     "is_anchor": label_id < 2, "freq_group": GROUPS[label_id], "template_id": i % 3,
                     "history": history, "next_context": ["Mon", 8, "home"]})
    for stem, rows in (("test_p2.jsonl", records), ("test_p2.meta.jsonl", meta), ("valid.jsonl", records),
                       ("valid.meta.jsonl", meta)):
        (root / stem).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    stats = {"behaviors": [{"name": n, "label_id": i, "train_count": 10 - 2 * i, "train_freq": (10 - 2 * i) / 28,
                            "is_anchor": i < 2, "freq_group": GROUPS[i]} for i, n in enumerate(NAMES)]}
    (root / "stats.json").write_text(json.dumps(stats, ensure_ascii=False), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny_model(dataset_dir, tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("evalpred_model") / "tiny", texts_from_dataset_dir(dataset_dir),
                            seed=0, vocab_size=300)


def test_constrained_is_argmax_of_scorer_and_resumes(dataset_dir, tiny_model, tmp_path):
    out = tmp_path / "pred"
    path = predict_constrained(str(tiny_model), "smollm2", dataset_dir, "test_p2", out, batch_size=3,
                               shard_size=4, device="cpu")
    rows = read_jsonl(path)
    scores = load_scores(out / "test_p2.scores")
    assert len(rows) == 7 and [r["index"] for r in rows] == list(range(7))
    assert [r["pred"] for r in rows] == [NAMES[int(np.argmax(p))] for p in scores["probs"]]
    assert all(r["valid"] for r in rows)
    for row, probs in zip(rows, scores["probs"]):
        assert row["p_label"] == pytest.approx(float(probs[NAMES.index(row["label"])]))
        assert [t["name"] for t in row["top"]] == [NAMES[i] for i in np.argsort(-probs, kind="stable")[:3]]
        assert row["top"][0]["name"] == row["pred"]
        assert np.exp(row["logprobs"]) == pytest.approx(probs, abs=1e-5)   # every candidate, normalized
    assert_pred_is_argmax(rows)
    assert json.loads((out / "test_p2.predictions.info.json").read_text())["method"] == "constrained"

    parts = sorted((out / "test_p2.scores").glob("part-*.parquet"))
    assert len(parts) == 2
    stamps = [p.stat().st_mtime_ns for p in parts]
    # rerun through the CLI: every part is on disk, nothing is scored again, same predictions
    assert main(["predict", "--model", str(tiny_model), "--template", "smollm2", "--dataset-dir", str(dataset_dir),
                 "--dataset", "test_p2", "--out", str(out), "--device", "cpu", "--shard-size", "4"]) == 0
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    assert read_jsonl(path) == rows
    # the CLI also fits the temperature on the (seeded, here whole) validation split, in every prompt mode
    record = json.loads((out / "temperature.json").read_text())
    assert record["n_samples"] == 7 and record["split"] == "valid" and record["nll_after"] <= record["nll_before"]
    assert set(record["modes"]) == set(MODES)
    assert all(m["nll_after"] <= m["nll_before"] for m in record["modes"].values())
    labels = [NAMES.index(r["label"]) for r in rows]   # valid is a copy of test_p2 here
    # the own mode is what the predictions use: its T is the one fitted on their log-probabilities
    own = fit_temperature(np.array([r["logprobs"] for r in rows]), labels)
    assert record["temperature"] == pytest.approx(own, rel=1e-3)


def test_constrained_pred_is_the_top_of_the_stored_log_probabilities(dataset_dir, tmp_path, monkeypatch):
    """Two float32 scores the file cannot tell apart (equal to LOGPROB_DECIMALS) are a tie: the lower label_id."""
    import scoring.scorer
    import scoring.shards

    raw = np.random.default_rng(3).normal(-3.0, 1.0, size=(7, len(NAMES))).astype(np.float32)
    raw[0] = [-1.0, -2.5, -0.9999999, -3.0]   # candidate 2 is the float32 argmax by 1e-7
    normalized = raw - np.logaddexp.reduce(raw.astype(np.float64), axis=1, keepdims=True)
    assert round(normalized[0, 0], LOGPROB_DECIMALS) == round(normalized[0, 2], LOGPROB_DECIMALS)
    probs = np.exp(normalized).astype(np.float32)
    scores = {"candidates": NAMES, "index": np.arange(7), "logprobs": raw, "probs": probs,
              "pred_id": raw.argmax(axis=1)}
    monkeypatch.setattr(scoring.scorer, "score_dataset", lambda *a, **k: None)
    monkeypatch.setattr(scoring.shards, "wait_for_scores", lambda *a, **k: None)
    monkeypatch.setattr(scoring.shards, "load_scores", lambda *a, **k: scores)
    rows = read_jsonl(predict_constrained("unused", "smollm2", dataset_dir, "test_p2", tmp_path / "pred"))
    assert_pred_is_argmax(rows)
    assert rows[0]["pred"] == NAMES[0] and [t["name"] for t in rows[0]["top"][:2]] == [NAMES[0], NAMES[2]]
    assert [r["p_label"] for r in rows] == [pytest.approx(float(p[NAMES.index(r["label"])]))
                                            for r, p in zip(rows, probs)]   # the scorer's probabilities


def test_generate_reports_invalid_rate(dataset_dir, tiny_model, tmp_path):
    out = tmp_path / "gen"
    path = predict_generate(str(tiny_model), "smollm2", dataset_dir, "test_p2", out, batch_size=4,
                            max_new_tokens=4, shard_size=4, device="cpu")
    rows = read_jsonl(path)
    assert len(rows) == 7
    for row in rows:
        assert row["pred"] == parse_generation(row["output"], NAMES)
        assert row["valid"] == (row["pred"] is not None) and row["p_label"] is None
    info = json.loads((out / "test_p2.predictions.info.json").read_text())
    n_invalid = sum(not r["valid"] for r in rows)
    assert info["method"] == "generate" and info["n_invalid"] == n_invalid
    assert info["invalid_rate"] == pytest.approx(n_invalid / 7)
    # a second run reuses the stored outputs; a run with other settings into the same dir is refused
    assert read_jsonl(predict_generate(str(tiny_model), "smollm2", dataset_dir, "test_p2", out, max_new_tokens=4,
                                       shard_size=4, device="cpu")) == rows
    with pytest.raises(ValueError, match="max_new_tokens"):
        predict_generate(str(tiny_model), "smollm2", dataset_dir, "test_p2", out, max_new_tokens=8, shard_size=4,
                         device="cpu")


def test_cli_loads_the_model_once_for_every_split(dataset_dir, tiny_model, tmp_path, monkeypatch):
    import scoring.scorer as scorer

    loads = []
    real_model, real_tokenizer = scorer.load_model_and_tokenizer, scorer.load_tokenizer_and_template
    monkeypatch.setattr(scorer, "load_model_and_tokenizer",
                        lambda *a, **k: loads.append("model") or real_model(*a, **k))
    monkeypatch.setattr(scorer, "load_tokenizer_and_template",
                        lambda *a, **k: loads.append("tokenizer") or real_tokenizer(*a, **k))
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(tiny_model), "--template", "smollm2", "--dataset-dir", str(dataset_dir),
                 "--dataset", "test_p2", "--out", str(out), "--device", "cpu", "--cutoff-len", "4096"]) == 0
    assert sorted(loads) == ["model", "tokenizer"]  # test_p2 and the validation subset share them
    alone = predict_constrained(str(tiny_model), "smollm2", dataset_dir, "test_p2", tmp_path / "alone", device="cpu")
    assert read_jsonl(alone) == read_jsonl(out / "test_p2.predictions.jsonl")
    assert (out / "temperature.json").is_file() and loads[2:] == ["model"]  # the call alone loaded its own
