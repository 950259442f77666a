"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

One scalar T per model: p_T(c|x) = softmax(log p(c|x) / T). T is fitted on a seeded subset of the
validation split by minimising the label's NLL over log T (bounded to [T_MIN, T_MAX]); T > 1 softens an
over-confident model, T < 1 sharpens an under-confident one. Dividing by T > 0 keeps the order of the
candidates, so the argmax (accuracy) and every ranking metric are unchanged (exact ties stay ties).

``<eval dir>/temperature.json``: ``temperature``, ``split``, ``n_samples``, ``seed``, ``nll_before``,
``nll_after``, ``ece_before``, ``ece_after`` (on the fitting subset).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import metrics as M

T_MIN, T_MAX = 0.05, 20.0
FILENAME = "temperature.json"


def scale(logprobs: np.ndarray, temperature: float) -> np.ndarray:
    """log p_T(c|x) = log_softmax(log p(c|x) / T), row-wise."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return M.log_softmax(np.asarray(logprobs, dtype=np.float64) / temperature)


def fit_temperature(logprobs: np.ndarray, label_ids: Sequence[int]) -> float:
    """argmin over T in [T_MIN, T_MAX] of the label's NLL under scale(logprobs, T) (bounded search in log T)."""
    from scipy.optimize import minimize_scalar

    lp = np.asarray(logprobs, dtype=np.float64)
    if not len(lp):
        raise ValueError("no samples to fit a temperature on")
    result = minimize_scalar(lambda log_t: M.nll(lp / math.exp(log_t), label_ids),
                             bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded",
                             options={"xatol": 1e-6})
    return float(math.exp(result.x))


def calibration_subset(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of min(size, n) of n samples."""
    if size < 1:
        raise ValueError(f"the calibration subset needs at least one sample, got {size}")
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def fit_record(logprobs: np.ndarray, label_ids: Sequence[int], seed: int, split: str = "valid") -> dict:
    """The temperature.json content: T and the subset's NLL and ECE before and after scaling."""
    t = fit_temperature(logprobs, label_ids)
    before, after = M.log_softmax(logprobs), scale(logprobs, t)
    preds = before.argmax(axis=1)
    return {"temperature": t, "split": split, "n_samples": len(before), "seed": int(seed),
            "nll_before": M.nll(before, label_ids), "nll_after": M.nll(after, label_ids),
            "ece_before": M.ece(np.exp(before), label_ids, preds), "ece_after": M.ece(np.exp(after), label_ids, preds)}


def write_temperature(out_dir: str | os.PathLike, record: dict) -> Path:
    from .files import write_json_atomic

    path = Path(out_dir) / FILENAME
    write_json_atomic(path, record)
    return path


def load_temperature(eval_dir: str | os.PathLike) -> float | None:
    """T of ``<eval_dir>/temperature.json``, or None when there is none."""
    path = Path(eval_dir) / FILENAME
    if not path.is_file():
        return None
    try:
        t = float(json.loads(path.read_text(encoding="utf-8"))["temperature"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a temperature file ({type(err).__name__}: {err})") from None
    if not t > 0:
        raise ValueError(f"{path}: temperature must be positive, got {t}")
    return t
