"""Per-behavior selection (Algorithm 1 lines 19-22): difficulty-weighted k-means++ and the ablation modes."""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict

import numpy as np

from .config import SelectConfig
from .difficulty import DIFFICULTY, d_confusion, normalize_within_behavior

logger = logging.getLogger(__name__)


def behavior_seed(seed: int, label_id: int, *part: int) -> int:
    """An independent, reproducible seed per behavior (and per part of it, when its selection is split)."""
    return int(np.random.SeedSequence([int(seed), int(label_id), *map(int, part)]).generate_state(1)[0])


def repeat_split(F: int, n_repeat: int, n_other: int, share: float) -> tuple[int, int]:
    """(from repeats, from the others): round(share x F) half up and F minus it, where a part that has too few
    samples gives the rest of its count to the other part; a behavior with at most F samples keeps them all."""
    want = min(int(np.floor(share * F + 0.5)), n_repeat)
    other = min(F - want, n_other)
    return min(F - other, n_repeat), other


def select_for_behavior(embeddings, weights, F: int, seed: int, mode: str = "dds") -> np.ndarray:
    """Positions (into this behavior's rows) of the F selected samples, distinct, sorted (Algorithm 1 line 22).

    dds: ``sklearn.cluster.kmeans_plusplus`` seeding on E(x) with the normalized difficulty as sample_weight.
      sklearn draws centers with probability proportional to weight * distance^2; a zero-weight sample is then
      never drawn while positive mass remains, but once it runs out (fewer than F positive-weight samples, or
      duplicate embeddings) it returns repeated indices.  So kmeans++ runs on the positive-weight samples only;
      if fewer than F have positive weight they are all kept and the rest is filled uniformly at random from
      the zero-weight ones; duplicate picks are replaced by weighted draws from the unpicked samples.
    uniform (w/o DDS): F samples uniformly at random.
    topf (w/o KMeans): the F highest weights, ties broken by position (stable).
    A behavior with at most F samples keeps them all. F and mode are a checked :class:`SelectConfig`'s.
    """
    weights = np.asarray(weights, dtype=np.float64)
    n = len(weights)
    if n <= F:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if mode == "uniform":
        return np.sort(rng.choice(n, size=F, replace=False))
    if mode == "topf":
        return np.sort(np.argsort(-weights, kind="stable")[:F])

    positive = np.flatnonzero(weights > 0)
    if len(positive) <= F:
        zero = np.flatnonzero(weights <= 0)
        fill = rng.choice(zero, size=F - len(positive), replace=False)
        return np.sort(np.concatenate([positive, fill]))
    from sklearn.cluster import kmeans_plusplus

    X = np.asarray(embeddings)
    X = np.asarray(X if len(positive) == n else X[positive], dtype=np.float64)
    # float64 with precomputed norms: sklearn's float32 path upcasts chunk by chunk on every center (~1.5x slower)
    _, picked = kmeans_plusplus(
        X, n_clusters=F, sample_weight=weights[positive], random_state=seed, x_squared_norms=np.einsum("ij,ij->i", X, X)
    )
    chosen = list(dict.fromkeys(positive[picked].tolist()))  # distinct, order kept
    if len(chosen) < F:  # duplicates: complete with weighted draws among the rest
        rest = np.setdiff1d(positive, chosen)
        p = weights[rest] / weights[rest].sum()
        chosen += rng.choice(rest, size=F - len(chosen), replace=False, p=p).tolist()
    return np.sort(np.asarray(chosen))


class Float64Rows:
    """Gathers a behavior's embedding rows as float64 into one reused buffer.

    Fresh multi-GB arrays per behavior cost more in page faults than k-means++ itself (measured: gather +
    astype 7 s vs seeding 3 s for 60k x 4096); reusing one buffer touches the memory once.
    """

    def __init__(self, embeddings: np.ndarray, max_rows: int, chunk: int = 2048):
        self.embeddings, self.chunk = embeddings, chunk
        self.buffer = np.empty((max_rows, embeddings.shape[1]), dtype=np.float64)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = self.buffer[: len(rows)]
        for start in range(0, len(rows), self.chunk):
            out[start : start + self.chunk] = self.embeddings[rows[start : start + self.chunk]]
        return out


def wrong_logprobs(logprobs, label_id) -> np.ndarray:
    """A float64 copy of the log-probabilities with each row's label at -inf: the wrong candidates only."""
    wrong = np.array(logprobs, dtype=np.float64, copy=True)
    wrong[np.arange(len(wrong)), np.asarray(label_id)] = -np.inf
    return wrong


