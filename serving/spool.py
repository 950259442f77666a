"""Streaming predict's inputs into hash buckets: a user's bucket is ``blake2b(user_id) % buckets`` of the user
id as prepare reads it (text stripped, 12345.0 written 12345), so it never depends on the number of ranks.
`spool` reads --events or --next once (Parquet row batches, CSV blocks, JSONL lines) and writes each wanted
bucket's rows to its own file in the input's format family (Parquet for Parquet and CSV/TSV, the raw lines for
JSONL), which data_prep's reader then reads with the same columns, label map, time zone and time format.

--events may be several files, as prepare's INPUT (a directory, hive partitions included, a glob or an
object-store URI; data_prep.reading.sources lists them): `spool_inputs` spools each file on its own, and
`read_spooled_events` reads a bucket's spools file by file under the one-file rules and merges them as
prepare merges files (sorted, a (user, time, behavior) seen in two files is one duplicate_event). Errors name
the input file and its row.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from data_prep.config import resolve_columns
from data_prep.encoding.encode import string_dictionary
from data_prep.errors import MAX_EXAMPLES
from data_prep.reading.events import PrepareError, json_value, parse_times
from data_prep.reading.labels import number_text
from data_prep.reading.readers import compression_of, detect_format, missing_columns_error
from data_prep.reading.sources import list_inputs, local_copy, merge_tables
from data_prep.reading.time_formats import CompactTally, unparsed_line
from data_prep.reading.time_rules import numbers_of, refuse_bad_share
from serving.predict_files import ReadOptions, histories_of, read_events_table

BATCH_ROWS = 1 << 16   # rows per Parquet batch read and written
ALL_DROPPED = re.compile(r"no events left after dropping rows \((.*)\)")


def bucket_of(user_id: str, buckets: int) -> int:
    digest = hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


def _canonical(value) -> str:
    """The user id as prepare's encoder keys it (surrounding whitespace stripped; missing = "")."""
    return value.strip() if isinstance(value, str) else ""


def _arrow_buckets(column, buckets: int, source: str, name: str) -> np.ndarray:
    """The bucket of every row of an Arrow user column, hashing each distinct id once."""
    encoded = string_dictionary(column, source, name)
    lut = np.fromiter((bucket_of(_canonical(v), buckets) for v in encoded.dictionary.to_pylist()),
                      dtype=np.int64, count=len(encoded.dictionary))
    lut = np.append(lut, bucket_of("", buckets))
    return lut[encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)]


# ---- spooling: one pass over an input file, each wanted bucket's rows to its own file ----------------------
@dataclass
class Spool:
    path: Path
    rows: list            # the input's row numbers of the spool's rows (for errors), in spool order
    source: str = ""      # the input file (spool_inputs)
    fmt: str | None = None   # the spool file's format (spool_inputs)


def _csv_header(path: Path, delimiter: str) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [name.strip() for name in next(csv.reader(f, delimiter=delimiter), [])]


def _arrow_batches(path: Path, fmt: str, cols: dict[str, str], source: str) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    wanted = list(dict.fromkeys(cols.values()))
    if fmt == "parquet":
        parquet = pq.ParquetFile(path)
        missing_columns_error(source, cols, list(parquet.schema_arrow.names))
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted)
        return
    delimiter = "\t" if fmt == "tsv" else ","
    missing_columns_error(source, cols, _csv_header(path, delimiter))
    convert = pcsv.ConvertOptions(include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                  strings_can_be_null=False)
    yield from pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 24),
                             parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                             convert_options=convert)


