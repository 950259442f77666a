"""Non-LLM reference predictors computed from the prepared data (no model, no randomness).

most-frequent: always the behavior with the largest training count (stats.json ``train_count``).

last-behavior: the history's last behavior again, the floor any sequence model must clear. Its distribution
gives that behavior one count over the smoothed training prior, p_c = (1[c = last] + prior_c) / 2, so the
last behavior is always its top; an empty history gives the prior.

markov: a first-order Markov chain (last behavior -> next). Test users never appear in training, so the
user's own transitions are read off the history window x itself (counts of b_i -> b_{i+1} inside x);
the prediction is the most frequent successor of x's last behavior. When that behavior has no successor
inside x, the row of the global transition table is used (fitted on train_all: every consecutive pair of
each training history plus history[-1] -> label; overlapping windows of one user count a transition once
per window that holds it). When the global row is empty too, the most-frequent behavior is predicted.
The ``source`` field of each prediction says which level answered: ``user``, ``global`` or
``most_frequent``.

oracle (data prepared from the embedded synthetic log only): the generator's own law p(next | the user's
habits, the history's last behavior, the next context) (:mod:`data_prep.synthetic.oracle`). It knows each test
user's habits, which no model sees, so its accuracy is the ceiling of the data; on protocol 2 it shows what a
model that learned the training distribution perfectly answers.

Distributions (``logprobs``, ``p_label`` and the top-3 probabilities): most-frequent gives every candidate
its Laplace-smoothed training frequency, prior_c = (train_count_c + 1) / (N + K), so a behavior never seen in
training keeps a finite log-probability. Markov smooths each level with the next one as its Dirichlet prior of
one pseudo-count: global_c = (global_count_c + prior_c) / (global_total + 1) and, when the user level answers,
p_c = (user_count_c + global_c) / (user_total + 1). A prior adds less than one count, so the distribution
ranks by the user count, then the global count, then the training count.

The prediction and the top-3 are read off the stored distribution (``evaluation.files.distribution_row``):
pred is the candidate with the largest stored log-probability, and candidates whose stored log-probabilities
are equal are tied, the lower label_id first. Ranking metrics treat the same candidates as ties
(``evaluation.metrics``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.prepared import candidate_names, load_prepared
from data_prep.synthetic.oracle import oracle_probabilities
from data_prep.writing.outputs import iter_jsonl

from .files import distribution_row, first_max, write_predictions

KINDS = ("most-frequent", "last-behavior", "markov")   # the order of make eval and the report
SYNTHETIC_KINDS = ("oracle",)   # after them, for data prepared from the embedded synthetic log


def most_frequent_order(stats: dict) -> list[str]:
    """Candidates by training count, descending; ties by label_id."""
    behaviors = stats["behaviors"]
    order = sorted(range(len(behaviors)), key=lambda i: (-int(behaviors[i]["train_count"]), i))
    return [behaviors[i]["name"] for i in order]


def smoothed_prior(stats: dict) -> np.ndarray:
    """Laplace-smoothed training frequency of every candidate, (train_count + 1) / (N + K), label_id order."""
    counts = np.array([int(b["train_count"]) for b in stats["behaviors"]], dtype=np.float64)
    return (counts + 1.0) / (counts.sum() + len(counts))


def smoothed_distribution(counts: dict[str, float], prior: np.ndarray, candidates: list[str]) -> np.ndarray:
    """(count_c + prior_c) / (total + 1): successor counts under a one-pseudo-count Dirichlet prior."""
    c = np.array([float(counts.get(name, 0)) for name in candidates])
    return (c + prior) / (c.sum() + 1.0)


def last_behavior_distribution(history: list[str], prior: np.ndarray, candidates: list[str]) -> np.ndarray:
    """One count for the history's last behavior over the smoothed prior (the prior alone for no history)."""
    return smoothed_distribution({history[-1]: 1} if history else {}, prior, candidates)


def transition_counts(sequences) -> dict[str, Counter]:
    """counts[a][b] = number of times b directly follows a in the given behavior sequences."""
    counts: dict[str, Counter] = {}
    for seq in sequences:
        for prev, nxt in pairwise(seq):
            counts.setdefault(prev, Counter())[nxt] += 1
    return counts


def global_transitions(train_meta: Iterable[dict]) -> dict[str, Counter]:
    """The global table: each training sample contributes its history followed by its label."""
    return transition_counts(list(m["history"]) + [m["label"]] for m in train_meta)


class MarkovPredictor:
    def __init__(self, stats: dict, global_table: dict[str, Counter]):
        self.candidates = candidate_names(stats)
        self.prior = smoothed_prior(stats)
        self.global_table = global_table

    def distribution(self, history: list[str]) -> tuple[np.ndarray, str]:
        """p(next behavior | history) in label_id order, and the level that answered (``source``)."""
        last = history[-1] if history else None
        global_row = self.global_table.get(last)
        backoff = smoothed_distribution(global_row or {}, self.prior, self.candidates)
        user_row = transition_counts([history]).get(last) if history else None
        if user_row:
            return smoothed_distribution(user_row, backoff, self.candidates), "user"
        if global_row:
            return backoff, "global"
        return self.prior, "most_frequent"

    def predict(self, history: list[str]) -> tuple[str, str, np.ndarray]:
        """(prediction, source, distribution): the prediction is the distribution's stored top."""
        probs, source = self.distribution(history)
        return self.candidates[first_max(np.log(probs))], source, probs


def _row(i: int, meta: dict, probs: np.ndarray, candidates: list[str], **extra) -> dict:
    """A prediction row of a smoothed distribution: pred, top-3 and p_label read off it."""
    return distribution_row(i, meta, candidates, np.log(probs), probs, **extra)


def run_baseline(dataset_dir: str | os.PathLike, kind: str, dataset: str, out_dir: str | os.PathLike) -> Path:
    """Predict every sample of ``<dataset_dir>/<dataset>`` with baseline ``kind``; write the predictions file."""
    if kind not in KINDS + SYNTHETIC_KINDS:   # the library's own guard: an unknown kind must not be Markov's
        raise ValueError(f"kind must be one of {', '.join(KINDS + SYNTHETIC_KINDS)}, got {kind!r}")
    split = load_prepared(dataset_dir, dataset, records=False)
    stats, candidates, meta = split.stats, split.candidates, split.meta
    rows = []
    prior = smoothed_prior(stats)
    if kind == "most-frequent":
        for i, m in enumerate(meta):
            rows.append(_row(i, m, prior, candidates))
    elif kind == "last-behavior":
        for i, m in enumerate(meta):
            rows.append(_row(i, m, last_behavior_distribution(list(m["history"]), prior, candidates), candidates))
    elif kind == "oracle":
        probs = oracle_probabilities(stats.get("notes", {}).get("synthetic"), candidates, meta)
        rows = [_row(i, m, p, candidates) for i, (m, p) in enumerate(zip(meta, probs))]
    else:
        # streamed: train_all.meta.jsonl can be far larger than memory allows
        train_meta = iter_jsonl(Path(dataset_dir) / "train_all.meta.jsonl")
        table = global_transitions(tqdm(train_meta, desc="transitions of train_all", unit="sample"))
        predictor = MarkovPredictor(stats, table)
        for i, m in enumerate(tqdm(meta, desc=f"markov {dataset}", unit="sample")):
            probs, source = predictor.distribution(list(m["history"]))
            rows.append(_row(i, m, probs, candidates, source=source))
    return write_predictions(out_dir, dataset, rows, {"method": f"baseline:{kind}", "dataset_dir": str(dataset_dir)})
