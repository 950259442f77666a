"""The tiny chain's evaluation (make eval: zero-shot, a-tune, behaviorlm, baselines, report): the report's numbers
equal the metrics recomputed from its predictions files, BehaviorLM's predictions are the argmax of a fresh scorer
on pi_ref + the DPO adapter, a generated-output evaluation is parsed and counted, and a finished evaluation is not
redone. Select with `-m e2e`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


# make's order
REPORTED = ["zero-shot", "a-tune", "a-tune-generate", "behaviorlm", "most-frequent", "last-behavior", "markov",
            "oracle"]
SIX_COLUMNS = ["Prec_w", "Rec_w", "Overall", "Head", "Medium", "Tail"]
SIX_METRICS = {"prec_w": "test_p1", "rec_w": "test_p1", "overall": "test_p2", "head": "test_p2",
               "medium": "test_p2", "tail": "test_p2"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _report_table(report_md: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table (the metric table) of report.md."""
    lines = [line for line in report_md.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, body = cells[0], []
    for row in cells[2:]:
        if row[0] == "behavior" or len(row) != len(header):
            break
        body.append(row)
    return header, body


def test_eval_test_sets_are_tiny(chain):
    for split in ("test_p1", "test_p2"):
        n = len(_jsonl(chain["run"] / "data" / f"{split}.jsonl"))
        assert 0 < n <= 40, (split, n)


def test_eval_skips_missing_models_and_prints_the_report(chain):
    log = chain["eval_log"]
    assert "skipping full-ft" in log  # no ablations/wo_atune/pi_ref in this run
    assert "# Evaluation report" in log


def test_eval_report_rows_and_metric_columns(chain):
    header, rows = _report_table((chain["run"] / "report" / "report.md").read_text())
    assert all(col in header for col in SIX_COLUMNS), header
    assert [row[0] for row in rows] == REPORTED
    assert "invalid P1 / P2" in header  # a generated evaluation is in the report
    for row in rows:
        values = [row[header.index(col)] for col in ("Prec_w", "Rec_w", "Overall")]
        assert all(0.0 <= float(v) <= 1.0 for v in values), row


def test_eval_metrics_json_equals_metrics_recomputed_from_predictions(chain):
    from evaluation import metrics as M

    run = chain["run"]
    stats = json.loads((run / "data" / "stats.json").read_text())
    report = json.loads((run / "report" / "metrics.json").read_text())
    assert list(report["models"]) == REPORTED
    for name, model in report["models"].items():
        assert [r["pred_dir"] for r in model["runs"]] == [str(run / "eval" / name)]
        for split in ("test_p1", "test_p2"):
            rows = _jsonl(run / "eval" / name / f"{split}.predictions.jsonl")
            meta = _jsonl(run / "data" / f"{split}.meta.jsonl")
            assert [r["label"] for r in rows] == [m["label"] for m in meta]  # line i is test sample i
            expected = M.metrics_from_predictions(rows, stats)
            summary = model["summary"][split]
            for key in (*SIX_METRICS, "anchor_accuracy", "tail_behavior_accuracy", "invalid_rate"):
                assert summary[key]["mean"] == pytest.approx(expected[key]), (name, split, key)
            # Rec_w is accuracy (Hit-Rate@1), counted here without the metrics module
            accuracy = sum(r["pred"] == r["label"] for r in rows) / len(rows)
            assert summary["rec_w"]["mean"] == pytest.approx(accuracy)
            # ranking and calibration: every model but the generated one keeps every candidate's log-probability
            assert (expected["hit@1"] is None) == name.endswith("-generate"), name
            for key in M.DISTRIBUTION_METRICS:
                want = expected[key]
                assert summary[key]["mean"] == (None if want is None else pytest.approx(want)), (name, split, key)
    for name in ("zero-shot", "a-tune", "behaviorlm"):   # make eval fits each constrained LLM's temperature
        record = json.loads((run / "eval" / name / "temperature.json").read_text())
        assert record["split"] == "valid" and record["n_samples"] > 0
        got = report["models"][name]["summary"]["test_p1"]["temperature"]["mean"]
        assert got == pytest.approx(record["temperature"])


def test_eval_figures_are_png_files(chain):
    from PIL import Image

    out = chain["run"] / "report"
    report = json.loads((out / "metrics.json").read_text())
    expected = {"per_behavior_accuracy.png", "long_tail.png"} | {f"confusion_{name}.png" for name in REPORTED}
    expected |= {f"reliability_{name}.png" for name in REPORTED if not name.endswith("-generate")}  # log-probs
    assert set(report["figures"]) == expected
    for name in expected:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100


def test_behaviorlm_predictions_are_the_scorer_argmax_on_pi_ref_plus_dpo_adapter(chain):
    from scoring.scorer import CandidateScorer

    run = chain["run"]
    stats = json.loads((run / "data" / "stats.json").read_text())
    candidates = [b["name"] for b in stats["behaviors"]]
    scorer = CandidateScorer(run / "pi_ref", "smollm2", adapter_path=run / "btune", batch_size=2, device="cpu")
    for split in ("test_p1", "test_p2"):
        records = _jsonl(run / "data" / f"{split}.jsonl")[:3]
        rows = _jsonl(run / "eval" / "behaviorlm" / f"{split}.predictions.jsonl")[:3]
        batch = scorer.score(records, candidates, with_embeddings=False)
        assert [r["pred"] for r in rows] == [candidates[i] for i in batch.pred_id]
        for row, probs in zip(rows, batch.probs):
            assert row["p_label"] == pytest.approx(float(probs[candidates.index(row["label"])]), abs=1e-5)
    # The adapter was applied: BehaviorLM's probabilities differ from pi_ref's (a-tune) on the same samples.
    a_tune = _jsonl(run / "eval" / "a-tune" / "test_p2.predictions.jsonl")
    behaviorlm = _jsonl(run / "eval" / "behaviorlm" / "test_p2.predictions.jsonl")
    assert max(abs(a["p_label"] - b["p_label"]) for a, b in zip(a_tune, behaviorlm)) > 0


def test_generated_evaluation_is_parsed_and_counted(chain):
    out = chain["run"] / "eval" / "a-tune-generate"
    info = json.loads((out / "test_p2.predictions.info.json").read_text())
    rows = _jsonl(out / "test_p2.predictions.jsonl")
    assert info["method"] == "generate" and info["n_samples"] == len(rows)
    assert all("output" in r and r["valid"] == (r["pred"] is not None) for r in rows)
    assert info["n_invalid"] == sum(not r["valid"] for r in rows)


def test_finished_evaluation_is_not_redone(chain):
    assert "evaluation predict" not in chain["eval_rerun_log"]
    assert "evaluation report" in chain["eval_rerun_log"]
