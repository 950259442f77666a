"""Evaluation files: the predictions contract (see the package docstring), written atomically.

The prepared dataset_dir is read with ``data_prep.prepared`` (one loader for every package)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data_prep.outputs import read_jsonl, write_jsonl, write_text_atomic
from data_prep.outputs import write_json as write_json_atomic
from data_prep.prepared import candidate_names, load_stats

# The evaluation file helpers other packages (sasrec, serving) use; the loaders are data_prep's, re-exported.
__all__ = ["TEST_SPLITS", "candidate_names", "check_split", "info_path", "load_predictions", "load_stats",
           "prediction_row", "predictions_path", "read_jsonl", "write_json_atomic", "write_jsonl_atomic",
           "write_predictions", "write_text_atomic"]

TEST_SPLITS = ("test_p1", "test_p2")
LOGPROB_DECIMALS = 6   # absolute error 5e-7 in log p: a relative error of 5e-7 in p


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    write_jsonl(path, rows)
    return Path(path)


def check_split(dataset: str) -> str:
    if dataset not in TEST_SPLITS:
        raise ValueError(f"dataset must be one of {', '.join(TEST_SPLITS)}, got {dataset!r}")
    return dataset


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
        row["logprobs"] = [round(float(v), LOGPROB_DECIMALS) for v in logprobs]
    row.update(extra)
    return row


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
