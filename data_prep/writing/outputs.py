"""Atomic file writers and the prepared dataset_dir layout (docs/data-preparation.md "Files between stages").

Every file is written to a temporary file in the same directory and moved into place with os.replace, so
an interrupt never leaves a half-written file under the final name. JSON is written with a fixed key order
and no timestamps, so the same inputs and seed give byte-identical files.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from data_prep.errors import PrepareError

PACKAGE_DATASET_INFO = Path(__file__).resolve().parents[2] / "dataset_info.json"
# Alpaca datasets written by prepare (stem -> file "<stem>.jsonl" with a "<stem>.meta.jsonl" side file).
BEHAVIOR_STEMS = ("anchor", "train_all", "tail_medium", "valid", "test_p1", "test_p2")
AUX_STEM = "aux"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temp file next to `path`; on success fsync and os.replace it onto `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the final file the usual permissions
        if "b" in mode:
            handle = os.fdopen(fd, mode)
        else:
            handle = os.fdopen(fd, mode, encoding="utf-8", newline="\n")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through atomic_open; returns the path."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def json_line(obj) -> str:
    """One JSONL line: keys in the dict's own (fixed) order, UTF-8 text kept as is."""
    return json.dumps(obj, ensure_ascii=False) + "\n"


def json_escape(text: str) -> str:
    """The body of the JSON string literal json_line writes for `text` (ensure_ascii=False), without quotes.

    Escaping commutes with concatenation, so long strings can be assembled from pre-escaped parts."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    n = 0
    with atomic_open(path) as f:
        for record in records:
            f.write(json_line(record))
            n += 1
    return n


def write_json(path: str | Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def nonblank_lines(path: str | Path, missing: str = "") -> Iterator[tuple[int, str]]:
    """(line number, line) of each non-blank line of a text file, read lazily; a missing file is
    FileNotFoundError (`missing` is appended to its message)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}{missing}")
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                yield line_no, line


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """The JSON objects of a JSONL file one at a time (blank lines skipped): meta files can outgrow memory.

    A missing file is FileNotFoundError, a bad line ValueError naming the file and line number."""
    for line_no, line in nonblank_lines(path):
        try:
            yield json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """Every JSON object of a JSONL file (see iter_jsonl)."""
    return list(iter_jsonl(path))


def copy_dataset_info(dataset_dir: str | Path, source: str | Path = PACKAGE_DATASET_INFO) -> Path:
    """Copy the committed dataset_info.json into this run's dataset_dir, so that two prepared runs have
    their own registry and never overwrite each other."""
    source = Path(source)
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise PrepareError(f"{source}: dataset_info.json not found next to the data_prep package") from None
    target = Path(dataset_dir) / "dataset_info.json"
    with atomic_open(target, "wb") as f:
        f.write(data)
    return target
