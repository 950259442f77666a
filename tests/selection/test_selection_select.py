"""Difficulty (Eq. 2/3), per-behavior selection, pool sampling and DPO pairs: pure numpy, no model."""

import numpy as np
import pytest

from scoring.config import ScoreConfig
from scoring.scorer import pool_indices
from selection.config import SelectConfig
from selection.difficulty import d_confusion, difficulty_literal, difficulty_text, normalize_within_behavior
from selection.pairs import build_pairs
from selection.select import capped_rejected_ids, rejected_ids, repeat_split, select_all, select_for_behavior

IS_ANCHOR = np.array([True, True, False, False])  # labels 0,1 anchors; 2,3 tails


def test_d_confusion_eq2():
    y = np.array([0, 0, 0, 2, 2, 2])
    y_hat = np.array([0, 1, 2, 2, 3, 0])
    # right -> 1; anchor->anchor error -> 0; anchor->tail -> 1; right -> 1; tail->tail -> 0; tail->anchor -> 1
    assert d_confusion(y, y_hat, IS_ANCHOR).tolist() == [1, 0, 1, 1, 0, 1]


def test_eq3_text_and_literal_readings():
    p = np.array([0.9, 0.2, 0.2])
    d = np.array([1.0, 0.0, 1.0])
    # text: 0.5*(1-p) + 0.5*(1-d)
    assert difficulty_text(p, d) == pytest.approx([0.05, 0.9, 0.4])
    # literal: 0.5*(1-p) + 0.5*d
    assert difficulty_literal(p, d) == pytest.approx([0.55, 0.4, 0.9])
    assert difficulty_text(p, d, lam=1.0) == pytest.approx([0.1, 0.8, 0.8])
    assert difficulty_literal(p, d, lam=0.0) == pytest.approx(d)
    # The text reading ranks a same-category misprediction hardest, the literal one last.
    assert np.argmax(difficulty_text(p, d)) == 1 and np.argmin(difficulty_literal(p, d)) == 1
    with pytest.raises(ValueError):
        difficulty_text(p, d, lam=1.5)


def test_normalize_within_behavior():
    D = np.array([0.2, 0.4, 0.0, 0.0, 0.3])
    labels = np.array([0, 0, 1, 1, 2])
    # behavior 1 has max 0 -> uniform weights 1
    assert normalize_within_behavior(D, labels) == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])


def _cloud(n, seed=0, dim=4):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


@pytest.mark.parametrize("mode", ["dds", "uniform", "topf"])
def test_selection_distinct_bounded_deterministic(mode):
    X = _cloud(60)
    w = np.random.default_rng(1).uniform(0.1, 1.0, size=60)
    a = select_for_behavior(X, w, 7, seed=3, mode=mode)
    assert len(a) == 7 and len(set(a.tolist())) == 7 and a.min() >= 0 and a.max() < 60
    assert np.array_equal(a, select_for_behavior(X, w, 7, seed=3, mode=mode))
    if mode != "topf":
        others = {tuple(select_for_behavior(X, w, 7, seed=s, mode=mode)) for s in range(4, 10)}
        assert len(others) > 1  # the seed matters


@pytest.mark.parametrize("mode", ["dds", "uniform", "topf"])
def test_small_behavior_keeps_all(mode):
    assert select_for_behavior(_cloud(5), np.ones(5), 5, seed=0, mode=mode).tolist() == [0, 1, 2, 3, 4]
    assert select_for_behavior(_cloud(3), np.zeros(3), 20, seed=0, mode=mode).tolist() == [0, 1, 2]


def test_topf_picks_highest_with_stable_ties():
    w = np.array([0.5, 1.0, 0.2, 1.0, 0.9, 1.0])
    assert select_for_behavior(None, w, 2, seed=0, mode="topf").tolist() == [1, 3]
    assert select_for_behavior(None, w, 4, seed=0, mode="topf").tolist() == [1, 3, 4, 5]


def test_dds_never_picks_zero_weight_while_enough_positive():
    X = _cloud(50)
    w = np.zeros(50)
    w[::5] = 1.0  # 10 positive
    for seed in range(20):
        picked = select_for_behavior(X, w, 6, seed=seed, mode="dds")
        assert (w[picked] > 0).all()
    # fewer positive than F: every positive kept, the rest filled with distinct zero-weight samples
    picked = select_for_behavior(X, w, 14, seed=0, mode="dds")
    assert set(np.flatnonzero(w)) <= set(picked.tolist()) and len(set(picked.tolist())) == 14


def test_dds_duplicate_embeddings_still_distinct():
    X = np.zeros((30, 3), dtype=np.float32)  # all identical: kmeans++ potential collapses to 0
    picked = select_for_behavior(X, np.ones(30), 8, seed=0, mode="dds")
    assert len(set(picked.tolist())) == 8


