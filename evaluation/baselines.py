"""Two non-LLM reference predictors computed from the prepared data (no model, no randomness).

most-frequent: always the behavior with the largest training count (stats.json ``train_count``).

markov: a first-order Markov chain (last behavior -> next). Test users never appear in training, so the
user's own transitions are read off the history window x itself (counts of b_i -> b_{i+1} inside x);
the prediction is the most frequent successor of x's last behavior. When that behavior has no successor
inside x, the row of the global transition table is used (fitted on train_all: every consecutive pair of
each training history plus history[-1] -> label; overlapping windows of one user count a transition once
per window that holds it). When the global row is empty too, the most-frequent behavior is predicted.
The ``source`` field of each prediction says which level answered: ``user``, ``global`` or
``most_frequent``.

Tie-break (deterministic): among successors with the same count, the one with the larger global
transition count from the same behavior wins, then the one with the larger training count, then the
lower label_id (stats.json order). The same key ranks the top-3 list.

Distributions (``logprobs``, ``p_label`` and the top-3 probabilities): most-frequent gives every candidate
its Laplace-smoothed training frequency, prior_c = (train_count_c + 1) / (N + K), so a behavior never seen in
training keeps a finite log-probability. Markov gives (count_c + prior_c) / (total + 1) at the level that
answered (a Dirichlet prior of one pseudo-count spread as the training frequency), and prior_c when the
most-frequent fall-back answered. Smoothing adds less than one count, so the most probable candidate is the
predicted one whenever counts differ; candidates with equal counts and equal training counts get equal
probabilities, and the ranking metrics treat them as ties (``evaluation.metrics``), whatever the tie-break
above chose as the prediction.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.outputs import iter_jsonl
from data_prep.prepared import candidate_names, load_prepared

from .files import check_split, prediction_row, write_predictions

KINDS = ("most-frequent", "markov")


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
        self.label_id = {name: i for i, name in enumerate(self.candidates)}
        self.train_count = {b["name"]: int(b["train_count"]) for b in stats["behaviors"]}
        self.global_table = global_table
        self.fallback = most_frequent_order(stats)

    def _rank(self, counts: Counter, last: str) -> list[tuple[str, int]]:
        global_row = self.global_table.get(last, Counter())
        return sorted(counts.items(), key=lambda kv: (-kv[1], -global_row[kv[0]], -self.train_count.get(kv[0], 0),
                                                     self.label_id.get(kv[0], len(self.candidates))))

    def predict(self, history: list[str]) -> tuple[str, str, list[tuple[str, float | None]], dict[str, float]]:
        """(prediction, source, top-3 ranked, successor distribution at the answering level).

        The distribution is empty when the most-frequent fall-back answered."""
        if history:
            last = history[-1]
            for source, counts in (("user", transition_counts([history]).get(last)),
                                   ("global", self.global_table.get(last))):
                if counts:
                    total = sum(counts.values())
                    ranked = [(name, c / total) for name, c in self._rank(counts, last)]
                    return ranked[0][0], source, ranked[:3], dict(ranked)
        return self.fallback[0], "most_frequent", [(name, None) for name in self.fallback[:3]], {}

    def counts(self, history: list[str], source: str) -> Counter:
        """The successor counts of history's last behavior at the level that answered (empty for the fall-back)."""
        if source == "most_frequent":
            return Counter()
        table = transition_counts([history]) if source == "user" else self.global_table
        return table.get(history[-1], Counter())


def _row(i: int, meta: dict, pred: str, ranked: list[str], probs: np.ndarray, candidates: list[str],
         **extra) -> dict:
    """A prediction row with the smoothed distribution: p_label, the top-3 in the predictor's order, logprobs."""
    index = {name: j for j, name in enumerate(candidates)}
    label = index.get(meta["label"])
    return prediction_row(i, meta, pred, candidates, p_label=None if label is None else probs[label],
                          top=[(n, probs[index[n]]) for n in ranked[:3]], logprobs=np.log(probs), **extra)


def run_baseline(dataset_dir: str | os.PathLike, kind: str, dataset: str, out_dir: str | os.PathLike) -> Path:
    """Predict every sample of ``<dataset_dir>/<dataset>`` with baseline ``kind``; write the predictions file."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    check_split(dataset)
    split = load_prepared(dataset_dir, dataset, records=False)
    stats, candidates, meta = split.stats, split.candidates, split.meta
    rows = []
    prior = smoothed_prior(stats)
    if kind == "most-frequent":
        order = most_frequent_order(stats)
        for i, m in enumerate(meta):
            rows.append(_row(i, m, order[0], order, prior, candidates))
    else:
        # streamed: train_all.meta.jsonl can be far larger than memory allows
        train_meta = iter_jsonl(Path(dataset_dir) / "train_all.meta.jsonl")
        table = global_transitions(tqdm(train_meta, desc="transitions of train_all", unit="sample"))
        predictor = MarkovPredictor(stats, table)
        for i, m in enumerate(tqdm(meta, desc=f"markov {dataset}", unit="sample")):
            pred, source, top, dist = predictor.predict(list(m["history"]))
            counts = predictor.counts(list(m["history"]), source)
            rows.append(_row(i, m, pred, [n for n, _ in top], smoothed_distribution(counts, prior, candidates),
                             candidates, source=source))
    return write_predictions(out_dir, dataset, rows, {"method": f"baseline:{kind}", "dataset_dir": str(dataset_dir)})
