"""Raw timestamps -> local wall-clock seconds, by the timezone rule of :mod:`data_prep.events`.

Everything is vectorized (pyarrow regex extraction and numpy calendar arithmetic), never a Python loop
over rows; only an IANA ``tz`` goes through pandas for its daylight-saving rules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.errors import PrepareError

# Local times must fall in [1970, 2100): wider ranges are almost always unit mistakes.
MIN_TIME, MAX_TIME = 0, 4_102_444_800
MILLISECOND_HINT = 1e11  # epoch seconds pass this only after the year 5138

_ISO = re.compile(
    r"^\s*(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ](?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:[.,]\d+)?)?\s*(?P<z>[Zz]|[+-]\d{2}(?::?\d{2})?)?\s*$")
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


def parse_times(values, tz: str | None = None, source: str = "<times>") -> tuple[np.ndarray, np.ndarray, dict]:
    """Raw timestamps -> (local-epoch int64 seconds, valid mask, notes) by the module's timezone rule.

    ``values``: a pyarrow (Chunked)Array or anything ``pa.array`` accepts (ISO strings, epoch numbers).
    """
    if isinstance(values, OwnedTimes):  # numeric times the Parquet reader already copied: reuse them
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
            fields_ok = ((mo >= 1) & (mo <= 12) & (d >= 1) & (d <= days_in_month(y, np.clip(mo, 1, 12)))
                         & (h <= 23) & (mi <= 59) & (s <= 59))
            wall = days_from_civil(y, np.clip(mo, 1, 12), d) * 86_400 + h * 3_600 + mi * 60 + s
            is_utc = np.char.upper(zone) == "Z"
            has_offset = (zone != "") & ~is_utc
            if is_utc.any():
                wall[is_utc] = _utc_to_local(wall[is_utc], tz, source)
            local[rest], ok[rest] = wall, fields_ok
            for name, mask in (("iso_offset", has_offset), ("iso_utc", is_utc), ("iso_naive", zone == "")):
                if mask.any():
                    counts[name] = int(np.count_nonzero(mask))
    return local, ok, counts


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