def rejected_ids(logprobs, label_id, pred_id) -> np.ndarray:
    """Algorithm 1 line 26: y_l = y_hat; where pi_ref was right, its most probable wrong candidate instead."""
    label_id, pred_id = np.asarray(label_id), np.asarray(pred_id)
    return np.where(pred_id != label_id, pred_id, wrong_logprobs(logprobs, label_id).argmax(axis=1))


def capped_rejected_ids(logprobs, label_id, cap: int) -> np.ndarray:
    """Algorithm 1 line 26's rejected answer (the most probable wrong candidate: y_hat where pi_ref was wrong)
    with at most ``cap`` pairs rejecting one behavior. The pairs whose wrong answer is most probable choose
    first; a pair whose wrong candidates are all at the limit takes the least rejected one. Without a limit
    pi_ref's favourite head behavior is the rejected answer of most pairs, and DPO lowers it everywhere."""
    wrong = wrong_logprobs(logprobs, label_id)
    used = np.zeros(wrong.shape[1], dtype=np.int64)
    out = np.empty(len(wrong), dtype=np.int64)
    for row in np.argsort(-wrong.max(axis=1), kind="stable"):
        ranked = np.argsort(-wrong[row], kind="stable")[:-1]  # every candidate but the label, most probable first
        free = ranked[used[ranked] < cap]
        out[row] = free[0] if len(free) else ranked[np.argmin(used[ranked])]
        used[out[row]] += 1
    return out


