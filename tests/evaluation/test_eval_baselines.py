"""Most-frequent and per-user Markov baselines on hand-made logs (predictions checked by hand); every baseline's
prediction is the top of the distribution it writes."""

import json

import numpy as np
import pytest
from baseline_logs import CASES, NAMES, STATS, TRAIN, stats_of, write_dataset
from prediction_checks import assert_pred_is_argmax

from data_prep.writing.outputs import read_jsonl
from evaluation.__main__ import main
from evaluation.baselines import KINDS, MarkovPredictor, global_transitions, most_frequent_order, run_baseline
from evaluation.files import LOGPROB_DECIMALS
from evaluation.metrics import metrics_from_predictions

# Users tie C -> A and C -> B inside the history; the global row C -> {B: 3, A: 1} ranks B first, while the
# training counts A/B/C = 10/5/5 favour A.
TIE = {"stats": stats_of(["A", "B", "C"], [10, 5, 5]),
       "train": [{"history": ["C"], "label": "B"}] * 3 + [{"history": ["C"], "label": "A"}],
       "cases": [(["C", "A", "C", "B", "C"], "B", "B", "user")]}
# Counts so large that adjacent ones give log-probabilities equal to the 6 decimals a predictions file keeps.
HUGE = {"stats": stats_of(["x", "y", "z"], [10**8, 10**8 + 1, 3]), "train": [{"history": ["z"], "label": "x"}],
        "cases": [(["y"], "y", None, "most_frequent"), (["x", "z"], "x", None, "global")]}


def test_most_frequent_order_ties_by_label_id():
    assert most_frequent_order(STATS) == ["sleep", "work", "eat", "game", "taxi"]


def test_global_transitions_from_histories_and_labels():
    table = global_transitions(TRAIN)
    assert dict(table["eat"]) == {"work": 1, "game": 1, "sleep": 2}
    assert dict(table["work"]) == {"eat": 2}
    assert "taxi" not in table


@pytest.mark.parametrize("history,label,expected,source", CASES)
def test_markov_hand_checked(history, label, expected, source):
    pred, got_source, probs = MarkovPredictor(STATS, global_transitions(TRAIN)).predict(history)
    assert (pred, got_source) == (expected, source)
    assert probs.sum() == pytest.approx(1.0) and NAMES[int(np.argmax(probs))] == expected


def test_run_baseline_files(tmp_path):
    d = write_dataset(tmp_path)
    out = tmp_path / "markov"
    rows = read_jsonl(run_baseline(d, "markov", "test_p2", out))
    assert [r["pred"] for r in rows] == [c[2] for c in CASES]
    assert [r["source"] for r in rows] == [c[3] for c in CASES]
    assert [r["index"] for r in rows] == list(range(len(CASES)))
    # prior = (train_count + 1) / (28 + 5): work 11/33, eat 6/33; global = (global count + prior) / (total + 1);
    # user = (count + global) / (total + 1)
    global_work = (1 + 11 / 33) / (4 + 1)                                # eat -> work 1 of 4 in train_all
    assert rows[3]["p_label"] == pytest.approx((2 + global_work) / 4)    # eat -> work 2 of 3 inside x
    global_eat = (2 + 6 / 33) / (2 + 1)                                  # work -> eat 2 of 2 in train_all
    assert rows[0]["p_label"] == pytest.approx((1 + global_eat) / 3)     # work -> eat 1 of 2 inside x
    assert rows[2]["p_label"] == pytest.approx(11 / 33)                  # the fall-back: the prior itself
    for row in rows:
        probs = np.exp(row["logprobs"])
        assert probs.sum() == pytest.approx(1.0, abs=1e-5) and probs.min() > 0
        assert row["top"][0]["name"] == row["pred"] and probs.argmax() == NAMES.index(row["pred"])
    info = json.loads((out / "test_p2.predictions.info.json").read_text())
    assert info["method"] == "baseline:markov" and info["n_invalid"] == 0

    assert main(["baseline", "--dataset-dir", str(d), "--kind", "most-frequent", "--dataset", "test_p1",
                 "--out", str(tmp_path / "mf")]) == 0
    mf = read_jsonl(tmp_path / "mf" / "test_p1.predictions.jsonl")
    assert {r["pred"] for r in mf} == {"sleep"}
    assert [r["label"] for r in mf] == [c[1] for c in CASES]
    assert np.exp(mf[0]["logprobs"]) == pytest.approx([11 / 33, 11 / 33, 6 / 33, 3 / 33, 2 / 33], abs=1e-5)
    # sleep and work tie at 11/33: a work label takes rank 1 or 2 with equal chance (Hit@1 = 1/2, MRR = 3/4)
    m = metrics_from_predictions(mf, STATS)
    hit1 = sum({"sleep": 0.5, "work": 0.5}.get(c[1], 0.0) for c in CASES) / len(CASES)
    assert m["hit@1"] == pytest.approx(hit1)


