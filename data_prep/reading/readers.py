"""The CSV / TSV and JSONL readers, and format detection (rules: :mod:`data_prep.reading.events`).

Each reader returns the four canonical columns as Arrow arrays (text as strings or dictionaries, time as
raw strings), plus what the caller needs to name rows in errors.
"""
from __future__ import annotations

import contextlib
import csv
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from data_prep.encoding.table import CANONICAL, SCHEMA_COLUMNS
from data_prep.errors import PrepareError, one_line
from data_prep.reading.labels import number_text, refuse_surrogates

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}
# a compressed export (events.csv.gz) is read as its plain file, decompressed by pyarrow's input streams
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
_DICT = pa.dictionary(pa.int32(), pa.string())
JSONL_BLOCK = 1 << 16   # rows read as Python values before they become Arrow text


def compression_of(name) -> str | None:
    """pyarrow's codec of a compressed file name (events.csv.gz -> gzip), else None."""
    return COMPRESSIONS.get(Path(str(name)).suffix.lower())


def plain_suffix(name) -> str:
    """The extension of the file once decompressed (events.csv.gz -> .csv)."""
    path = Path(str(name))
    return Path(path.stem).suffix if compression_of(path) else path.suffix


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        if fmt not in set(FORMATS.values()):
            raise PrepareError(f"{path}: unknown format '{fmt}' (expected one of csv, tsv, jsonl, parquet)")
        return fmt
    suffix = plain_suffix(path)
    found = FORMATS.get(suffix.lower())
    if found is None:
        raise PrepareError(f"{path}: cannot tell the format from the extension '{suffix}' (use .csv, .tsv, "
                           f".jsonl or .parquet, each also compressed as .gz, .bz2 or .zst, or pass the format)")
    return found


@contextlib.contextmanager
def decompressed(name: str, stream=None):
    """A temporary plain copy of the file `name` (its compression from the extension; `stream`: an open
    pyarrow input stream of it, an object store's, else the local file), removed afterwards."""
    suffix = plain_suffix(name)
    with tempfile.TemporaryDirectory(prefix="prepare-input-") as tmp:
        local = Path(tmp) / f"input{suffix}"
        try:
            with (stream or pa.input_stream(name, compression=compression_of(name))) as src, \
                    open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
        except (OSError, pa.ArrowException) as exc:
            raise PrepareError(f"{name}: cannot read ({one_line(exc)})") from None
        yield local


def missing_columns_error(source: str, cols: dict[str, str], found: list[str]) -> None:
    missing = [(k, v) for k, v in cols.items() if v not in found]
    if missing:
        what = ", ".join(f"'{v}'" + ("" if SCHEMA_COLUMNS[k] == v else f" (mapped from {k})")
                         for k, v in missing)
        raise PrepareError(f"{source}: missing column {what}; columns found: {', '.join(found) or '(none)'}")



def read_csv(path: Path, source: str, cols: dict[str, str], delimiter: str) -> dict[str, pa.ChunkedArray]:
    import pyarrow.csv as pcsv

    header = _csv_header(path, source, delimiter)
    missing_columns_error(source, cols, header)
    if not _has_data_after_header(path):
        raise PrepareError(f"{source}: no events (the file has no data rows)")
    types = {cols[k]: _DICT for k in ("user", "place", "behavior")}
    types[cols["time"]] = pa.string()  # never let arrow guess: it would turn offsets into UTC
    convert = pcsv.ConvertOptions(include_columns=list(dict.fromkeys(cols.values())), column_types=types,
                                  strings_can_be_null=False)
    # The fast reader splits the file at newlines; a quoted newline that falls on a block boundary (16 MiB)
    # breaks that, so any structural error is retried once with newlines inside quoted values allowed.
    for newlines_in_values in (False, True):
        try:
            table = pcsv.read_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 24),
                                  parse_options=pcsv.ParseOptions(delimiter=delimiter,
                                                                  newlines_in_values=newlines_in_values),
                                  convert_options=convert)
            return {k: table.column(v) for k, v in cols.items()}
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc) or "utf8" in str(exc).lower():
                _raise_bad_utf8(path, source, header_lines=1)
            error = exc
    _raise_csv_structure(path, source, delimiter, len(header))
    raise PrepareError(f"{source}: {one_line(error)}")


