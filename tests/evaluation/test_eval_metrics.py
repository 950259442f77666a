"""Appendix B metrics against a hand-computed confusion matrix and against scikit-learn."""

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score

from evaluation import metrics as M

# A head, B medium, C tail, D tail without test samples; A and B are anchors.
STATS = {"behaviors": [
    {"name": "A", "label_id": 0, "train_count": 60, "train_freq": 0.6, "is_anchor": True, "freq_group": "head"},
    {"name": "B", "label_id": 1, "train_count": 30, "train_freq": 0.3, "is_anchor": True, "freq_group": "medium"},
    {"name": "C", "label_id": 2, "train_count": 8, "train_freq": 0.08, "is_anchor": False, "freq_group": "tail"},
    {"name": "D", "label_id": 3, "train_count": 2, "train_freq": 0.02, "is_anchor": False, "freq_group": "tail"},
]}
LABELS = [0, 0, 0, 0, 1, 1, 2, 2]
PREDS = [0, 0, 1, 2, 1, 1, 2, M.INVALID]


def test_hand_computed_confusion_matrix():
    cm = M.confusion_matrix(LABELS, PREDS, 4)
    assert cm.tolist() == [[2, 1, 1, 0, 0], [0, 2, 0, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 0, 0]]
    c = M.class_counts(cm)
    assert c["tp"].tolist() == [2, 2, 1, 0]
    assert c["fp"].tolist() == [0, 1, 1, 0]  # the invalid output is nobody's false positive
    assert c["fn"].tolist() == [2, 0, 1, 0]
    # Rec_w = accuracy = 5/8; Prec_w by support: (4*1 + 2*2/3 + 2*1/2 + 0) / 8; Eq. 5: 5 correct / 7 valid
    assert M.rec_w(cm) == pytest.approx(5 / 8)
    assert M.prec_w(cm) == pytest.approx((4 + 4 / 3 + 1) / 8)
    assert M.prec_w_eq5(cm) == pytest.approx(5 / 7)
    # recalls A .5, B 1, C .5; D has no test sample and is left out
    assert M.overall_accuracy(cm) == pytest.approx(2 / 3)
    groups = ["head", "medium", "tail", "tail"]
    assert M.head_accuracy(cm, groups) == pytest.approx(0.5)
    assert M.medium_accuracy(cm, groups) == pytest.approx(1.0)
    assert M.tail_accuracy(cm, groups) == pytest.approx(0.5)
    assert M.anchor_tail_accuracy(cm, [True, True, False, False]) == pytest.approx((0.75, 0.5))


def test_all_metrics_lists_excluded_and_per_behavior():
    m = M.all_metrics(LABELS, PREDS, STATS)
    assert m["excluded"] == ["D"]
    assert m["group_sizes"] == {"head": 1, "medium": 1, "tail": 1}
    assert m["n_invalid"] == 1 and m["invalid_rate"] == pytest.approx(1 / 8)
    assert m["per_behavior"]["D"]["accuracy"] is None
    assert m["per_behavior"]["D"]["precision"] == 0.0  # never predicted: zero_division=0
    assert m["per_behavior"]["B"] == {"support": 2, "correct": 2, "predicted": 3, "accuracy": 1.0,
                                      "precision": pytest.approx(2 / 3), "freq_group": "medium",
                                      "is_anchor": True}


def test_empty_group_is_none():
    stats = {"behaviors": [dict(b, freq_group="head" if i < 2 else "tail") for i, b in enumerate(STATS["behaviors"])]}
    m = M.all_metrics(LABELS, PREDS, stats)
    assert m["medium"] is None and m["group_sizes"]["medium"] == 0
    assert m["head"] == pytest.approx(0.75)


def test_prec_w_differs_from_eq5_and_rec_w_without_invalid():
    # no invalid outputs: Eq. 5 collapses to accuracy exactly, the support-weighted reading does not
    labels, preds = [0, 0, 0, 1, 2], [0, 0, 1, 1, 1]
    cm = M.confusion_matrix(labels, preds, 3)
    assert M.prec_w_eq5(cm) == pytest.approx(M.rec_w(cm)) == pytest.approx(3 / 5)
    assert M.prec_w(cm) == pytest.approx((3 * 1 + 1 * 1 / 3 + 0) / 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    k = 9
    labels = rng.choice([0, 1, 2, 3, 5, 6, 8], size=300, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])  # 4, 7 absent
    preds = rng.choice([0, 1, 2, 4, 5, 7, 8, M.INVALID], size=300)  # 3, 6 never predicted
    cm = M.confusion_matrix(labels, preds, k)
    every = list(range(k))
    kw = {"labels": every, "average": "weighted", "zero_division": 0}
    assert M.prec_w(cm) == pytest.approx(precision_score(labels, preds, **kw))
    assert M.rec_w(cm) == pytest.approx(recall_score(labels, preds, **kw))
    assert M.rec_w(cm) == pytest.approx(accuracy_score(labels, preds))
    present = sorted(set(labels.tolist()))
    assert M.overall_accuracy(cm) == pytest.approx(recall_score(labels, preds, labels=present, average="macro"))
    groups = np.array(["head", "head", "medium", "medium", "medium", "tail", "tail", "tail", "tail"])
    for group, fn in (("head", M.head_accuracy), ("medium", M.medium_accuracy), ("tail", M.tail_accuracy)):
        members = [c for c in present if groups[c] == group]
        assert fn(cm, groups) == pytest.approx(recall_score(labels, preds, labels=members, average="macro"))


