"""Timestamps written with a format: ``TIME_FORMAT`` (strptime syntax, as pandas' ``format=``), and the
columns that need one (rules: :mod:`data_prep.reading.events`).

Without a format the readers take ISO-8601 and epoch seconds only, and two kinds of column would go wrong
there, so :mod:`data_prep.reading.timestamps` refuses them, naming the ``TIME_FORMAT`` to set:

* integers more than half of which are shaped like compact dates and times YYYYMMDDHH[MM[SS]] with a year in
  1971-2099 (they would be read as epoch seconds in 2032-2036, or as milliseconds); the rows that would not
  parse with the format are named, so one bad row never turns the column into epoch seconds. Real epoch
  seconds of that range would need month, day and hour digits shaped like a date in most rows (the last two
  digits of epoch seconds are the seconds 00-99); epoch seconds of today (1709280000) read as the year 1709.
* text columns more than half of whose non-empty values share one shape (digits and letters aside) with
  digits in it that is neither ISO-8601 nor a number: slash dates ``04/03/2024 07:00`` above all, whose
  day and month order is named when some row shows it (a first field above 12: day first; a second one:
  month first) and otherwise left to the user.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.errors import PrepareError

MAX_OFFSET_SECONDS = 14 * 3600
COMPACT = {10: ("YYYYMMDDHH", "%Y%m%d%H"), 12: ("YYYYMMDDHHMM", "%Y%m%d%H%M"),
           14: ("YYYYMMDDHHMMSS", "%Y%m%d%H%M%S")}
_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_TIME = (r"(?:(?P<tsep>\s+|T)(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?P<frac>\.\d+)?)?"
         r"(?P<psep>\s*)(?P<p>[AaPp][Mm])?)?")
_DMY = re.compile(r"^(?P<a>\d{1,2})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})" + _TIME + "$")
_YMD = re.compile(r"^(?P<y>\d{4})(?P<sep>[/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})" + _TIME + "$")
_FIRST_TWO = r"^(?P<a>\d{1,2})[/.\-](?P<b>\d{1,2})[/.\-]"
_DATE_KIND = {"/": "slash date", ".": "dotted date", "-": "dashed date"}
_EXAMPLE = 'TIME_FORMAT="%d/%m/%Y %H:%M"'


def directives(fmt: str) -> list[str]:
    """The strptime directives of a format (``%%`` is a literal percent sign, not a directive)."""
    return [d for d in re.findall(r"%(.)", fmt) if d != "%"]


def check_time_format(fmt: str) -> None:
    """A usable TIME_FORMAT, or a one-line PrepareError."""
    found = directives(fmt)
    if not found:
        raise PrepareError(f"TIME_FORMAT {fmt!r} has no strptime directive (e.g. {_EXAMPLE})")
    if "Z" in found:
        raise PrepareError(f"TIME_FORMAT {fmt!r}: %Z (zone names) is not read; use %z for offsets such as "
                           f"+0100, or naive times with TIMEZONE")
    import pandas as pd

    try:
        pd.to_datetime(pd.Series(["0"], dtype=object), format=fmt, errors="coerce")
    except ValueError as exc:
        raise PrepareError(f"TIME_FORMAT {fmt!r}: {' '.join(str(exc).split())}") from None


def strptime_wall(uniques: pa.Array, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct texts -> (wall time as written, as epoch seconds; UTC offset in seconds; has an offset;
    matched the format). Offsets come only from ``%z``, and beyond +-14:00 they do not match."""
    n = len(uniques)
    wall, offset = np.zeros(n, np.int64), np.zeros(n, np.int64)
    zoned, ok = np.zeros(n, bool), np.zeros(n, bool)
    texts = uniques.to_numpy(zero_copy_only=False)
    if "z" in directives(fmt):  # per distinct value: pandas keeps one offset per column, not per row
        epoch = datetime(1970, 1, 1)
        for i, text in enumerate(texts):
            try:
                parsed = datetime.strptime(text, fmt)
            except ValueError:
                continue
            delta = parsed.utcoffset()
            wall[i] = (parsed.replace(tzinfo=None) - epoch) // timedelta(seconds=1)
            if delta is not None:
                offset[i], zoned[i] = int(delta.total_seconds()), True
            ok[i] = abs(offset[i]) <= MAX_OFFSET_SECONDS
        return wall, offset, zoned, ok
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(texts, dtype=object), format=fmt, errors="coerce")
    ok = parsed.notna().to_numpy()
    nanoseconds = parsed.to_numpy(dtype="datetime64[ns]").view(np.int64)
    wall = np.where(ok, np.floor_divide(nanoseconds, 10**9), 0)
    return wall, offset, zoned, ok