def test_dds_prefers_difficult_samples():
    X = _cloud(200, dim=2)
    hard = np.zeros(200, dtype=bool)
    hard[np.random.default_rng(2).choice(200, 100, replace=False)] = True
    w = np.where(hard, 1.0, 0.05)
    share = {
        m: np.mean([hard[select_for_behavior(X, w, 5, seed=s, mode=m)].mean() for s in range(100)])
        for m in ("dds", "uniform")
    }
    assert share["uniform"] < 0.6  # the hard half is half the data
    assert share["dds"] > 0.8  # weight 20x larger; expectation ~0.95


def test_rejected_is_prediction_or_top_wrong():
    logprobs = np.array([[-1.0, -2.0, -3.0], [-5.0, -0.5, -0.7], [-0.1, -3.0, -2.0]])
    label = np.array([1, 1, 0])
    pred = logprobs.argmax(1)  # [0, 1, 0]
    # wrong -> y_hat (0); right -> best wrong (2, then 2)
    assert rejected_ids(logprobs, label, pred).tolist() == [0, 2, 2]


STATS = {
    "behaviors": [
        {"name": n, "label_id": i, "is_anchor": bool(IS_ANCHOR[i]), "freq_group": "head"}
        for i, n in enumerate(["sleep", "work", "gym", "cinema"])
    ]
}


def _scores(labels, preds, p_true, seed=0):
    n, K = len(labels), 4
    rng = np.random.default_rng(seed)
    logprobs = rng.normal(size=(n, K)) - 5
    logprobs[np.arange(n), preds] = 0.0  # prediction is the argmax
    return {
        "index": np.arange(n) * 2,
        "label_id": np.asarray(labels),
        "pred_id": np.asarray(preds),
        "p_true": np.asarray(p_true, dtype=np.float32),
        "logprobs": logprobs,
        "embedding": rng.normal(size=(n, 3)).astype(np.float32),
    }


def test_select_all_missing_behavior_and_always_right():
    labels = [0] * 6 + [1] * 4 + [2] * 3  # behavior 3 (cinema) has no pool samples
    scores = _scores(labels, labels, [1.0] * 13)  # pi_ref always right and certain
    with pytest.warns(UserWarning, match="cinema"):
        sel, report, notes = select_all(scores, STATS, SelectConfig(F=4, mode="dds", seed=1))
    by_name = {r["behavior"]: r for r in report}
    assert by_name["cinema"]["pool_size"] == 0 and by_name["cinema"]["pairs"] == 0 and notes
    assert [by_name[n]["selected"] for n in ("sleep", "work", "gym")] == [4, 4, 3]
    assert by_name["sleep"]["pi_ref_accuracy"] == 1.0 and by_name["sleep"]["mean_difficulty"] == 0.0
    assert len(sel["index"]) == 11 and set(sel["index"].tolist()) <= set(scores["index"].tolist())
    assert (sel["rejected_id"] != sel["label_id"]).all()
    with pytest.raises(ValueError):
        select_all(scores, STATS, SelectConfig(F=0))


@pytest.mark.filterwarnings("ignore:behavior .* has no samples")
def test_select_all_text_reading_targets_same_category_errors():
    # behavior 0: 4 same-category errors (pred 1), 4 cross-category errors (pred 2), p equal everywhere
    labels = [0] * 8
    preds = [1, 1, 1, 1, 2, 2, 2, 2]
    scores = _scores(labels, preds, [0.3] * 8)
    sel, _, _ = select_all(scores, STATS, SelectConfig(F=4, mode="topf"))
    assert sorted(sel["pred_id"].tolist()) == [1, 1, 1, 1]
    sel, _, _ = select_all(scores, STATS, SelectConfig(F=4, mode="topf", eq3="literal"))
    assert sorted(sel["pred_id"].tolist()) == [2, 2, 2, 2]
    assert (sel["rejected_id"] == sel["pred_id"]).all()


def test_pool_indices_per_behavior_seeded():
    meta = [{"label_id": lab} for lab in [0] * 30 + [1] * 3 + [2] * 12]
    pool = pool_indices(meta, ScoreConfig(pool_per_behavior=5, seed=7))
    labels = np.array([m["label_id"] for m in meta])[pool]
    assert np.bincount(labels).tolist() == [5, 3, 5]
    assert np.array_equal(pool, pool_indices(meta, ScoreConfig(pool_per_behavior=5, seed=7)))
    assert not np.array_equal(pool, pool_indices(meta, ScoreConfig(pool_per_behavior=5, seed=8)))
    assert pool_indices(meta, ScoreConfig(seed=0)).tolist() == list(range(45))
    with pytest.raises(ValueError):
        ScoreConfig(pool_per_behavior=0)


