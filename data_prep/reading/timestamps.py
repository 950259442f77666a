"""Raw timestamps -> local wall-clock seconds, by the timezone rule of :mod:`data_prep.reading.events`.

Everything is vectorized (pyarrow regex extraction and numpy calendar arithmetic), never a Python loop
over rows; only an IANA ``tz`` goes through pandas for its daylight-saving rules, and a ``time_format``
through pandas' strptime (one parse per distinct value).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.errors import PrepareError
from data_prep.reading.time_formats import CompactTally, check_time_format, strptime_wall, unparsed_line, unread_shape

# Local times must fall in [1971, 2100): wider ranges are almost always unit mistakes, and 1970 holds only
# sentinels (epoch 0) and numbers that are not epoch seconds (compact dates 20240301, spreadsheet serials).
MIN_TIME, MAX_TIME = 31_536_000, 4_102_444_800
MILLISECOND_HINT = 1e11  # epoch seconds pass this only after the year 5138
SERIAL_MAX = 2_958_466   # spreadsheet serial day number of 10000-01-01
MAX_OFFSET_MINUTES = 14 * 60


class _TimeValueError(Exception):
    """A problem with the whole time column, shown at position ``index`` (parse_times names the row);
    ``listed``: (position, text) of rows the message lists after it, ``count`` of them in all."""

    def __init__(self, message: str, index: int, listed=(), count: int = 0):
        super().__init__(message)
        self.index, self.listed, self.count = index, list(listed), count

    def moved(self, positions: np.ndarray) -> _TimeValueError:
        """The same error about a subset of the column: ``positions`` maps its positions to the column's."""
        return _TimeValueError(str(self), int(positions[self.index]),
                               [(int(positions[i]), text) for i, text in self.listed], self.count)

    def line(self, row_of) -> str:
        return unparsed_line(row_of(self.index), str(self), [(row_of(i), text) for i, text in self.listed],
                             self.count)


_ISO = re.compile(
    r"^\s*(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ](?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:[.,]\d+)?)?\s*(?P<z>[Zz]|[+-]\d{2}(?::?\d{2})?)?\s*$")
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


