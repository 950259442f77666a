"""The report says when a model learned nothing: one label far above its true share, or Rec_w below
most-frequent's; a baseline that answers one label by definition is not flagged."""
from __future__ import annotations

import json

from test_eval_report import P1_LABELS, P2_LABELS, STATS, write_preds

from evaluation.__main__ import main
from evaluation.learned import COLLAPSE_MARGIN, over_answered
from evaluation.report import build_report


def _report(tmp_path, models: dict[str, tuple[list, list, str]]):
    data = tmp_path / "data"
    data.mkdir()
    (data / "stats.json").write_text(json.dumps(STATS))
    for name, (p1, p2, method) in models.items():
        write_preds(tmp_path / name, "test_p1", P1_LABELS, p1, method)
        write_preds(tmp_path / name, "test_p2", P2_LABELS, p2, method)
    preds = {name: [str(tmp_path / name)] for name in models}
    return data, preds, build_report(data, preds, tmp_path / "report")


def test_a_collapsed_model_is_named_with_its_label_and_the_floor(tmp_path, capsys):
    # P1 labels A A A B C; the most frequent training behavior is A (Rec_w 3/5)
    _, preds, report = _report(tmp_path, {
        "collapsed": (["C"] * 5, ["C"] * 6, "constrained"),
        "good": (["A", "A", "A", "B", "C"], ["A", "A", "B", "B", "C", "C"], "constrained"),
        "most-frequent": (["A"] * 5, ["A"] * 6, "baseline:most-frequent")})
    assert report["warnings"] == [
        "warning: collapsed answers C for 5 of 5 test_p1 samples (true share 1 of 5); answers C for 6 of 6 "
        "test_p2 samples (true share 2 of 6); Rec_w 0.2000 below most-frequent's 0.6000: it may have learned "
        "nothing from the context"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"**{report['warnings'][0]}**" in md
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["warnings"] == report["warnings"]
    assert main(["report", "--dataset-dir", str(tmp_path / "data"), "--out", str(tmp_path / "cli"),
                 *[f"--pred={n}={d[0]}" for n, d in preds.items()]]) == 0
    assert capsys.readouterr().err.strip().splitlines() == report["warnings"]


def test_an_excess_up_to_the_margin_is_a_preference_not_a_collapse():
    n = 20
    at_margin = round(COLLAPSE_MARGIN * n)
    assert over_answered({"A": (10, 10 + at_margin), "B": (10, 10 - at_margin)}, "test_p2") is None
    assert over_answered({"A": (10, 11 + at_margin), "B": (10, 9 - at_margin)}, "test_p2") == (
        f"answers A for {11 + at_margin} of {n} test_p2 samples (true share 10 of {n})")


def test_rec_w_equal_to_most_frequent_is_not_flagged(tmp_path):
    # Rec_w 3/5 = most-frequent's; every label answered as often as it occurs
    _, _, report = _report(tmp_path, {"even": (["A", "A", "A", "C", "B"], list(P2_LABELS), "constrained")})
    assert report["warnings"] == []


def test_the_oracle_over_answering_a_flagged_split_is_noted_once(tmp_path):
    # p2 labels A A B B C C: the model and the oracle both answer A for 4 of 6 (+2/6 > the margin); p1 is fine
    models = {"shifted": (list(P1_LABELS), ["A", "A", "A", "A", "C", "C"], "constrained"),
              "oracle": (list(P1_LABELS), ["A", "A", "A", "A", "B", "C"], "baseline:oracle")}
    _, _, report = _report(tmp_path, models)
    assert report["warnings"] == [
        "warning: shifted answers A for 4 of 6 test_p2 samples (true share 2 of 6): it may have learned nothing "
        "from the context",
        "note: oracle, the data's own law, answers A for 4 of 6 test_p2 samples (true share 2 of 6): on test_p2 a "
        "model that learned the training distribution exceeds the share bound too"]
    # no model flagged: no note, though the oracle over-answers
    (tmp_path / "alone").mkdir()
    _, _, report = _report(tmp_path / "alone", {"oracle": models["oracle"]})
    assert report["warnings"] == []
