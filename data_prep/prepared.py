"""Reading a prepared dataset_dir back (docs/data-preparation.md "Files between stages"): data_prep writes it,
so it reads it.

A split is ``<stem>.jsonl`` (alpaca records, what LLaMA-Factory trains on) with a line-aligned
``<stem>.meta.jsonl``; ``stats.json`` lists the behaviors in label_id order, which is the candidate order
everywhere (scorer, selection, evaluation).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_prep.writing.outputs import nonblank_lines, read_jsonl


def resolve_dataset_file(dataset_dir: str | os.PathLike, dataset: str) -> Path:
    """`dataset` as a dataset_info.json name (``behavior_train_all``) or its stem (``train_all``) -> jsonl path.

    Without a dataset_info.json (evaluation-only dirs) the stem names ``<dataset_dir>/<stem>.jsonl``."""
    dataset_dir = Path(dataset_dir)
    info_path = dataset_dir / "dataset_info.json"
    if not info_path.is_file():
        path = dataset_dir / f"{dataset}.jsonl"
        if path.is_file():
            return path
        raise FileNotFoundError(f"{str(path)!r} not found and no dataset_info.json: is {str(dataset_dir)!r} a "
                                "prepared dataset dir?")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    for name in (dataset, f"behavior_{dataset}"):
        if name in info:
            path = dataset_dir / info[name]["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"dataset {dataset!r} is registered but {str(path)!r} does not exist")
            return path
    for entry in info.values():
        if Path(entry.get("file_name", "")).stem == dataset:
            return dataset_dir / entry["file_name"]
    raise ValueError(f"dataset {dataset!r} is not in {str(info_path)!r} (known: {', '.join(sorted(info))})")


def meta_path(path: str | os.PathLike) -> Path:
    """The meta side file of a split: ``x.jsonl`` -> ``x.meta.jsonl``."""
    path = Path(path)
    return path.with_name(path.name[: -len(".jsonl")] + ".meta.jsonl")


def load_stats(dataset_dir: str | os.PathLike) -> dict:
    """stats.json, checked to list the behaviors in label_id order 0..K-1."""
    path = Path(dataset_dir) / "stats.json"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: run the prepare stage first")
    stats = json.loads(path.read_text(encoding="utf-8"))
    behaviors = stats.get("behaviors")
    if not behaviors:
        raise ValueError(f"{path}: no 'behaviors' list")
    if [b["label_id"] for b in behaviors] != list(range(len(behaviors))):
        raise ValueError(f"{path}: behaviors must be ordered by label_id 0..K-1")
    return stats


def candidate_names(stats: dict) -> list[str]:
    """The candidate set in the order of stats.json (index = label_id)."""
    return [b["name"] for b in stats["behaviors"]]


def split_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, line) of each non-blank line of a prepared file, read lazily."""
    return nonblank_lines(path, ": run the prepare stage first")


def iter_split(dataset_dir: str | os.PathLike, split: str) -> Iterator[tuple[int, dict, str | None]]:
    """A split streamed, for splits too large to hold: (line number, meta) of each ``<split>.meta.jsonl`` line
    with the line-aligned line of ``<split>.jsonl`` left unparsed (None past that file's end)."""
    dataset_dir = Path(dataset_dir)
    records = split_lines(dataset_dir / f"{split}.jsonl")
    for line_no, meta_line in split_lines(dataset_dir / f"{split}.meta.jsonl"):
        meta = json.loads(meta_line)
        record = next(records, None)  # advanced in step with the meta file even when it is not parsed
        yield line_no, meta, None if record is None else record[1]


@dataclass
class PreparedDataset:
    path: Path
    records: list[dict] | None  # None when loaded with records=False
    meta: list[dict]
    stats: dict
    candidates: list[str]


def load_prepared(dataset_dir: str | os.PathLike, dataset: str = "train_all", records: bool = True) -> PreparedDataset:
    """A prepared split with its meta lines (checked line-aligned), stats.json and the candidate list.

    records=False reads only the meta side file (baselines need no prompts)."""
    path = resolve_dataset_file(dataset_dir, dataset)
    stats = load_stats(dataset_dir)  # before the (large) split, so a half-prepared dir fails fast
    side = meta_path(path)
    if not side.is_file():
        raise FileNotFoundError(f"{str(side)!r} not found (written by data_prep)")
    meta = read_jsonl(side)
    rows = read_jsonl(path) if records else None
    if rows is not None and len(rows) != len(meta):
        raise ValueError(f"{path.name} has {len(rows)} lines but {side.name} has {len(meta)}")
    return PreparedDataset(path, rows, meta, stats, candidate_names(stats))


def protocol2_balance(counts, per_behavior: int) -> str:
    """What protocol 2 is: "balanced" (every behavior at `per_behavior` samples), "not balanced: k of n
    behaviors short" (scarce test samples: for the short ones it is what protocol 1 left), or "none"."""
    counts = [int(c) for c in counts]
    if per_behavior <= 0:
        return "none"
    short = sum(c < per_behavior for c in counts)
    return "balanced" if not short else f"not balanced: {short} of {len(counts)} behaviors short"


def protocol2_balance_of(stats: dict) -> str:
    """stats.json's protocols.test_p2.balance, or the same derived from protocol2_counts (older runs)."""
    stored = stats.get("protocols", {}).get("test_p2", {}).get("balance")
    if stored:
        return stored
    return protocol2_balance(stats.get("protocol2_counts", {}).values(),
                             int(stats.get("config", {}).get("p2_per_behavior", 0)))

