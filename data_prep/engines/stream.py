"""One input file read batch by batch for the out-of-core prepare (data_prep.engines.buckets.partition_file).

Parquet is read by record batches, CSV / TSV with pyarrow's streaming reader and JSONL in blocks, each of
at most STREAM_ROWS rows (CSV: about CSV_BLOCK_BYTES of the file). Every batch gets the one-file rules of
:func:`data_prep.reading.events.load_events` (timestamps, codes, label map, drops), and its kept rows are written
per user-hash bucket to a scratch folder; once the file is read, each bucket's rows of the file are sorted
and de-duplicated together (an empty place loses a tie, then becomes "unknown", as in one read), so memory
holds one batch, then one bucket's rows of the file.

The rules that look at a whole column (milliseconds, compact dates, slash dates, more than half of the
timestamps failing a TIME_FORMAT) fire on a whole file only if they fire on some batch, since each asks
whether more than half of the rows are of one kind. So the file is read whole, by load_events, whenever a
batch raises (a history event in the future too), whenever a text time column holds both naive and zoned
timestamps (one read refuses that when both kinds parse), and when no row is kept: every error, and every
decision between an error and a success, is that of the one-file read, and the column is read one way for
all rows of the file. The share of rows with a bad timestamp (more than 5 % stops the run) is counted on the
file's totals, never a batch's. Each bucket's tied events keep their order in the file (EventTable.input_order).
"""
from __future__ import annotations

import pickle
import shutil
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from data_prep.config import resolve_columns
from data_prep.encoding import encode
from data_prep.encoding.table import EventTable
from data_prep.errors import MAX_EXAMPLES, PrepareError
from data_prep.reading.events import json_value
from data_prep.reading.readers import JSONL_BLOCK, iter_csv, iter_events_jsonl, missing_columns_error
from data_prep.reading.time_rules import refuse_bad_share, refuse_future
from data_prep.reading.timestamps import parse_times

STREAM_ROWS = 1 << 20            # rows of a Parquet or JSONL batch
CSV_BLOCK_BYTES = 1 << 24        # bytes of CSV a batch is read from
on_batch = None                  # called with each batch's row count as it is read (tests)
_NOTE_ORDER = ("source", "format", "blank_lines", "rows_read", "time_formats", "tz", "time_format",
               "bad_timestamp_rows", "bad_timestamp_examples", "text_fixed", "input_sorted", "out_of_order_rows",
               "filled", "events")
_DROP_ORDER = ("empty_user", "bad_timestamp", "empty_label", "label_not_in_map", "duplicate_event")
_TIME_KINDS = ("epoch", "iso_offset", "iso_utc", "iso_naive")
_FIX_ORDER = ("place_nfc", "place_line_breaks", "behavior_nfc", "behavior_line_breaks")


def bucket_of(user_ids: list[str], n_buckets: int) -> np.ndarray:
    """The bucket of each user id: crc32 of its UTF-8 bytes, modulo the bucket count (stable everywhere)."""
    return np.fromiter((zlib.crc32(u.encode()) % n_buckets for u in user_ids), dtype=np.int32,
                       count=len(user_ids))


class WholeFile(Exception):
    """The file must be read whole (load_events decides its error or its table)."""


def read_by_buckets(path: Path, fmt: str, source: str, scratch: Path, n_buckets: int, columns=None,
                    label_map=None, tz=None, strict_labels=False, time_format=None, allow_bad_timestamps=False):
    """(facts, tables): an iterator of each bucket's events of the file as a sorted, de-duplicated
    EventTable, and the facts whose notes() are the file's drop counts and notes as load_events gives them
    (once the tables are consumed). Raises WholeFile where the file has to be read whole."""
    if not path.is_file() or path.stat().st_size == 0:
        raise WholeFile
    cols = resolve_columns(columns)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    facts = _Facts()
    try:
        for n_batch, (data, rows) in enumerate(_batches(path, fmt, source, cols, facts)):
            if on_batch is not None:
                on_batch(len(rows))
            raw_time = data.pop("time")
            data["time"], ok, time_notes = parse_times(raw_time, tz=tz, source=source, row_numbers=rows,
                                                       time_format=time_format, detect=True)
            refuse_future(source, data["time"], ok, raw_time, rows)   # the whole read names the file's first
            facts.add_times(raw_time, rows, ok, time_notes)
            del raw_time
            encoded = encode.encode_rows(data, label_map=label_map, strict_labels=strict_labels,
                                         reject={"bad_timestamp": ~ok}, dropped={}, notes={}, source=source,
                                         row_numbers=rows)
            facts.add_rows(encoded)
            _write_batch(encoded, scratch, n_batch, n_buckets)
    except Exception:
        shutil.rmtree(scratch, ignore_errors=True)
        raise WholeFile from None
    if facts.kept == 0 or facts.mixed_kinds():
        shutil.rmtree(scratch, ignore_errors=True)
        raise WholeFile
    try:   # on the file's totals, as load_events: a batch's share decides nothing
        refuse_bad_share(source, facts.dropped.get("bad_timestamp", 0), facts.rows, facts.bad_examples(),
                         time_format, allow_bad_timestamps)
    except PrepareError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return facts, _bucket_tables(scratch, n_buckets, facts)


