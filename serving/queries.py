"""Raw input -> validated :class:`Query`: label map, unknown behaviors, event order, history length, context.

Shared by the HTTP service (raw JSON values, errors name the request field) and batch prediction (events
read by data_prep's readers, errors become a per-user ``error``). Decisions:
- an unknown behavior is an error listing the closest known names (difflib), never silently dropped;
- a user with fewer than L events is predicted from the shorter history and the result says so
  (``warning``); a user with no event at all is an error;
- an event at or after the next event's time is an error: history is strictly earlier than what it
  predicts, as in training (data_prep.encoding.ties);
- events are ordered as prepare orders them: by time, then, inside one instant, by the seeded hash of
  (seed, user, time, the event's rank among its instant's events in the order given) (data_prep.encoding.ties), never
  by name: list an instant's events in the order of the export, as prepare read them.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

import numpy as np

from data_prep.encoding.ties import event_order
from data_prep.reading.events import UNKNOWN_PLACE, PrepareError, parse_times
from data_prep.reading.time_formats import compact_format
from data_prep.reading.time_rules import future_cutoff
from serving.prompting import Event, Query


class FieldError(ValueError):
    """A bad value in one input field; ``field`` names it (``events[2].behavior``)."""

    def __init__(self, field: str, message: str, closest: list[str] | None = None):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.closest = field, message, closest


def closest_names(name: str, known: Sequence[str], n: int = 3) -> list[str]:
    """The known names nearest to `name` (case-insensitive difflib ratio), best first."""
    lowered = {k.casefold(): k for k in known}
    hits = difflib.get_close_matches(name.casefold(), list(lowered), n=n, cutoff=0.4)
    return [lowered[h] for h in hits]


class BehaviorNames:
    """Maps an input label to a candidate behavior: through the label map when one is set (raw label ->
    category, as prepare merges labels), a candidate name is accepted as it is."""

    def __init__(self, behaviors: Sequence[str], label_map: Mapping[str, str] | None = None):
        self.behaviors = list(behaviors)
        self.known = set(self.behaviors)
        self.label_map = {str(k).strip(): str(v).strip() for k, v in (label_map or {}).items()}

    def resolve(self, label: str, field: str) -> str:
        label = label.strip()
        name = self.label_map.get(label, label)
        if name in self.known:
            return name
        closest = closest_names(label, self.behaviors + list(self.label_map))
        hint = f"; closest: {', '.join(closest)}" if closest else ""
        raise FieldError(field, f"unknown behavior {label!r}{hint}", closest)


def parse_time_values(values: Sequence, fields: Sequence[str], tz: str | None) -> list[int]:
    """Raw timestamps (ISO-8601 strings or epoch seconds) -> local epochs by data_prep's timezone rule. A value
    shaped like YYYYMMDDHH[MM[SS]] is refused (read as epoch seconds it would be a time in 2032-2036)."""
    out: list[int | None] = [None] * len(values)
    for value, field in zip(values, fields):
        fmt = compact_format(value)
        if fmt is not None:
            raise FieldError(field, f"timestamp {value!r} looks like a compact date and time ({fmt}), not epoch "
                                    f"seconds; send ISO-8601 (2024-03-01T07:00:00)")
    for kind in (str, (int, float)):
        where = [i for i, v in enumerate(values) if isinstance(v, kind) and not isinstance(v, bool)]
        if not where:
            continue
        try:
            local, ok, _ = parse_times([values[i] for i in where], tz=tz, source="timestamp")
        except PrepareError as err:
            raise FieldError(fields[where[0]], str(err)) from None
        for i, value, good in zip(where, local.tolist(), ok.tolist()):
            if not good:
                raise FieldError(fields[i], f"unparseable timestamp {values[i]!r} (ISO-8601 with hours and "
                                            f"minutes, or epoch seconds)")
            out[i] = int(value)
    for i, value in enumerate(out):
        if value is None:
            raise FieldError(fields[i], f"timestamp must be a string or a number, got {values[i]!r}")
    return out


def make_query(user_id: str | None, events: Sequence[Event], next_time: int, next_place: str, history_len: int,
               top_k: int, mode: str, seed: int, fields: Sequence[str] | None = None) -> Query:
    """Order events as prepare does (``seed``: the run's prepare seed; the events of one instant ranked by
    their order in ``events``), check them against the next event, keep the last L."""
    fields = fields or [f"events[{i}]" for i in range(len(events))]
    if not events:
        raise FieldError("events", "no event: need at least one earlier event of this user")
    order = event_order(seed, user_id or "", [e.time for e in events])
    later = [i for i in order if events[i].time >= next_time]
    if later:
        raise FieldError(f"{fields[later[0]]}.timestamp", f"{len(later)} event(s) are at or after the next "
                                                            f"event's timestamp: history must be strictly earlier")
    history = [events[i] for i in order][-history_len:]
    warning = None
    if len(history) < history_len:
        warning = (f"short history: {len(history)} of the {history_len} events the model was trained with; "
                   f"predicted from the shorter history")
    return Query(user_id, history, int(next_time), next_place.strip() or UNKNOWN_PLACE, top_k, mode, warning)


def events_from_raw(raw: Sequence[Mapping], names: BehaviorNames, tz: str | None,
                    prefix: str = "events") -> list[Event]:
    """JSON events {"timestamp", "place", "behavior"} -> Events (fields named `prefix[i].key` in errors)."""
    fields = [f"{prefix}[{i}]" for i in range(len(raw))]
    times = parse_time_values([e["timestamp"] for e in raw], [f"{f}.timestamp" for f in fields], tz)
    cutoff = future_cutoff()
    for t, e, f in zip(times, raw, fields):
        if t > cutoff:
            raise FieldError(f"{f}.timestamp", f"timestamp {e['timestamp']!r} is after the time of the request plus "
                                               f"a day: history events cannot lie in the future (next may)")
    return [Event(t, str(e["place"]).strip() or UNKNOWN_PLACE, names.resolve(str(e["behavior"]), f"{f}.behavior"))
            for t, e, f in zip(times, raw, fields)]


def top_k_of(probs: np.ndarray, behaviors: Sequence[str], k: int) -> list[dict]:
    """Best first; ties go to the lower label_id (stable order, as the evaluation's argmax)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"behavior": behaviors[i], "p": float(probs[i])} for i in order]