# ---- integer columns that are compact dates ------------------------------------------------------------
def _compact_fields(values: np.ndarray, digits: int) -> list[np.ndarray]:
    """[year, month, day, hour(, minute(, second))] of YYYYMMDDHH[MM[SS]] numbers of ``digits`` digits."""
    fields = [values // 10 ** (digits - 4)]
    for position in range(digits - 6, -1, -2):
        fields.append(values // 10**position % 100)
    return fields


def compact_shape(values: np.ndarray) -> np.ndarray:
    """The digit count (10, 12 or 14) of each whole number shaped like YYYYMMDDHH[MM[SS]] (a year in
    1971-2099, month 01-12, day 01-31, hour 00-24, minute and second 00-60: a calendar slip such as 31
    February or hour 24 still has the shape), else 0."""
    values = np.asarray(values)
    out = np.zeros(values.shape, np.int64)
    if values.dtype.kind == "f":
        whole = np.isfinite(values) & (np.abs(values) < 1e15)
        whole[whole] = values[whole] == np.floor(values[whole])
        values = np.where(whole, values, 0).astype(np.int64)
    else:
        values = values.astype(np.int64, copy=False)
    for digits in COMPACT:
        scale = 10 ** (digits - 4)
        year, month, day, *clock = _compact_fields(values, digits)
        shaped = (year >= 1971) & (year < 2100) & (values < 2100 * scale)
        shaped &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
        for value, top in zip(clock, (24, 60, 60)):
            shaped &= value <= top
        out[shaped] = digits
    return out


def compact_valid(values: np.ndarray, digits: int) -> np.ndarray:
    """Whether each number is a real date and time written YYYYMMDDHH[MM[SS]] with ``digits`` digits."""
    year, month, day, *clock = _compact_fields(values, digits)
    valid = (values >= 1971 * 10 ** (digits - 4)) & (values < 2100 * 10 ** (digits - 4))
    valid &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= _DAYS_IN_MONTH[np.clip(month, 0, 12)])
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    valid &= (month != 2) | (day <= 28) | leap
    for value, top in zip(clock, (23, 59, 59)):
        valid &= value <= top
    return valid


class CompactTally:
    """Whether most numbers of a column, read in one piece or batch by batch (``add``), are shaped like
    YYYYMMDDHH[MM[SS]] (compact_shape). The format is that of the most common length; the rows that would not
    parse with it (a calendar slip, an epoch number among them, a sentinel) are every other number. A column
    of epoch seconds is turned away by the year bound: 1709280000 reads as the year 1709."""

    def __init__(self):
        self.values = 0
        self.shaped = dict.fromkeys(COMPACT, 0)
        self.first: dict[int, tuple] = {}      # digits -> (row, value, valid) of the first shaped, valid if any
        self.unparsed = dict.fromkeys(COMPACT, 0)
        self.listed: dict[int, list] = {d: [] for d in COMPACT}   # digits -> the first (row, text) not parsing

    def add(self, raw: np.ndarray, secs: np.ndarray, ok: np.ndarray, rows: np.ndarray) -> None:
        shape = compact_shape(raw)
        shape[~ok] = 0
        self.values += int(np.count_nonzero(ok))
        for digits in COMPACT:
            valid = ok & (shape == digits) & compact_valid(secs, digits)
            self.shaped[digits] += int(np.count_nonzero(shape == digits))
            found = np.flatnonzero(valid if valid.any() else shape == digits)
            if found.size and not self.first.get(digits, (0, 0, False))[2]:
                self.first[digits] = (int(rows[found[0]]), int(secs[found[0]]), bool(valid.any()))
            bad = np.flatnonzero(ok & ~valid)
            self.unparsed[digits] += int(bad.size)
            room = MAX_LISTED - len(self.listed[digits])
            self.listed[digits] += [(int(rows[i]), _number_text(raw[i])) for i in bad[:room].tolist()]

    def found(self) -> tuple[int, str, list, int] | None:
        """(row to show, message, the first rows that would not parse as (row, text), how many) or None."""
        shaped = sum(self.shaped.values())
        if not self.values or shaped * 2 <= self.values:
            return None
        digits = max(COMPACT, key=lambda d: (self.shaped[d], -d))
        name, fmt = COMPACT[digits]
        row, value, valid = self.first[digits]
        text = f"timestamp {value} is a compact date and time {name}"
        if valid:
            y, mo, d, *rest = (int(f[0]) for f in _compact_fields(np.array([value]), digits))
            clock = ":".join(f"{v:02d}" for v in (rest + [0])[:max(2, len(rest))])
            text += f" ({y:04d}-{mo:02d}-{d:02d} {clock})"
        n = self.values
        every = (f", as is every timestamp of the column ({n})" if not self.unparsed[digits] and n > 1 else
                 f", and {shaped} of the {n} timestamps have its shape" if n > 1 else "")
        return (row, f"{text}{every}, not epoch seconds; set TIME_FORMAT=\"{fmt}\"", self.listed[digits],
                self.unparsed[digits])


MAX_LISTED = 5   # rows named as not parsing with the format


def _number_text(value) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def unparsed_line(row: int, message: str, listed: list, count: int) -> str:
    """``row <n>: <message>``, then the rows that would not parse with the named format."""
    if not count:
        return f"row {row}: {message}"
    shown = ", ".join(f"row {r} ({text})" for r, text in listed)
    more = ", ..." if count > len(listed) else ""
    return f"row {row}: {message} ({count} row(s) would not parse with it: {shown}{more})"


def compact_format(value) -> str | None:
    """The TIME_FORMAT of one value shaped like YYYYMMDDHH[MM[SS]] (a number or a text of digits), else None."""
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit() or len(value) not in COMPACT:
            return None
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) < 1e15:
        return None   # NaN, infinities and huge numbers have no date shape (and no int64)
    digits = int(compact_shape(np.array([value]))[0])
    return COMPACT[digits][1] if digits else None


