"""The synthetic generator: calibrated context preferences, personal habits and transitions (steps 2-4 of
:mod:`data_prep.synthetic`), block-seeded so the events never depend on the chunk size."""
from __future__ import annotations

import datetime as _dt
import functools

import numpy as np
import pyarrow as pa

from data_prep.encoding.encode import events_from_arrays
from data_prep.errors import PrepareError
from data_prep.synthetic.catalogue import (
    ANCHOR_AFFINITY,
    ANCHOR_GAMMA_SHAPE,
    ANCHOR_NEIGHBORS,
    BEHAVIORS,
    MAX_DEGREE,
    METROPOLIS_RATE,
    N_CONTEXTS,
    N_HOURS,
    PLACES,
    RNG_BLOCK,
    TAIL_GAMMA_SHAPE,
    TAIL_TWIST,
    context_index,
)
from data_prep.synthetic.routine import context_distribution, timeline

DEFAULT_USERS, DEFAULT_DAYS = 2000, 60  # the embedded default data set (prepare --synthetic, make prepare)
DEFAULT_START, DEFAULT_EVENTS_PER_DAY = "2024-03-01", 25.0   # its first day and events per user and day
DEFAULT_CHUNK_USERS = 2000   # users generated (and written) at once


class SyntheticError(PrepareError):
    """Bad arguments to the synthetic generator (one line, like every prepare error)."""


def _affinity_row(name: str, parent: str | None) -> np.ndarray:
    """Affinity of one behavior over the (weekend, hour, place) contexts, before calibration."""
    places, hours, weekend = ANCHOR_AFFINITY[parent or name]
    place_w = np.array([places.get(p, 0.5) for p in PLACES], dtype=float)
    hour_w = np.ones(N_HOURS)
    for start, end, factor in hours:
        hour_w[start:end] *= factor
    day_w = np.array([1.0, weekend])
    if parent is not None and name in TAIL_TWIST:
        t_places, t_hours, t_weekend = TAIL_TWIST[name]
        place_w *= [t_places.get(p, 1.0) for p in PLACES]
        for start, end, factor in t_hours:
            hour_w[start:end] *= factor
        day_w[1] *= t_weekend
    return (day_w[:, None, None] * hour_w[None, :, None] * place_w[None, None, :]).ravel()

def calibrate_scales(shares: np.ndarray, affinity: np.ndarray, context_dist: np.ndarray,
                     user_weights: np.ndarray, tol: float = 1e-5, max_iter: int = 200) -> np.ndarray:
    """Scales r with E_u sum_c q(c) p_u(b|c) = share_b, where p_u(b|c) ~ r_b K(b,c) w_ub.

    Iterative proportional fitting (Sinkhorn-style) over the behavior x context table, averaged over a
    fixed panel of user habit weights: the global marginal stays the documented share while each behavior
    keeps its context preference and users keep their habits."""
    live = context_dist > 0
    K, q = affinity[:, live].T, context_dist[live]         # (contexts, behaviors), (contexts,)
    r = shares.copy()
    for _ in range(max_iter):
        cond = r * K[None] * user_weights[:, None, :]
        cond /= cond.sum(axis=2, keepdims=True)
        marginal = np.einsum("ucb,c->b", cond, q) / len(user_weights)
        if np.max(np.abs(marginal / shares - 1)) < tol:
            break
        r *= shares / marginal
    return r / r.sum()


class Spec:
    """Everything derived from the behavior subset: names, shares, calibrated context table, neighbors."""

    def __init__(self, names: tuple[str, ...]):
        table = {name: (share, parent) for name, share, parent in BEHAVIORS}
        self.names = list(names)
        shares = np.array([table[n][0] for n in names])
        self.shares = shares / shares.sum()
        parents = [table[n][1] for n in names]
        self.is_tail = np.array([p is not None for p in parents])
        affinity = np.stack([_affinity_row(n, p) for n, p in zip(names, parents)])
        self.gamma_shape = np.where(self.is_tail, TAIL_GAMMA_SHAPE, ANCHOR_GAMMA_SHAPE)
        # A fixed panel of habit weights, each column rescaled to mean 1 (its expectation).
        panel = np.random.default_rng([20240301, 1]).gamma(self.gamma_shape, 1 / self.gamma_shape,
                                                           (256, len(names)))
        panel /= panel.mean(axis=0)
        scales = calibrate_scales(self.shares, affinity, context_distribution(), panel)
        self.context_weight = (scales[:, None] * affinity).T.copy()  # (contexts, behaviors)
        index = {n: i for i, n in enumerate(names)}
        edges = [(n, p) for n, p in zip(names, parents) if p is not None] + ANCHOR_NEIGHBORS
        neighbors: list[list[int]] = [[] for _ in names]
        for a, b in edges:
            if a in index and b in index:
                neighbors[index[a]].append(index[b])
                neighbors[index[b]].append(index[a])
        self.neighbors = np.full((len(names), MAX_DEGREE), -1, dtype=np.int64)
        for i, nb in enumerate(neighbors):
            assert len(nb) <= MAX_DEGREE, (names[i], nb)
            self.neighbors[i, :len(nb)] = nb


