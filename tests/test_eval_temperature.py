"""Temperature scaling: an over-confident model gets T > 1, a lower ECE and NLL, and the same predictions."""

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
