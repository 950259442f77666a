"""Events of one instant: the history of a sample never sees its target's instant, and the order inside an
instant never comes from the labels.

Hour- or minute-resolution logs and aggregated exports write several events at one timestamp. The paper's
sample (section 2.1: the L events before the target -> the target's behavior) assumes a strict order, which
such logs do not have. Sorting an instant's events by name, as a plain sort does, would hand the model the
answer: after "Aerobics" at 07:00 the only events left at 07:00 sort after it. So:

- a sample's history holds only events strictly earlier than its target (`instant_start`): events of one
  instant never see each other, and every target of one instant has the same history;
- inside a history, the events of one instant are ordered by `instant_order_key`, a seeded hash of
  (seed, user, time, behavior), never by name. `order_instants` puts the table in that order once, before
  the samples are drawn; serving orders a request's events by the same key.

Memory stays proportional to the tied events (an event at the same instant as the one before it), never to
all events: a log without ties costs two boolean passes.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

RULE = ("history = the L events strictly earlier than the target's timestamp (events of the target's instant "
        "are never history); events of one instant are ordered by a seeded hash of (seed, user, time, behavior)")
WARN_SHARE = 0.05   # prepare warns when more than this share of the targets are tied

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _name_hash(seed: int, names) -> np.ndarray:
    """A stable 64-bit hash of each name under the seed (blake2b; independent of Python's hash seed)."""
    return np.array([int.from_bytes(hashlib.blake2b(f"{int(seed)}\x1f{name}".encode(), digest_size=8).digest(),
                                    "little") for name in names], dtype=np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer (uint64 arithmetic wraps): every input bit moves every output bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def instant_order_key(seed: int, user_hash: np.ndarray, time: np.ndarray, behavior_hash: np.ndarray) -> np.ndarray:
    """The order of events inside one instant: hash(seed, user, time, behavior) as uint64.

    ``user_hash`` and ``behavior_hash`` come from `_name_hash` of the user id and the behavior name (the seed is
    in them), so the key is the same in prepare and in serving, whatever codes the names have."""
    with np.errstate(over="ignore"):
        key = _mix(np.asarray(user_hash, np.uint64) ^ _mix(np.asarray(time, np.int64).astype(np.uint64) & _M64))
        return _mix(key ^ np.asarray(behavior_hash, np.uint64))


def event_order(seed: int, user_id: str, times, behaviors) -> list[int]:
    """Positions of one user's events in history order: by time, then by the instant key (serving's rule)."""
    times = np.asarray(times, dtype=np.int64)
    key = instant_order_key(seed, _name_hash(seed, [user_id])[0], times, _name_hash(seed, behaviors))
    return np.lexsort((key, times)).tolist()


def tied_positions(user: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Sorted indices i of the events at the same (user, time) as event i - 1 (the table is (user, time)-sorted)."""
    if len(user) < 2:
        return np.empty(0, np.int64)
    same = (user[1:] == user[:-1]) & (time[1:] == time[:-1])
    return np.flatnonzero(same) + 1


def order_instants(table, seed: int):
    """The table with the events of each instant in the seeded hash order (a new table; the input is kept).

    De-duplication left at most one event per (user, time, behavior), so the key never needs the place."""
    tied = tied_positions(table.user, table.time)
    if tied.size == 0:
        return table
    # every event of a tied instant: the tied ones and the event that opens each instant
    members = np.union1d(tied, tied - 1)
    instant = np.cumsum(~np.isin(members, tied, assume_unique=True))  # a member that is not tied opens one
    users = table.user[members]
    codes, inverse = np.unique(users, return_inverse=True)
    user_hash = _name_hash(seed, [table.user_ids[c] for c in codes.tolist()])[inverse]
    behavior_hash = _name_hash(seed, table.behaviors)[table.behavior[members]]
    key = instant_order_key(seed, user_hash, table.time[members], behavior_hash)
    order = members[np.lexsort((key, instant))]
    behavior, place = table.behavior.copy(), table.place.copy()
    behavior[members], place[members] = table.behavior[order], table.place[order]
    return replace(table, behavior=behavior, place=place)


def instant_start(tied: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Index of the first event of each idx's instant (``tied``: `tied_positions`)."""
    return _move_tied(tied, idx, lambda runs: _run_firsts(runs) - 1)


def next_instant(tied: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The smallest j >= idx that opens an instant (idx itself unless idx continues the instant of idx - 1)."""
    return _move_tied(tied, idx, lambda runs: _run_lasts(runs) + 1)


def _move_tied(tied: np.ndarray, idx: np.ndarray, target) -> np.ndarray:
    """idx, with each tied position replaced by target(tied)[its position in tied]."""
    idx = np.asarray(idx, dtype=np.int64)
    if tied.size == 0:
        return idx
    pos = np.searchsorted(tied, idx)
    hit = pos < tied.size
    hit[hit] = tied[pos[hit]] == idx[hit]
    out = idx.copy()
    out[hit] = target(tied)[pos[hit]]
    return out


def _run_firsts(tied: np.ndarray) -> np.ndarray:
    """For each tied position, the first position of its run of consecutive tied positions."""
    starts = np.concatenate(([True], np.diff(tied) != 1))
    return tied[np.flatnonzero(starts)][np.cumsum(starts) - 1]


def _run_lasts(tied: np.ndarray) -> np.ndarray:
    """For each tied position, the last position of its run of consecutive tied positions."""
    ends = np.concatenate((np.diff(tied) != 1, [True]))
    last = tied[np.flatnonzero(ends)]
    return last[np.cumsum(np.concatenate(([True], ends[:-1]))) - 1]


def largest_instant(tied: np.ndarray) -> int:
    """Events in the largest instant (1 when no two events share a timestamp)."""
    if tied.size == 0:
        return 1
    starts = np.flatnonzero(np.concatenate(([True], np.diff(tied) != 1)))
    return int(np.diff(np.concatenate((starts, [tied.size]))).max()) + 1