def _batches(path: Path, fmt: str, source: str, cols: dict, facts: _Facts):
    """(columns, row numbers) of each batch."""
    pos = 0
    if fmt == "jsonl":
        counts = {"blank": 0}
        for block, lines in iter_events_jsonl(path, source, cols, min(STREAM_ROWS, JSONL_BLOCK), counts):
            facts.blank = counts["blank"]
            yield block, lines
        facts.blank = counts["blank"]
        return
    if fmt == "parquet":
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(path).schema_arrow
        missing_columns_error(source, cols, list(schema.names))
        text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
        as_dict = [name for name in dict.fromkeys(cols[k] for k in ("user", "place", "behavior"))
                   if any(is_type(schema.field(name).type) for is_type in text)]
        parquet = pq.ParquetFile(path, read_dictionary=as_dict or None)
        time_type = schema.field(cols["time"]).type   # numbers are read as one read holds them: 64 bits
        wide = (pa.float64() if pa.types.is_floating(time_type) else
                pa.int64() if pa.types.is_integer(time_type) else None)
        batches = ({k: b.column(v).cast(wide) if k == "time" and wide is not None else b.column(v)
                    for k, v in cols.items()}
                   for b in parquet.iter_batches(batch_size=STREAM_ROWS, columns=list(dict.fromkeys(cols.values())))
                   if b.num_rows)
    else:
        batches = iter_csv(path, source, cols, "\t" if fmt == "tsv" else ",", CSV_BLOCK_BYTES)
    for data in batches:
        n = len(data["time"])
        yield data, np.arange(pos + 1, pos + n + 1, dtype=np.int64)
        pos += n


class _Facts:
    """What the batches add up to: the file's notes and drop counts, and the order across batches."""

    def __init__(self):
        self.rows = self.kept = self.out_of_order = 0
        self.blank = None
        self.time_notes: dict = {}
        self.kinds: dict[str, int] = {}
        self.bad_rows: list[int] = []
        self.bad_values: list = []
        self.dropped: dict[str, int] = {}
        self.fixed: dict[str, int] = {}
        self.last = None   # (user id, time) of the last kept row so far

    def add_times(self, raw_time, rows: np.ndarray, ok: np.ndarray, notes: dict) -> None:
        self.rows += len(rows)
        for key, count in notes["time_formats"].items():
            self.kinds[key] = self.kinds.get(key, 0) + count
        self.time_notes = notes
        bad = np.flatnonzero(~ok)[:MAX_EXAMPLES - len(self.bad_rows)]
        self.bad_rows += [int(rows[i]) for i in bad]
        self.bad_values += [json_value(raw_time[int(i)]) for i in bad]

    def bad_examples(self) -> list[dict]:
        return [{"row": r, "value": v} for r, v in zip(self.bad_rows, self.bad_values)]

    def add_rows(self, rows: EventTable) -> None:
        for reason, count in rows.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        for key, count in rows.notes.get("text_fixed", {}).items():
            self.fixed[key] = self.fixed.get(key, 0) + count
        u, time = rows.user, rows.time
        self.kept += int(u.size)
        if not u.size:
            return
        self.out_of_order += int(np.count_nonzero((u[1:] < u[:-1]) | ((u[1:] == u[:-1]) & (time[1:] < time[:-1]))))
        first = (rows.user_ids[int(u[0])], int(time[0]))
        if self.last is not None and first < self.last:
            self.out_of_order += 1
        self.last = (rows.user_ids[int(u[-1])], int(time[-1]))

    def mixed_kinds(self) -> bool:
        """Naive and zoned text timestamps in one file (one read refuses them if both kinds parse)."""
        return self.kinds.get("iso_naive", 0) > 0 and any(self.kinds.get(k, 0) for k in _TIME_KINDS[:3])

    def notes(self, source: str, fmt: str, filled: int, duplicates: int, events: int) -> tuple[dict, dict]:
        """(dropped, notes) in the order load_events writes them."""
        kinds = {k: self.kinds[k] for k in _TIME_KINDS if k in self.kinds}
        kinds.update((k, v) for k, v in self.kinds.items() if k not in kinds)
        found = {"source": source, "format": fmt, "blank_lines": self.blank, "rows_read": self.rows,
                 "time_formats": kinds, "tz": self.time_notes.get("tz"),
                 "time_format": self.time_notes.get("time_format"),
                 "input_sorted": self.out_of_order == 0, "out_of_order_rows": self.out_of_order, "events": events}
        if self.bad_rows:
            found["bad_timestamp_rows"] = self.bad_rows
            found["bad_timestamp_examples"] = self.bad_examples()
        if self.fixed:
            found["text_fixed"] = {k: self.fixed[k] for k in _FIX_ORDER if k in self.fixed}
        if filled:
            found["filled"] = {"empty_place": filled}
        if self.blank is None:
            del found["blank_lines"]
        if "time_format" not in self.time_notes:
            del found["time_format"]
        dropped = dict(self.dropped)
        if duplicates:
            dropped["duplicate_event"] = duplicates
        return ({k: dropped[k] for k in _DROP_ORDER if dropped.get(k)},
                {k: found[k] for k in _NOTE_ORDER if k in found})


