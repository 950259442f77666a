"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

One scalar T per model and prompt mode: p_T(c|x) = softmax(log p(c|x) / T). T is fitted on a seeded subset of
the validation split by minimising the label's NLL over log T (bounded to [T_MIN, T_MAX]); T > 1 softens an
over-confident model, T < 1 sharpens an under-confident one. Dividing by T > 0 keeps the order of the
candidates, so the argmax (accuracy) and every ranking metric are unchanged (exact ties stay ties). A T within
BOUND_TOL (in log T) of a bound is ``at_bound``: the NLL was still falling there, so it is no optimum.

Prompt modes (LLMs): the sample's own Appendix D template (``own``, what ``make eval`` predicts with), a fixed
template (``"0"``, ``"1"``, ``"2"``) or ``mean`` (each candidate's log-probability averaged over the three
templates, then the softmax), the modes predict and serve offer. Each mode has its own T, fitted on the same
samples scored in every template.

``<eval dir>/temperature.json``: ``temperature`` (own mode; SASRec: its only one), ``at_bound``, ``split``,
``n_samples``, ``seed``, ``nll_before``, ``nll_after``, ``ece_before``, ``ece_after`` (on the fitting subset),
and for LLMs ``modes``: per mode ``temperature``, ``at_bound`` and the four figures.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_prep.rendering.prompts import INSTRUCTION_TEMPLATES

from . import metrics as M

T_MIN, T_MAX = 0.05, 20.0
BOUND_TOL = 1e-3     # |log T - log bound| below which a fitted T sits at its bound
FILENAME = "temperature.json"
OWN = "own"
MODES = (*(str(t) for t in range(len(INSTRUCTION_TEMPLATES))), "mean")


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


def at_bound(temperature: float) -> bool:
    """Whether a fitted T sits at T_MIN or T_MAX (within BOUND_TOL in log T)."""
    return min(abs(math.log(temperature / b)) for b in (T_MIN, T_MAX)) < BOUND_TOL


def fit_record(logprobs: np.ndarray, label_ids: Sequence[int], seed: int, split: str = "valid") -> dict:
    """The temperature.json content: T, whether it is at a bound, the subset's NLL and ECE before and after."""
    t = fit_temperature(logprobs, label_ids)
    before, after = M.log_softmax(logprobs), scale(logprobs, t)
    preds = before.argmax(axis=1)
    return {"temperature": t, "at_bound": at_bound(t), "split": split, "n_samples": len(before), "seed": int(seed),
            "nll_before": M.nll(before, label_ids), "nll_after": M.nll(after, label_ids),
            "ece_before": M.ece(np.exp(before), label_ids, preds), "ece_after": M.ece(np.exp(after), label_ids, preds)}


def mode_logprobs(logprobs: np.ndarray, own: Sequence[int], mode: str) -> np.ndarray:
    """[n, K] candidate log-probabilities of a prompt mode from [n, templates, K] (own: each sample's template)."""
    lp = np.asarray(logprobs, dtype=np.float64)
    if mode == "mean":
        return lp.mean(axis=1)
    if mode == OWN:
        return lp[np.arange(len(lp)), np.asarray(own, dtype=np.int64)]
    return lp[:, int(mode)]


def fit_modes_record(logprobs: np.ndarray, own: Sequence[int], label_ids: Sequence[int], seed: int) -> dict:
    """temperature.json of an LLM: the own mode's record with a T per mode of MODES under ``modes``."""
    per_mode = {m: fit_record(mode_logprobs(logprobs, own, m), label_ids, seed) for m in MODES}
    shared = ("split", "n_samples", "seed")
    return {**fit_record(mode_logprobs(logprobs, own, OWN), label_ids, seed),
            "modes": {m: {k: v for k, v in r.items() if k not in shared} for m, r in per_mode.items()}}


def bound_note(record: dict | None) -> str | None:
    """One line naming the fits of a temperature.json record that sit at a bound, None when none does."""
    fits = {OWN: record, **record.get("modes", {})} if record else {}
    bounded = [f"{mode} {float(fit['temperature']):g}" for mode, fit in fits.items()
               if at_bound(float(fit["temperature"]))]
    if not bounded:
        return None
    return (f"temperature at its search bound [{T_MIN:g}, {T_MAX:g}] ({', '.join(bounded)}): the validation NLL "
            f"still falls there, so T is no optimum")


def write_temperature(out_dir: str | os.PathLike, record: dict) -> Path:
    from .files import write_json_atomic

    path = Path(out_dir) / FILENAME
    write_json_atomic(path, record)
    return path


def read_record(eval_dir: str | os.PathLike) -> dict | None:
    """``<eval_dir>/temperature.json`` with every T checked positive, or None when there is none."""
    path = Path(eval_dir) / FILENAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        ts = [float(record["temperature"])] + [float(m["temperature"]) for m in record.get("modes", {}).values()]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a temperature file ({type(err).__name__}: {err})") from None
    if not all(t > 0 for t in ts):
        raise ValueError(f"{path}: temperature must be positive, got {min(ts)}")
    return record


def load_temperature(eval_dir: str | os.PathLike, mode: str = OWN) -> float | None:
    """T of ``<eval_dir>/temperature.json`` for a prompt mode (default: the sample's own template, what the
    evaluation's predictions use), or None when there is no file or no T for that mode."""
    record = read_record(eval_dir)
    if record is None:
        return None
    fit = record if mode == OWN else record.get("modes", {}).get(mode)
    return None if fit is None else float(fit["temperature"])
