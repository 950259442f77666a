"""Reading the prepared dataset_dir and writing evaluation files atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data_prep.outputs import write_json as write_json_atomic
from data_prep.outputs import write_jsonl, write_text_atomic  # noqa: F401 (write_text_atomic is re-exported)

TEST_SPLITS = ("test_p1", "test_p2")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
    return rows


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    write_jsonl(path, rows)
    return Path(path)


def load_stats(dataset_dir: str | os.PathLike) -> dict:
    path = Path(dataset_dir) / "stats.json"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: run the prepare stage first")
    stats = json.loads(path.read_text(encoding="utf-8"))
    if not stats.get("behaviors"):
        raise ValueError(f"{path}: no 'behaviors' list")
    return stats


def candidate_names(stats: dict) -> list[str]:
    """The candidate set in the order of stats.json (index = label_id)."""
    return [b["name"] for b in stats["behaviors"]]


def check_split(dataset: str) -> str:
    if dataset not in TEST_SPLITS:
        raise ValueError(f"dataset must be one of {', '.join(TEST_SPLITS)}, got {dataset!r}")
    return dataset


def load_split(dataset_dir: str | os.PathLike, split: str) -> tuple[list[dict], list[dict]]:
    """(records, meta) of ``<split>.jsonl`` and ``<split>.meta.jsonl``, checked to be line-aligned."""
    dataset_dir = Path(dataset_dir)
    records = read_jsonl(dataset_dir / f"{split}.jsonl")
    meta = read_jsonl(dataset_dir / f"{split}.meta.jsonl")
    if len(records) != len(meta):
        raise ValueError(f"{dataset_dir}: {split}.jsonl has {len(records)} lines, its meta {len(meta)}")
    return records, meta


def predictions_path(out_dir: str | os.PathLike, dataset: str) -> Path:
    return Path(out_dir) / f"{dataset}.predictions.jsonl"


def info_path(out_dir: str | os.PathLike, dataset: str) -> Path:
    return Path(out_dir) / f"{dataset}.predictions.info.json"


def prediction_row(index: int, meta: dict, pred: str | None, candidates: list[str],
                   p_label: float | None = None, top: list[tuple[str, float]] | None = None,
                   **extra: Any) -> dict:
    """One line of the predictions contract (see the package docstring)."""
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
