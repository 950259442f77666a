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
line (~4 s per million rows) because its rows may mix number and string types. A compressed file
(``events.csv.gz``, ``.bz2``, ``.zst``) is decompressed by pyarrow's input streams into a temporary plain
file and read as that file (errors and notes name the compressed one).

Timezone rule
-------------
``EventTable.time`` is the event's LOCAL wall-clock time written as if it were a UTC epoch, so
weekday and hour come out of plain UTC arithmetic (see :func:`weekday_of`, :func:`hour_of`).

* naive ISO-8601 (``2024-03-01 08:00:00``): already local, taken as written, with or without ``tz``.
* Timestamps that name their instant: ISO-8601 with an offset (``2024-03-01T08:00:00+08:00``) or ``Z``,
  epoch seconds (int, float or a numeric string; fractions are floored), zone-aware Parquet timestamps.
  With ``tz`` (IANA name such as ``Asia/Shanghai``, or a fixed offset such as ``+08:00``) every one of
  them is converted to that zone's local time. Without ``tz`` an offset keeps the wall time written at
  it (the event's own local time, 08:00 here), ``Z`` and epoch seconds stay UTC, and a zone-aware
  Parquet column uses its own zone. So ``Z`` and ``+00:00`` are the same instant either way (a pandas
  UTC frame written to CSV and to JSONL gives the same times).
* One file uses one kind: naive local times next to timestamps that name their instant are an error
  naming the first row of the smaller kind (they would be hours apart in ways no rule can guess).
* ISO needs at least hours and minutes (a date alone has no hour); fractional seconds are dropped; an
  offset beyond +-14:00 is a bad timestamp. Local times outside [1971, 2100) are bad timestamps
  (dropped: a 1900 or 3000 sentinel, epoch 0).
* Epoch numbers: when most of them look like milliseconds (above 1e11), or most fall before 1971 (a
  column of compact dates ``20240301`` or spreadsheet serial dates ``45352.35``, not epoch seconds), it
  is an error naming the first row and what the number looks like; a few such values are dropped as
  ``bad_timestamp``.

Timestamps written with a format
--------------------------------
``time_format`` (``--time-format``, ``TIME_FORMAT``; strptime syntax, as pandas' ``format=``) reads every
text or integer timestamp with that exact format (surrounding whitespace aside); a row that does not match
is a ``bad_timestamp``, and more than half of the non-empty rows not matching (or falling outside
1971-2099) is an error naming the first. The timezone rule above then applies: values without ``%z`` are
naive local times; with ``%z`` they name their instant. ``%Z`` (zone names) is refused; typed Parquet
timestamps are read as they are. Without ``time_format`` (details: :mod:`data_prep.reading.time_formats`):

* integers more than half of which are shaped like YYYYMMDDHH, YYYYMMDDHHMM or YYYYMMDDHHMMSS with a year in
  1971-2099 (a calendar slip such as 31 February or hour 24 keeps the shape) are an error naming the first
  row, its date, the ``TIME_FORMAT`` to set (``"%Y%m%d%H"``) and the rows that would not parse with it: such
  a column is never read as epoch seconds; epoch seconds (``1709280000``, the year 1709) never look compact.
* text columns more than half of whose non-empty values are neither ISO-8601 nor numbers and share one
  shape with digits in it are an error naming the first such row, its kind and the ``TIME_FORMAT`` to
  set: a slash date (``04/03/2024 07:00``) whose day and month order no row shows, or whose rows show
  both, names both orders; one that some row shows (a first field above 12: day first) names that one.
  A few such rows among ISO-8601 ones are dropped as ``bad_timestamp``.

Bad input (nothing is lost silently)
------------------------------------
Errors are :class:`PrepareError` with one line ``"<file>: row <n>: <problem>"`` (row n counts data
records from 1: CSV record n below the header (CSV errors also give the line), JSONL line n, Parquet
record n).

* missing or misnamed column -> error naming the file, the missing column and the columns found;
  ``columns`` mapping two fields to one column (``--columns place=behavior``) -> error.
* empty file, or a file with no data rows (a header-only CSV, with or without its final newline) ->
  error. Every row dropped -> error listing the counts.
* not UTF-8 (CSV/JSONL) -> error naming the file, the row, the line and the byte offset; a Parquet
  text column that is not UTF-8 -> error naming the file. A lone surrogate in JSONL (``"A \\ud83d"``, a
  cut emoji) or in a label map -> error naming the row (label map: the line), as it is not Unicode text.
* CSV record with a different number of fields than the header, JSONL line that is not a JSON object
  -> error with the row. CSV values may hold quoted newlines at any file size.
* ids: a user id that is an integer written as a float beyond 2**53 (``1.2345678901234568e+18``; digits
  lost, users merged) -> error. NaN / infinite ids and labels (Parquet floats, JSON ``NaN``) are missing
  values (so ``empty_user`` / ``empty_label``), never a user "nan"; a float holding a whole number is
  written as the integer (``12345.0`` -> ``"12345"``).
* labels: a behavior name containing ``", "`` (it separates the candidates in the prompt) or a behavior
  or place name over 200 characters -> error naming the row (rename with the label map).
* label map: a raw label outside the map is dropped and counted (``label_not_in_map``), or with
  ``strict_labels`` an error naming the first such row.

Dropped rows are counted in ``EventTable.dropped`` (reason -> rows); a row with several problems is
counted once, under the first reason of this order:
``empty_user`` (empty/null user id), ``bad_timestamp`` (unparseable or out of range; the first row
numbers and raw values are kept in ``notes["bad_timestamp_rows"]``/``["bad_timestamp_examples"]``,
values that are not JSON text or numbers written as text), ``empty_label`` (empty/null behavior),
``label_not_in_map``, ``duplicate_event`` (same user, local time and behavior as another row; the one
kept is the one whose place sorts first, so the result never depends on the file's row order).
Always ``notes["rows_read"] == len(table) + sum(dropped.values())``; `prepare` prints one warning line
(also in stats.json ``warnings``) when more than 2 % of the rows were dropped.

Kept but changed, counted in ``notes``: an empty place becomes ``"unknown"``
(``notes["filled"]["empty_place"]``); surrounding whitespace is stripped from every text field;
behavior and place names are normalized to Unicode NFC, so NFC and NFD spellings of "Café" are one
label (rows changed: ``notes["text_fixed"]["behavior_nfc"]`` / ``["place_nfc"]``), and every run of
newlines, other control characters and line/paragraph separators inside them becomes one space
(``["behavior_line_breaks"]`` / ``["place_line_breaks"]``); unsorted input is sorted by (user, time,
behavior, place) (``notes["input_sorted"]`` is False and ``notes["out_of_order_rows"]`` counts the
rows where the file's (user, time) order steps back).
Blank JSONL lines are skipped and counted (``notes["blank_lines"]``).
Users with too few events are not this module's business (the sample builder drops and counts them).

Where the code lives
--------------------
This module is the entry point (:func:`load_events`) and the contract above. The work is split by job:
:mod:`data_prep.config` (the ``--columns`` map), :mod:`data_prep.reading.labels` (label text, the ``--label-map``
file), :mod:`data_prep.reading.readers` (CSV/TSV, JSONL, format detection), :mod:`data_prep.reading.parquet`
(Parquet), :mod:`data_prep.reading.timestamps` (the timezone rule), :mod:`data_prep.encoding.encode` (codes, drops,
sort and de-duplication into :class:`data_prep.encoding.table.EventTable`), :mod:`data_prep.reading.foursquare`
(the TSMC2014 importer).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from data_prep.config import parse_columns_option, resolve_columns
from data_prep.encoding.encode import encode_rows, events_from_arrays, finish_rows
from data_prep.encoding.table import CANONICAL, SCHEMA_COLUMNS, UNKNOWN_PLACE, EventTable, hour_of, weekday_of
from data_prep.errors import MAX_EXAMPLES, PrepareError
from data_prep.reading.foursquare import load_foursquare
from data_prep.reading.labels import load_label_map
from data_prep.reading.parquet import read_parquet
from data_prep.reading.readers import FORMATS, compression_of, decompressed, detect_format, read_csv, read_events_jsonl
from data_prep.reading.time_rules import refuse_bad_share, refuse_future
from data_prep.reading.timestamps import MAX_TIME, MIN_TIME, parse_times

__all__ = ["CANONICAL", "FORMATS", "MAX_EXAMPLES", "MAX_TIME", "MIN_TIME", "SCHEMA_COLUMNS", "UNKNOWN_PLACE",
           "EventTable", "PrepareError", "events_from_arrays", "hour_of", "load_events", "load_foursquare",
           "load_label_map", "parse_columns_option", "parse_times", "weekday_of"]


def load_events(path: str | os.PathLike, fmt: str | None = None, columns: Mapping[str, str] | None = None,
                label_map: Mapping[str, str] | None = None, tz: str | None = None,
                strict_labels: bool = False, time_format: str | None = None,
                allow_bad_timestamps: bool = False, source: str | None = None,
                future: bool = False) -> EventTable:
    """Read an event log (CSV / TSV / JSONL / Parquet, each also compressed: .gz, .bz2, .zst) into a canonical
    :class:`EventTable`. ``source``: the file's name in errors and notes (default: the path). ``future``: the
    rows are events to predict, which may lie after the time of the run plus a day (history may not).

    See the module docstring for the schema, the timezone rule and how bad input is handled.
    """
    source = source or str(path)
    path = Path(path)
    fmt = detect_format(path, fmt)
    reader = {"columns": columns, "label_map": label_map, "tz": tz, "strict_labels": strict_labels,
              "time_format": time_format, "allow_bad_timestamps": allow_bad_timestamps, "future": future}
    if compression_of(path) is not None and path.is_file():
        with decompressed(str(path)) as plain:
            return load_events(plain, fmt, source=source, **reader)
    return _load_plain(path, fmt, source, **reader)


def _load_plain(path: Path, fmt: str, source: str, columns, label_map, tz, strict_labels, time_format,
                allow_bad_timestamps, future) -> EventTable:
    """load_events on an uncompressed file."""
    cols = resolve_columns(columns)
    if not path.is_file():
        raise PrepareError(f"{source}: no such file")
    if path.stat().st_size == 0:
        raise PrepareError(f"{source}: file is empty")
    notes: dict[str, Any] = {"source": source, "format": fmt}
    row_numbers = None
    if fmt == "parquet":
        data = read_parquet(path, source, cols)
    elif fmt in ("csv", "tsv"):
        data = read_csv(path, source, cols, "\t" if fmt == "tsv" else ",")
    else:
        data, row_numbers, blank = read_events_jsonl(path, source, cols)
        notes["blank_lines"] = blank
    n_rows = len(data["time"])
    notes["rows_read"] = n_rows
    if n_rows == 0:
        raise PrepareError(f"{source}: no events (the file has no data rows)")
    raw_time = data.pop("time")
    data["time"], ok, time_notes = parse_times(raw_time, tz=tz, source=source, row_numbers=row_numbers,
                                               time_format=time_format, detect=True)
    notes.update(time_notes)
    if not future:
        refuse_future(source, data["time"], ok, raw_time, row_numbers)
    bad = np.flatnonzero(~ok)
    if bad.size:
        examples = bad[:MAX_EXAMPLES]
        rows = row_numbers[examples] if row_numbers is not None else examples + 1
        notes["bad_timestamp_rows"] = [int(r) for r in rows]
        notes["bad_timestamp_examples"] = [{"row": int(r), "value": json_value(raw_time[int(i)])}
                                           for r, i in zip(rows, examples)]
    del raw_time, bad
    bad_time = ~ok
    del ok
    # encode_rows empties `data` column by column, so the Arrow buffers are freed as they are encoded.
    rows = encode_rows(data, label_map=label_map, strict_labels=strict_labels, reject={"bad_timestamp": bad_time},
                       dropped={}, notes=notes, source=source, row_numbers=row_numbers)
    refuse_bad_share(source, rows.dropped.get("bad_timestamp", 0), n_rows, notes.get("bad_timestamp_examples", []),
                     time_format, allow_bad_timestamps)
    return finish_rows(rows, source)


def json_value(scalar):
    """A raw value for stats.json: numbers and text as they are; dates, NaN and the like as text (a Parquet
    timestamp in the year 3000 is a datetime, and one past 9999 cannot even become one)."""
    try:
        value = scalar.as_py()
    except (ValueError, OverflowError, pa.ArrowException):
        return str(scalar)
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)
