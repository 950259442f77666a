"""Temperature scaling: an over-confident model gets T > 1, a lower ECE and NLL, and the same predictions; each
prompt mode gets the T of its own log-probabilities; a T at its search bound is flagged."""

import json

import numpy as np
import pytest

from evaluation import metrics as M
from evaluation import temperature as T


def _overconfident(n=3000, k=6, sharpen=3.0, seed=0):
    """Labels drawn from softmax(z); the model reports softmax(sharpen * z): right order, too confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, size=(n, k))
    p = np.exp(M.log_softmax(z))
    labels = np.array([rng.choice(k, p=row) for row in p])
    return M.log_softmax(sharpen * z), labels


def test_overconfident_gets_t_above_one_and_lower_ece():
    lp, labels = _overconfident()
    t = T.fit_temperature(lp, labels)
    assert t == pytest.approx(3.0, rel=0.15)
    preds = lp.argmax(axis=1)
    scaled = T.scale(lp, t)
    assert M.ece(np.exp(scaled), labels, preds) < 0.5 * M.ece(np.exp(lp), labels, preds)
    assert M.nll(scaled, labels) < M.nll(lp, labels)


def test_underconfident_gets_t_below_one():
    lp, labels = _overconfident(sharpen=0.4)
    assert T.fit_temperature(lp, labels) < 1.0


def test_scaling_keeps_accuracy_and_ranking():
    lp, labels = _overconfident(n=500)
    for t in (0.3, 1.0, 4.0):
        scaled = T.scale(lp, t)
        assert np.exp(scaled).sum(axis=1) == pytest.approx(np.ones(len(lp)))
        assert np.array_equal(scaled.argmax(axis=1), lp.argmax(axis=1))
        assert M.mrr(scaled, labels) == pytest.approx(M.mrr(lp, labels))


def test_subset_is_seeded_and_record_round_trips(tmp_path):
    assert np.array_equal(T.calibration_subset(100, 10, 3), T.calibration_subset(100, 10, 3))
    assert not np.array_equal(T.calibration_subset(100, 10, 3), T.calibration_subset(100, 10, 4))
    assert len(T.calibration_subset(5, 64, 0)) == 5
    lp, labels = _overconfident(n=400)
    record = T.fit_record(lp, labels, seed=3)
    assert record["nll_after"] < record["nll_before"] and record["ece_after"] < record["ece_before"]
    T.write_temperature(tmp_path, record)
    assert T.load_temperature(tmp_path) == pytest.approx(record["temperature"])
    assert T.load_temperature(tmp_path / "none") is None
    (tmp_path / T.FILENAME).write_text(json.dumps({"temperature": -1}))
    with pytest.raises(ValueError, match="positive"):
        T.load_temperature(tmp_path)


def test_each_prompt_mode_gets_the_t_of_its_own_log_probabilities(tmp_path):
    """Template 0 over-confident, template 1 right, template 2 under-confident: three different T."""
    lp, labels = _overconfident(n=600, sharpen=1.0)
    by_template = np.stack([3.0 * lp, lp, 0.4 * lp], axis=1)       # [n, templates, K]
    own = np.random.default_rng(1).integers(0, 3, size=len(lp))
    record = T.fit_modes_record(by_template, own, labels, seed=5)
    assert set(record["modes"]) == set(T.MODES) == {"0", "1", "2", "mean"}
    for mode, x in (("0", by_template[:, 0]), ("2", by_template[:, 2]), ("mean", by_template.mean(axis=1))):
        assert record["modes"][mode]["temperature"] == pytest.approx(T.fit_temperature(x, labels))
    assert record["modes"]["0"]["temperature"] > 1.5 > record["modes"]["1"]["temperature"] > 0.75
    assert record["modes"]["2"]["temperature"] < 0.75
    assert record["temperature"] == pytest.approx(T.fit_temperature(by_template[np.arange(len(lp)), own], labels))
    T.write_temperature(tmp_path, record)
    for mode in T.MODES:
        assert T.load_temperature(tmp_path, mode) == pytest.approx(record["modes"][mode]["temperature"])
    assert T.load_temperature(tmp_path) == pytest.approx(record["temperature"])
    (tmp_path / T.FILENAME).write_text(json.dumps({"temperature": 2.0}))   # SASRec's shape: no prompt modes
    assert T.load_temperature(tmp_path) == 2.0 and T.load_temperature(tmp_path, "2") is None


def test_a_fit_at_its_search_bound_is_flagged():
    lp, labels = _overconfident(n=300)
    wrong = M.log_softmax(8.0 * np.eye(lp.shape[1])[(labels + 1) % lp.shape[1]])   # sure and always wrong
    right = M.log_softmax(0.01 * np.eye(lp.shape[1])[labels])                      # always right, barely
    fitted = {name: T.fit_record(x, labels, seed=0) for name, x in (("wrong", wrong), ("right", right), ("ok", lp))}
    assert fitted["wrong"]["temperature"] == pytest.approx(T.T_MAX, rel=1e-3) and fitted["wrong"]["at_bound"]
    assert fitted["right"]["temperature"] == pytest.approx(T.T_MIN, rel=1e-3) and fitted["right"]["at_bound"]
    assert not fitted["ok"]["at_bound"] and T.bound_note(fitted["ok"]) is None
    note = T.bound_note({**fitted["ok"], "modes": {"2": fitted["wrong"], "mean": fitted["ok"]}})
    assert note.count("\n") == 0 and f"2 {fitted['wrong']['temperature']:g}" in note and "mean" not in note
