"""An event log whose next behavior is a rule of its context, for the learning tests.

Anchors follow each other in a cycle, ANCHORS[i] -> ANCHORS[i + 1]. Now and then (`tail_share` of the events)
the user goes to the lake: that event is the first tail, whatever came before, and the other tails follow it
in a fixed order before the cycle resumes at the first anchor (Kayaking at the lake -> Opera -> Rodeo ->
Reading). So every anchor and every tail after the first is the rule of the last behavior, and the first tail
is the rule of the place: a model that reads the context can answer them all; one that does not cannot beat
the prior. `rule=False` shuffles the behaviors over all events (same places, times and label counts): nothing
in the context then tells the next behavior, the control a learning test must fail on.
"""
from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ANCHORS = ["Reading", "Music", "Gaming", "Cooking", "Walking", "Chatting"]
TAILS = ["Kayaking", "Opera", "Rodeo"]
PLACES = ["home", "office"]
TAIL_PLACE = "lake"


def successor(last: str) -> str:
    """The behavior that follows `last` when the user does not go to the lake."""
    if last in TAILS[:-1]:
        return TAILS[TAILS.index(last) + 1]
    if last == TAILS[-1]:
        return ANCHORS[0]
    return ANCHORS[(ANCHORS.index(last) + 1) % len(ANCHORS)]


def events(users: int, per_user: int, tail_share: float, seed: int, rule: bool = True) -> list[tuple]:
    """(user_id, timestamp, place, behavior) rows: `per_user` events an hour or more apart for each user."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        t = datetime(2024, 3, 1, 6) + timedelta(hours=int(rng.integers(0, 24)))
        last = ANCHORS[int(rng.integers(len(ANCHORS)))]
        for _ in range(per_user):
            t += timedelta(hours=int(rng.integers(1, 4)))
            lake = last not in TAILS[:-1] and rng.random() < tail_share
            place, last = (TAIL_PLACE, TAILS[0]) if lake else (PLACES[int(rng.integers(len(PLACES)))], successor(last))
            rows.append((f"u{u:03d}", t.isoformat(timespec="minutes"), place, last))
    if not rule:
        labels = [r[3] for r in rows]
        rng.shuffle(labels)
        rows = [(u, t, p, b) for (u, t, p, _), b in zip(rows, labels)]
    return rows


def write(path: Path, rows: list[tuple]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "timestamp", "place", "behavior"])
        writer.writerows(rows)
    return path