class TimeCensus:
    """A file's timestamps counted while it is spooled, so that the file is read one way, as prepare reads it,
    not one bucket at a time: a column most of whose numbers look compact (YYYYMMDDHH) stops naming the file's
    rows that would not parse, and (``bad_share``: --events) more than 5 % of rows with a timestamp that does
    not read stop the run. A batch that a whole-column rule refuses is left to the buckets' reads, which apply
    every rule of one file."""

    def __init__(self, opts: ReadOptions, source: str, bad_share: bool = True):
        self.opts, self.source, self.bad_share = opts, source, bad_share
        self.rows = self.bad = 0
        self.examples: list[dict] = []
        self.compact = CompactTally() if opts.time_format is None else None

    def add(self, values: pa.Array, rows: np.ndarray) -> None:
        if self.compact is not None:
            self.compact.add(*numbers_of(values), rows)
        if not self.bad_share:
            return
        try:
            _, ok, _ = parse_times(values, tz=self.opts.tz, source=self.source, time_format=self.opts.time_format)
        except PrepareError:
            return
        bad = np.flatnonzero(~ok)
        self.rows += int(ok.size)
        self.bad += int(bad.size)
        self.examples += [{"row": int(rows[i]), "value": json_value(values[int(i)])}
                          for i in bad[:MAX_EXAMPLES - len(self.examples)].tolist()]

    def check(self) -> None:
        found = self.compact.found() if self.compact is not None else None
        if found:
            raise PrepareError(f"{self.source}: {unparsed_line(*found)}")
        if self.bad_share:
            refuse_bad_share(self.source, self.bad, self.rows, self.examples, self.opts.time_format,
                             self.opts.allow_bad_timestamps)


def _spool_arrow(path: Path, fmt: str, cols: dict, buckets: int, wanted: set, folder: Path, tag: str,
                 source: str, census: TimeCensus) -> dict[int, Spool]:
    import pyarrow.parquet as pq

    spools, writers, row = {}, {}, 1
    try:
        for batch in _arrow_batches(path, fmt, cols, source):
            census.add(batch.column(cols["time"]), np.arange(row, row + batch.num_rows))
            owner = _arrow_buckets(batch.column(cols["user"]), buckets, source, cols["user"])
            for b in np.unique(owner).tolist():
                if b not in wanted:
                    continue
                take = np.flatnonzero(owner == b)
                if b not in writers:
                    spools[b] = Spool(folder / f"{tag}-{b:05d}.parquet", [])
                    writers[b] = pq.ParquetWriter(spools[b].path, batch.schema)
                writers[b].write_batch(batch.take(pa.array(take)), row_group_size=BATCH_ROWS)
                spools[b].rows.extend((take + row).tolist())
            row += batch.num_rows
        if row == 1:
            raise PrepareError(f"{source}: no events (the file has no data rows)")
    except pa.ArrowException as exc:
        raise PrepareError(f"{source}: {' '.join(str(exc).split())}") from None
    finally:
        for w in writers.values():
            w.close()
    return spools


