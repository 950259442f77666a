"""The synthetic log's own next-behavior law: the Bayes-optimal answer no model of the data can beat.

Step 4 of :mod:`data_prep.synthetic` draws each event (after a user's first) from the mixture

    p(b_t | b_{t-1}, c_t, u) = (1 - r_u - m) p_u(b | c_t) + r_u 1[b = b_{t-1}] + m K(b_{t-1}, b)

with p_u(b | c) proportional to the calibrated context weight times the user's habit weight w_ub, r_u the
user's repeat rate, m = METROPOLIS_RATE and K the Metropolis move to a semantic neighbor. The oracle replays
each block's random stream to recover w_u and r_u, so it knows what no model sees (a test user's habits); its
accuracy is the ceiling of the data, and what it answers on a split with another label distribution (protocol
2) is what a model that learned the training distribution perfectly would answer.
"""
from __future__ import annotations

import numpy as np

from data_prep.sampling.samples import WEEKDAYS
from data_prep.synthetic.catalogue import MAX_DEGREE, METROPOLIS_RATE, PLACES, RNG_BLOCK, context_index
from data_prep.synthetic.generator import Spec, SyntheticError, block_state, resolve_behaviors, spec_for, start_epoch

WEEKEND = WEEKDAYS[5:]   # the prompts' names of Saturday and Sunday, the generator's weekend


def move_kernel(spec: Spec) -> np.ndarray:
    """K[a, b]: probability that a Metropolis move from a ends on b. A uniform slot of MAX_DEGREE proposes a
    neighbor (an empty slot proposes nothing), accepted with probability min(1, share_b / share_a); else a stays."""
    B = len(spec.names)
    kernel = np.zeros((B, B))
    for a in range(B):
        for b in spec.neighbors[a][spec.neighbors[a] >= 0]:
            kernel[a, b] += min(1.0, spec.shares[b] / spec.shares[a]) / MAX_DEGREE
        kernel[a, a] += 1.0 - kernel[a].sum()
    return kernel


def next_behavior_law(spec: Spec, weights: np.ndarray, repeat_rate: np.ndarray, prev: np.ndarray,
                      context: np.ndarray) -> np.ndarray:
    """p(b_t | b_{t-1}, c_t, u) for each row (spec order), the mixture in the module docstring; prev -1 is a
    user's first event, a fresh draw. weights: (rows, behaviors); repeat_rate, prev, context: (rows,)."""
    fresh = spec.context_weight[context] * weights
    fresh /= fresh.sum(axis=1, keepdims=True)
    has_prev = prev >= 0
    rate = np.where(has_prev, repeat_rate, 0.0)[:, None]
    move = np.where(has_prev, METROPOLIS_RATE, 0.0)[:, None]
    law = (1.0 - rate - move) * fresh + move * move_kernel(spec)[np.maximum(prev, 0)]
    law[np.flatnonzero(has_prev), prev[has_prev]] += rate[has_prev, 0]
    return law


def user_habits(synthetic: dict, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weights, repeat rates) of the given global user indices, replayed from their blocks' random streams.
    synthetic: the generator's arguments as prepare records them (stats.json ``notes.synthetic``)."""
    spec = spec_for(resolve_behaviors(synthetic["behaviors"]))
    n_users, n_days = int(synthetic["n_users"]), int(synthetic["n_days"])
    _, start_weekday = start_epoch(synthetic["start"])
    weights = np.empty((len(users), len(spec.names)))
    rates = np.empty(len(users))
    for block in np.unique(users // RNG_BLOCK):
        lo = int(block) * RNG_BLOCK
        _, _, (w, r) = block_state(spec, int(synthetic["seed"]), int(block), min(n_users, lo + RNG_BLOCK) - lo,
                                   n_days, start_weekday, float(synthetic["events_per_day"]))
        rows = np.flatnonzero(users // RNG_BLOCK == block)
        weights[rows], rates[rows] = w[users[rows] - lo], r[users[rows] - lo]
    return weights, rates


def oracle_probabilities(synthetic: dict | None, candidates: list[str], meta: list[dict]) -> np.ndarray:
    """p(label | sample) under the generator's law for each prepared sample (its user, the history's last
    behavior and the next context), columns in ``candidates`` order. A small log may lack some generated
    behaviors; the law is then renormalized over the candidates (a label is always one of them)."""
    if not synthetic:
        raise SyntheticError("the oracle needs data prepared from the embedded synthetic log (prepare --synthetic)")
    spec = spec_for(resolve_behaviors(synthetic["behaviors"]))
    code = {name: i for i, name in enumerate(spec.names)}
    if not set(candidates) <= set(spec.names):
        unknown = sorted(set(candidates) - set(spec.names))
        raise SyntheticError(f"candidates {unknown} are not among the generated behaviors {spec.names}")
    users = np.array([int(m["user_id"][1:]) for m in meta], dtype=np.int64)
    prev = np.array([code[m["history"][-1]] if m["history"] else -1 for m in meta], dtype=np.int64)
    weekday, hour, place = zip(*(m["next_context"] for m in meta)) if meta else ((), (), ())
    context = context_index(np.isin(weekday, WEEKEND), np.asarray(hour, np.int64),
                            np.array([PLACES.index(p) for p in place], dtype=np.int64))
    law = next_behavior_law(spec, *user_habits(synthetic, users), prev, context)
    law = law[:, [code[name] for name in candidates]]
    return law / law.sum(axis=1, keepdims=True)