def _write_batch(rows: EventTable, scratch: Path, n_batch: int, n_buckets: int) -> None:
    """A batch's kept rows, one pickle per bucket: codes into the batch's names."""
    if not rows.user.size:
        return
    bucket = bucket_of(rows.user_ids, n_buckets)[rows.user]
    for b in np.unique(bucket).tolist():
        at = bucket == b
        piece = {"time": rows.time[at]}
        for key, names in (("user", rows.user_ids), ("place", rows.places), ("behavior", rows.behaviors)):
            used, codes = np.unique(getattr(rows, key)[at], return_inverse=True)
            named = used[used < len(names)]   # an empty place (code len(places)) keeps the last code
            piece[key] = codes.reshape(-1).astype(np.int32)
            piece[key + "_names"] = [names[i] for i in named.tolist()]
        with open(scratch / f"{b:05d}-{n_batch:06d}.pkl", "wb") as f:
            pickle.dump(piece, f, protocol=5)


def _recode(pieces: list[dict], key: str, vocab: list[str], empty: int | None = None) -> np.ndarray:
    """The pieces' codes of `key` as codes into the sorted `vocab` (an empty place: `empty`)."""
    out = []
    for piece in pieces:
        lut = np.searchsorted(np.asarray(vocab, dtype=object), np.asarray(piece[key + "_names"], dtype=object))
        lut = np.append(lut.astype(np.int32), np.int32(empty if empty is not None else -1))
        codes = piece[key].astype(np.int64)
        out.append(lut[codes])   # an empty place (code len(names)) -> `empty`
    return np.concatenate(out)


def _bucket_tables(scratch: Path, n_buckets: int, facts: _Facts):
    """Each bucket's rows of the file, sorted and de-duplicated as one read would (filled places and
    duplicates counted into facts.filled / facts.duplicates)."""
    facts.filled = facts.duplicates = 0
    try:
        for b in range(n_buckets):
            paths = sorted(scratch.glob(f"{b:05d}-*.pkl"))
            if not paths:
                continue
            pieces = []
            for path in paths:
                with open(path, "rb") as f:
                    pieces.append(pickle.load(f))
                path.unlink()
            users, places, behaviors = (sorted(set().union(*(p[k + "_names"] for p in pieces)))
                                        for k in ("user", "place", "behavior"))
            rows = EventTable(
                _recode(pieces, "user", users), users, np.concatenate([p["time"] for p in pieces]),
                _recode(pieces, "place", places, empty=len(places)), places,
                _recode(pieces, "behavior", behaviors), behaviors, {}, {})
            del pieces
            table: EventTable = encode.sort_rows(rows)
            facts.filled += table.notes.get("filled", {}).get("empty_place", 0)
            facts.duplicates += table.dropped.get("duplicate_event", 0)
            yield table
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
