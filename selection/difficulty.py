"""Sample difficulty for B-tuning (paper 3.3): Eq. 2 confusion penalty, Eq. 3 difficulty, normalization.

Eq. 3 has two readings.  As printed, D(x) = lam*(1 - p(y|x)) + (1 - lam)*d_confusion, which gives MORE
weight to samples with d_confusion = 1 (correct predictions, or errors across the anchor/tail boundary).
The text says the opposite: the hard samples are the mispredictions whose predicted label lies in the SAME
category (anchor/tail) as the truth, i.e. d_confusion = 0 ("we aim to choose those mispredicted samples with
a lower distinguishability score"; the first version of the paper kept only mispredictions with d = 0).
The default here follows the text (``difficulty_text``); the printed formula is ``difficulty_literal``.
"""

from __future__ import annotations

import numpy as np


def d_confusion(y, y_hat, is_anchor) -> np.ndarray:
    """Eq. 2: 0 if y_hat != y and Cate(y_hat) == Cate(y), else 1.

    y, y_hat: label ids [n]; is_anchor: bool per label id [K] (Cate = anchor or tail).
    """
    y, y_hat = np.asarray(y), np.asarray(y_hat)
    is_anchor = np.asarray(is_anchor, dtype=bool)
    same_category_error = (y_hat != y) & (is_anchor[y_hat] == is_anchor[y])
    return np.where(same_category_error, 0.0, 1.0)


def difficulty_text(p_true, d_conf, lam: float = 0.5) -> np.ndarray:
    """Eq. 3, reading that matches the paper's text (DEFAULT): D = lam*(1 - p(y|x)) + (1 - lam)*(1 - d_confusion).

    Low confidence in the truth and a same-category misprediction (d_confusion = 0) both make a sample hard.
    """
    _check_lam(lam)
    return lam * (1.0 - np.asarray(p_true, dtype=np.float64)) + (1.0 - lam) * (1.0 - np.asarray(d_conf, np.float64))


def difficulty_literal(p_true, d_conf, lam: float = 0.5) -> np.ndarray:
    """Eq. 3 as printed: D = lam*(1 - p(y|x)) + (1 - lam)*d_confusion (an option; see the module docstring)."""
    _check_lam(lam)
    return lam * (1.0 - np.asarray(p_true, dtype=np.float64)) + (1.0 - lam) * np.asarray(d_conf, np.float64)


DIFFICULTY = {"text": difficulty_text, "literal": difficulty_literal}


def _check_lam(lam: float) -> None:
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")


def normalize_within_behavior(D, labels) -> np.ndarray:
    """D~(x) = D(x) / max_{x' of the same behavior} D(x') (Algorithm 1 line 21), the k-means++ sampling weight.

    A behavior whose max D is 0 (every sample easy: pi_ref fully confident and right, text reading) gets
    uniform weights 1, so it is still covered by plain (unweighted) k-means++ seeding.
    """
    D, labels = np.asarray(D, dtype=np.float64), np.asarray(labels)
    if (D < 0).any():
        raise ValueError("difficulty must be non-negative")
    out = np.ones_like(D)
    for label in np.unique(labels):
        rows = labels == label
        peak = D[rows].max()
        if peak > 0:
            out[rows] = D[rows] / peak
    return out
