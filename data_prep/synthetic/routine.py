"""Daily routines of synthetic users: place segments of each day and event times (step 1 of
:mod:`data_prep.synthetic`)."""
from __future__ import annotations

import functools

import numpy as np

from data_prep.synthetic.catalogue import (
    ACTIVITY,
    COMMUTE,
    GYM,
    HOME,
    MALL,
    N_CONTEXTS,
    OUTDOORS,
    RESTAURANT,
    WORK,
    context_index,
)


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


def timeline(rng: np.random.Generator, n_users: int, n_days: int, start_weekday: int, events_per_day: float):
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
        cum = np.cumsum(ACTIVITY[flag])
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
def context_distribution() -> np.ndarray:
    """q(c): the routine's distribution of (weekend, hour, place) contexts, from a fixed-seed simulation
    of two whole weeks (a constant of the generator, independent of the user's seed)."""
    rng = np.random.default_rng([20240301, 0])
    _, _, weekend, hour, place = timeline(rng, 1000, 14, 0, 25.0)
    counts = np.bincount(context_index(weekend, hour, place), minlength=N_CONTEXTS).astype(float)
    return counts / counts.sum()