def resolve_behaviors(behaviors) -> tuple[str, ...]:
    if behaviors is None:
        return tuple(name for name, _, _ in BEHAVIORS)
    names = [str(b) for b in behaviors]
    known = {name for name, _, _ in BEHAVIORS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SyntheticError(f"unknown synthetic behavior(s) {unknown}; choose from data_prep.synthetic.BEHAVIORS")
    if len(set(names)) != len(names) or len(names) < 2:
        raise SyntheticError(f"behaviors must be at least 2 distinct names, got {names}")
    order = {name: i for i, (name, _, _) in enumerate(BEHAVIORS)}
    return tuple(sorted(names, key=order.__getitem__))


@functools.lru_cache(maxsize=8)
def spec_for(names: tuple[str, ...]) -> Spec:
    return Spec(names)


# ------------------------------------------------------------------------------------------ behaviors


def draw_habits(rng: np.random.Generator, spec: Spec, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's habit weights w_ub = Gamma(a_b)/a_b (step 3) and repeat rate 0.6 Beta(2, 4) (mean 0.2; step 4)."""
    weights = rng.gamma(spec.gamma_shape, 1 / spec.gamma_shape, (n_users, len(spec.names)))
    return weights, 0.6 * rng.beta(2, 4, n_users)


def _draw_behaviors(rng: np.random.Generator, spec: Spec, user: np.ndarray, context: np.ndarray,
                    habits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Behavior codes (spec order) of a block's events sorted by (user, time)."""
    n = len(user)
    B = len(spec.names)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    weights, repeat_rate = habits
    n_users = len(repeat_rate)
    mode_u = rng.random(n)
    fresh_u = rng.random(n)
    move_u = rng.random(n)
    accept_u = rng.random(n)

    # Fresh draws from p_u(b | c): one cumulative row per (user, context) pair present.
    key = user * N_CONTEXTS + context
    present = np.zeros(n_users * N_CONTEXTS, dtype=bool)
    present[key] = True
    rows = np.flatnonzero(present)
    row_of_event = (np.cumsum(present) - 1)[key]
    probs = spec.context_weight[rows % N_CONTEXTS] * weights[rows // N_CONTEXTS]
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0
    offsets = np.arange(len(rows), dtype=float)[:, None]
    flat = (cdf + offsets).ravel()
    fresh = np.searchsorted(flat, row_of_event + fresh_u, side="right") - row_of_event * B
    fresh = np.minimum(fresh, B - 1)

    # Transitions: fresh (mode 0), repeat (1) or Metropolis move (2), chained from the last fresh event.
    first = np.ones(n, dtype=bool)
    first[1:] = user[1:] != user[:-1]
    rate = repeat_rate[user]
    mode = np.where(mode_u < rate, 1, np.where(mode_u < rate + METROPOLIS_RATE, 2, 0))
    mode[first] = 0
    idx = np.arange(n)
    last_fresh = np.maximum.accumulate(np.where(mode == 0, idx, 0))
    depth = idx - last_fresh
    behavior = fresh.copy()
    order = np.argsort(depth, kind="stable")
    bounds = np.searchsorted(depth[order], np.arange(depth.max() + 2))
    for k in range(1, depth.max() + 1):
        at = order[bounds[k]:bounds[k + 1]]
        prev = behavior[at - 1]
        proposal = spec.neighbors[prev, (move_u[at] * MAX_DEGREE).astype(np.int64)]
        ratio = spec.shares[np.maximum(proposal, 0)] / spec.shares[prev]
        moved = (mode[at] == 2) & (proposal >= 0) & (accept_u[at] < ratio)
        behavior[at] = np.where(moved, proposal, prev)
    return behavior


def block_state(spec: Spec, seed: int, block: int, n_users: int, n_days: int, start_weekday: int,
                events_per_day: float):
    """One block's random stream up to its behaviors: (rng, the timeline's arrays, the users' habits). The
    oracle (:mod:`data_prep.synthetic.oracle`) replays it for the habits."""
    rng = np.random.default_rng([int(seed), int(block)])
    events = timeline(rng, n_users, n_days, start_weekday, events_per_day)
    return rng, events, draw_habits(rng, spec, n_users)


def _block_arrays(spec: Spec, seed: int, block: int, first_user: int, n_users: int, n_days: int,
                  start_weekday: int, events_per_day: float):
    rng, (user, t, weekend, hour, place), habits = block_state(spec, seed, block, n_users, n_days, start_weekday,
                                                               events_per_day)
    behavior = _draw_behaviors(rng, spec, user, context_index(weekend, hour, place), habits)
    return (user + first_user).astype(np.int64), t, place, behavior


def check_sizes(n_users: int, n_days: int, events_per_day: float) -> None:
    if int(n_users) < 1 or int(n_days) < 1:
        raise SyntheticError(f"n_users and n_days must be positive, got {n_users} users, {n_days} days")
    if not events_per_day > 0:
        raise SyntheticError(f"events_per_day must be positive, got {events_per_day}")


def start_epoch(start: str) -> tuple[int, int]:
    try:
        day = _dt.date.fromisoformat(start)
    except (TypeError, ValueError):
        raise SyntheticError(f"start must be an ISO date like 2024-03-01, got {start!r}") from None
    epoch = int(_dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC).timestamp())
    return epoch, day.weekday()


def user_id_names(first: int, stop: int, n_users: int) -> list[str]:
    """User ids ``u000123``: zero-padded to at least 6 digits, wider when there are more users."""
    width = max(6, len(str(n_users - 1)))
    return [f"u{i:0{width}d}" for i in range(first, stop)]


def iter_event_chunks(n_users: int, n_days: int, seed: int, behaviors=None, start: str = DEFAULT_START,
                      chunk_users: int = DEFAULT_CHUNK_USERS, events_per_day: float = DEFAULT_EVENTS_PER_DAY):
    """Yield (first_user, stop_user, user, time, place, behavior) per chunk of users, sorted by (user, time).

    user: global int64 user index; time: int64 epoch seconds (local wall time as UTC); place: codes into
    ``PLACES``; behavior: codes into ``behavior_names(behaviors)``."""
    check_sizes(n_users, n_days, events_per_day)
    spec = spec_for(resolve_behaviors(behaviors))
    epoch, start_weekday = start_epoch(start)
    blocks_per_chunk = max(1, -(-int(chunk_users) // RNG_BLOCK))
    n_blocks = -(-n_users // RNG_BLOCK)
    for first_block in range(0, n_blocks, blocks_per_chunk):
        parts = []
        for block in range(first_block, min(n_blocks, first_block + blocks_per_chunk)):
            lo, hi = block * RNG_BLOCK, min(n_users, (block + 1) * RNG_BLOCK)
            parts.append(_block_arrays(spec, seed, block, lo, hi - lo, n_days, start_weekday, events_per_day))
        user, t, place, behavior = (np.concatenate(a) for a in zip(*parts))
        yield (first_block * RNG_BLOCK, min(n_users, (first_block + blocks_per_chunk) * RNG_BLOCK),
               user, t + epoch, place, behavior)


def behavior_names(behaviors=None) -> list[str]:
    """The generated behaviors in table order (codes of ``iter_event_chunks``)."""
    return list(resolve_behaviors(behaviors))


def generate_arrays(n_users: int, n_days: int, seed: int, behaviors=None, start: str = DEFAULT_START,
                     events_per_day: float = DEFAULT_EVENTS_PER_DAY) -> dict:
    chunks = list(iter_event_chunks(n_users, n_days, seed, behaviors, start, chunk_users=n_users,
                                    events_per_day=events_per_day))
    _, _, user, time, place, behavior = (np.concatenate(a) if i >= 2 else a for i, a in enumerate(zip(*chunks)))
    return {"user": user, "time": time, "place": place, "behavior": behavior,
            "user_ids": user_id_names(0, n_users, n_users), "places": list(PLACES),
            "behaviors": behavior_names(behaviors)}


def generate_events(n_users: int, n_days: int, seed: int, behaviors: list[str] | None = None,
                    start: str = DEFAULT_START, *, events_per_day: float = DEFAULT_EVENTS_PER_DAY):
    """A synthetic EventTable of ``n_users`` users over ``n_days`` days from ``start`` (seeded)."""
    a = generate_arrays(n_users, n_days, seed, behaviors, start, events_per_day)

    def labels(codes, vocab):
        return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(vocab, pa.string()))

    return events_from_arrays(labels(a["user"], a["user_ids"]), a["time"], labels(a["place"], a["places"]),
                              labels(a["behavior"], a["behaviors"]), source="<synthetic>",
                              notes={"synthetic": {"n_users": int(n_users), "n_days": int(n_days),
                                                   "seed": int(seed), "start": start,
                                                   "events_per_day": float(events_per_day),
                                                   "behaviors": a["behaviors"]}})
