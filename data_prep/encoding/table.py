"""The canonical event table every reader produces (schema and timezone rule: :mod:`data_prep.reading.events`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CANONICAL = ("user", "time", "place", "behavior")
SCHEMA_COLUMNS = {"user": "user_id", "time": "timestamp", "place": "place", "behavior": "behavior"}
UNKNOWN_PLACE = "unknown"
DROP_WARN_SHARE = 0.02   # prepare warns on the console (and in stats.json) when more input rows are dropped


@dataclass
class EventTable:
    """Canonical events, sorted by (user, time, behavior, place), duplicate events removed.

    ``time`` is local wall-clock time encoded as a UTC epoch (int64 seconds). Code arrays are int32
    indices into the sorted name lists ``user_ids`` / ``places`` / ``behaviors``.

    A file's (or a batch's) kept rows before that step (:func:`data_prep.encoding.encode.sort_rows`) are an EventTable
    too: in input order, with the code len(places) for an empty place, the drop counts and notes so far.
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
    # (rows, orders) for the events of tied instants: rows ascending, and an integer per row that orders an
    # instant's events as the input did (data_prep.encoding.ties); None once the instants are ordered
    input_order: tuple | None = None

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


def drop_warning(table) -> str | None:
    """One line when more than DROP_WARN_SHARE of the input rows were dropped, with the count by reason."""
    dropped = dict(getattr(table, "dropped", {}) or {})
    rows = int((getattr(table, "notes", {}) or {}).get("rows_read") or 0)
    lost = sum(dropped.values())
    if not rows or lost <= DROP_WARN_SHARE * rows:
        return None
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1]))
    return f"{lost} of {rows} input rows ({lost / rows:.1%}) were dropped: {reasons} (stats.json 'dropped')"