def test_metrics_from_predictions_maps_names_and_unknown_output():
    rows = [{"label": "A", "pred": "A"}, {"label": "B", "pred": "nonsense"}, {"label": "C", "pred": None}]
    m = M.metrics_from_predictions(rows, STATS)
    assert m["n_invalid"] == 2 and m["rec_w"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="not a candidate"):
        M.metrics_from_predictions([{"label": "Z", "pred": "A"}], STATS)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        M.confusion_matrix([0, 4], [0, 0], 4)
    with pytest.raises(ValueError):
        M.confusion_matrix([0, 1], [0], 4)
    with pytest.raises(ValueError, match="freq_group"):
        M.behavior_table({"behaviors": [{"name": "A", "is_anchor": True, "freq_group": "big"}]})


def test_aggregate_runs_mean_and_sample_std():
    runs = [{"overall": 0.5, "medium": None}, {"overall": 0.7, "medium": 0.2}, {"overall": 0.6, "medium": 0.4}]
    agg = M.aggregate_runs(runs, keys=("overall", "medium", "tail"))
    assert agg["overall"]["mean"] == pytest.approx(0.6)
    assert agg["overall"]["std"] == pytest.approx(math.sqrt(((0.1) ** 2 + (0.1) ** 2) / 2))
    assert agg["overall"]["n"] == 3
    assert agg["medium"] == {"mean": pytest.approx(0.3), "std": pytest.approx(math.sqrt(0.02)), "n": 2}
    assert agg["tail"] == {"mean": None, "std": None, "n": 0}
    assert M.aggregate_runs([{"overall": 0.5}], keys=("overall",))["overall"]["std"] is None


# Ranking and calibration: three samples over four candidates, the second and third with ties.
DIST = np.log(np.array([[0.5, 0.3, 0.1, 0.1], [0.5, 0.3, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]]))
DIST_LABELS = [0, 2, 1]   # rank 1; ranks 3 or 4 (tied with candidate 3); ranks 1..4 (all tied)


def test_ranking_metrics_hand_computed_with_ties():
    assert M.label_positions(DIST, DIST_LABELS)[0].tolist() == [0, 2, 0]
    assert M.label_positions(DIST, DIST_LABELS)[1].tolist() == [0, 1, 3]
    assert M.hit_at_k(DIST, DIST_LABELS, 1) == pytest.approx((1 + 0 + 1 / 4) / 3)
    assert M.hit_at_k(DIST, DIST_LABELS, 3) == pytest.approx((1 + 1 / 2 + 3 / 4) / 3)
    assert M.hit_at_k(DIST, DIST_LABELS, 5) == pytest.approx(1.0)
    assert M.mrr(DIST, DIST_LABELS) == pytest.approx((1 + (1 / 3 + 1 / 4) / 2 + (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4) / 3)
    g = [1 / math.log2(r + 1) for r in range(1, 6)]
    assert M.ndcg_at_k(DIST, DIST_LABELS, 5) == pytest.approx((1 + (g[2] + g[3]) / 2 + sum(g[:4]) / 4) / 3)
    assert M.ndcg_at_k(DIST, DIST_LABELS, 3) == pytest.approx((1 + g[2] / 2 + sum(g[:3]) / 4) / 3)


def test_calibration_metrics_hand_computed():
    probs = np.exp(DIST)
    # top probabilities .5 (right), .5 (wrong) share bin (7/15, 8/15]: gap 0; .25 (wrong) alone: gap .25
    assert M.ece(probs, DIST_LABELS) == pytest.approx(0.25 / 3)
    assert M.brier(probs, DIST_LABELS) == pytest.approx((0.36 + 1.16 + 0.75) / 3)
    assert M.nll(DIST, DIST_LABELS) == pytest.approx(-(math.log(0.5) + math.log(0.1) + math.log(0.25)) / 3)
    bins = M.reliability_bins([1 / 15, 0.0, 1.0], [True, False, True])
    assert [b["count"] for b in bins][:1] + [bins[-1]["count"]] == [2, 1]   # right-closed bins, 0 in the first


def test_distribution_metrics_from_rows_and_old_files_without_logprobs():
    names = [b["name"] for b in STATS["behaviors"]]
    rows = [{"label": names[y], "pred": names[int(np.argmax(lp))], "logprobs": lp.tolist()}
            for lp, y in zip(DIST, DIST_LABELS)]
    m = M.metrics_from_predictions(rows, STATS)
    assert m["hit@1"] == pytest.approx(5 / 12) and m["ece"] == pytest.approx(0.25 / 3)
    assert "distribution_missing" not in m
    old = M.metrics_from_predictions([{k: v for k, v in r.items() if k != "logprobs"} for r in rows], STATS)
    assert all(old[k] is None for k in M.DISTRIBUTION_METRICS) and "log-probabilities" in old["distribution_missing"]
    assert old["rec_w"] == m["rec_w"]