def test_build_pairs_copies_prompt_and_checks_labels():
    records = [
        {"system": "S", "instruction": f"I{i}", "input": "", "output": o}
        for i, o in enumerate(["sleep", "work", "gym"])
    ]
    selection = {"index": np.array([2, 0]), "label_id": np.array([2, 0]), "rejected_id": np.array([3, 1])}
    pairs, sft = build_pairs(records, selection, ["sleep", "work", "gym", "cinema"])
    assert pairs == [
        {"system": "S", "instruction": "I2", "input": "", "chosen": "gym", "rejected": "cinema"},
        {"system": "S", "instruction": "I0", "input": "", "chosen": "sleep", "rejected": "work"},
    ]
    assert sft[0] == {"system": "S", "instruction": "I2", "input": "", "output": "gym"}
    with pytest.raises(ValueError, match="label"):
        build_pairs(records, {**selection, "label_id": np.array([1, 0])}, ["sleep", "work", "gym", "cinema"])


def test_repeat_split_sizes_and_gives_way():
    assert repeat_split(12, 30, 30, 0.5) == (6, 6)
    assert repeat_split(12, 2, 30, 0.5) == (2, 10)  # too few repeats: the others fill F
    assert repeat_split(12, 30, 3, 0.5) == (9, 3)  # too few others: repeats fill F
    assert repeat_split(5, 9, 9, 0.5) == (3, 2)  # 2.5 rounds half up
    assert repeat_split(12, 30, 30, 0.0) == (0, 12) and repeat_split(12, 30, 30, 1.0) == (12, 0)


@pytest.mark.filterwarnings("ignore:behavior .* has no samples")
@pytest.mark.parametrize("mode", ["dds", "uniform", "topf"])
def test_repeat_share_splits_each_behavior_by_the_last_behavior(mode):
    # behavior 0: 20 pool samples, 4 of which repeat the history's last behavior; all hard, the repeats hardest
    labels = [0] * 20 + [1] * 6
    last = np.array([0] * 4 + [2] * 16 + [1] * 6)  # behavior 1: every sample repeats
    preds = [2] * 26
    scores = _scores(labels, preds, [0.0] * 4 + [0.5] * 16 + [0.0] * 6)
    cfg = SelectConfig(F=8, mode=mode, seed=3)
    plain, plain_report, _ = select_all(scores, STATS, cfg, last)
    sel, report, _ = select_all(scores, STATS, SelectConfig(F=8, mode=mode, seed=3, repeat_share=0.5), last)
    is_repeat = sel["label_id"] == sel["last_id"]
    assert (is_repeat[sel["label_id"] == 0]).sum() == 4  # share 4 of 8, all 4 repeats
    assert (sel["label_id"] == 0).sum() == 8 and (sel["label_id"] == 1).sum() == 6  # F, or the whole pool
    assert report[0]["pool_repeats"] == 4 and report[0]["selected_repeats"] == 4
    assert len(set(sel["index"].tolist())) == len(sel["index"])
    # the same settings give the same rows; without a share the selection does not depend on last_id
    again, _, _ = select_all(scores, STATS, SelectConfig(F=8, mode=mode, seed=3, repeat_share=0.5), last)
    assert np.array_equal(sel["index"], again["index"])
    assert np.array_equal(plain["index"], select_all(scores, STATS, cfg)[0]["index"])
    assert "selected_repeats" in plain_report[0] and "last_id" not in select_all(scores, STATS, cfg)[0]
    with pytest.raises(ValueError, match="history"):
        select_all(scores, STATS, SelectConfig(F=8, repeat_share=0.5))
    with pytest.raises(ValueError, match="repeat-share"):
        SelectConfig(repeat_share=1.5)


@pytest.mark.filterwarnings("ignore:behavior .* has no samples")
def test_max_rejected_spreads_the_rejected_answers():
    # pi_ref answers behavior 0 everywhere: Algorithm 1's pairs reject it in every pair that does not choose it
    logprobs = np.log(np.tile([0.7, 0.1, 0.15, 0.05], (6, 1)))
    labels = np.array([1, 1, 2, 2, 3, 3])
    assert rejected_ids(logprobs, labels, np.zeros(6, dtype=int)).tolist() == [0] * 6
    capped = capped_rejected_ids(logprobs, labels, 2)
    assert np.bincount(capped, minlength=4).max() == 2 and not (capped == labels).any()
    # each pair takes its most probable wrong candidate still under the limit (ties: pool order)
    assert capped.tolist() == [0, 0, 1, 1, 2, 2]
    # a limit no pair reaches is Algorithm 1's answer; every candidate full: the least rejected one
    assert capped_rejected_ids(logprobs, labels, 6).tolist() == [0] * 6
    assert capped_rejected_ids(logprobs[:4], np.array([1, 1, 1, 1]), 1).tolist() == [0, 2, 3, 0]
    scores = _scores([0] * 5 + [1] * 5, [2] * 10, [0.1] * 10)
    sel, report, _ = select_all(scores, STATS, SelectConfig(F=5, mode="topf", max_rejected=3))
    assert np.bincount(sel["rejected_id"], minlength=4).max() <= 3
    assert [b["rejected"] for b in report] == np.bincount(sel["rejected_id"], minlength=4).tolist()
    with pytest.raises(ValueError, match="max-rejected"):
        SelectConfig(max_rejected=0)
