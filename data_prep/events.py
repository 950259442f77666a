"""Behavior event logs -> one canonical, sorted, de-duplicated :class:`EventTable`.

Event schema
------------
Every input file holds one event per row with four fields (canonical names in brackets):
``user_id`` [user], ``timestamp`` [time], ``place`` [place] and ``behavior`` [behavior].
``columns`` (``--columns user=uid,time=ts,place=loc,behavior=act``) maps canonical names to the
file's own column names; fields not mentioned keep the schema names above.

Formats: CSV (``.csv``), TSV (``.tsv``/``.tab``), JSONL (``.jsonl``/``.ndjson``, one JSON object a
line) and Parquet (``.parquet``/``.pq``), chosen by extension or by ``fmt``. The Parquet path reads
one row group at a time with text columns as dictionaries and never loops over rows in Python
(50 M events in ~7 s of CPU, ~1.6 GB peak RSS); CSV uses pyarrow's reader; JSONL is parsed line by
line (~4 s per million rows) because its rows may mix number and string types.

Timezone rule
-------------
``EventTable.time`` is the event's LOCAL wall-clock time written as if it were a UTC epoch, so
weekday and hour come out of plain UTC arithmetic (see :func:`weekday_of`, :func:`hour_of`).

* ISO-8601 with a numeric offset (``2024-03-01T08:00:00+08:00``): the wall time as written, i.e. the
  local time at that offset (08:00 here). ``+00:00`` is an offset like any other.
* naive ISO-8601 (``2024-03-01 08:00:00``): already local, taken as written.
* ISO-8601 ending in ``Z`` and epoch seconds (int, float or a numeric string; fractions are floored):
  an instant in UTC. It stays UTC unless ``tz`` is given (IANA name such as ``Asia/Shanghai``, or a
  fixed offset such as ``+08:00``), in which case it is converted to that zone's local time.
* Parquet timestamp columns: naive ones are local (like naive ISO); zone-aware ones are instants,
  converted to ``tz`` when given, else to the column's own zone.
* ISO needs at least hours and minutes (a date alone has no hour); fractional seconds are dropped.
  Local times outside [1970, 2100) are unparseable. Epoch values that look like milliseconds
  (most above 1e11) are an error rather than 30 000-year-old dates.

Bad input (nothing is lost silently)
------------------------------------
Errors are :class:`PrepareError` with one line ``"<file>: row <n>: <problem>"`` (row n counts data
records from 1: CSV line n+1 below the header, JSONL line n, Parquet record n).

* missing or misnamed column -> error naming the file, the missing column and the columns found.
* empty file, or a file with no data rows -> error. Every row dropped -> error listing the counts.
* not UTF-8 (CSV/JSONL) -> error naming the file, the row, the line and the byte offset; a Parquet
  text column that is not UTF-8 -> error naming the file.
* malformed CSV row / JSONL line that is not a JSON object -> error with the row.
* label map: a raw label outside the map is dropped and counted (``label_not_in_map``), or with
  ``strict_labels`` an error naming the first such row.

Dropped rows are counted in ``EventTable.dropped`` (reason -> rows); a row with several problems is
counted once, under the first reason of this order:
``empty_user`` (empty/null user id), ``bad_timestamp`` (unparseable or out of range; the first row
numbers and raw values are kept in ``notes["bad_timestamp_rows"]``/``["bad_timestamp_examples"]``),
``empty_label`` (empty/null behavior), ``label_not_in_map``, ``duplicate_event`` (same user, local
time and behavior as another row; the one kept is the one whose place sorts first, so the result
never depends on the file's row order).

Kept but changed, counted in ``notes``: an empty place becomes ``"unknown"``
(``notes["filled"]["empty_place"]``); surrounding whitespace is stripped from every text field;
unsorted input is sorted by (user, time, behavior, place) (``notes["input_sorted"]`` is False and
``notes["out_of_order_rows"]`` counts the rows where the file's (user, time) order steps back).
Blank JSONL lines are skipped and counted (``notes["blank_lines"]``).
Users with too few events are not this module's business (the sample builder drops and counts them).
"""
from __future__ import annotations

import bisect
import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CANONICAL = ("user", "time", "place", "behavior")
SCHEMA_COLUMNS = {"user": "user_id", "time": "timestamp", "place": "place", "behavior": "behavior"}
UNKNOWN_PLACE = "unknown"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}
# Local times must fall in [1970, 2100): wider ranges are almost always unit mistakes.
MIN_TIME, MAX_TIME = 0, 4_102_444_800
MILLISECOND_HINT = 1e11  # epoch seconds pass this only after the year 5138
MAX_EXAMPLES = 5


class PrepareError(ValueError):
    """Bad input for `make prepare`; the message is one line naming the file (and row)."""