def select_all(scores: dict, stats: dict, config: SelectConfig, last_id=None) -> tuple[dict, list[dict], list[str]]:
    """Difficulty (Eq. 2/3), per-behavior normalization and selection over a scored pool.

    scores: ``shards.load_scores`` output (index, label_id, pred_id, p_true, logprobs, embedding).
    last_id: per pool row, the candidate id of the history's last behavior (needed by ``repeat_share``; with it
    the report also counts the pairs whose chosen or rejected answer repeats it).
    Returns (selection, report, warnings): selection holds the chosen rows' ``index`` (line numbers),
    ``label_id``, ``pred_id``, ``rejected_id``, ``difficulty`` (and with last_id ``last_id``) arrays in behavior
    order; report one dict per behavior of stats["behaviors"] (pool_size, pi_ref_accuracy, mean_difficulty,
    selected, pairs; with last_id pool_repeats and selected_repeats).
    A behavior without pool samples is reported with zeros and a warning.
    """
    F, mode = config.F, config.mode
    behaviors = stats["behaviors"]
    labels = np.asarray(scores["label_id"], dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("empty scoring pool: nothing to select from")
    pred = np.asarray(scores["pred_id"], dtype=np.int64)
    if mode == "dds" and scores.get("embedding") is None:
        raise ValueError("mode 'dds' needs embeddings: score with embeddings or use --mode uniform/topf")
    is_anchor = np.array([bool(b["is_anchor"]) for b in behaviors])
    d_conf = d_confusion(labels, pred, is_anchor)
    D = DIFFICULTY[config.eq3](scores["p_true"], d_conf, config.lam)
    weights = normalize_within_behavior(D, labels)
    rejected = rejected_ids(scores["logprobs"], labels, pred)
    if config.repeat_share is not None and last_id is None:
        raise ValueError("repeat-share needs the history of each pool sample (the prepared meta's 'history')")
    repeats = None if last_id is None else np.asarray(last_id) == labels

    picked_rows, report, notes = [], [], []
    gather = None
    if mode == "dds":
        gather = Float64Rows(np.asarray(scores["embedding"]), int(np.bincount(labels).max()))
    for b in behaviors:
        rows = np.flatnonzero(labels == b["label_id"])
        entry = {
            "behavior": b["name"],
            "label_id": b["label_id"],
            "is_anchor": bool(b["is_anchor"]),
            "freq_group": b.get("freq_group"),
            "pool_size": len(rows),
            "pi_ref_accuracy": None,
            "mean_difficulty": None,
            "selected": 0,
            "pairs": 0,
        }
        if len(rows) == 0:
            msg = f"behavior {b['name']!r} has no samples in the scoring pool: nothing selected"
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
        else:
            picked = _select_rows(rows, weights, F, config, b["label_id"], gather, repeats)
            picked_rows.append(picked)
            entry.update(
                pi_ref_accuracy=float((pred[rows] == labels[rows]).mean()),
                mean_difficulty=float(D[rows].mean()),
                mean_selected_difficulty=float(D[picked].mean()),
                selected=len(picked),
                pairs=len(picked),
            )
            if repeats is not None:
                entry.update(pool_repeats=int(repeats[rows].sum()), selected_repeats=int(repeats[picked].sum()))
        report.append(entry)
    chosen = np.concatenate(picked_rows) if picked_rows else np.zeros(0, dtype=np.int64)
    selection = {
        "index": np.asarray(scores["index"])[chosen],
        "label_id": labels[chosen],
        "pred_id": pred[chosen],
        "rejected_id": rejected[chosen],
        "difficulty": D[chosen],
    }
    if config.max_rejected is not None:
        selection["rejected_id"] = capped_rejected_ids(np.asarray(scores["logprobs"])[chosen], labels[chosen],
                                                       config.max_rejected)
    for entry in report:  # how many pairs reject each behavior: a label rejected far more often than chosen falls
        entry["rejected"] = int((selection["rejected_id"] == entry["label_id"]).sum())
    if last_id is not None:
        selection["last_id"] = np.asarray(last_id)[chosen]
    return selection, report, notes


def _select_rows(rows, weights, F: int, config: SelectConfig, label_id: int, gather, repeats) -> np.ndarray:
    """One behavior's selected pool rows: F of them by the mode, or with ``config.repeat_share`` in two parts,
    the rows that ``repeats`` marks (label = the history's last behavior) and the others, each selected by the
    mode (:func:`repeat_split` sizes them)."""
    if config.repeat_share is None or len(rows) <= F:
        parts = [(rows, F, ())]
    else:
        same, other = rows[repeats[rows]], rows[~repeats[rows]]
        n_same, n_other = repeat_split(F, len(same), len(other), config.repeat_share)
        parts = [(same, n_same, (1,)), (other, n_other, (0,))]
    picked = []
    for part, k, tag in parts:
        if k == 0:
            continue
        emb = gather(part) if gather is not None and len(part) > k else None
        local = select_for_behavior(emb, weights[part], k, behavior_seed(config.seed, label_id, *tag), config.mode)
        picked.append(part[local])
    return np.sort(np.concatenate(picked))


def run_selection(scores_dir, dataset_dir, config: SelectConfig, *, out_dir) -> dict:
    """load_scores -> select_all -> pairs.write_outputs (into out_dir, never dataset_dir). Returns the report."""
    from pathlib import Path

    from data_prep.prepared import load_prepared
    from scoring.shards import load_scores

    from .pairs import write_outputs

    if Path(out_dir).resolve() == Path(dataset_dir).resolve():
        raise ValueError(f"--out {out_dir} is the prepared dataset dir: select writes into a folder of its own")
    data = load_prepared(dataset_dir, config.dataset)
    scores = load_scores(scores_dir)
    if scores["candidates"] != data.candidates:
        raise ValueError(f"scores in {str(scores_dir)!r} were computed with a different candidate list than stats.json")
    if len(scores["index"]) and scores["index"].max() >= len(data.records):
        raise ValueError(f"scores in {str(scores_dir)!r} do not belong to {data.path.name} (index out of range)")
    meta_labels = np.array([m["label_id"] for m in data.meta], dtype=np.int64)
    if not np.array_equal(meta_labels[scores["index"]], scores["label_id"]):
        raise ValueError(f"scores in {str(scores_dir)!r} do not match the labels of {data.path.name}")
    selection, per_behavior, notes = select_all(scores, data.stats, config, _last_ids(data, scores["index"]))
    # the report's settings: every field, the dataset as the file read, then the scores read
    settings = {**{k: v for k, v in asdict(config).items() if k != "dataset"}, "dataset": data.path.name,
                "scores": str(Path(scores_dir).resolve())}
    return write_outputs(
        out_dir, data.records, selection, data.candidates, per_behavior, notes, settings, scores
    )


def _last_ids(data, index) -> np.ndarray | None:
    """Per pool row, the candidate id of its history's last behavior; None when the meta has no history."""
    ids = {name: i for i, name in enumerate(data.candidates)}
    meta = [data.meta[int(i)] for i in index]
    if not all(m.get("history") for m in meta):
        return None
    return np.array([ids.get(m["history"][-1], -1) for m in meta], dtype=np.int64)
