"""Whole-file rules on the timestamps that were read (rules: :mod:`data_prep.reading.events`).

* More than BAD_SHARE of a file's rows dropped as ``bad_timestamp`` stops the run: that many rows failing is
  a wrong (or missing) TIME_FORMAT, not a few bad rows, and the rows that do parse may be misread (a
  day-first file read month-first). ``allow_bad_timestamps`` (ALLOW_BAD_TIMESTAMPS=1) drops them on purpose.
* A history event after the time of the run plus a day stops the run (``refuse_future``): a wrong unit or
  format, or a broken clock. The cutoff is the clock, not a setting: it only grows, so a file that passes once
  passes on every later run with the same outputs, and no stamp or stage parameter depends on it. The events
  to predict (predict's --next, serve's ``next``) may lie in the future.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.errors import PrepareError
from data_prep.reading.time_formats import likely_format

BAD_SHARE = 0.05     # bad_timestamp drops above this share of a file's rows stop prepare and predict
SHOWN = 3            # example rows in the line


def refuse_bad_share(source: str, bad: int, rows: int, examples: list[dict], time_format: str | None,
                     allow: bool) -> None:
    """One-line PrepareError when ``bad`` of ``rows`` is more than BAD_SHARE (``examples``: the notes'
    bad_timestamp_examples, {"row", "value"})."""
    if allow or not rows or bad <= BAD_SHARE * rows:
        return
    shown = ", ".join(f"row {e['row']} ({e['value']!r})" for e in examples[:SHOWN])
    how = f"with TIME_FORMAT {time_format!r}" if time_format else "as ISO-8601 or epoch seconds"
    raise PrepareError(
        f"{source}: {bad} of {rows} rows ({bad / rows:.1%}) have a timestamp that does not read {how}, more than "
        f"{BAD_SHARE:.0%}: {shown}; likely format: {likely_format([e['value'] for e in examples])}; set "
        f"TIME_FORMAT to the format of the file, or ALLOW_BAD_TIMESTAMPS=1 (--allow-bad-timestamps 1) to drop "
        f"them as bad_timestamp")


# ---- history in the future ---------------------------------------------------------------------------------------
FUTURE_SLACK = 86_400   # seconds past the clock a history event may lie (local times run up to 14 h ahead of UTC)
clock = time.time        # the time of the run (tests set it)


def future_cutoff() -> int:
    """The latest local time a history event may have: the time of the run plus a day. It only grows, so a file
    that passes once passes on every later run, with the same outputs."""
    return int(clock()) + FUTURE_SLACK


def refuse_future(source: str, local: np.ndarray, ok: np.ndarray, raw, row_numbers: np.ndarray | None = None) -> None:
    """One-line PrepareError naming the first valid timestamp after future_cutoff() (``raw``: the values as read)."""
    cutoff = future_cutoff()
    late = np.flatnonzero(ok & (local > cutoff))
    if not late.size:
        return
    first = int(late[0])
    row = int(row_numbers[first]) if row_numbers is not None else first + 1
    value = raw[first]
    value = value.as_py() if hasattr(value, "as_py") else value
    when = datetime.fromtimestamp(cutoff, UTC).strftime("%Y-%m-%d %H:%M")
    raise PrepareError(f"{source}: row {row}: timestamp {value!r} is after the time of this run plus a day ({when}), "
                       f"as are {late.size} row(s); history events cannot lie in the future (a wrong unit, format "
                       f"or clock?)")


# ---- a column read in batches ----------------------------------------------------------------------------------
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


def numbers_of(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw, whole seconds, ok) of the numbers of a time column (numeric types, or text that is a number) as
    the epoch rule of data_prep.reading.timestamps sees them; text that is no number is not ok."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    n = len(arr)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        ok = arr.is_valid().to_numpy(zero_copy_only=False)
        raw = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False).astype(
            np.float64 if pa.types.is_floating(arr.type) else np.int64)
    elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        text = pc.utf8_trim_whitespace(pc.fill_null(arr, ""))
        ok = pc.match_substring_regex(text, _NUMBER).to_numpy(zero_copy_only=False)
        raw = np.zeros(n, np.float64)
        raw[ok] = pc.cast(text.filter(pa.array(ok)), pa.float64()).to_numpy(zero_copy_only=False)
    else:
        return np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
    ok &= np.isfinite(raw) & (np.abs(raw) < 9e18) if raw.dtype.kind == "f" else ok
    secs = np.floor(np.where(ok, raw, 0)).astype(np.int64) if raw.dtype.kind == "f" else raw
    return raw, secs, ok
