"""The embedded default data set: a seeded synthetic generator of smartphone-behavior logs.

It imitates the paper's Behavior dataset (section 2.2, Figure 1(a); section 4.1.1): 37 daily behaviors
with a long-tailed distribution, 16 "anchors" above 1% holding 97% of events (the largest 41.6%, the
paper's 43.6%) and 21 "tails" down to 0.02% (the paper's rarest is 0.0163%). Every tail has a semantically
close parent anchor (watching sports matches -> watching videos, taking a taxi -> public transportation)
and occurs in the same contexts as its parent, so a pretrained LM has something to generalize from.

How one user's log is generated (every step vectorized over a block of users):

1. Routine. Each user has a chronotype, an activity level, a job (80% work on site; the rest, and
   everybody on weekends or work-from-home days, follows a leisure routine), work hours, a commute time,
   a lunch-out and a gym habit. A day is a sequence of place segments (home, commute, workplace,
   restaurant, gym, shopping mall, outdoors); each event gets a time from an hourly activity profile and
   the place of the segment it falls in.
2. Context preference. Each behavior has an affinity for places, hours and weekends (tails inherit their
   parent's). p(b | context) is proportional to r_b * affinity(b, context), with r calibrated
   (iterative proportional fitting over the routine's context distribution and a fixed panel of user
   habits, step 3) so that the global marginal is the share of ``BEHAVIORS``.
3. Personal habits. A user's weights w_ub = Gamma(a_b)/a_b (mean 1; a normalized-Gamma, i.e.
   Dirichlet-style, perturbation of the global distribution): mild for anchors, heavy-tailed for tails,
   so most users rarely show a given tail and a few favor it.
4. Transitions. Each event is a fresh draw from p_u(b | context) proportional to p(b | context) * w_ub, a
   repeat of the previous behavior (a per-user rate), or a Metropolis move to a semantic neighbor (tail
   <-> parent, music <-> public transportation, ...), which keeps the global shares.

Output schema (the documented event schema of ``data_prep.events``): ``user_id`` (``u000123``),
``timestamp`` (int64 epoch seconds of the local wall time encoded as UTC), ``place``, ``behavior``.
Timestamps are strictly increasing within a user, so no duplicate events are produced. The same
arguments and seed give identical events whatever ``chunk_users`` is: random numbers are drawn per fixed
block of users.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
import sys
from pathlib import Path

import numpy as np

from data_prep.events import PrepareError
from data_prep.outputs import atomic_open

# (name, global share, parent anchor or None). 16 anchors (share > 1%) hold 97.0%, 21 tails hold 3.0%.
# Head (> 5%): the first four; medium (1-5%): the other twelve anchors; tail (< 1%): the rest.
BEHAVIORS: list[tuple[str, float, str | None]] = [
    ("Watching videos", 0.4160, None),
    ("Social media", 0.1500, None),
    ("Music", 0.0700, None),
    ("Gaming", 0.0550, None),
    ("Public transportation", 0.0450, None),
    ("Online shopping", 0.0400, None),
    ("Reading", 0.0340, None),
    ("Navigation", 0.0280, None),
    ("Food delivery", 0.0240, None),
    ("Weather check", 0.0200, None),
    ("Mobile payment", 0.0180, None),
    ("Taking photos", 0.0160, None),
    ("Email", 0.0150, None),
    ("Exercise", 0.0140, None),
    ("Alarm clock", 0.0130, None),
    ("Online banking", 0.0120, None),
    ("Watching sports matches", 0.0045, "Watching videos"),
    ("Podcasts", 0.0037, "Music"),
    ("Taking a taxi", 0.0032, "Public transportation"),
    ("Video calls", 0.0029, "Social media"),
    ("Watching animation", 0.0025, "Watching videos"),
    ("Grocery delivery", 0.0021, "Food delivery"),
    ("Audiobooks", 0.0018, "Reading"),
    ("Setting reminders", 0.0015, "Alarm clock"),
    ("Photo editing", 0.0013, "Taking photos"),
    ("Stock trading", 0.0011, "Online banking"),
    ("Cycling", 0.0009, "Exercise"),
    ("Parking", 0.0008, "Navigation"),
    ("Online courses", 0.0007, "Reading"),
    ("Second-hand trading", 0.0006, "Online shopping"),
    ("Playing chess", 0.0005, "Gaming"),
    ("Bill payment", 0.0004, "Mobile payment"),
    ("Yoga", 0.0004, "Exercise"),
    ("Document editing", 0.0003, "Email"),
    ("Hotel booking", 0.0003, "Online shopping"),
    ("Karaoke", 0.0003, "Music"),
    ("Flight booking", 0.0002, "Public transportation"),
]

# A 12-behavior subset for the small demo profile: 8 anchors and 4 of their tails (shares renormalized).
DEMO_BEHAVIORS: list[str] = [
    "Watching videos", "Social media", "Music", "Gaming", "Public transportation", "Online shopping",
    "Reading", "Exercise", "Watching sports matches", "Podcasts", "Taking a taxi", "Cycling",
]

PLACES: list[str] = ["home", "workplace", "commute", "restaurant", "gym", "shopping mall", "outdoors"]
HOME, WORK, COMMUTE, RESTAURANT, GYM, MALL, OUTDOORS = range(len(PLACES))
N_HOURS = 24
N_CONTEXTS = 2 * N_HOURS * len(PLACES)  # (weekend?, hour, place)

# Affinity of each anchor for places (unlisted places: 0.5), hours (start, end, factor; hours in [start,
# end) multiplied) and weekends. Tails use their parent's row times an optional small twist below.
_ANCHOR_AFFINITY: dict[str, tuple[dict[str, float], list[tuple[int, int, float]], float]] = {
    "Watching videos": ({"home": 3, "commute": 1.5, "restaurant": 1, "workplace": 0.3, "gym": 0.2},
                        [(19, 24, 2.0), (12, 14, 1.3), (0, 2, 1.5)], 1.2),
    "Social media": ({"home": 1, "commute": 1.3, "restaurant": 1.5, "workplace": 0.7, "outdoors": 1,
                      "shopping mall": 1}, [(8, 10, 1.3), (12, 14, 1.3)], 1.0),
    "Music": ({"commute": 5, "gym": 5, "home": 0.6, "workplace": 0.6, "outdoors": 1.5},
              [(7, 10, 1.5), (17, 20, 1.5)], 1.0),
    "Gaming": ({"home": 2, "commute": 1.2, "workplace": 0.15, "restaurant": 0.6},
               [(20, 24, 2.0), (0, 2, 2.0), (8, 18, 0.6)], 1.6),
    "Public transportation": ({"commute": 20, "outdoors": 1.5, "home": 0.1, "workplace": 0.1,
                               "restaurant": 0.2, "gym": 0.1, "shopping mall": 0.3},
                              [(7, 10, 2.0), (17, 20, 2.0)], 0.7),
    "Online shopping": ({"home": 2, "workplace": 0.8, "shopping mall": 3, "gym": 0.1},
                        [(20, 24, 2.0), (12, 14, 1.3)], 1.3),
    "Reading": ({"home": 1.5, "commute": 2.5, "workplace": 0.6, "gym": 0.1},
                [(6, 9, 1.5), (22, 24, 2.0)], 1.0),
    "Navigation": ({"outdoors": 6, "commute": 2.5, "shopping mall": 1, "restaurant": 0.5, "home": 0.1,
                    "workplace": 0.1}, [(9, 20, 1.5)], 1.5),
    "Food delivery": ({"workplace": 2, "home": 2, "restaurant": 0.1, "gym": 0.1},
                      [(11, 13, 4.0), (17, 20, 3.0)], 1.0),
    "Weather check": ({"home": 3, "commute": 1, "workplace": 0.3}, [(6, 9, 5.0)], 1.0),
    "Mobile payment": ({"restaurant": 8, "shopping mall": 8, "commute": 1, "outdoors": 1.5, "home": 0.1,
                        "workplace": 0.3}, [(11, 14, 1.5), (17, 21, 1.5)], 1.2),
    "Taking photos": ({"outdoors": 8, "restaurant": 2.5, "shopping mall": 1.5, "home": 0.2,
                       "workplace": 0.15}, [(10, 19, 1.5)], 2.0),
    "Email": ({"workplace": 8, "home": 0.4, "commute": 0.8, "gym": 0.05}, [(9, 18, 2.5), (0, 7, 0.2)], 0.25),
    "Exercise": ({"gym": 25, "outdoors": 4, "home": 0.4, "workplace": 0.05}, [(6, 9, 2.0), (18, 22, 2.0)],
                 1.3),
    "Alarm clock": ({"home": 5, "workplace": 0.2}, [(21, 24, 3.0), (5, 8, 4.0), (8, 21, 0.3)], 0.7),
    "Online banking": ({"home": 1.5, "workplace": 1.2}, [(9, 22, 1.5)], 0.9),
}

# A few tails differ slightly from their parent (still the parent's contexts, re-weighted).
_TAIL_TWIST: dict[str, tuple[dict[str, float], list[tuple[int, int, float]], float]] = {
    "Watching sports matches": ({}, [(19, 24, 1.5)], 1.8),
    "Taking a taxi": ({"restaurant": 3, "outdoors": 2}, [(21, 24, 2.0), (0, 2, 2.0)], 1.2),
    "Flight booking": ({"home": 3}, [], 1.0),
    "Hotel booking": ({"home": 1.5}, [], 1.2),
    "Yoga": ({"home": 4}, [], 1.0),
    "Video calls": ({"home": 2}, [(19, 23, 1.5)], 1.3),
}

# First-order semantic neighbors between anchors (tail <-> parent edges are added automatically).
_ANCHOR_NEIGHBORS = [
    ("Watching videos", "Social media"), ("Music", "Public transportation"), ("Navigation", "Taking photos"),
    ("Online shopping", "Mobile payment"), ("Weather check", "Alarm clock"), ("Food delivery", "Mobile payment"),
    ("Email", "Online banking"), ("Exercise", "Music"), ("Reading", "Weather check"), ("Gaming", "Social media"),
]

# Hourly activity (relative number of phone events per hour), weekdays and weekends.
_ACTIVITY = {
    False: [0.25, 0.12, 0.06, 0.04, 0.04, 0.1, 0.4, 1.0, 1.4, 1.1, 1.0, 1.1, 1.6, 1.3, 1.0, 1.0, 1.0, 1.2,
            1.5, 1.6, 1.8, 1.9, 1.6, 0.8],
    True: [0.45, 0.25, 0.12, 0.06, 0.04, 0.05, 0.15, 0.4, 0.8, 1.1, 1.3, 1.4, 1.5, 1.3, 1.3, 1.3, 1.3, 1.3,
           1.4, 1.6, 1.8, 1.9, 1.7, 1.1],
}

_RNG_BLOCK = 500          # users per random block: the unit of determinism across chunk sizes
_TAIL_GAMMA_SHAPE = 0.3   # user weights of tails: Gamma(0.3)/0.3 (heavy-tailed, some users favor a tail)
_ANCHOR_GAMMA_SHAPE = 1.5  # user weights of anchors: Gamma(1.5)/1.5 (milder)
_METROPOLIS_RATE = 0.15   # share of events that move to a semantic neighbor of the previous behavior
_MAX_DEGREE = 6           # proposal width of the Metropolis move (>= the largest neighbor count)


class SyntheticError(PrepareError):
    """Bad arguments to the synthetic generator (one line, like every prepare error)."""


# ----------------------------------------------------------------------------------------------- spec


def _affinity_row(name: str, parent: str | None) -> np.ndarray:
    """Affinity of one behavior over the (weekend, hour, place) contexts, before calibration."""
    places, hours, weekend = _ANCHOR_AFFINITY[parent or name]
    place_w = np.array([places.get(p, 0.5) for p in PLACES], dtype=float)
    hour_w = np.ones(N_HOURS)
    for start, end, factor in hours:
        hour_w[start:end] *= factor
    day_w = np.array([1.0, weekend])
    if parent is not None and name in _TAIL_TWIST:
        t_places, t_hours, t_weekend = _TAIL_TWIST[name]
        place_w *= [t_places.get(p, 1.0) for p in PLACES]
        for start, end, factor in t_hours:
            hour_w[start:end] *= factor
        day_w[1] *= t_weekend
    return (day_w[:, None, None] * hour_w[None, :, None] * place_w[None, None, :]).ravel()


def context_index(weekend, hour, place):
    """Flat context code of (weekend flag, hour 0-23, place code)."""
    return (np.asarray(weekend, np.int64) * N_HOURS + hour) * len(PLACES) + place


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


class _Spec:
    """Everything derived from the behavior subset: names, shares, calibrated context table, neighbors."""

    def __init__(self, names: tuple[str, ...]):
        table = {name: (share, parent) for name, share, parent in BEHAVIORS}
        self.names = list(names)
        shares = np.array([table[n][0] for n in names])
        self.shares = shares / shares.sum()
        parents = [table[n][1] for n in names]
        self.is_tail = np.array([p is not None for p in parents])
        affinity = np.stack([_affinity_row(n, p) for n, p in zip(names, parents)])
        self.gamma_shape = np.where(self.is_tail, _TAIL_GAMMA_SHAPE, _ANCHOR_GAMMA_SHAPE)
        # A fixed panel of habit weights, each column rescaled to mean 1 (its expectation).
        panel = np.random.default_rng([20240301, 1]).gamma(self.gamma_shape, 1 / self.gamma_shape,
                                                           (256, len(names)))
        panel /= panel.mean(axis=0)
        scales = calibrate_scales(self.shares, affinity, _context_distribution(), panel)
        self.context_weight = (scales[:, None] * affinity).T.copy()  # (contexts, behaviors)
        index = {n: i for i, n in enumerate(names)}
        edges = [(n, p) for n, p in zip(names, parents) if p is not None] + _ANCHOR_NEIGHBORS
        neighbors: list[list[int]] = [[] for _ in names]
        for a, b in edges:
            if a in index and b in index:
                neighbors[index[a]].append(index[b])
                neighbors[index[b]].append(index[a])
        self.neighbors = np.full((len(names), _MAX_DEGREE), -1, dtype=np.int64)
        for i, nb in enumerate(neighbors):
            assert len(nb) <= _MAX_DEGREE, (names[i], nb)
            self.neighbors[i, :len(nb)] = nb


def _resolve_behaviors(behaviors) -> tuple[str, ...]:
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
def _spec(names: tuple[str, ...]) -> _Spec:
    return _Spec(names)


# -------------------------------------------------------------------------------------------- routine


def _pick(u: np.ndarray, probs, values) -> np.ndarray:
    """Vectorized categorical choice: values[i] where uniform u falls in the i-th slice of probs."""
    cum = np.cumsum(np.asarray(probs, dtype=float))
    idx = np.searchsorted(cum / cum[-1], u, side="right")
    return np.asarray(values)[np.minimum(idx, len(cum) - 1)]


def _day_segments(rng: np.random.Generator, n_users: int, n_days: int, weekend: np.ndarray):
    """Place segments of every user-day: (starts in seconds, place codes), each (users, days, 9).

    Work template: home, commute, workplace, lunch (restaurant or workplace), workplace, commute, evening
    place, commute back (if out), home. Leisure template (weekends, non-workers, work-from-home days): home,
    morning place, lunch place, afternoon place, commute (if out), evening place, commute (if out), home."""
    U, D = n_users, n_days
    worker = rng.random(U) < 0.8
    work_start = 480 + 30 * rng.integers(0, 5, U)          # 8:00-10:00, minutes
    work_len = 480 + 30 * rng.integers(0, 4, U)            # 8-9.5 h including lunch
    commute = rng.integers(20, 71, U)
    lunch_out_p = rng.beta(2, 3, U)
    gym_goer = rng.random(U) < 0.3
    gym_p = np.where(gym_goer, rng.uniform(0.3, 0.7, U), 0.0)
    shape = (U, D)

    def u() -> np.ndarray:
        return rng.random(shape)

    # Work template (minutes from midnight).
    ws = work_start[:, None] + rng.normal(0, 10, shape)
    we = ws + work_len[:, None]
    leave = ws - commute[:, None]
    lunch = np.clip(720 + rng.normal(0, 15, shape), ws + 60, we - 90)
    lunch_place = np.where(u() < lunch_out_p[:, None], RESTAURANT, WORK)
    back_home = we + commute[:, None]
    gym_today = u() < gym_p[:, None]
    evening = np.where(gym_today, GYM, _pick(u(), [0.12, 0.06, 0.08, 0.74], [RESTAURANT, MALL, OUTDOORS, HOME]))
    evening_end = back_home + rng.uniform(60, 150, shape)
    back = np.where(evening == HOME, HOME, COMMUTE)
    zeros = np.zeros(shape)
    work_starts = np.stack([zeros, leave, ws, lunch, lunch + 50, we, back_home, evening_end, evening_end + 25], -1)
    work_places = np.stack(np.broadcast_arrays(HOME, COMMUTE, WORK, lunch_place, WORK, COMMUTE, evening, back,
                                               HOME), -1)

    # Leisure template.
    morning_start = 570 + rng.uniform(0, 120, shape)
    morning = np.where(gym_today & (u() < 0.5), GYM, _pick(u(), [0.5, 0.25, 0.15, 0.1],
                                                         [HOME, OUTDOORS, MALL, RESTAURANT]))
    lunch_start = morning_start + rng.uniform(60, 150, shape)
    lunch_l = _pick(u(), [0.35, 0.65], [RESTAURANT, HOME])
    afternoon_start = lunch_start + 60
    afternoon = _pick(u(), [0.3, 0.2, 0.5], [OUTDOORS, MALL, HOME])
    afternoon_end = afternoon_start + rng.uniform(120, 240, shape)
    evening_l_start = afternoon_end + 30
    evening_l = _pick(u(), [0.2, 0.1, 0.7], [RESTAURANT, OUTDOORS, HOME])
    evening_l_end = evening_l_start + rng.uniform(90, 150, shape)
    leisure_starts = np.stack([zeros, morning_start, lunch_start, afternoon_start, afternoon_end,
                               evening_l_start, evening_l_end, evening_l_end + 30, evening_l_end + 30], -1)
    leisure_places = np.stack(np.broadcast_arrays(
        HOME, morning, lunch_l, afternoon, np.where(afternoon == HOME, HOME, COMMUTE), evening_l,
        np.where(evening_l == HOME, HOME, COMMUTE), HOME, HOME), -1)

    on_site = worker[:, None] & ~weekend[None, :] & (u() >= 0.08)  # 8% work-from-home days
    starts = np.where(on_site[..., None], work_starts, leisure_starts)
    places = np.where(on_site[..., None], work_places, leisure_places)
    starts = np.minimum(np.maximum.accumulate(np.maximum(starts, 0), axis=-1), 1440)
    return (starts * 60).astype(np.int32), places.astype(np.int8)


def _weekend_flags(start_weekday: int, n_days: int) -> np.ndarray:
    return (start_weekday + np.arange(n_days)) % 7 >= 5


def _timeline(rng: np.random.Generator, n_users: int, n_days: int, start_weekday: int, events_per_day: float):
    """Events of a block of users sorted by (user, time): local user index, seconds since the first day's
    midnight (strictly increasing per user), weekend flag, hour and place code."""
    D = n_days + 1  # one spare day: a time pushed past midnight of the last day still has a routine
    weekend_days = _weekend_flags(start_weekday, D)
    starts, places = _day_segments(rng, n_users, D, weekend_days)
    activity = rng.gamma(6.0, 1 / 6.0, n_users) * events_per_day
    chronotype = np.clip(rng.normal(0, 2700, n_users), -7200, 10800).astype(np.int64)  # seconds
    lam = activity[:, None] * np.where(weekend_days[:n_days], 1.1, 1.0)[None, :]
    counts = rng.poisson(lam)  # (users, days)
    n = int(counts.sum())
    user = np.repeat(np.repeat(np.arange(n_users), n_days), counts.ravel())
    day = np.repeat(np.tile(np.arange(n_days), n_users), counts.ravel())
    weekend_e = weekend_days[day]
    hour = np.empty(n, dtype=np.int64)
    for flag in (False, True):
        sel = weekend_e == flag
        cum = np.cumsum(_ACTIVITY[flag])
        hour[sel] = np.searchsorted(cum / cum[-1], rng.random(int(sel.sum())), side="right")
    tod = (hour * 3600 + rng.integers(0, 3600, n) + chronotype[user]) % 86400
    stride = (D + 1) * 86400
    key = np.sort(user * stride + day * 86400 + tod)
    # Strictly increasing within a user: t_i = max(t_i, t_{i-1} + 1), vectorized.
    ramp = np.arange(n, dtype=np.int64)
    key = np.maximum.accumulate(key - ramp) + ramp
    user, t = np.divmod(key, stride)
    day, tod = np.divmod(t, 86400)
    seg_starts = starts[user, day]  # (n, 9)
    seg = (seg_starts <= tod[:, None]).sum(axis=1) - 1
    place = places[user, day, seg]
    return user, t, weekend_days[day], tod // 3600, place


@functools.lru_cache(maxsize=1)
def _context_distribution() -> np.ndarray:
    """q(c): the routine's distribution of (weekend, hour, place) contexts, from a fixed-seed simulation
    of two whole weeks (a constant of the generator, independent of the user's seed)."""
    rng = np.random.default_rng([20240301, 0])
    _, _, weekend, hour, place = _timeline(rng, 1000, 14, 0, 25.0)
    counts = np.bincount(context_index(weekend, hour, place), minlength=N_CONTEXTS).astype(float)
    return counts / counts.sum()


# ------------------------------------------------------------------------------------------ behaviors


def _draw_behaviors(rng: np.random.Generator, spec: _Spec, user: np.ndarray, context: np.ndarray,
                    n_users: int) -> np.ndarray:
    """Behavior codes (spec order) of a block's events sorted by (user, time)."""
    n = len(user)
    B = len(spec.names)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    weights = rng.gamma(spec.gamma_shape, 1 / spec.gamma_shape, (n_users, B))   # personal habits
    repeat_rate = 0.6 * rng.beta(2, 4, n_users)                                   # mean 0.2
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
    mode = np.where(mode_u < rate, 1, np.where(mode_u < rate + _METROPOLIS_RATE, 2, 0))
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
        proposal = spec.neighbors[prev, (move_u[at] * _MAX_DEGREE).astype(np.int64)]
        ratio = spec.shares[np.maximum(proposal, 0)] / spec.shares[prev]
        moved = (mode[at] == 2) & (proposal >= 0) & (accept_u[at] < ratio)
        behavior[at] = np.where(moved, proposal, prev)
    return behavior


def _block_arrays(spec: _Spec, seed: int, block: int, first_user: int, n_users: int, n_days: int,
                  start_weekday: int, events_per_day: float):
    rng = np.random.default_rng([int(seed), int(block)])
    user, t, weekend, hour, place = _timeline(rng, n_users, n_days, start_weekday, events_per_day)
    behavior = _draw_behaviors(rng, spec, user, context_index(weekend, hour, place), n_users)
    return (user + first_user).astype(np.int64), t, place, behavior


def _check_sizes(n_users: int, n_days: int, events_per_day: float) -> None:
    if int(n_users) < 1 or int(n_days) < 1:
        raise SyntheticError(f"n_users and n_days must be positive, got {n_users} users, {n_days} days")
    if not events_per_day > 0:
        raise SyntheticError(f"events_per_day must be positive, got {events_per_day}")


def _start_epoch(start: str) -> tuple[int, int]:
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


def iter_event_chunks(n_users: int, n_days: int, seed: int = 0, behaviors=None, start: str = "2024-03-01",
                      chunk_users: int = 2000, events_per_day: float = 25.0):
    """Yield (first_user, stop_user, user, time, place, behavior) per chunk of users, sorted by (user, time).

    user: global int64 user index; time: int64 epoch seconds (local wall time as UTC); place: codes into
    ``PLACES``; behavior: codes into ``behavior_names(behaviors)``."""
    _check_sizes(n_users, n_days, events_per_day)
    spec = _spec(_resolve_behaviors(behaviors))
    epoch, start_weekday = _start_epoch(start)
    blocks_per_chunk = max(1, -(-int(chunk_users) // _RNG_BLOCK))
    n_blocks = -(-n_users // _RNG_BLOCK)
    for first_block in range(0, n_blocks, blocks_per_chunk):
        parts = []
        for block in range(first_block, min(n_blocks, first_block + blocks_per_chunk)):
            lo, hi = block * _RNG_BLOCK, min(n_users, (block + 1) * _RNG_BLOCK)
            parts.append(_block_arrays(spec, seed, block, lo, hi - lo, n_days, start_weekday, events_per_day))
        user, t, place, behavior = (np.concatenate(a) for a in zip(*parts))
        yield (first_block * _RNG_BLOCK, min(n_users, (first_block + blocks_per_chunk) * _RNG_BLOCK),
               user, t + epoch, place, behavior)


def behavior_names(behaviors=None) -> list[str]:
    """The generated behaviors in table order (codes of ``iter_event_chunks``)."""
    return list(_resolve_behaviors(behaviors))


def _generate_arrays(n_users: int, n_days: int, seed: int = 0, behaviors=None, start: str = "2024-03-01",
                     events_per_day: float = 25.0) -> dict:
    chunks = list(iter_event_chunks(n_users, n_days, seed, behaviors, start, chunk_users=n_users,
                                    events_per_day=events_per_day))
    _, _, user, time, place, behavior = (np.concatenate(a) if i >= 2 else a for i, a in enumerate(zip(*chunks)))
    return {"user": user, "time": time, "place": place, "behavior": behavior,
            "user_ids": user_id_names(0, n_users, n_users), "places": list(PLACES),
            "behaviors": behavior_names(behaviors)}


def generate_events(n_users: int, n_days: int, seed: int = 0, behaviors: list[str] | None = None,
                    start: str = "2024-03-01", *, events_per_day: float = 25.0):
    """A synthetic EventTable of ``n_users`` users over ``n_days`` days from ``start`` (seeded)."""
    import pyarrow as pa

    from data_prep.events import events_from_arrays
    a = _generate_arrays(n_users, n_days, seed, behaviors, start, events_per_day)

    def labels(codes, vocab):
        return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(vocab, pa.string()))

    return events_from_arrays(labels(a["user"], a["user_ids"]), a["time"], labels(a["place"], a["places"]),
                              labels(a["behavior"], a["behaviors"]), source="<synthetic>",
                              notes={"synthetic": {"n_users": int(n_users), "n_days": int(n_days),
                                                   "seed": int(seed), "start": start,
                                                   "events_per_day": float(events_per_day),
                                                   "behaviors": a["behaviors"]}})


# ---------------------------------------------------------------------------------------------- files


def _arrow_chunk(first: int, stop: int, n_users: int, user, time, place, behavior, names: list[str],
                 as_dictionary: bool):
    """One chunk as an Arrow table with the schema columns; text columns dictionary-encoded or plain."""
    import pyarrow as pa

    def labels(codes, vocab):
        column = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(vocab, pa.string()))
        return column if as_dictionary else column.cast(pa.string())

    return pa.table({"user_id": labels(user - first, user_id_names(first, stop, n_users)),
                     "timestamp": pa.array(time, pa.int64()),
                     "place": labels(place, PLACES),
                     "behavior": labels(behavior, names)})


def write_events(path, n_users: int, n_days: int, seed: int = 0, behaviors=None, chunk_users: int = 2000,
                 *, start: str = "2024-03-01", events_per_day: float = 25.0, progress: bool = False) -> int:
    """Write a synthetic event log (Parquet, CSV or JSONL by extension) atomically; returns rows written.

    Columns: user_id, timestamp (int64 epoch seconds, local wall time as UTC), place, behavior. Generated
    and written chunk by chunk of users, so memory stays bounded by ``chunk_users``."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".jsonl"):
        raise SyntheticError(f"{path}: unsupported extension {suffix!r} (use .parquet, .csv or .jsonl)")
    _check_sizes(n_users, n_days, events_per_day)
    names = behavior_names(behaviors)
    rows = 0
    writer = None
    chunks = iter_event_chunks(n_users, n_days, seed, behaviors, start, chunk_users, events_per_day)
    if progress:
        from tqdm import tqdm
        chunks = tqdm(chunks, total=-(-n_users // (max(1, -(-chunk_users // _RNG_BLOCK)) * _RNG_BLOCK)),
                      unit="chunk", file=sys.stderr)
    with atomic_open(path, "wb") as sink:
        for first, stop, user, time, place, behavior in chunks:
            table = _arrow_chunk(first, stop, n_users, user, time, place, behavior, names,
                                 as_dictionary=suffix == ".parquet")
            rows += table.num_rows
            if suffix == ".parquet":
                # Parquet dictionary-encodes text anyway; without the stored Arrow schema the columns
                # read back as plain strings, with no per-row cast on the way in.
                writer = writer or pq.ParquetWriter(sink, table.schema, compression="zstd",
                                                    store_schema=False)
                writer.write_table(table, row_group_size=1 << 20)
            elif suffix == ".csv":
                writer = writer or pa_csv.CSVWriter(sink, table.schema)
                writer.write_table(table)
            else:
                sink.write(table.to_pandas().to_json(orient="records", lines=True).encode())
        if writer is not None:
            writer.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.synthetic",
                                     description="Write the embedded synthetic behavior log.")
    parser.add_argument("out", help="output file: .parquet, .csv or .jsonl")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events-per-day", type=float, default=25.0)
    parser.add_argument("--start", default="2024-03-01")
    parser.add_argument("--behaviors", help="comma-separated subset (e.g. the demo profile)")
    parser.add_argument("--chunk-users", type=int, default=2000)
    args = parser.parse_args(argv)
    behaviors = [b.strip() for b in args.behaviors.split(",") if b.strip()] if args.behaviors else None
    try:
        rows = write_events(args.out, args.users, args.days, args.seed, behaviors, args.chunk_users,
                            start=args.start, events_per_day=args.events_per_day, progress=True)
    except SyntheticError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{rows} events -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
