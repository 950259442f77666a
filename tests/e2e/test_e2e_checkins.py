"""Many behaviors, small data: a check-in log shaped like real public check-in data
(tests/e2e/checkins.py: ~200 multi-token categories, 300 users, a long tail) through prepare, the tiny model,
scoring, selection, predictions, baselines and the report, by the command lines' own `main`s (one process,
so the libraries are imported once). Select with `-m e2e`.

Two prepares of the same log: with the paper's default caps (50 000 / 500 per behavior, far more than the
test users have: the scarce-test-sample rule must keep protocol 2 filled), and with small caps for the chain.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os

import pytest
from checkins import write_checkins
from tiny_models import main as tiny_main

from data_prep.cli import main as prepare_main
from data_prep.writing.outputs import BEHAVIOR_STEMS, read_jsonl
from evaluation.__main__ import main as evaluation_main
from scoring.__main__ import main as scoring_main
from selection.__main__ import main as selection_main

pytestmark = pytest.mark.e2e

# 15 test users (5 %): a few hundred test samples, as on real public check-in data
PREPARE = ["--tz", "Asia/Tokyo", "--history-len", "10", "--train-cap", "200", "--valid-cap", "20", "--seed", "3",
           "--split-ratios", "0.9,0.05,0.05"]
CHAIN_CAPS = ["--test-cap", "20", "--p2-per-behavior", "1"]
MODELS = ("tiny", "markov")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    tmp = tmp_path_factory.mktemp("checkins")
    log = write_checkins(tmp / "checkins.csv", n_users=300, n_categories=200, seed=0)
    defaults, data = tmp / "defaults" / "data", tmp / "run" / "data"
    console = io.StringIO()
    with contextlib.redirect_stderr(console):
        assert prepare_main(["prepare", "--input", str(log), "--out", str(defaults), *PREPARE]) == 0
    assert prepare_main(["prepare", "--input", str(log), "--out", str(data), *PREPARE, *CHAIN_CAPS]) == 0
    tiny, scores, preds = tmp / "tiny", tmp / "run" / "scores", tmp / "run" / "eval"
    assert tiny_main(["--out", str(tiny), "--dataset-dir", str(data)]) == 0
    assert scoring_main(["score", "--model", str(tiny), "--template", "smollm2", "--dataset-dir", str(data),
                         "--pool-per-behavior", "1", "--batch-size", "16", "--device", "cpu",
                         "--out", str(scores)]) == 0
    selection = tmp / "run" / "selection"
    assert selection_main(["select", "--scores", str(scores), "--dataset-dir", str(data), "--F", "1", "--out",
                           str(selection)]) == 0
    assert evaluation_main(["predict", "--model", str(tiny), "--template", "smollm2", "--dataset-dir", str(data),
                            "--dataset", "test_p1", "test_p2", "--batch-size", "16", "--device", "cpu",
                            "--out", str(preds / "tiny")]) == 0
    assert evaluation_main(["baseline", "--dataset-dir", str(data), "--kind", "markov", "--dataset", "test_p1",
                            "test_p2", "--out", str(preds / "markov")]) == 0
    report = tmp / "run" / "report"
    assert evaluation_main(["report", "--dataset-dir", str(data), "--out", str(report),
                            *[f"--pred={name}={preds / name}" for name in MODELS]]) == 0
    with log.open(encoding="utf-8") as handle:
        categories = {row["behavior"] for row in csv.DictReader(handle)}
    return {"log_categories": categories, "defaults": defaults, "console": console.getvalue(), "data": data,
            "report": report, "preds": preds, "selection": selection}


def stats_of(data):
    return json.loads((data / "stats.json").read_text())


def test_the_log_is_shaped_like_real_check_ins(chain):
    stats = stats_of(chain["data"])
    names = [b["name"] for b in stats["behaviors"]]
    assert set(names) == chain["log_categories"] and 190 <= len(names) <= 200
    assert sum(" " in n for n in names) > 0.8 * len(names)            # multi-token names
    counts = sorted((b["train_count"] for b in stats["behaviors"]), reverse=True)
    # a long tail: the top tenth of the categories hold most check-ins, the lower half a small share
    assert sum(counts[:len(counts) // 10]) > 0.5 * sum(counts) > 2.5 * sum(counts[len(counts) // 2:])
    assert sum(c <= 5 for c in counts) >= 10
    assert len(stats["anchors"]) < len(names) // 5


def test_default_caps_keep_protocol2_filled_and_print_the_coverage(chain):
    stats = stats_of(chain["defaults"])
    protocols, n = stats["protocols"], stats["available_samples"]["test"]
    assert stats["config"]["test_cap"] == 50_000 and n < 50_000          # scarce test samples
    assert protocols["test_p1"]["lowered_by_rule"] and protocols["test_p1"]["samples"] == (n + 1) // 2
    assert protocols["test_p2"]["samples"] == n - (n + 1) // 2 == stats["samples"]["test_p2"]
    p1 = {m["label"] for m in read_jsonl(chain["defaults"] / "test_p1.meta.jsonl")}
    p2 = {m["label"] for m in read_jsonl(chain["defaults"] / "test_p2.meta.jsonl")}
    assert protocols["test_p1"]["behaviors"] == len(p1) and protocols["test_p2"]["behaviors"] == len(p2) > 0
    total = len(stats["behaviors"])
    assert (f"protocol 1 (test_p1): {protocols['test_p1']['samples']} samples, {len(p1)} of {total} "
            f"behaviors; protocol 2 (test_p2): {protocols['test_p2']['samples']} samples, {len(p2)} of {total} "
            "behaviors") in chain["console"]
    assert "protocol 1: test cap 50000 lowered to" in chain["console"]


def test_every_behavior_is_a_candidate_in_every_prompt(chain):
    names = [b["name"] for b in stats_of(chain["data"])["behaviors"]]
    candidates = ", ".join(names)
    for stem in BEHAVIOR_STEMS:
        records = read_jsonl(chain["data"] / f"{stem}.jsonl")
        assert records, stem
        for record in records:
            assert record["instruction"].count(candidates) == 1, stem
            assert record["output"] in names


def test_protocol2_counts_match_the_written_split_and_the_predictions(chain):
    stats = stats_of(chain["data"])
    meta = read_jsonl(chain["data"] / "test_p2.meta.jsonl")
    written = {n: sum(m["label"] == n for m in meta) for n in stats["protocol2_counts"]}
    assert written == stats["protocol2_counts"] and max(written.values()) == 1
    assert stats["protocols"]["test_p2"]["behaviors"] == sum(written.values())
    predictions = read_jsonl(chain["preds"] / "tiny" / "test_p2.predictions.jsonl")
    assert [p["label"] for p in predictions] == [m["label"] for m in meta]
    assert all(p["valid"] for p in predictions)                      # constrained: always a candidate


def test_selection_writes_pairs_of_two_different_candidates(chain):
    names = [b["name"] for b in stats_of(chain["data"])["behaviors"]]
    pairs = read_jsonl(chain["selection"] / "dpo_pairs.jsonl")
    report = json.loads((chain["selection"] / "selection_report.json").read_text())
    assert len(pairs) == report["pairs"] > 0 and len(pairs) <= len(names)   # F = 1 per behavior
    for pair in pairs:
        assert pair["chosen"] in names and pair["rejected"] in names and pair["chosen"] != pair["rejected"]


def test_report_rows_and_the_behaviors_without_samples_line(chain):
    stats = stats_of(chain["data"])
    md = (chain["report"] / "report.md").read_text()
    rows = {line.split(" | ")[0][2:] for line in md.splitlines() if line.startswith("| ")}
    assert set(MODELS) <= rows
    missing = [n for n, c in stats["protocol2_counts"].items() if c == 0]
    metrics = json.loads((chain["report"] / "metrics.json").read_text())
    assert sorted(metrics["behaviors_without_samples"]["test_p2"]) == sorted(missing)
    line = md.split("Behaviors without test_p2 samples")[1].splitlines()[0]
    assert f": {len(missing)} of {len(stats['behaviors'])}, e.g. " in line
    assert sum(name in line for name in missing) < 10 < len(missing)


def test_report_figures_stay_bounded_with_two_hundred_behaviors(chain):
    from PIL import Image

    from evaluation.report_plots import MAX_CHART_INCHES, MAX_CONFUSION_INCHES

    figures = json.loads((chain["report"] / "metrics.json").read_text())["figures"]
    assert set(figures) == {"per_behavior_accuracy.png", "long_tail.png",
                            *(f"{kind}_{m}.png" for kind in ("confusion", "reliability") for m in MODELS)}
    for name in figures:
        with Image.open(chain["report"] / name) as image:
            width, height = image.size
        limit = MAX_CHART_INCHES if name.startswith(("per_behavior", "long_tail")) else MAX_CONFUSION_INCHES + 1
        assert max(width, height) <= limit * 110      # dpi of _save_figure
