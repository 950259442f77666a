"""SASRec: learns a rule that needs the event context, cannot without it, round-trips through the
report, is deterministic, and draws the sample-efficiency curve. One small log, prepared once by the real
``python -m data_prep prepare``; the model is tiny so that every training takes seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from prediction_checks import assert_pred_is_argmax

from evaluation.files import LOGPROB_DECIMALS, load_predictions, read_jsonl
from evaluation.metrics import metrics_from_predictions
from evaluation.report import build_report
from sasrec.data import event_pattern, parse_history_contexts, read_split
from sasrec.efficiency import run_sample_efficiency
from sasrec.train import prediction_rows, run_train

ROOT = Path(__file__).resolve().parents[2]
BEHAVIORS = [f"behavior {chr(65 + i)}" for i in range(8)]
PLACES = ["home", "workplace", "cafe, downtown"]  # a place with ", " inside: the parser must not split it
HISTORY_LEN = 4
TINY = ["hidden_size=32", "num_blocks=1", "ffn_mult=2", "dropout=0.0", "learning_rate=0.005", "batch_size=64",
        "max_epochs=40", "patience=6", "threads=1", "min_round_windows=0"]


def rule(last: int, hour: int) -> int:
    """The next behavior: a fixed function of the last behavior and the next event's hour (4 hour bands)."""
    return (last + hour // 6) % len(BEHAVIORS)


def write_log(path: Path, users: int = 40, events: int = 40, seed: int = 7) -> None:
    """One event a day per user at a random hour and place; each behavior follows ``rule`` from the previous."""
    rng = np.random.default_rng(seed)
    lines = ["user_id,timestamp,place,behavior"]
    for u in range(users):
        behavior = int(rng.integers(len(BEHAVIORS)))
        for day in range(events):
            hour = int(rng.integers(24))
            if day:
                behavior = rule(behavior, hour)
            when = datetime(2024, 3, 1) + timedelta(days=day, hours=hour)
            lines.append(f'u{u:03d},{when.isoformat()},"{PLACES[rng.integers(len(PLACES))]}",{BEHAVIORS[behavior]}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sasrec")
    write_log(root / "events.csv")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "data_prep", "prepare", "--input", str(root / "events.csv"),
                    "--out", str(root / "data"), "--history-len", str(HISTORY_LEN), "--test-cap", "120"],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    return root / "data"


def accuracy(pred_dir: Path, split: str) -> float:
    rows, _ = load_predictions(pred_dir, split)
    return float(np.mean([r["pred"] == r["label"] for r in rows]))


@pytest.fixture(scope="module")
def with_context(dataset_dir) -> Path:
    out = dataset_dir.parent / "eval" / "sasrec"
    run_train(dataset_dir, out, overrides=TINY)
    return out


def test_parser_reads_contexts_with_commas_in_places():
    pattern = event_pattern(["Music", "Music videos", "Email"])
    text = ("This user has done behaviors (Monday, 7, cafe, downtown, Music videos), (Monday, 9, home, Music), "
            "(Tuesday, 23, home, Email) in the previous. Day of the week, the hour, and the place of the next "
            "behavior are (Tuesday, 23, home), respectively.")
    assert parse_history_contexts(text, ["Music videos", "Music", "Email"], pattern) == [
        ("Monday", 7, "cafe, downtown"), ("Monday", 9, "home"), ("Tuesday", 23, "home")]
    with pytest.raises(ValueError, match="do not match"):
        parse_history_contexts(text, ["Music", "Music", "Email"], pattern)


def test_windows_carry_the_prompt_contexts(dataset_dir):
    windows, places = read_split(dataset_dir, "valid", BEHAVIORS, keep_meta=True)
    assert set(places) - {"<unknown place>"} == set(PLACES)
    records = read_jsonl(dataset_dir / "valid.jsonl")
    name = {i: p for p, i in places.items()}
    for i in (0, len(windows) - 1):
        assert windows.meta[i]["next_context"][1] == windows.hour[i, -1]
        assert [BEHAVIORS[b] for b in windows.behavior[i]] == windows.meta[i]["history"]
        # the last history element, rebuilt from the arrays
        last = f", {windows.hour[i, -2]}, {name[windows.place[i, -2]]}, {windows.meta[i]['history'][-1]})"
        assert last in records[i]["instruction"]
    # the log's own rule holds inside every window: what the model has to learn
    assert all(rule(b[-1], h[-1]) == y for b, h, y in zip(windows.behavior, windows.hour, windows.label))


def test_learns_the_rule_that_needs_the_hour(with_context):
    assert accuracy(with_context, "test_p1") >= 0.95
    assert accuracy(with_context, "test_p2") >= 0.95
    log = json.loads((with_context / "train_log.json").read_text())
    assert log["valid_accuracy"] == max(h["valid_accuracy"] for h in log["history"])  # best epoch kept


def test_without_context_it_cannot(dataset_dir, tmp_path):
    run_train(dataset_dir, tmp_path, overrides=[*TINY, "use_context=false"])
    # given the last behavior, four next behaviors are equally likely without the hour: about 1/4 right
    assert accuracy(tmp_path, "test_p1") <= 0.5


def test_predictions_round_trip_through_the_report(dataset_dir, with_context, tmp_path):
    report = build_report(dataset_dir, {"sasrec": [str(with_context)]}, tmp_path)
    stats = json.loads((dataset_dir / "stats.json").read_text())
    for split in ("test_p1", "test_p2"):
        rows, info = load_predictions(with_context, split)
        assert info["method"] == "sasrec" and info["n_invalid"] == 0
        assert report["models"]["sasrec"]["summary"][split]["rec_w"]["mean"] == pytest.approx(
            metrics_from_predictions(rows, stats)["rec_w"])
        assert report["models"]["sasrec"]["summary"][split]["rec_w"]["mean"] == pytest.approx(accuracy(with_context,
                                                                                                         split))
        assert all(0 <= r["p_label"] <= 1 for r in rows)
        assert_pred_is_argmax(rows)
        assert all(np.exp(r["logprobs"][r["label_id"]]) == pytest.approx(r["p_label"], rel=1e-5) for r in rows)
        assert report["models"]["sasrec"]["summary"][split]["hit@1"]["mean"] == pytest.approx(
            report["models"]["sasrec"]["summary"][split]["rec_w"]["mean"])   # no ties in float log-probs
    assert "| sasrec | 1 |" in (tmp_path / "report.md").read_text()
    record = json.loads((with_context / "temperature.json").read_text())
    assert record["split"] == "valid" and 0 < record["n_samples"] <= 64 and record["nll_after"] <= record["nll_before"]
    assert report["models"]["sasrec"]["runs"][0]["test_p1"]["temperature"] == record["temperature"]


def test_prediction_is_the_top_of_the_stored_log_probabilities():
    """Log-probabilities the file cannot tell apart (equal to LOGPROB_DECIMALS) are a tie: the lower label_id."""
    logprobs = torch.log_softmax(torch.tensor([[-1.0, -0.9999999, -3.0], [-2.0, -0.5, -1.0]]), dim=-1)
    kept = [[round(v, LOGPROB_DECIMALS) for v in row] for row in logprobs.tolist()]
    assert logprobs[0, 1] > logprobs[0, 0] and logprobs.exp()[0, 1] > logprobs.exp()[0, 0] and kept[0][0] == kept[0][1]
    names = BEHAVIORS[:3]
    windows = type("W", (), {"meta": [{"sample_id": f"s{i}", "label": names[1]} for i in range(2)],
                             "label": np.array([1, 1])})
    for stored in (logprobs, None):
        rows = prediction_rows(logprobs.exp(), windows, names, stored)
        assert_pred_is_argmax(rows)
        assert [r["pred"] for r in rows] == [names[0] if stored is not None else names[1], names[1]]


def test_same_seed_same_predictions_other_seed_differs(dataset_dir, tmp_path):
    short = [*TINY, "max_epochs=2", "dropout=0.1"]
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_train(dataset_dir, tmp_path / name, overrides=[*short, f"seed={seed}"])
    text = {n: (tmp_path / n / "test_p2.predictions.jsonl").read_text() for n in "abc"}
    assert text["a"] == text["b"]
    assert text["a"] != text["c"]


def test_sample_efficiency_table_and_plot(dataset_dir, with_context, tmp_path):
    build_report(dataset_dir, {"sasrec-full": [str(with_context)]}, tmp_path / "report")
    n_train = json.loads((dataset_dir / "stats.json").read_text())["samples"]["train_all"]
    paths = run_sample_efficiency(dataset_dir, [50, 10**6], tmp_path / "out",
                                  [f"llm={tmp_path / 'report' / 'metrics.json'}#sasrec-full@777",
                                   f"a-tune={tmp_path / 'report' / 'metrics.json'}#a-tune"],
                                  overrides=[*TINY, "max_epochs=3"], skip_missing_llm=True)
    assert {p.name for p in paths} == {"sample_efficiency.md", "sample_efficiency.png", "sample_efficiency.json"}
    assert (tmp_path / "out" / "sample_efficiency.png").read_bytes()[:4] == b"\x89PNG"
    result = json.loads((tmp_path / "out" / "sample_efficiency.json").read_text())
    assert [p["used"] for p in result["sasrec"]] == [50, n_train]
    assert [(r["name"], r["samples"]) for r in result["llm"]] == [("llm", 777)]  # a-tune: not in the report
    rows, _ = load_predictions(tmp_path / "out" / "sample_efficiency" / f"sasrec-n{n_train}", "test_p2")
    assert result["sasrec"][1]["overall"] == pytest.approx(
        metrics_from_predictions(rows, json.loads((dataset_dir / "stats.json").read_text()))["overall"])
    table = (tmp_path / "out" / "sample_efficiency.md").read_text()
    assert f"| sasrec | {n_train} (asked 1000000) |" in table and "| llm | 777 |" in table


def test_sample_efficiency_refuses_a_missing_llm_row_before_training(dataset_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics file"):
        run_sample_efficiency(dataset_dir, [50], tmp_path, [f"behaviorlm={tmp_path / 'none.json'}#behaviorlm"],
                              overrides=TINY)
    assert not (tmp_path / "sample_efficiency").exists()
