"""`python -m serving predict`: recent events of many users -> one JSONL line of next-behavior probabilities
per user.

Input (read by data_prep's readers, so the schema, formats, --columns, --label-map, --tz and --time-format rules
are those of `make prepare`):
- ``--events``: the users' recent events, one a row: user_id, timestamp, place, behavior;
- ``--next``: per user, the context of the event to predict, one row: user_id, timestamp, place (its
  weekday and hour come from the timestamp, as in training).
Output, one line per user (sorted by user_id), never a skipped user:
``{"user_id", "context": {"timestamp", "weekday", "hour", "place"}, "top": [{"behavior", "p"}, ...],
"history_len", "instruction_template", "model", "run", "temperature"}`` plus ``"warning"`` for a history shorter
than L, or ``{"user_id", "error", "model", "run", "temperature"}`` when the user cannot be predicted (an unknown
behavior, no events, no or several next rows, a prompt over --cutoff-len). ``temperature``: the T the
probabilities were scaled with (``serving.run``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data_prep.encoding.ties import input_sequence
from data_prep.reading.events import load_events
from data_prep.reading.sources import load_input
from data_prep.writing.outputs import write_jsonl
from serving.predictor import Predictor, error_line, local_iso, result_line
from serving.prompting import Event, Query
from serving.queries import BehaviorNames, FieldError, make_query
from serving.run import RunInfo, ServingError

CHUNK = 256   # queries per Predictor.predict call: progress and memory granularity


@dataclass
class ReadOptions:
    fmt: str | None = None
    columns: dict[str, str] | None = None
    label_map: dict[str, str] | None = None
    tz: str | None = None
    time_format: str | None = None
    allow_bad_timestamps: bool = False


def read_next(path: str, opts: ReadOptions) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    """user_id -> (local time, place) of the event to predict, and user_id -> error for users with several rows.

    The file is read by load_events with the user column standing in for the behavior column (the next
    event has none), so formats, column names and time zones follow prepare's rules exactly."""
    cols = dict(opts.columns or {})
    cols["behavior"] = cols.get("user", "user_id")
    table = load_events(path, fmt=opts.fmt, columns=cols, tz=opts.tz, time_format=opts.time_format, future=True)
    dropped = {k: v for k, v in table.dropped.items() if v and k != "duplicate_event"}
    if dropped:
        rows = table.notes.get("bad_timestamp_examples") or []
        where = f"row {rows[0]['row']}: unparseable timestamp {rows[0]['value']!r}" if rows else \
            ", ".join(f"{k}: {v} rows" for k, v in dropped.items())
        raise ServingError(f"{path}: {where} (every user needs a valid next-event timestamp)")
    contexts, errors = {}, {}
    counts = {}
    for u, t, p in zip(table.user.tolist(), table.time.tolist(), table.place.tolist()):
        uid = table.user_ids[u]
        counts[uid] = counts.get(uid, 0) + 1
        contexts[uid] = (int(t), table.places[p])
    for uid, n in counts.items():
        if n > 1:
            errors[uid] = f"{n} next-event rows in {path}; give exactly one"
    return contexts, errors


def _reader(opts: ReadOptions) -> dict:
    return {"columns": opts.columns, "label_map": opts.label_map, "tz": opts.tz,
            "strict_labels": opts.label_map is not None, "time_format": opts.time_format,
            "allow_bad_timestamps": opts.allow_bad_timestamps}


def read_events_table(path: str, opts: ReadOptions):
    """One events file as prepare reads it (an EventTable)."""
    return load_events(path, fmt=opts.fmt, **_reader(opts))


def read_histories(path: str, opts: ReadOptions) -> tuple[dict[str, list[Event]], dict]:
    """user_id -> events (sorted as prepare sorts them), and the rows dropped by reason. `path`: one file, or
    several as prepare's INPUT (a directory, a glob, a URI), each read under the one-file rules and merged."""
    return histories_of(load_input(path, fmt=opts.fmt, **_reader(opts)))


def histories_of(table) -> tuple[dict[str, list[Event]], dict]:
    """An EventTable's histories by user_id (the events of one instant in input order, which make_query
    ranks them by), and its rows dropped by reason."""
    offsets = table.user_offsets()
    seq = input_sequence(table)
    time, place, behavior = table.time[seq].tolist(), table.place[seq].tolist(), table.behavior[seq].tolist()
    histories = {}
    for u, uid in enumerate(table.user_ids):
        lo, hi = int(offsets[u]), int(offsets[u + 1])
        histories[uid] = [Event(int(t), table.places[p], table.behaviors[b]) for t, p, b in zip(
            time[lo:hi], place[lo:hi], behavior[lo:hi])]
    return histories, {k: v for k, v in table.dropped.items() if v}


def build_queries(histories: dict, contexts: dict, errors: dict, run: RunInfo, names: BehaviorNames,
                  top_k: int, mode: str) -> tuple[list[Query], dict[str, str]]:
    """A query per user that has both events and one next context; every other user gets an error."""
    errors = dict(errors)
    queries = []
    for uid in sorted(set(histories) | set(contexts)):
        if uid in errors:
            continue
        if uid not in contexts:
            errors[uid] = "no next-event context for this user in --next"
            continue
        events = histories.get(uid, [])
        if not events:
            errors[uid] = "no events for this user in --events"
            continue
        try:
            events = [Event(e.time, e.place, names.resolve(e.behavior, f"event at {local_iso(e.time)}"))
                      for e in events]
            queries.append(make_query(uid, events, *contexts[uid], run.history_len, top_k, mode, seed=run.seed,
                                      fields=[f"event at {local_iso(e.time)}" for e in events]))
        except FieldError as err:
            errors[uid] = str(err)
    return queries, errors


def predict_files(predictor: Predictor, events: str, next_path: str, out: str, opts: ReadOptions, top_k: int,
                  mode: str, log=print) -> dict:
    """Read, predict and write `out` atomically; returns counts (users, predicted, errors, short)."""
    run = predictor.run
    names = BehaviorNames(run.behaviors, opts.label_map)
    histories, dropped = read_histories(events, opts)
    contexts, errors = read_next(next_path, opts)
    queries, errors = build_queries(histories, contexts, errors, run, names, top_k, mode)
    preds = []
    with tqdm(total=len(queries), desc="predicting", unit="user", disable=None) as bar:
        for lo in range(0, len(queries), CHUNK):
            preds += predictor.predict(queries[lo:lo + CHUNK])
            bar.update(min(CHUNK, len(queries) - lo))
    lines = {p.query.user_id: result_line(p, run) for p in preds}
    for uid, message in errors.items():
        lines[uid] = error_line(uid, message, run, mode)
    write_jsonl(Path(out), (lines[uid] for uid in sorted(lines)))
    counts = {"users": len(lines), "predicted": sum("top" in v for v in lines.values()),
              "errors": sum("error" in v for v in lines.values()),
              "short_history": sum("warning" in v for v in lines.values()), "dropped_events": dropped}
    if dropped:
        log(f"warning: {events}: events dropped by prepare's rules: "
            + ", ".join(f"{k}={v}" for k, v in dropped.items()), file=sys.stderr)
    return counts
