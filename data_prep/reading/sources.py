"""INPUT as many files: a directory, a glob or an object-store URI of CSV / TSV / JSONL / Parquet files.

Hive-partitioned layouts (``dt=2024-03-01/part-0.parquet``) are directories like any other: every file below
INPUT whose extension names a format (or, with ``--format``, every file) is read; hidden and ``_``-prefixed
files (``_SUCCESS``, ``.crc``) are skipped. Partition keys in the path are not columns: the four event
columns must be in every file. Each file is read by :func:`data_prep.reading.events.load_events` with the same
column map, label map, timezone and time format, so every rule (and every error: ``"<file>: row <n>: ..."``)
is that of one file. The files are taken in sorted path order and their events are merged and sorted, so the
output never depends on the listing order or on which file holds which event, except the order of the
events of one instant, which follows the input (data_prep.encoding.ties).

Object-store URIs (``s3://``, ``gs://``, ``hdfs://``, ``file://``) are opened with pyarrow's filesystems;
each file is copied to a local temporary file while it is read.
"""
from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from data_prep.encoding import encode, ties
from data_prep.encoding.table import EventTable
from data_prep.errors import MAX_EXAMPLES, PrepareError, one_line
from data_prep.reading.readers import FORMATS, compression_of, decompressed, detect_format, plain_suffix

_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class InputFile:
    """One file of INPUT: its name in errors and stats (a path or URI) and its format."""
    name: str
    fmt: str


def is_uri(text: str) -> bool:
    return "://" in text


def list_inputs(spec: str | os.PathLike, fmt: str | None = None) -> list[InputFile]:
    """The files INPUT names, in sorted order: one file, a directory (recursively), a glob or a URI."""
    spec = str(spec)
    if not is_uri(spec) and os.path.isfile(spec):
        return [InputFile(spec, detect_format(Path(spec), fmt))]
    names = _list_uri(spec) if is_uri(spec) else _list_local(spec)
    wanted = [n for n in names if not _hidden(n) and (fmt is not None or plain_suffix(n).lower() in FORMATS)]
    if not wanted:
        raise PrepareError(f"{spec}: no event files found (CSV, TSV, JSONL or Parquet, also .gz, .bz2 or .zst; "
                           f"hidden and _-prefixed files are skipped)")
    return [InputFile(n, detect_format(Path(n), fmt)) for n in sorted(wanted)]


def _hidden(name: str) -> bool:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return base.startswith((".", "_"))


