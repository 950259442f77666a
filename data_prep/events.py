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

Where the code lives
--------------------
This module is the entry point (:func:`load_events`) and the contract above. The work is split by job:
:mod:`data_prep.options` (``--columns``, ``--label-map``), :mod:`data_prep.readers` (CSV/TSV, JSONL,
format detection), :mod:`data_prep.parquet` (Parquet), :mod:`data_prep.timestamps` (the timezone rule),
:mod:`data_prep.encode` (codes, drops, sort and de-duplication into :class:`data_prep.table.EventTable`),
:mod:`data_prep.foursquare` (the TSMC2014 importer).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.encode import events_from_arrays, finish_columns
from data_prep.errors import MAX_EXAMPLES, PrepareError
from data_prep.foursquare import load_foursquare
from data_prep.options import load_label_map, parse_columns_option, resolve_columns
from data_prep.parquet import read_parquet
from data_prep.readers import FORMATS, detect_format, read_csv, read_jsonl
from data_prep.table import CANONICAL, SCHEMA_COLUMNS, UNKNOWN_PLACE, EventTable, hour_of, weekday_of
from data_prep.timestamps import MAX_TIME, MIN_TIME, parse_times

__all__ = ["CANONICAL", "FORMATS", "MAX_EXAMPLES", "MAX_TIME", "MIN_TIME", "SCHEMA_COLUMNS", "UNKNOWN_PLACE",
           "EventTable", "PrepareError", "events_from_arrays", "hour_of", "load_events", "load_foursquare",
           "load_label_map", "parse_columns_option", "parse_times", "weekday_of"]


def load_events(path: str | os.PathLike, fmt: str | None = None, columns: Mapping[str, str] | None = None,
                label_map: Mapping[str, str] | None = None, tz: str | None = None,
                strict_labels: bool = False) -> EventTable:
    """Read an event log (CSV / TSV / JSONL / Parquet) into a canonical :class:`EventTable`.

    See the module docstring for the schema, the timezone rule and how bad input is handled.
    """
    source = str(path)
    path = Path(path)
    cols = resolve_columns(columns)
    fmt = detect_format(path, fmt)
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
        data, row_numbers, blank = read_jsonl(path, source, cols)
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
    # finish_columns empties `data` column by column, so the Arrow buffers are freed as they are encoded.
    return finish_columns(data, label_map=label_map, strict_labels=strict_labels,
                          reject={"bad_timestamp": bad_time}, dropped={}, notes=notes, source=source,
                          row_numbers=row_numbers)