def iter_csv(path: Path, source: str, cols: dict[str, str], delimiter: str, block_bytes: int):
    """The four columns of a CSV / TSV file, read_csv's types, one record batch (about `block_bytes` of the
    file) at a time; newlines inside quoted values are allowed at any block boundary."""
    import pyarrow.csv as pcsv

    header = _csv_header(path, source, delimiter)
    missing_columns_error(source, cols, header)
    types = {cols[k]: _DICT for k in ("user", "place", "behavior")}
    types[cols["time"]] = pa.string()
    convert = pcsv.ConvertOptions(include_columns=list(dict.fromkeys(cols.values())), column_types=types,
                                  strings_can_be_null=False)
    with pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=block_bytes),
                       parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                       convert_options=convert) as reader:
        for batch in reader:
            if batch.num_rows:
                yield {k: batch.column(v) for k, v in cols.items()}


def _has_data_after_header(path: Path) -> bool:
    """Whether anything but whitespace follows the header line (a header-only file may lack its newline)."""
    with open(path, "rb") as f:
        f.readline()
        while block := f.read(1 << 16):
            if block.strip():
                return True
    return False


def _raise_csv_structure(path: Path, source: str, delimiter: str, n_fields: int) -> None:
    """Find the first record whose field count differs from the header's (records may span lines)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        record = 0
        try:
            next(reader, None)
            for row in reader:
                if not row:   # blank lines are not records (the fast reader skips them too)
                    continue
                record += 1
                if len(row) != n_fields:
                    raise PrepareError(f"{source}: row {record}: expected {n_fields} fields (as in the header), "
                                       f"got {len(row)} (line {reader.line_num})")
        except csv.Error as exc:
            raise PrepareError(f"{source}: row {record + 1}: {one_line(exc)} (line {reader.line_num})") from None
        except UnicodeDecodeError:
            _raise_bad_utf8(path, source, header_lines=1)


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


def read_events_jsonl(path: Path, source: str, cols: dict[str, str]):
    """Line by line (JSONL may mix number and string types per row); slower than the Parquet path. Every
    JSONL_BLOCK rows the values become Arrow text (a few bytes a value instead of a Python object each)."""
    counts = {"blank": 0}
    blocks: dict[str, list] = {k: [pa.array([], type=pa.string())] for k in CANONICAL}
    number_blocks: list[np.ndarray] = [np.empty(0, np.int64)]
    for block, line_numbers in iter_events_jsonl(path, source, cols, JSONL_BLOCK, counts):
        for key, column in block.items():
            blocks[key].append(column)
        number_blocks.append(line_numbers)
    data = {k: pa.chunked_array([pa.concat_arrays(v)]) for k, v in blocks.items()}
    return data, np.concatenate(number_blocks), counts["blank"]


def iter_events_jsonl(path: Path, source: str, cols: dict[str, str], block: int, counts: dict):
    """The rows of a JSONL file in blocks of `block` rows: (column -> Arrow text, line numbers); blank
    lines are counted in counts["blank"]."""
    values: dict[str, list] = {k: [] for k in CANONICAL}
    line_numbers: list[int] = []
    first = True
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
                counts["blank"] += 1
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PrepareError(f"{source}: row {line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise PrepareError(f"{source}: row {line_no}: expected one JSON object a line, "
                                   f"got {type(obj).__name__}")
            if first:   # the first row names the columns
                missing_columns_error(source, cols, list(obj))
                first = False
            for key in CANONICAL:
                name = cols[key]
                if name not in obj:
                    raise PrepareError(f"{source}: row {line_no}: missing key '{name}'; keys found: {', '.join(obj)}")
                value = _json_scalar(obj[name], source, line_no, name)
                if "\\u" in line and isinstance(value, str):   # only a \u escape can make a lone surrogate
                    refuse_surrogates(value, f"{source}: row {line_no}: field '{name}'")
                values[key].append(value)
            line_numbers.append(line_no)
            if len(line_numbers) == block:
                yield _close_block(values, line_numbers)
    if line_numbers:
        yield _close_block(values, line_numbers)


def _close_block(values: dict, line_numbers: list) -> tuple[dict, np.ndarray]:
    """The rows read since the last block, as Arrow text and a numpy array of line numbers."""
    block = {key: pa.array(column, type=pa.string()) for key, column in values.items()}
    for column in values.values():
        column.clear()
    numbers = np.asarray(line_numbers, dtype=np.int64)
    line_numbers.clear()
    return block, numbers


def _json_scalar(value: Any, source: str, line_no: int, name: str) -> str | None:
    """A JSON value as text: NaN / Infinity (as json.dumps writes a missing number) are null, and a float
    holding a whole number is written as the integer, as the Parquet reader writes it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PrepareError(f"{source}: row {line_no}: field '{name}' must be a string or a number, "
                           f"got {json.dumps(value)}")
    return number_text(value)