def _list_local(spec: str) -> list[str]:
    if any(c in spec for c in _GLOB_CHARS):
        return [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
    if os.path.isdir(spec):
        return [os.path.join(root, f) for root, _, files in os.walk(spec) for f in files
                if not any(part.startswith((".", "_")) for part in Path(os.path.relpath(root, spec)).parts
                           if part != ".")]
    if os.path.isfile(spec):
        return [spec]
    raise PrepareError(f"{spec}: no such file, directory or glob match")


def _filesystem(uri: str):
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:
        raise PrepareError(f"{uri}: cannot open ({one_line(exc)})") from None


def _list_uri(spec: str) -> list[str]:
    import pyarrow.fs as pafs

    scheme = spec.split("://", 1)[0]
    base = spec
    pattern = None
    if any(c in spec for c in _GLOB_CHARS):
        cut = min(spec.index(c) for c in _GLOB_CHARS if c in spec)
        base, pattern = spec[:spec.rindex("/", 0, cut)], spec
    fs, root = _filesystem(base)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return [spec]
    if info.type != pafs.FileType.Directory:
        raise PrepareError(f"{spec}: no such file or directory")
    prefix = base[:len(base) - len(root)] if base.endswith(root) else f"{scheme}://"
    found = [prefix + i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
             if i.type == pafs.FileType.File]
    return [f for f in found if pattern is None or fnmatch.fnmatchcase(f, pattern)]


@contextlib.contextmanager
def local_copy(name: str):
    """A local plain path holding the file `name`: the file itself, or a temporary copy of a URI's object or
    of a compressed file, decompressed."""
    if not is_uri(name) and compression_of(name) is None:
        yield Path(name)
        return
    stream = None
    if is_uri(name):
        fs, path = _filesystem(name)
        try:
            stream = fs.open_input_stream(path, compression=compression_of(name))
        except (OSError, pa.ArrowException) as exc:
            raise PrepareError(f"{name}: cannot read ({one_line(exc)})") from None
    with decompressed(name, stream) as local:
        yield local


def load_input(spec: str | os.PathLike, fmt: str | None = None, **reader) -> EventTable:
    """INPUT (one file, a directory, a glob or a URI) as one EventTable, in memory."""
    files = list_inputs(spec, fmt)
    if len(files) == 1 and not is_uri(files[0].name):
        from data_prep.reading.events import load_events

        return load_events(files[0].name, fmt=files[0].fmt, **reader)
    tables = [load_file(f, **reader) for f in tqdm(files, desc="read", unit="file", disable=None)]
    return merge_tables(tables, str(spec))


def load_file(item: InputFile, **reader) -> EventTable:
    """One file of INPUT as an EventTable (data_prep.reading.events.load_events, errors naming the file)."""
    from data_prep.reading.events import load_events

    with local_copy(item.name) as path:
        return load_events(path, fmt=item.fmt, source=item.name, **reader)


def merge_vocab(lists) -> list[str]:
    """The sorted union of sorted name lists (global dictionary codes are positions in it)."""
    return sorted(set().union(*lists))


def recode(names: list[str], vocab: list[str], codes: np.ndarray) -> np.ndarray:
    """Codes into `names` -> codes into `vocab` (a sorted superset of names)."""
    lut = np.searchsorted(np.asarray(vocab, dtype=object), np.asarray(names, dtype=object)).astype(np.int32)
    return lut[codes] if len(lut) else codes.astype(np.int32)


def merge_tables(tables: list[EventTable], source: str) -> EventTable:
    """Several files' EventTables as one: global vocabularies, concatenated, sorted and de-duplicated again
    (the same (user, time, behavior) in two files is a duplicate_event); dropped counts and notes summed
    (merge_notes)."""
    if len(tables) == 1:
        return tables[0]
    users = merge_vocab(t.user_ids for t in tables)
    places = merge_vocab(t.places for t in tables)
    behaviors = merge_vocab(t.behaviors for t in tables)
    arrays = [np.concatenate([recode(t.user_ids, users, t.user) for t in tables]),
              np.concatenate([t.time for t in tables]),
              np.concatenate([recode(t.places, places, t.place) for t in tables]),
              np.concatenate([recode(t.behaviors, behaviors, t.behavior) for t in tables])]
    dropped, notes = merge_accounts(tables, source)
    u, time, p, b, n_dup, _, (rows, src) = encode.sort_and_dedup(arrays, len(users), len(places), len(behaviors),
                                                                 sources=True)
    if n_dup:
        dropped["duplicate_event"] = dropped.get("duplicate_event", 0) + n_dup
    notes["events"] = int(u.size)
    offsets = np.cumsum([0] + [len(t) for t in tables[:-1]])
    orders = ties.merged_orders(src, offsets, [t.input_order for t in tables], list(range(len(tables))))
    return EventTable(user=u, user_ids=users, time=time, place=p, places=places, behavior=b, behaviors=behaviors,
                      dropped=dropped, notes=notes, input_order=(rows, orders))


def merge_accounts(tables, source: str) -> tuple[dict[str, int], dict]:
    """Dropped counts (summed) and notes (merge_notes) of several files (one file: its own)."""
    if len(tables) == 1:
        return dict(tables[0].dropped), dict(tables[0].notes)
    dropped: dict[str, int] = {}
    for t in tables:
        for reason, count in t.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + int(count)
    return dropped, merge_notes([t.notes for t in tables], source)


def merge_notes(notes: list[dict], source: str) -> dict:
    """The notes of several files as one: counts summed, flags all-true, text kept when every file agrees
    (else the sorted distinct values), example lists joined with each entry's file (at most MAX_EXAMPLES)."""
    merged: dict = {}
    for one in notes:
        for key, value in one.items():
            if key == "source":
                continue
            if isinstance(value, list):
                entries = [{"file": one["source"], **(v if isinstance(v, dict) else {"row": v})} for v in value]
                merged[key] = (merged.get(key, []) + entries)[:MAX_EXAMPLES]
            elif key not in merged:
                merged[key] = dict(value) if isinstance(value, dict) else value
            else:
                merged[key] = _combine(merged[key], value)
    merged.pop("source", None)
    return {"source": source, "files": len(notes), **merged} if source else merged


def _combine(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) and bool(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _combine(out[k], v) if k in out else v
        return out
    if a == b:
        return a
    values = (a if isinstance(a, list) else [a]) + [b]
    return sorted({str(v) for v in values})