def _jsonl_fields(raw: bytes, line_no: int, source: str, name: str, time: str) -> tuple[str, object] | None:
    """The user id and the raw time (as the reader's text) of one JSONL line (None: a blank line); the line's
    other faults are the reader's to name."""
    try:
        line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
    except UnicodeDecodeError:
        raise PrepareError(f"{source}: row {line_no}: not valid UTF-8") from None
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PrepareError(f"{source}: row {line_no}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict) or name not in obj:
        raise PrepareError(f"{source}: row {line_no}: expected a JSON object with the key '{name}'")
    return _canonical(_text(obj[name])), _text(obj.get(time))


def _text(value):
    return number_text(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _utf8_or_none(value):
    """A time as the census counts it: text that UTF-8 holds (a lone surrogate is the reader's to name)."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _spool_jsonl(path: Path, cols: dict, buckets: int, wanted: set, folder: Path, tag: str,
                 source: str, census: TimeCensus) -> dict[int, Spool]:
    spools, files, seen = {}, {}, False
    times, lines = [], []
    try:
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                found = _jsonl_fields(raw, line_no, source, cols["user"], cols["time"])
                if found is None:
                    continue
                user, time = found
                times.append(_utf8_or_none(time))
                lines.append(line_no)
                if len(lines) == BATCH_ROWS:
                    census.add(pa.array(times, pa.string()), np.array(lines))
                    times, lines = [], []
                seen = True
                b = bucket_of(user, buckets)
                if b not in wanted:
                    continue
                if b not in files:
                    spools[b] = Spool(folder / f"{tag}-{b:05d}.jsonl", [])
                    files[b] = open(spools[b].path, "wb")
                files[b].write(raw.removeprefix(b"\xef\xbb\xbf") if line_no == 1 else raw)
                if not raw.endswith(b"\n"):
                    files[b].write(b"\n")
                spools[b].rows.append(line_no)
            if not seen:
                raise PrepareError(f"{source}: no events (the file has no data rows)")
            if lines:
                census.add(pa.array(times, pa.string()), np.array(lines))
    finally:
        for handle in files.values():
            handle.close()
    return spools


def spool(path: str, opts: ReadOptions, buckets: int, wanted: set, folder: Path, tag: str,
          columns: dict | None = None, source: str | None = None,
          bad_share: bool = False) -> tuple[dict[int, Spool], str]:
    """Each wanted bucket's rows of `path` -> {bucket: Spool}, and the format the spools are in. `source`: the
    name errors give the file (default: the path). The file's timestamps are counted (TimeCensus; `bad_share`:
    also stop when too many do not read)."""
    source, path = (source or str(path)), Path(path)
    if compression_of(path) is not None:   # read as its plain file, as prepare reads it
        with local_copy(str(path)) as plain:
            return spool(str(plain), replace(opts, fmt=detect_format(path, opts.fmt)), buckets, wanted, folder, tag,
                         columns, source, bad_share)
    cols = resolve_columns(columns if columns is not None else opts.columns)
    fmt = detect_format(path, opts.fmt)
    if path.stat().st_size == 0:
        raise PrepareError(f"{source}: file is empty")
    counted = TimeCensus(opts, source, bad_share)
    if fmt == "jsonl":
        found = _spool_jsonl(path, cols, buckets, wanted, folder, tag, source, counted), "jsonl"
    else:
        found = _spool_arrow(path, fmt, cols, buckets, wanted, folder, tag, source, counted), "parquet"
    counted.check()
    return found


def spool_inputs(spec: str, opts: ReadOptions, buckets: int, wanted: set, folder: Path,
                 tag: str) -> dict[int, list[Spool]]:
    """Each wanted bucket's rows of every file of `spec` (one file, a directory, a glob or a URI) -> {bucket:
    one Spool per file with rows in it, in the files' sorted order}."""
    out: dict[int, list[Spool]] = {}
    for i, item in enumerate(list_inputs(spec, opts.fmt)):
        with local_copy(item.name) as path:
            spools, fmt = spool(str(path), replace(opts, fmt=item.fmt), buckets, wanted, folder, f"{tag}-{i:05d}",
                                source=item.name, bad_share=True)
        for b, sp in spools.items():
            out.setdefault(b, []).append(replace(sp, source=item.name, fmt=fmt))
    return out


def read_spooled_events(spools: list[Spool], opts: ReadOptions) -> tuple[dict, dict]:
    """A bucket's histories from its spools (spool_inputs): each read under the one-file rules, then merged as
    prepare merges files; a spool whose rows were all dropped adds its counts (its users have no events, as in
    one file). Returns (user_id -> events, rows dropped by reason)."""
    tables, dropped = [], {}
    for sp in spools:
        try:
            # the file's bad-timestamp share was checked while it was spooled (TimeCensus), not a bucket's
            tables.append(read_events_table(str(sp.path), replace(opts, fmt=sp.fmt, allow_bad_timestamps=True)))
        except PrepareError as err:
            every = ALL_DROPPED.search(str(err))
            if not every:
                raise as_input_error(err, sp, sp.source) from None
            for k, v in re.findall(r"(\w+): (\d+)", every.group(1)):
                dropped[k] = dropped.get(k, 0) + int(v)
    if not tables:
        return {}, dropped
    histories, more = histories_of(merge_tables(tables, ""))
    for k, v in more.items():
        dropped[k] = dropped.get(k, 0) + v
    return histories, dropped


def input_digest(spec: str, fmt: str | None) -> str:
    """sha256 of one input file's bytes; for several files, of their names and digests in sorted order."""
    files = list_inputs(spec, fmt)
    if len(files) == 1 and files[0].name == str(spec):
        return _file_digest(files[0].name)
    h = hashlib.sha256()
    for item in files:
        h.update(f"{item.name}\t{_file_digest(item.name)}\n".encode())
    return h.hexdigest()


def _file_digest(name: str) -> str:
    h = hashlib.sha256()
    with local_copy(name) as path, open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def as_input_error(err: Exception, sp: Spool, source: str) -> Exception:
    """A reader's error about a spool file, re-pointed at the input file and its row numbers."""
    def row(m: re.Match) -> str:
        n = int(m.group(1))
        return f"row {sp.rows[n - 1]}" if 0 < n <= len(sp.rows) else m.group(0)

    text = re.sub(r"\brow (\d+)", row, str(err).replace(str(sp.path), source))
    return type(err)(text)


# ---- one bucket -> one part ----------------------------------------------------------------------------------