# ---- text columns most of which have one shape that is not read ------------------------------------------
def shapes(texts: pa.Array) -> pa.Array:
    """A value's shape: runs of 3+ digits as '#', of 1-2 digits as '9', of letters as 'a' (so 4/3/2024 7:00
    and 14/03/2024 17:00 share one, and 2024/03/04 has another)."""
    out = pc.replace_substring_regex(texts, r"\d{3,}", "#")
    out = pc.replace_substring_regex(out, r"\d+", "9")
    return pc.replace_substring_regex(out, r"\p{L}+", "a")


def unread_shape(texts: pa.Array, unread: np.ndarray) -> tuple[int, str] | None:
    """(first row, message) when more than half of the non-empty ``texts`` (trimmed) are ``unread`` (neither
    ISO-8601 nor a number) and share one shape; else None."""
    nonempty = pc.not_equal(texts, "").to_numpy(zero_copy_only=False)
    unread = unread & nonempty
    n_values, n_unread = int(np.count_nonzero(nonempty)), int(np.count_nonzero(unread))
    if n_unread * 2 <= n_values:
        return None
    rows = np.flatnonzero(unread)
    found = shapes(texts.take(pa.array(rows)))
    counted = pc.value_counts(found)
    counts = counted.field("counts").to_numpy()
    top = int(np.argmax(counts))
    if int(counts[top]) * 2 <= n_values or not re.search("[9#]", counted.field("values")[top].as_py()):
        return None   # no digits ('never', 'N/A'): not a date in some format, only bad values
    members = rows[pc.equal(found, counted.field("values")[top]).to_numpy(zero_copy_only=False)]
    return int(members[0]), _shape_message(texts.take(pa.array(members)), n_values)


def _time_format(match: re.Match) -> str:
    if match.group("h") is None:
        return ""
    text = ("T" if match.group("tsep") == "T" else " ") + ("%I" if match.group("p") else "%H") + ":%M"
    if match.group("s") is not None:
        text += ":%S" + (".%f" if match.group("frac") else "")
    if match.group("p"):
        text += (" " if match.group("psep") else "") + "%p"
    return text


