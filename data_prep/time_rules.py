"""Whole-file rules on the timestamps that were read (rules: :mod:`data_prep.events`).

* More than BAD_SHARE of a file's rows dropped as ``bad_timestamp`` stops the run: that many rows failing is
  a wrong (or missing) TIME_FORMAT, not a few bad rows, and the rows that do parse may be misread (a
  day-first file read month-first). ``allow_bad_timestamps`` (ALLOW_BAD_TIMESTAMPS=1) drops them on purpose.
"""
from __future__ import annotations

from data_prep.errors import PrepareError
from data_prep.time_formats import likely_format

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
