"""Evaluation files: the predictions contract (see the package docstring), written atomically.

The prepared dataset_dir is read with ``data_prep.prepared`` (one loader for every package)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.prepared import candidate_names, load_stats
from data_prep.writing.outputs import read_jsonl, write_jsonl, write_text_atomic
from data_prep.writing.outputs import write_json as write_json_atomic

# The evaluation file helpers other packages (sasrec, serving) use; the loaders are data_prep's, re-exported.
__all__ = ["TEST_SPLITS", "candidate_names", "distribution_row", "first_max", "info_path",
           "load_predictions", "load_stats", "prediction_row", "predictions_path", "ranking", "read_jsonl",
           "stored_logprobs", "write_json_atomic", "write_jsonl_atomic", "write_predictions", "write_text_atomic"]

TEST_SPLITS = ("test_p1", "test_p2")
LOGPROB_DECIMALS = 6   # absolute error 5e-7 in log p: a relative error of 5e-7 in p


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    write_jsonl(path, rows)
    return Path(path)


def predictions_path(out_dir: str | os.PathLike, dataset: str) -> Path:
    return Path(out_dir) / f"{dataset}.predictions.jsonl"


def info_path(out_dir: str | os.PathLike, dataset: str) -> Path:
    return Path(out_dir) / f"{dataset}.predictions.info.json"


def prediction_row(index: int, meta: dict, pred: str | None, candidates: list[str],
                   p_label: float | None = None, top: list[tuple[str, float]] | None = None,
                   logprobs: Sequence[float] | None = None, **extra: Any) -> dict:
    """One line of the predictions contract (see the package docstring); logprobs (log p(c|x) of every
    candidate, label_id order) are kept to LOGPROB_DECIMALS decimals."""
    pred_id = candidates.index(pred) if pred in candidates else -1
    row = {
        "index": index,
        "sample_id": meta.get("sample_id"),
        "label": meta["label"],
        "label_id": candidates.index(meta["label"]) if meta["label"] in candidates else -1,
        "pred": pred if pred_id >= 0 else None,
        "pred_id": pred_id,
        "p_label": None if p_label is None else float(p_label),
        "top": [{"name": n, "p": None if p is None else float(p)} for n, p in (top or [])[:3]],
        "valid": pred_id >= 0,
    }
    if logprobs is not None:
        if len(logprobs) != len(candidates):
            raise ValueError(f"{len(logprobs)} logprobs for {len(candidates)} candidates")
        row["logprobs"] = stored_logprobs(logprobs)
    row.update(extra)
    return row


def stored_logprobs(logprobs: Sequence[float]) -> list[float]:
    """log p(c|x) as a predictions file keeps them: LOGPROB_DECIMALS decimals."""
    return [round(float(v), LOGPROB_DECIMALS) for v in logprobs]


def ranking(values: Sequence[float]) -> np.ndarray:
    """Candidate ids best first; equal values keep label_id order (the lower label_id first)."""
    return np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")


def first_max(logprobs: Sequence[float]) -> int:
    """The prediction of a distribution: the id of the largest stored log-probability (ties: the lower
    label_id)."""
    return int(ranking(stored_logprobs(logprobs))[0])


def distribution_row(index: int, meta: dict, candidates: list[str], logprobs: Sequence[float],
                     probs: Sequence[float] | None = None, keep_logprobs: bool = True, **extra: Any) -> dict:
    """The row of a method with a distribution: ``pred`` and the order of ``top`` are the ranking of the stored
    (rounded) log-probabilities, so pred is their first maximum (ties: the lower label_id). ``p_label`` and the
    top probabilities are `probs` (default exp(logprobs)). keep_logprobs=False leaves ``logprobs`` out and ranks
    by `probs`, the values the row then keeps."""
    kept = stored_logprobs(logprobs)
    p = np.exp(np.asarray(logprobs, dtype=np.float64)) if probs is None else np.asarray(probs)
    order = ranking(kept if keep_logprobs else p)
    label = candidates.index(meta["label"]) if meta["label"] in candidates else None
    return prediction_row(index, meta, candidates[int(order[0])], candidates,
                          p_label=None if label is None else p[label],
                          top=[(candidates[int(j)], p[j]) for j in order[:3]],
                          logprobs=kept if keep_logprobs else None, **extra)


def write_predictions(out_dir: str | os.PathLike, dataset: str, rows: list[dict], info: dict) -> Path:
    path = write_jsonl_atomic(predictions_path(out_dir, dataset), rows)
    n_invalid = sum(not r["valid"] for r in rows)
    write_json_atomic(info_path(out_dir, dataset), {
        **info, "dataset": dataset, "n_samples": len(rows), "n_invalid": n_invalid,
        "invalid_rate": n_invalid / len(rows) if rows else 0.0,
    })
    return path


def load_predictions(pred_dir: str | os.PathLike, dataset: str) -> tuple[list[dict], dict] | None:
    """(rows, info) of one predictions file, or None when the directory has none for ``dataset``."""
    path = predictions_path(pred_dir, dataset)
    if not path.is_file():
        return None
    info = info_path(pred_dir, dataset)
    return read_jsonl(path), (json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {})