def _shape_message(values: pa.Array, n_values: int) -> str:
    value, k = values[0].as_py(), len(values)
    share = (f", as are {k} of the {n_values} timestamps" if k < n_values else
             f", as are all {k} timestamps" if k > 1 else "")
    dmy, ymd = _DMY.match(value), _YMD.match(value)
    if dmy and dmy.group("h") is None or ymd and ymd.group("h") is None:
        return (f"timestamp {value!r} is a date without a time of day{share}; the prompts need the hour: "
                f"export it too (ISO-8601 2024-03-01T08:00, or epoch seconds), or set TIME_FORMAT to read "
                f"every event at 00:00")
    if ymd:
        sep = ymd.group("sep")
        return (f"timestamp {value!r} is a year{sep}month{sep}day date{share}, and not ISO-8601 or epoch "
                f"seconds; set TIME_FORMAT=\"%Y{sep}%m{sep}%d{_time_format(ymd)}\"")
    if dmy:
        sep, clock = dmy.group("sep"), _time_format(dmy)
        year = "%Y" if len(dmy.group("y")) == 4 else "%y"
        day_first, month_first = f"%d{sep}%m{sep}{year}{clock}", f"%m{sep}%d{sep}{year}{clock}"
        kind = _DATE_KIND[sep]
        parts = pc.extract_regex(values, _FIRST_TWO)
        a, b = (pc.cast(pc.fill_null(pc.struct_field(parts, name), "0"), pa.int64()).to_numpy(zero_copy_only=False)
                for name in ("a", "b"))
        only_day_first, only_month_first = (a > 12) & (b <= 12), (b > 12) & (a <= 12)
        either = f"set TIME_FORMAT (e.g. TIME_FORMAT=\"{day_first}\" or \"{month_first}\")"
        if only_day_first.any() and only_month_first.any():
            one, other = (values[int(np.flatnonzero(m)[0])].as_py() for m in (only_day_first, only_month_first))
            return (f"timestamp {value!r} is a {kind} whose day and month order cannot be told apart "
                    f"({one!r} reads only day first, {other!r} only month first); {either}")
        for mask, order, fmt in ((only_day_first, "day", day_first), (only_month_first, "month", month_first)):
            if mask.any():
                shown = values[int(np.flatnonzero(mask)[0])].as_py()
                return (f"timestamp {value!r} is a {kind}, {order} first ({shown!r} reads only so){share}; "
                        f"set TIME_FORMAT=\"{fmt}\"")
        return f"timestamp {value!r} is a {kind} whose day and month order cannot be told apart; {either}"
    return (f"timestamp {value!r} is neither ISO-8601 (2024-03-01T08:00) nor epoch seconds, and {k} of the "
            f"{n_values} timestamps have its shape; set TIME_FORMAT to their strptime format (e.g. {_EXAMPLE})")


# ---- the format that bad rows are likely written in ------------------------------------------------------------
def _likely_one(value) -> str | None:
    """How one raw value is likely written (a TIME_FORMAT, or a reading without one), or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value)):
        fmt = compact_format(value)
        return f'TIME_FORMAT="{fmt}"' if fmt else "epoch seconds (no TIME_FORMAT)"
    text = str(value).strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", text):
        return "ISO-8601 (no TIME_FORMAT)"
    ymd, dmy = _YMD.match(text), _DMY.match(text)
    if ymd:
        sep = ymd.group("sep")
        return f'TIME_FORMAT="%Y{sep}%m{sep}%d{_time_format(ymd)}"'
    if not dmy:
        return None
    sep, clock = dmy.group("sep"), _time_format(dmy)
    year = "%Y" if len(dmy.group("y")) == 4 else "%y"
    day_first, month_first = f"%d{sep}%m{sep}{year}{clock}", f"%m{sep}%d{sep}{year}{clock}"
    a, b = int(dmy.group("a")), int(dmy.group("b"))
    if a > 12 or b > 12:
        return f'TIME_FORMAT="{day_first if a > 12 else month_first}"'
    return f'TIME_FORMAT="{day_first}" or "{month_first}"'


def likely_format(values) -> str:
    """The most common likely format of some bad rows' raw values; a slash date with a day above 12 decides
    the order for the others."""
    found = [f for f in (_likely_one(v) for v in values) if f]
    if not found:
        return "unknown (no example has a known shape)"
    pool = [f for f in found if " or " not in f] or found
    return max(dict.fromkeys(pool), key=pool.count)