def test_markov_prediction_is_the_top_of_its_distribution(tmp_path):
    """A tie inside the history broken by the global row: the written distribution ranks the same way."""
    rows = read_jsonl(run_baseline(write_dataset(tmp_path, **TIE), "markov", "test_p1", tmp_path / "markov"))
    assert [(r["pred"], r["source"]) for r in rows] == [(c[2], c[3]) for c in TIE["cases"]]
    assert_pred_is_argmax(rows)
    m = metrics_from_predictions(rows, TIE["stats"])
    assert m["hit@1"] == m["rec_w"] == 1.0
    assert m["ece"] == pytest.approx(1.0 - rows[0]["top"][0]["p"])    # correct, at the top probability


@pytest.mark.parametrize("dataset", [{}, TIE, HUGE], ids=["hand-made", "tie", "huge-counts"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_baseline_predicts_the_top_of_its_distribution(tmp_path, kind, dataset):
    rows = read_jsonl(run_baseline(write_dataset(tmp_path, **dataset), kind, "test_p2", tmp_path / kind))
    assert_pred_is_argmax(rows)


def test_equal_stored_log_probabilities_are_a_tie_to_the_lower_label_id(tmp_path):
    prior = np.array([c + 1 for c in (10**8, 10**8 + 1, 3)], dtype=np.float64)
    kept = [round(v, LOGPROB_DECIMALS) for v in np.log(prior / prior.sum()).tolist()]
    assert kept[0] == kept[1]    # the two large counts cannot be told apart in the file
    rows = read_jsonl(run_baseline(write_dataset(tmp_path, **HUGE), "most-frequent", "test_p1", tmp_path / "mf"))
    assert {r["pred"] for r in rows} == {"x"}


def test_bad_kind_and_split(tmp_path):
    d = write_dataset(tmp_path)
    with pytest.raises(ValueError, match="kind"):
        run_baseline(d, "random", "test_p1", tmp_path / "x")
    assert main(["baseline", "--dataset-dir", str(tmp_path / "nowhere"), "--kind", "markov",
                 "--dataset", "test_p1", "--out", str(tmp_path / "x")]) == 2


def test_last_behavior_repeats_the_history_and_keeps_a_distribution(tmp_path):
    rows = read_jsonl(run_baseline(write_dataset(tmp_path), "last-behavior", "test_p1", tmp_path / "last"))
    assert [r["pred"] for r in rows] == [c[0][-1] for c in CASES]
    prior = np.array([(int(b["train_count"]) + 1) / (28 + 5) for b in STATS["behaviors"]])
    for row, (history, *_rest) in zip(rows, CASES):
        expected = prior / 2
        expected[NAMES.index(history[-1])] += 0.5        # one count for the last behavior over the prior
        assert np.exp(row["logprobs"]) == pytest.approx(expected, abs=1e-5)