@dataclass
class EventTable:
    """Canonical events, sorted by (user, time, behavior, place), duplicate events removed.

    ``time`` is local wall-clock time encoded as a UTC epoch (int64 seconds). Code arrays are int32
    indices into the sorted name lists ``user_ids`` / ``places`` / ``behaviors``.
    """

    user: np.ndarray
    user_ids: list[str]
    time: np.ndarray
    place: np.ndarray
    places: list[str]
    behavior: np.ndarray
    behaviors: list[str]
    dropped: dict[str, int] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def user_offsets(self) -> np.ndarray:
        """Row offsets (len(user_ids) + 1): user u's events are rows offsets[u]:offsets[u+1]."""
        counts = np.bincount(self.user, minlength=len(self.user_ids))
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def weekday_of(time: np.ndarray) -> np.ndarray:
    """Weekday of local-epoch seconds, Monday = 0 (1970-01-01 was a Thursday)."""
    return ((np.asarray(time) // 86_400 + 3) % 7).astype(np.int8)


def hour_of(time: np.ndarray) -> np.ndarray:
    """Hour of day 0-23 of local-epoch seconds."""
    return ((np.asarray(time) // 3_600) % 24).astype(np.int8)


# ----------------------------------------------------------------------------- options

_COLUMN_ALIASES = {"user": "user", "user_id": "user", "time": "time", "timestamp": "time",
                   "place": "place", "behavior": "behavior", "behaviour": "behavior", "label": "behavior"}


def parse_columns_option(text: str) -> dict[str, str]:
    """``"user=uid,time=ts,place=loc,behavior=act"`` -> ``{"user": "uid", ...}`` (any subset of keys)."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise PrepareError(f"--columns: '{item}' is not of the form key=column")
        if key not in _COLUMN_ALIASES:
            raise PrepareError(f"--columns: unknown key '{key}' (expected one of {', '.join(CANONICAL)})")
        canonical = _COLUMN_ALIASES[key]
        if canonical in mapping:
            raise PrepareError(f"--columns: '{canonical}' is given twice")
        mapping[canonical] = value
    if not mapping:
        raise PrepareError("--columns: empty mapping")
    return mapping


def _resolve_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    resolved = dict(SCHEMA_COLUMNS)
    for key, value in (columns or {}).items():
        if key not in _COLUMN_ALIASES:
            raise PrepareError(f"columns: unknown key '{key}' (expected one of {', '.join(CANONICAL)})")
        resolved[_COLUMN_ALIASES[key]] = value
    return resolved


def load_label_map(path: str | os.PathLike) -> dict[str, str]:
    """Raw label -> category, from JSON ``{raw: category}`` or a 2-column CSV ``raw,category``.

    The CSV may start with the header ``raw,category``. Labels and categories are stripped;
    a raw label given twice with different categories, or an empty category, is an error.
    """
    path = Path(path)
    text = _read_text(path)
    mapping: dict[str, str] = {}

    def add(raw: Any, category: Any, where: str) -> None:
        if not isinstance(raw, str) or not isinstance(category, str) or not category.strip():
            raise PrepareError(f"{path}: {where}: label map entries must be non-empty strings, "
                               f"got {raw!r}: {category!r}")
        raw, category = raw.strip(), category.strip()
        if mapping.get(raw, category) != category:
            raise PrepareError(f"{path}: {where}: label '{raw}' maps to both '{mapping[raw]}' and '{category}'")
        mapping[raw] = category

    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PrepareError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise PrepareError(f"{path}: a JSON label map must be an object {{raw: category}}")
        for raw, category in obj.items():
            add(raw, category, f"key '{raw}'")
    else:
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        for line_no, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if line_no == 1 and [c.strip().lower() for c in row] == ["raw", "category"]:
                continue
            if len(row) != 2:
                raise PrepareError(f"{path}: row {line_no}: expected 2 columns raw,category, got {len(row)}")
            add(row[0], row[1], f"row {line_no}")
    if not mapping:
        raise PrepareError(f"{path}: the label map is empty")
    return mapping


# ----------------------------------------------------------------------------- readers

def load_events(path: str | os.PathLike, fmt: str | None = None, columns: Mapping[str, str] | None = None,
                label_map: Mapping[str, str] | None = None, tz: str | None = None,
                strict_labels: bool = False) -> EventTable:
    """Read an event log (CSV / TSV / JSONL / Parquet) into a canonical :class:`EventTable`.

    See the module docstring for the schema, the timezone rule and how bad input is handled.
    """
    source = str(path)
    path = Path(path)
    cols = _resolve_columns(columns)
    fmt = _detect_format(path, fmt)
    if not path.is_file():
        raise PrepareError(f"{source}: no such file")
    if path.stat().st_size == 0:
        raise PrepareError(f"{source}: file is empty")
    notes: dict[str, Any] = {"source": source, "format": fmt}
    row_numbers = None
    if fmt == "parquet":
        data = _read_parquet(path, source, cols)
    elif fmt in ("csv", "tsv"):
        data = _read_csv(path, source, cols, "\t" if fmt == "tsv" else ",")
    else:
        data, row_numbers, blank = _read_jsonl(path, source, cols)
        notes["blank_lines"] = blank
    n_rows = len(data["time"])
    notes["rows_read"] = n_rows
    if n_rows == 0:
        raise PrepareError(f"{source}: no events (the file has no data rows)")
    raw_time = data.pop("time")
    data["time"], ok, time_notes = parse_times(raw_time, tz=tz, source=source)
    notes.update(time_notes)
    bad = np.flatnonzero(~ok)
    if bad.size:
        examples = bad[:MAX_EXAMPLES]
        rows = row_numbers[examples] if row_numbers is not None else examples + 1
        notes["bad_timestamp_rows"] = [int(r) for r in rows]
        notes["bad_timestamp_examples"] = [{"row": int(r), "value": raw_time[int(i)].as_py()}
                                           for r, i in zip(rows, examples)]
    del raw_time, bad
    bad_time = ~ok
    del ok
    # _finish empties `data` column by column, so the Arrow buffers are freed as they are encoded.
    return _finish(data, label_map=label_map, strict_labels=strict_labels, reject={"bad_timestamp": bad_time},
                   dropped={}, notes=notes, source=source, row_numbers=row_numbers)


def load_foursquare(path: str | os.PathLike, **options) -> EventTable:
    """The TSMC2014 Foursquare importer (lives in :mod:`data_prep.foursquare`; re-exported here)."""
    from data_prep.foursquare import load_foursquare as load

    return load(path, **options)


def _detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        if fmt not in set(FORMATS.values()):
            raise PrepareError(f"{path}: unknown format '{fmt}' (expected one of csv, tsv, jsonl, parquet)")
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise PrepareError(f"{path}: cannot tell the format from the extension '{path.suffix}' "
                           f"(use .csv, .tsv, .jsonl or .parquet, or pass the format)")
    return found


def _missing_columns_error(source: str, cols: dict[str, str], found: list[str]) -> None:
    missing = [(k, v) for k, v in cols.items() if v not in found]
    if missing:
        what = ", ".join(f"'{v}'" + ("" if SCHEMA_COLUMNS[k] == v else f" (mapped from {k})")
                         for k, v in missing)
        raise PrepareError(f"{source}: missing column {what}; columns found: {', '.join(found) or '(none)'}")


_DICT = pa.dictionary(pa.int32(), pa.string())


def _read_parquet(path: Path, source: str, cols: dict[str, str]) -> dict[str, pa.Array | pa.ChunkedArray]:
    """Row group by row group, so Arrow never holds more than one row group: text columns become
    int32 codes into one growing dictionary, numeric times a numpy int64/float64 array."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path, read_dictionary=None)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise PrepareError(f"{source}: not a readable Parquet file ({_one_line(exc)})") from None
    _missing_columns_error(source, cols, list(schema.names))
    text_types = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    as_dict = [name for name in dict.fromkeys(cols[k] for k in ("user", "place", "behavior"))
               if any(is_type(schema.field(name).type) for is_type in text_types)]
    parquet = pq.ParquetFile(path, read_dictionary=as_dict or None)
    n = parquet.metadata.num_rows
    time_type = schema.field(cols["time"]).type
    numeric_time = pa.types.is_integer(time_type) or pa.types.is_floating(time_type)
    wanted = list(dict.fromkeys(cols.values()))
    codes = {name: np.empty(n, np.int32) for name in dict.fromkeys(cols[k] for k in ("user", "place", "behavior"))}
    vocab: dict[str, dict] = {name: {} for name in codes}
    time_numpy = np.empty(n, np.float64 if pa.types.is_floating(time_type) else np.int64) if numeric_time else None
    time_valid = np.ones(n, bool) if numeric_time else None
    time_chunks: list[pa.Array] = []
    pos = 0
    try:
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=wanted)
            end = pos + table.num_rows
            for name in codes:
                _append_codes(table.column(name), vocab[name], codes[name][pos:end], source, name)
            column = table.column(cols["time"])
            if numeric_time:
                time_numpy[pos:end], time_valid[pos:end] = _to_numpy(column, time_numpy.dtype)
            else:
                time_chunks.extend(column.chunks)
            del table, column
            pos = end
    except pa.ArrowException as exc:
        raise PrepareError(f"{source}: cannot read Parquet ({_one_line(exc)})") from None
    pa.default_memory_pool().release_unused()  # give the decoding buffers back before numpy work
    text = {name: pa.DictionaryArray.from_arrays(pa.array(codes[name]), pa.array(list(vocab[name]), pa.string()))
            for name in codes}
    del codes
    if numeric_time:
        time = _OwnedTimes(time_numpy, time_valid)
    else:
        time = pa.chunked_array(time_chunks, type=time_type)
    return {k: (time if k == "time" else text[v]) for k, v in cols.items()}


def _string_dictionary(values, source: str, what: str):
    """A text column (Array or ChunkedArray) as a dictionary of strings; one-line error if not UTF-8 text."""
    typ = values.type
    try:
        if not pa.types.is_dictionary(typ):
            if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
                values = values.cast(pa.string())
            return pc.dictionary_encode(values)
        if not (pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type)):
            values = values.cast(pa.dictionary(typ.index_type, pa.string()))
    except pa.ArrowException as exc:
        raise PrepareError(f"{source}: column '{what}' ({typ}) cannot be read as UTF-8 text "
                           f"({_one_line(exc)})") from None
    return values


def _append_codes(column: pa.ChunkedArray, vocab: dict, out: np.ndarray, source: str, what: str) -> None:
    """Codes of one row group's text column into ``out``; ``vocab`` (value -> code, insertion
    ordered, None for null) grows across row groups."""
    pos = 0
    for chunk in column.chunks:
        chunk = _string_dictionary(chunk, source, what)
        dictionary = chunk.dictionary
        lut = np.fromiter((vocab.setdefault(v, len(vocab)) for v in dictionary.to_pylist()),
                          dtype=np.int32, count=len(dictionary))
        indices = chunk.indices
        if indices.null_count:
            lut = np.append(lut, np.int32(vocab.setdefault(None, len(vocab))))
            indices = pc.fill_null(indices, -1)
        end = pos + len(indices)
        _take_blocked(lut, indices.to_numpy(zero_copy_only=False), out[pos:end])
        pos = end


def _read_csv(path: Path, source: str, cols: dict[str, str], delimiter: str) -> dict[str, pa.ChunkedArray]:
    import pyarrow.csv as pcsv

    header = _csv_header(path, source, delimiter)
    _missing_columns_error(source, cols, header)
    types = {cols[k]: _DICT for k in ("user", "place", "behavior")}
    types[cols["time"]] = pa.string()  # never let arrow guess: it would turn offsets into UTC
    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=1 << 24),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(include_columns=list(dict.fromkeys(cols.values())),
                                                column_types=types, strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "utf8" in str(exc).lower():
            _raise_bad_utf8(path, source, header_lines=1)
        raise PrepareError(f"{source}: {_one_line(exc)}") from None
    return {k: table.column(v) for k, v in cols.items()}


def _csv_header(path: Path, source: str, delimiter: str) -> list[str]:
    with open(path, "rb") as f:
        first = f.readline()
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PrepareError(f"{source}: header (line 1, byte {exc.start}): not valid UTF-8") from None
    row = next(csv.reader([line], delimiter=delimiter), [])
    return [name.strip() for name in row]


def _raise_bad_utf8(path: Path, source: str, header_lines: int) -> None:
    offset = 0
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PrepareError(f"{source}: row {line_no - header_lines}: not valid UTF-8 "
                                   f"(line {line_no}, byte offset {offset + exc.start})") from None
            offset += len(line)
    raise PrepareError(f"{source}: not valid UTF-8")


def _read_jsonl(path: Path, source: str, cols: dict[str, str]):
    """Line by line (JSONL may mix number and string types per row); slower than the Parquet path."""
    values: dict[str, list] = {k: [] for k in CANONICAL}
    line_numbers: list[int] = []
    blank = 0
    offset = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise PrepareError(f"{source}: row {line_no}: not valid UTF-8 "
                                   f"(line {line_no}, byte offset {offset + exc.start})") from None
            offset += len(raw)
            if not line.strip():
                blank += 1
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PrepareError(f"{source}: row {line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise PrepareError(f"{source}: row {line_no}: expected one JSON object a line, "
                                   f"got {type(obj).__name__}")
            if not line_numbers:
                _missing_columns_error(source, cols, list(obj))
            for key in CANONICAL:
                name = cols[key]
                if name not in obj:
                    raise PrepareError(f"{source}: row {line_no}: missing key '{name}'; keys found: {', '.join(obj)}")
                values[key].append(_json_scalar(obj[name], source, line_no, name))
            line_numbers.append(line_no)
    data = {k: pa.chunked_array([pa.array(v, type=pa.string())]) for k, v in values.items()}
    return data, np.asarray(line_numbers, dtype=np.int64), blank


def _json_scalar(value: Any, source: str, line_no: int, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PrepareError(f"{source}: row {line_no}: field '{name}' must be a string or a number, "
                           f"got {json.dumps(value)}")
    return repr(value) if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- time

_ISO = re.compile(
    r"^\s*(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ](?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:[.,]\d+)?)?\s*(?P<z>[Zz]|[+-]\d{2}(?::?\d{2})?)?\s*$")
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


def parse_times(values, tz: str | None = None, source: str = "<times>") -> tuple[np.ndarray, np.ndarray, dict]:
    """Raw timestamps -> (local-epoch int64 seconds, valid mask, notes) by the module's timezone rule.

    ``values``: a pyarrow (Chunked)Array or anything ``pa.array`` accepts (ISO strings, epoch numbers).
    """
    if isinstance(values, _OwnedTimes):  # numeric times the Parquet reader already copied: reuse them
        local, ok = _epoch_to_local(values.values, values.valid, tz, source)
        typ, counts = None, {"epoch": int(local.size)}
    else:
        arr = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array(
            [values if isinstance(values, pa.Array) else pa.array(values)])
        typ = arr.type
        if pa.types.is_dictionary(typ):
            arr, typ = arr.cast(typ.value_type), typ.value_type
        n = len(arr)
        counts = {}
    if typ is None:
        pass
    elif pa.types.is_timestamp(typ):
        raw, ok = _to_numpy(arr.cast(pa.int64()), np.int64)
        secs = np.floor_divide(raw, {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[typ.unit], out=raw)
        if typ.tz is None:
            local = secs
            counts["naive_timestamp"] = n
        else:
            local = _utc_to_local(secs, tz if tz is not None else typ.tz, source)
            counts["zoned_timestamp"] = n
    elif pa.types.is_integer(typ) or pa.types.is_floating(typ):
        raw, ok = _to_numpy(arr, np.float64 if pa.types.is_floating(typ) else np.int64)
        local, ok = _epoch_to_local(raw, ok, tz, source)
        counts["epoch"] = n
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
        local, ok, counts = _strings_to_local(arr.combine_chunks(), tz, source)
    elif pa.types.is_null(typ):
        local, ok = np.zeros(n, np.int64), np.zeros(n, bool)
    else:
        raise PrepareError(f"{source}: timestamp column has type {typ}; expected ISO-8601 strings or epoch seconds")
    ok &= local >= MIN_TIME
    ok &= local < MAX_TIME
    local[~ok] = 0
    return local, ok, {"time_formats": counts, "tz": tz}


@dataclass
class _OwnedTimes:
    """Numeric epoch times in a numpy array nobody else holds, so parsing may work in place."""

    values: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return int(self.values.size)

    def __getitem__(self, index: int):
        return pa.scalar(self.values[index].item() if self.valid[index] else None)


def _to_numpy(arr: pa.ChunkedArray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """One writeable numpy copy (nulls -> 0) and the valid mask, filled chunk by chunk."""
    out = np.empty(len(arr), dtype)
    ok = np.ones(len(arr), bool)
    pos = 0
    for chunk in arr.chunks:
        end = pos + len(chunk)
        if chunk.null_count:
            ok[pos:end] = chunk.is_valid().to_numpy(zero_copy_only=False)
            chunk = pc.fill_null(chunk, 0)
        out[pos:end] = chunk.to_numpy(zero_copy_only=False)
        pos = end
    return out, ok


def _epoch_to_local(raw: np.ndarray, ok: np.ndarray, tz: str | None, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds (int or float; fractions floored) -> local-epoch seconds; may reuse ``raw``."""
    if raw.dtype.kind == "f":
        ok &= np.isfinite(raw) & (np.abs(raw) < 9e18)
        secs = np.floor(np.where(ok, raw, 0)).astype(np.int64)
    else:
        secs = raw.astype(np.int64, copy=False)
    looks_ms = np.count_nonzero(ok & (secs > MILLISECOND_HINT))
    if looks_ms and looks_ms * 2 > np.count_nonzero(ok):
        example = int(secs[ok & (secs > MILLISECOND_HINT)][0])
        raise PrepareError(f"{source}: epoch timestamps look like milliseconds (e.g. {example}); expected seconds")
    return _utc_to_local(secs, tz, source), ok


_FIXED_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


def _utc_to_local(secs: np.ndarray, tz: str | None, source: str) -> np.ndarray:
    """UTC epoch seconds -> local wall time in ``tz`` (IANA name or fixed offset); may modify ``secs``."""
    if tz is None or tz.strip().upper() in ("UTC", "Z", "GMT"):
        return secs
    fixed = _FIXED_OFFSET.match(tz.strip())
    if fixed:
        sign = 1 if fixed.group(1) == "+" else -1
        hours, minutes = int(fixed.group(2)), int(fixed.group(3) or 0)
        if hours > 14 or minutes > 59:
            raise PrepareError(f"{source}: timezone '{tz}' is not a valid UTC offset")
        secs += sign * (hours * 3600 + minutes * 60)
        return secs
    import pandas as pd
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise PrepareError(f"{source}: unknown timezone '{tz}' (use an IANA name such as Asia/Shanghai "
                           f"or an offset such as +08:00)") from None
    # Clip so pandas' nanosecond range never overflows; out-of-range values are rejected later anyway.
    inside = (secs >= MIN_TIME - 86_400) & (secs <= MAX_TIME + 86_400)
    clipped = np.where(inside, secs, 0).astype("datetime64[s]")
    index = pd.DatetimeIndex(clipped).tz_localize("UTC").tz_convert(zone).tz_localize(None)
    local = index.as_unit("s").asi8.astype(np.int64)
    local[~inside] = secs[~inside]
    return local


def _strings_to_local(arr: pa.Array, tz: str | None, source: str):
    n = len(arr)
    local = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    counts: dict[str, int] = {}
    # Fast path: a column of integer strings (typical CSV epoch) casts in one go.
    try:
        ints = pc.cast(pc.utf8_trim_whitespace(arr), pa.int64())
        if ints.null_count == 0:
            local, ok = _epoch_to_local(ints.to_numpy().copy(), np.ones(n, bool), tz, source)
            return local, ok, {"epoch": n}
    except pa.ArrowInvalid:
        pass
    filled = pc.fill_null(arr, "")
    is_number = pc.match_substring_regex(filled, _NUMBER).to_numpy(zero_copy_only=False)
    if is_number.any():
        idx = np.flatnonzero(is_number)
        numbers = pc.cast(pc.utf8_trim_whitespace(filled.take(pa.array(idx))), pa.float64())
        local[idx], ok[idx] = _epoch_to_local(numbers.to_numpy(zero_copy_only=False), np.ones(idx.size, bool),
                                              tz, source)
        counts["epoch"] = int(idx.size)
    rest = np.flatnonzero(~is_number)
    if rest.size:
        parts = pc.extract_regex(filled.take(pa.array(rest)), _ISO.pattern)
        matched = parts.is_valid().to_numpy(zero_copy_only=False)
        rest, parts = rest[matched], parts.filter(pa.array(matched))
        if rest.size:
            def field_(name: str) -> np.ndarray:
                col = pc.struct_field(parts, name)
                col = pc.if_else(pc.equal(col, ""), "0", col)
                return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False)

            y, mo, d, h, mi, s = (field_(k) for k in ("y", "mo", "d", "h", "mi", "s"))
            zone = pc.struct_field(parts, "z").to_numpy(zero_copy_only=False).astype(str)
            fields_ok = ((mo >= 1) & (mo <= 12) & (d >= 1) & (d <= _days_in_month(y, np.clip(mo, 1, 12)))
                         & (h <= 23) & (mi <= 59) & (s <= 59))
            wall = _days_from_civil(y, np.clip(mo, 1, 12), d) * 86_400 + h * 3_600 + mi * 60 + s
            is_utc = np.char.upper(zone) == "Z"
            has_offset = (zone != "") & ~is_utc
            if is_utc.any():
                wall[is_utc] = _utc_to_local(wall[is_utc], tz, source)
            local[rest], ok[rest] = wall, fields_ok
            for name, mask in (("iso_offset", has_offset), ("iso_utc", is_utc), ("iso_naive", zone == "")):
                if mask.any():
                    counts[name] = int(np.count_nonzero(mask))
    return local, ok, counts


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), vectorized."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _days_in_month(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[m]
    return days + ((m == 2) & leap)


# ----------------------------------------------------------------------------- finishing step

def events_from_arrays(user, time, place, behavior, *, label_map: Mapping[str, str] | None = None,
                       strict_labels: bool = False, reject: Mapping[str, np.ndarray] | None = None,
                       dropped: dict[str, int] | None = None, notes: dict | None = None,
                       source: str = "<arrays>", row_numbers: np.ndarray | None = None) -> EventTable:
    """The shared finishing step: encode, validate, map labels, sort by (user, time) and de-duplicate.

    ``user``/``place``/``behavior``: sequences of str (None = empty), numpy arrays, or pyarrow
    (Chunked)Arrays, dictionary-encoded ones included (the cheap way to pass codes:
    ``pa.DictionaryArray.from_arrays(codes, names)``). ``time``: local-epoch int64 seconds.
    ``reject``: reason -> bool mask of rows the caller rejects (e.g. ``{"bad_timestamp": ~ok}``); they
    are dropped and counted under that reason (after ``empty_user``, in the mapping's order), and their
    ``time`` may hold anything. ``dropped``/``notes``: counts and notes to start from.
    ``row_numbers``: the row number each row has in the source (default: position + 1), for errors.
    """
    columns = {"user": user, "time": time, "place": place, "behavior": behavior}
    del user, time, place, behavior
    return _finish(columns, label_map=label_map, strict_labels=strict_labels, reject=reject,
                   dropped=dropped, notes=notes, source=source, row_numbers=row_numbers)


def _finish(columns: dict, *, label_map, strict_labels, reject, dropped, notes, source,
            row_numbers) -> EventTable:
    """events_from_arrays on a dict it may empty: each input column is released as soon as it is
    encoded, so peak memory stays near 30 bytes an event."""
    dropped = dict(dropped or {})
    notes = dict(notes or {})
    time = np.asarray(columns.pop("time"))
    if time.dtype.kind == "M":
        time = time.astype("datetime64[s]").astype(np.int64)
    time = time.astype(np.int64, copy=False)
    n = time.shape[0]
    notes.setdefault("rows_read", n)
    notes.setdefault("source", source)

    user_chunks, user_values = _dictionary(columns.pop("user"), n, source, "user")
    user_ids, lut = _lookup([_clean(v) for v in user_values])
    u = _gather(user_chunks, lut, n)
    del user_chunks

    place_chunks, place_values = _dictionary(columns.pop("place"), n, source, "place")
    places, lut = _lookup([_clean(v) for v in place_values])  # empty places are code -1 for now
    p = _gather(place_chunks, lut, n)
    del place_chunks

    behavior_chunks, behavior_values = _dictionary(columns.pop("behavior"), n, source, "behavior")
    raw_labels = [_clean(v) for v in behavior_values]
    if label_map is not None:
        cleaned_map = {str(k).strip(): str(v).strip() for k, v in label_map.items()}
        mapped = [cleaned_map.get(v, _NOT_IN_MAP) if v else "" for v in raw_labels]
    else:
        mapped = raw_labels
    behaviors, lut = _lookup(mapped)
    b = _gather(behavior_chunks, lut, n)
    if label_map is not None and strict_labels:
        outside = np.flatnonzero(b == _CODE_NOT_IN_MAP)
        if outside.size:
            first = int(outside[0])
            row = int(row_numbers[first]) if row_numbers is not None else first + 1
            raise PrepareError(f"{source}: row {row}: label '{_clean(behavior_chunks[first].as_py())}' is not "
                               f"in the label map ({outside.size} rows have labels outside it)")
    del behavior_chunks

    # Each dropped row is counted once, under the first reason that applies.
    ok = np.ones(n, bool)
    reasons = [("empty_user", u == _CODE_EMPTY)]
    reasons += [(reason, np.asarray(mask, bool)) for reason, mask in (reject or {}).items()]
    reasons += [("empty_label", b == _CODE_EMPTY), ("label_not_in_map", b == _CODE_NOT_IN_MAP)]
    for reason, bad in reasons:
        if bad.shape != (n,):
            raise PrepareError(f"{source}: reject mask '{reason}' has shape {bad.shape}, expected ({n},)")
        count = int(np.count_nonzero(bad & ok))
        if count:
            dropped[reason] = dropped.get(reason, 0) + count
            ok &= ~bad
    del reasons, bad
    if not ok.all():
        u, time, p, b = u[ok], time[ok], p[ok], b[ok]
    del ok
    if u.size == 0:
        raise PrepareError(f"{source}: no events left after dropping rows ({_fmt_counts(dropped)})")

    user_ids, u = _compact(user_ids, u)
    behaviors, b = _compact(behaviors, b)
    filled_code = len(places)  # empty places get their own code until de-duplication is done
    p[p == _CODE_EMPTY] = filled_code
    arrays = [u, time, p, b]
    del u, time, p, b  # _sort_and_dedup releases each column once it is packed into the sort key
    u, time, p, b, n_dup, sort_notes = _sort_and_dedup(arrays, len(user_ids), len(places) + 1, len(behaviors))
    if n_dup:
        dropped["duplicate_event"] = dropped.get("duplicate_event", 0) + n_dup
    notes.update(sort_notes)
    places, p = _fill_unknown_place(places, p, filled_code, notes)
    places, p = _compact(places, p)
    notes["events"] = int(u.size)
    return EventTable(user=u, user_ids=user_ids, time=time, place=p, places=places,
                      behavior=b, behaviors=behaviors, dropped=dropped, notes=notes)


def _fill_unknown_place(places: list[str], p: np.ndarray, filled_code: int, notes: dict):
    """Rows whose place was empty (code ``filled_code``) become UNKNOWN_PLACE, counted in notes."""
    filled = p == filled_code
    count = int(np.count_nonzero(filled))
    if not count:
        return places, p
    notes.setdefault("filled", {})["empty_place"] = count
    if UNKNOWN_PLACE in places:
        p[filled] = places.index(UNKNOWN_PLACE)
        return places, p
    at = bisect.bisect_left(places, UNKNOWN_PLACE)
    p[p >= at] += 1  # also moves filled_code out of the way; reset just below
    p[filled] = at
    return places[:at] + [UNKNOWN_PLACE] + places[at:], p


_CODE_EMPTY, _CODE_NOT_IN_MAP = -1, -2
_NOT_IN_MAP = object()


def _clean(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())


def _lookup(names: list) -> tuple[list[str], np.ndarray]:
    """Dictionary entries -> (sorted distinct names, lut). lut maps entry index -> code; the extra
    last slot answers index -1 (null) with _CODE_EMPTY."""
    distinct = sorted({v for v in names if isinstance(v, str) and v})
    code = {v: i for i, v in enumerate(distinct)}
    lut = np.fromiter((code[v] if isinstance(v, str) and v else (_CODE_NOT_IN_MAP if v is _NOT_IN_MAP else _CODE_EMPTY)
                       for v in names), dtype=np.int32, count=len(names))
    return distinct, np.append(lut, np.int32(_CODE_EMPTY))


def _compact(names: list[str], codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Drop names no kept row uses, keeping sorted order."""
    used = np.bincount(codes, minlength=len(names)) > 0
    if used.all():
        return names, codes
    remap = np.cumsum(used, dtype=np.int32) - 1
    return [name for name, u in zip(names, used) if u], remap[codes]


def _dictionary(values, n: int, source: str, what: str) -> tuple[pa.ChunkedArray, list]:
    """Any text column -> (dictionary ChunkedArray whose chunks share one dictionary, its values)."""
    if isinstance(values, pa.ChunkedArray):
        chunks = values
    elif isinstance(values, pa.Array):
        chunks = pa.chunked_array([values])
    else:
        array = np.asarray(values)
        if array.dtype.kind in "iufb":
            array = array.astype(str)
        chunks = pa.chunked_array([pa.array(array.tolist() if array.dtype.kind == "O" else array,
                                            type=pa.string())])
    if len(chunks) != n:
        raise PrepareError(f"{source}: column '{what}' has {len(chunks)} rows, expected {n}")
    chunks = _string_dictionary(chunks, source, what)
    if chunks.num_chunks > 1:
        chunks = pa.table({"c": chunks}).unify_dictionaries().column("c")
    if chunks.num_chunks == 0:
        return chunks, []
    return chunks, chunks.chunk(0).dictionary.to_pylist()


def _gather(chunks: pa.ChunkedArray, lut: np.ndarray, n: int) -> np.ndarray:
    """lut[dictionary index] for every row, chunk by chunk (index -1 = null picks lut's last slot)."""
    out = np.empty(n, lut.dtype)
    pos = 0
    for chunk in chunks.chunks:
        indices = chunk.indices
        if indices.null_count:
            indices = pc.fill_null(indices, -1)
        end = pos + len(indices)
        _take_blocked(lut, indices.to_numpy(zero_copy_only=False), out[pos:end])
        pos = end
    return out


def _take_blocked(lut: np.ndarray, indices: np.ndarray, out: np.ndarray, block: int = 1 << 22) -> None:
    """out[:] = lut[indices] in blocks: np.take would first copy all indices to int64."""
    for start in range(0, indices.size, block):
        out[start:start + block] = lut[indices[start:start + block]]


def _sort_and_dedup(arrays: list[np.ndarray], n_users: int, n_places: int, n_behaviors: int):
    """Sort rows by (user, time, behavior, place) and drop repeated (user, time, behavior) rows,
    keeping the one with the smallest place code. ``arrays`` is [user, time, place, behavior] and is
    emptied. Returns (u, time, p, b, duplicates, notes).

    Speed and memory: the four columns are packed into one int64 key, sorted by value (numpy's SIMD
    sort, ~10x faster than an argsort) and unpacked, so no permutation array is ever built. Which
    duplicate survives therefore depends on the place, never on the file's row order."""
    u, time = arrays[0], arrays[1]
    n = u.size
    tmin = int(time.min())
    span = int(time.max()) - tmin + 1
    nb, npl = max(n_behaviors, 1), max(n_places, 1)
    if n_users * span * nb * npl >= 2 ** 62:  # enormous time spans: the packed key would overflow
        return _sort_and_dedup_lexsort(*arrays)
    key = u.astype(np.int64)
    del u, time
    key *= span
    key += arrays[1]
    key -= tmin
    arrays[:2] = [None, None]
    out_of_order = int(np.count_nonzero(key[1:] < key[:-1]))
    key *= nb
    key += arrays[3]
    arrays[3] = None
    key *= npl
    key += arrays[2]
    arrays.clear()
    if np.count_nonzero(key[1:] < key[:-1]):
        key.sort()
    p = np.remainder(key, npl, out=np.empty(n, np.int32), casting="unsafe")
    key //= npl
    unique = np.empty(n, bool)
    unique[0] = True
    np.not_equal(key[1:], key[:-1], out=unique[1:])
    n_dup = int(n - np.count_nonzero(unique))
    if n_dup:
        key, p = key[unique], p[unique]
    del unique
    b = np.remainder(key, nb, out=np.empty(key.size, np.int32), casting="unsafe")
    key //= nb
    time = key % span
    time += tmin
    key //= span
    u = key.astype(np.int32)
    return u, time, p, b, n_dup, {"input_sorted": out_of_order == 0, "out_of_order_rows": out_of_order}


def _sort_and_dedup_lexsort(u, time, p, b):
    back = (u[1:] < u[:-1]) | ((u[1:] == u[:-1]) & (time[1:] < time[:-1]))
    out_of_order = int(np.count_nonzero(back))
    order = np.lexsort((p, b, time, u))
    u, time, p, b = u[order], time[order], p[order], b[order]
    unique = np.empty(u.size, bool)
    unique[0] = True
    unique[1:] = (u[1:] != u[:-1]) | (time[1:] != time[:-1]) | (b[1:] != b[:-1])
    n_dup = int(u.size - np.count_nonzero(unique))
    if n_dup:
        u, time, p, b = u[unique], time[unique], p[unique], b[unique]
    return u, time, p, b, n_dup, {"input_sorted": out_of_order == 0, "out_of_order_rows": out_of_order}


# ----------------------------------------------------------------------------- helpers

def _read_text(path: Path) -> str:
    if not path.is_file():
        raise PrepareError(f"{path}: no such file")
    data = path.read_bytes()
    if not data.strip():
        raise PrepareError(f"{path}: file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PrepareError(f"{path}: line {line}: not valid UTF-8 (byte offset {exc.start})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _fmt_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "nothing dropped"