def parse_times(values, tz: str | None = None, source: str = "<times>",
                row_numbers: np.ndarray | None = None, time_format: str | None = None,
                detect: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """Raw timestamps -> (local-epoch int64 seconds, valid mask, notes) by the timezone rule of
    :mod:`data_prep.reading.events`.

    ``values``: a pyarrow (Chunked)Array or anything ``pa.array`` accepts (ISO strings, epoch numbers).
    ``row_numbers``: each value's row in the source, for errors (default: position + 1).
    ``time_format``: strptime format of every text or integer value (pandas' ``format=``); rows that do not
    match are invalid, and more than half of the non-empty ones not matching is an error.
    ``detect`` (the file readers): without ``time_format``, refuse columns that are not what they seem,
    naming the ``TIME_FORMAT`` to set: integers that are all compact dates YYYYMMDDHH[MM[SS]], and text
    columns most of whose values share one shape that is neither ISO-8601 nor a number (slash dates).
    """
    try:
        return _parse_times(values, tz, source, time_format, detect)
    except _TimeValueError as exc:
        def row_of(index: int) -> int:
            return int(row_numbers[index]) if row_numbers is not None else index + 1

        raise PrepareError(f"{source}: {exc.line(row_of)}") from None


def _parse_times(values, tz: str | None, source: str, time_format: str | None = None,
                 detect: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    if isinstance(values, OwnedTimes) and time_format is None:
        # numeric times the Parquet reader already copied: reuse them
        local, ok = _epoch_to_local(values.values, values.valid, tz, source, detect)
        typ, counts = None, {"epoch": int(local.size)}
    else:
        if isinstance(values, OwnedTimes):
            values = pa.array(values.values, mask=~values.valid)
        arr = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array(
            [values if isinstance(values, pa.Array) else pa.array(values)])
        typ = arr.type
        if pa.types.is_dictionary(typ):
            arr, typ = arr.cast(typ.value_type), typ.value_type
        n = len(arr)
        counts = {}
    if typ is None:
        pass
    elif time_format is not None and not pa.types.is_timestamp(typ) and not pa.types.is_null(typ):
        local, ok, counts = _formatted_to_local(arr, time_format, tz, source)
    elif pa.types.is_timestamp(typ):  # typed already: a time_format has nothing to read
        raw, ok = to_numpy_filled(arr.cast(pa.int64()), np.int64)
        secs = np.floor_divide(raw, {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[typ.unit], out=raw)
        if typ.tz is None:
            local = secs
            counts["naive_timestamp"] = n
        else:
            local = _utc_to_local(secs, tz if tz is not None else typ.tz, source)
            counts["zoned_timestamp"] = n
    elif pa.types.is_integer(typ) or pa.types.is_floating(typ):
        raw, ok = to_numpy_filled(arr, np.float64 if pa.types.is_floating(typ) else np.int64)
        local, ok = _epoch_to_local(raw, ok, tz, source, detect)
        counts["epoch"] = n
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
        local, ok, counts = _strings_to_local(arr.combine_chunks(), tz, source, detect)
    elif pa.types.is_null(typ):
        local, ok = np.zeros(n, np.int64), np.zeros(n, bool)
    else:
        raise PrepareError(f"{source}: timestamp column has type {typ}; expected ISO-8601 strings or epoch seconds")
    ok &= local >= MIN_TIME
    ok &= local < MAX_TIME
    local[~ok] = 0
    notes = {"time_formats": counts, "tz": tz}
    if time_format is not None:
        notes["time_format"] = time_format
    return local, ok, notes


@dataclass
class OwnedTimes:
    """Numeric epoch times in a numpy array nobody else holds, so parsing may work in place."""

    values: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return int(self.values.size)

    def __getitem__(self, index: int):
        return pa.scalar(self.values[index].item() if self.valid[index] else None)


def to_numpy_filled(arr: pa.ChunkedArray, dtype) -> tuple[np.ndarray, np.ndarray]:
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


def _epoch_to_local(raw: np.ndarray, ok: np.ndarray, tz: str | None, source: str,
                    detect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds (int or float; fractions floored) -> local-epoch seconds; may reuse ``raw``."""
    if raw.dtype.kind == "f":
        ok &= np.isfinite(raw) & (np.abs(raw) < 9e18)
        secs = np.floor(np.where(ok, raw, 0)).astype(np.int64)
    else:
        secs = raw.astype(np.int64, copy=False)
    if detect:
        _refuse_compact_digits(raw, secs, ok)
    looks_ms = np.count_nonzero(ok & (secs > MILLISECOND_HINT))
    if looks_ms and looks_ms * 2 > np.count_nonzero(ok):
        example = int(secs[ok & (secs > MILLISECOND_HINT)][0])
        raise PrepareError(f"{source}: epoch timestamps look like milliseconds (e.g. {example}); expected seconds")
    # Most values before 1971 mean the column is not epoch seconds at all; a few are sentinels (dropped later).
    early = ok & (secs < MIN_TIME)
    if np.count_nonzero(early) * 2 > np.count_nonzero(ok):
        first = int(np.flatnonzero(early)[0])
        raise _TimeValueError(_not_epoch_seconds(raw[first].item()), first)
    return _utc_to_local(secs, tz, source), ok


def _refuse_compact_digits(raw: np.ndarray, secs: np.ndarray, ok: np.ndarray) -> None:
    tally = CompactTally()
    tally.add(raw, secs, ok, np.arange(raw.size))
    found = tally.found()
    if found:
        raise _TimeValueError(found[1], found[0], found[2], found[3])


def _refuse_unread_shape(filled: pa.Array, unread: np.ndarray) -> None:
    found = unread_shape(pc.utf8_trim_whitespace(filled), unread)
    if found:
        raise _TimeValueError(found[1], found[0])


def _formatted_to_local(arr: pa.ChunkedArray, fmt: str, tz: str | None, source: str):
    """Text (or integer digits) parsed with the strptime format ``fmt``, then the timezone rule: naive values
    are local as written; ``%z`` values are converted to ``tz``'s local time, or keep their written wall
    time without ``tz``. More than half of the non-empty values failing is an error naming the first."""
    check_time_format(fmt)
    typ = arr.type
    arr = arr.combine_chunks()
    if pa.types.is_integer(typ):
        text = pc.cast(arr, pa.string())
    elif pa.types.is_floating(typ):  # whole numbers as their digits (a JSON or Parquet 2024030107.0)
        whole = pc.and_(pc.is_finite(arr), pc.and_(pc.equal(arr, pc.floor(arr)), pc.less(pc.abs(arr), 1e15)))
        digits = pc.cast(pc.cast(pc.if_else(whole, arr, 0.0), pa.int64()), pa.string())
        text = pc.if_else(whole, digits, pc.cast(arr, pa.string()))
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
        text = arr
    else:
        raise PrepareError(f"{source}: timestamp column has type {typ}; TIME_FORMAT reads text or integers")
    text = pc.utf8_trim_whitespace(pc.fill_null(text, ""))
    encoded = pc.dictionary_encode(text)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    wall, offset, zoned, matched = strptime_wall(encoded.dictionary, fmt)
    if zoned.any() and tz is not None:  # instants -> tz's local time; without tz the written wall time stays
        wall[zoned] = _utc_to_local(wall[zoned] - offset[zoned], tz, source)
    local, ok = wall[codes], matched[codes]
    nonempty = pc.not_equal(text, "").to_numpy(zero_copy_only=False)
    failed = nonempty & ~(ok & (local >= MIN_TIME) & (local < MAX_TIME))
    n_values, n_failed = int(np.count_nonzero(nonempty)), int(np.count_nonzero(failed))
    if n_failed * 2 > n_values:
        first = int(np.flatnonzero(failed)[0])
        value = text[first].as_py()
        what = (f"does not match TIME_FORMAT {fmt!r}" if not ok[first] else
                f"read with TIME_FORMAT {fmt!r} falls outside 1971-2099")
        raise _TimeValueError(f"timestamp {value!r} {what}; {n_failed} of the {n_values} timestamps fail so: set "
                              f"TIME_FORMAT to the strptime format they are written in", first)
    return local, ok, {"time_format": int(np.count_nonzero(ok))}


def _not_epoch_seconds(value) -> str:
    """Why a number is taken for something other than epoch seconds (most of its column is before 1971)."""
    shown = str(int(value)) if float(value).is_integer() else repr(float(value))
    text = f"timestamp {shown} "
    if float(value).is_integer() and 19_000_101 <= value <= 21_001_231 and 1 <= int(value) // 100 % 100 <= 12:
        return text + ("looks like a compact date YYYYMMDD, which has no time of day; write ISO 8601 with the "
                       "hour (2024-03-01T08:00) or epoch seconds")
    if 0 < value < SERIAL_MAX:
        return text + ("looks like a spreadsheet serial date (days since 1899-12-30); export the column as "
                       "ISO 8601 text or epoch seconds")
    return text + "is epoch seconds before 1971 in most rows; expected epoch seconds of the events' time"


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
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    import pandas as pd

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


def _strings_to_local(arr: pa.Array, tz: str | None, source: str, detect: bool = False):
    n = len(arr)
    local = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    counts: dict[str, int] = {}
    # Fast path: a column of integer strings (typical CSV epoch) casts in one go.
    try:
        ints = pc.cast(pc.utf8_trim_whitespace(arr), pa.int64())
        if ints.null_count == 0:
            local, ok = _epoch_to_local(ints.to_numpy().copy(), np.ones(n, bool), tz, source, detect)
            return local, ok, {"epoch": n}
    except pa.ArrowInvalid:
        pass
    filled = pc.fill_null(arr, "")
    is_number = pc.match_substring_regex(filled, _NUMBER).to_numpy(zero_copy_only=False)
    zoned = np.zeros(n, bool)   # parsed rows that name their instant (epoch, Z, offset)
    if is_number.any():
        idx = np.flatnonzero(is_number)
        numbers = pc.cast(pc.utf8_trim_whitespace(filled.take(pa.array(idx))), pa.float64())
        try:
            local[idx], ok[idx] = _epoch_to_local(numbers.to_numpy(zero_copy_only=False), np.ones(idx.size, bool),
                                                  tz, source, detect)
        except _TimeValueError as exc:
            raise exc.moved(idx) from None
        zoned[idx] = ok[idx]
        counts["epoch"] = int(idx.size)
    rest = np.flatnonzero(~is_number)
    if rest.size:
        read = _iso_to_local(filled, rest, local, ok, zoned, counts, tz, source)
        if detect and read.size < rest.size:
            unread = np.ones(n, bool)
            unread[np.flatnonzero(is_number)] = False
            unread[read] = False
            _refuse_unread_shape(filled, unread)
    _refuse_mixed_kinds(filled, ok, zoned)
    return local, ok, counts


def _iso_to_local(filled: pa.Array, rest: np.ndarray, local: np.ndarray, ok: np.ndarray, zoned: np.ndarray,
                  counts: dict, tz: str | None, source: str) -> np.ndarray:
    """ISO 8601 rows ``rest`` of ``filled`` -> local, ok, zoned and counts (in place); returns the rows
    that have the ISO shape (valid or not)."""
    parts = pc.extract_regex(filled.take(pa.array(rest)), _ISO.pattern)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)
    rest, parts = rest[matched], parts.filter(pa.array(matched))
    if not rest.size:
        return rest

    def field_(name: str) -> np.ndarray:
        col = pc.struct_field(parts, name)
        col = pc.if_else(pc.equal(col, ""), "0", col)
        return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False)

    y, mo, d, h, mi, s = (field_(k) for k in ("y", "mo", "d", "h", "mi", "s"))
    zone = pc.struct_field(parts, "z").to_numpy(zero_copy_only=False).astype(str)
    fields_ok = ((mo >= 1) & (mo <= 12) & (d >= 1) & (d <= days_in_month(y, np.clip(mo, 1, 12)))
                 & (h <= 23) & (mi <= 59) & (s <= 59))
    wall = days_from_civil(y, np.clip(mo, 1, 12), d) * 86_400 + h * 3_600 + mi * 60 + s
    is_utc = np.char.upper(zone) == "Z"
    has_offset = (zone != "") & ~is_utc
    offset, offset_ok = _offset_seconds(zone, has_offset)
    fields_ok &= offset_ok
    # Z and +00:00 are the same instant: both stay UTC without tz. Under tz every instant becomes tz's local
    # time; without tz an offset keeps the wall time written at that offset (the event's own local time).
    if tz is not None and has_offset.any():
        wall[has_offset] = _utc_to_local(wall[has_offset] - offset[has_offset], tz, source)
    if is_utc.any():
        wall[is_utc] = _utc_to_local(wall[is_utc], tz, source)
    local[rest], ok[rest], zoned[rest] = wall, fields_ok, fields_ok & (zone != "")
    for name, mask in (("iso_offset", has_offset), ("iso_utc", is_utc), ("iso_naive", zone == "")):
        if mask.any():
            counts[name] = int(np.count_nonzero(mask))
    return rest


def _offset_seconds(zone: np.ndarray, has_offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seconds east of UTC of ``+08:00`` / ``+0800`` / ``+08`` zone texts, and whether each is a real offset."""
    seconds = np.zeros(zone.size, np.int64)
    valid = np.ones(zone.size, bool)
    if has_offset.any():
        texts, inverse = np.unique(zone[has_offset], return_inverse=True)
        digits = [t[1:].replace(":", "") for t in texts]
        minutes = np.array([int(g[:2]) * 60 + int(g[2:] or 0) for g in digits], np.int64)
        good = np.array([int(g[2:] or 0) < 60 for g in digits]) & (minutes <= MAX_OFFSET_MINUTES)
        sign = np.array([-1 if t[0] == "-" else 1 for t in texts], np.int64)
        seconds[has_offset] = (sign * minutes * 60)[inverse.reshape(-1)]
        valid[has_offset] = good[inverse.reshape(-1)]
    return seconds, valid


def _refuse_mixed_kinds(filled: pa.Array, ok: np.ndarray, zoned: np.ndarray) -> None:
    """Naive local times next to timestamps that name their instant (Z, offset, epoch) in one column are
    hours apart in ways no rule can guess: refuse them, naming the first row of the smaller kind."""
    n_zoned = int(np.count_nonzero(zoned))
    n_naive = int(np.count_nonzero(ok)) - n_zoned
    if not n_zoned or not n_naive:
        return
    naive = ok & ~zoned
    minority, majority = (naive, zoned) if n_naive <= n_zoned else (zoned, naive)
    first, example = int(np.flatnonzero(minority)[0]), int(np.flatnonzero(majority)[0])
    what = "has no time zone" if n_naive <= n_zoned else "names its time zone (Z, an offset or epoch seconds)"
    others = "name their zone" if n_naive <= n_zoned else "are naive local times"
    raise _TimeValueError(
        f"timestamp {filled[first].as_py()!r} {what}, while {max(n_naive, n_zoned)} other rows {others} "
        f"(e.g. {filled[example].as_py()!r}); use one kind in a file (naive local times, or Z / offsets / "
        f"epoch seconds)", first)


def days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), vectorized."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def days_in_month(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[m]
    return days + ((m == 2) & leap)

