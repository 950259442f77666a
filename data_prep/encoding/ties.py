"""Events of one instant: the history of a sample never sees its target's instant, and the order inside an
instant never comes from the labels.

Hour- or minute-resolution logs and aggregated exports write several events at one timestamp. The paper's
sample (section 2.1: the L events before the target -> the target's behavior) assumes a strict order, which
such logs do not have. Sorting an instant's events by name, as a plain sort does, would hand the model the
answer: after "Aerobics" at 07:00 the only events left at 07:00 sort after it. So:

- a sample's history holds only events strictly earlier than its target (`instant_start`): events of one
  instant never see each other, and every target of one instant has the same history;
- inside a history, the events of one instant are ordered by `instant_order_key`, a seeded hash of
  (seed, user, time, rank), where rank is the event's place among its instant's rows in the input (files in
  sorted path order, rows in file order; `EventTable.input_order`). Never the behavior's name: when the L-event
  window cuts an instant at its oldest end, which of its events fill the oldest slots does not change when
  behaviors are renamed, and an export sorted by name does not give histories in alphabetical order.
  `order_instants` puts the table in that order once, before the samples are drawn; serving orders a
  request's events by the same key, ranking an instant's events by their order in the request (`event_order`).

Memory stays proportional to the tied events (an event at the same instant as the one before it), never to
all events: ``EventTable.input_order`` holds only them, and finding them costs the readers' sort one more copy
of its keys while it runs (data_prep.encoding.encode.sort_and_dedup); a log without ties is left as it is.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

RULE = ("history = the L events strictly earlier than the target's timestamp (events of the target's instant "
        "are never history); events of one instant are ordered by a seeded hash of (seed, user, time, the event's "
        "rank among its instant's rows in the input)")
FILE_SHIFT = 40   # an input order is file index << FILE_SHIFT | the event's order in its file
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


def instant_order_key(seed: int, user_hash: np.ndarray, time: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The order of events inside one instant: hash(seed, user, time, rank) as uint64.

    ``user_hash`` comes from `_name_hash` of the user id (the seed is in it); ``rank`` is the event's place among
    its instant's events in the input (0, 1, ...), so the key is the same in prepare and in serving, whatever
    codes or names the behaviors have."""
    with np.errstate(over="ignore"):
        key = _mix(np.asarray(user_hash, np.uint64) ^ _mix(np.asarray(time, np.int64).astype(np.uint64) & _M64))
        return _mix(key ^ _mix(np.asarray(rank, np.int64).astype(np.uint64) + np.uint64(int(seed) & 0xFFFFFFFF)))


def event_order(seed: int, user_id: str, times) -> list[int]:
    """Positions of one user's events in history order: by time, then by the instant key of each event's rank
    among the events of its instant in the given order (serving's rule: a request lists them as its input)."""
    times = np.asarray(times, dtype=np.int64)
    listed = np.argsort(times, kind="stable")
    rank = np.empty(times.size, np.int64)
    rank[listed] = _rank_in_group(times[listed])
    key = instant_order_key(seed, _name_hash(seed, [user_id])[0], times, rank)
    return np.lexsort((key, times)).tolist()


def _rank_in_group(groups: np.ndarray) -> np.ndarray:
    """0, 1, ... along each run of equal values of a grouped (sorted) array."""
    starts = np.concatenate(([True], groups[1:] != groups[:-1])) if groups.size else np.empty(0, bool)
    first = np.flatnonzero(starts)
    return np.arange(groups.size) - np.repeat(first, np.diff(np.append(first, groups.size)))


def tied_positions(user: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Sorted indices i of the events at the same (user, time) as event i - 1 (the table is (user, time)-sorted)."""
    if len(user) < 2:
        return np.empty(0, np.int64)
    same = (user[1:] == user[:-1]) & (time[1:] == time[:-1])
    return np.flatnonzero(same) + 1


def _members(table) -> tuple[np.ndarray, np.ndarray]:
    """(every event of a tied instant, the number of its instant), both ascending."""
    tied = tied_positions(table.user, table.time)
    members = np.union1d(tied, tied - 1)
    return members, np.cumsum(~np.isin(members, tied, assume_unique=True))  # a member that is not tied opens one


def input_orders(table, members: np.ndarray) -> np.ndarray:
    """The input order of each of `members` (rows of tied instants) from ``table.input_order``."""
    if table.input_order is None:
        raise ValueError("the table has events at one instant but no input_order: build it with "
                         "data_prep.encoding.encode.events_from_arrays or a reader")
    rows, orders = table.input_order
    at = np.searchsorted(rows, members)
    if at.size and (at.max() >= rows.size or not np.array_equal(rows[at], members)):
        raise ValueError("input_order does not cover every event of a tied instant")
    return orders[at]


def order_instants(table, seed: int):
    """The table with the events of each instant in the seeded order of their input ranks (a new table; the
    input is kept). The ranks come from ``table.input_order``, which the readers and merges fill."""
    members, instant = _members(table)
    if members.size == 0:
        return table
    by_input = members[np.lexsort((input_orders(table, members), instant))]
    rank = np.empty(members.size, np.int64)
    rank[np.searchsorted(members, by_input)] = _rank_in_group(instant)
    users = table.user[members]
    codes, inverse = np.unique(users, return_inverse=True)
    user_hash = _name_hash(seed, [table.user_ids[c] for c in codes.tolist()])[inverse]
    key = instant_order_key(seed, user_hash, table.time[members], rank)
    order = members[np.lexsort((key, instant))]
    behavior, place = table.behavior.copy(), table.place.copy()
    behavior[members], place[members] = table.behavior[order], table.place[order]
    return replace(table, behavior=behavior, place=place, input_order=None)


def input_sequence(table) -> np.ndarray:
    """The table's rows with each instant's events in input order (serving hands them on as a request would)."""
    members, instant = _members(table)
    rows = np.arange(len(table))
    if members.size:
        rows[members] = members[np.lexsort((input_orders(table, members), instant))]
    return rows


def merged_orders(src: np.ndarray, offsets: np.ndarray, parts: list, files: list[int]) -> np.ndarray:
    """Input orders of merged events: ``src`` indexes the concatenation of ``parts`` (tables or pieces with an
    ``input_order`` of (rows, orders), or None) starting at ``offsets``; ``files``: each part's file index. An
    event alone at its instant in its file has order 0 there: only its file places it."""
    k = np.searchsorted(offsets, src, side="right") - 1
    local = src - offsets[k]
    out = np.asarray(files, np.int64)[k] << FILE_SHIFT
    for part in np.unique(k).tolist():
        known = parts[part]
        if known is None or not known[0].size:
            continue
        mine = np.flatnonzero(k == part)
        at = np.minimum(np.searchsorted(known[0], local[mine]), known[0].size - 1)
        hit = known[0][at] == local[mine]
        out[mine[hit]] += known[1][at[hit]]
    return out


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
