"""The paper's six metrics (Appendix B, Eq. 5-10) plus anchor/tail accuracy (Fig. 1c).

Every metric is a function of one confusion matrix ``cm`` of shape [K, K+1]: row = true behavior
(label_id, the order of stats.json), column = predicted behavior, the extra last column counts invalid
predictions (a generated output that is no candidate). An invalid prediction is wrong for its row and
a false positive of no class.

Prec_w, a discrepancy in the paper
----------------------------------
Eq. 5 weights each class's precision by TP_c + FP_c (the number of predictions of class c); then
sum_c (TP_c + FP_c) * TP_c / (TP_c + FP_c) / sum_c (TP_c + FP_c) = sum_c TP_c / N, which is accuracy,
the same number as Rec_w (Eq. 6). Table 3 reports Prec_w != Rec_w for every model, so the paper must have
computed precision weighted by class *support* (TP_c + FN_c), i.e. scikit-learn's
``precision_score(average="weighted")``. ``prec_w`` is that (what the reports call Prec_w, with
zero_division=0: a class never predicted has precision 0); ``prec_w_eq5`` is Eq. 5 as printed, kept for
reference (correct / valid predictions, accuracy when nothing is invalid).

Overall / Head / Medium / Tail (Eq. 7-10) are means of per-class recall. Behaviors without test samples
have no recall; they are left out of the mean (and listed in ``excluded``), and a group left with no
behavior gives None (Table 3's "-"). Groups come from the *training* frequency (stats.json
``freq_group``: head > 5 %, medium 1-5 %, tail < 1 %), never from the test set.

Ranking and calibration
-----------------------
Models that give a distribution over the K candidates (``logprobs``: log p(c|x) per candidate) are also
scored as a sequential recommender is (RecBole's Hit@k, MRR, NDCG@k, one relevant item: the label) and as a
probability forecaster (ECE, Brier, NLL). Ties in rank: a label whose log-probability equals that of t other
candidates, below b candidates, takes each of the positions b+1 .. b+t+1 with equal chance (a uniformly random
order of the tied group); every ranking metric is its expected value over those positions. So a uniform
distribution over K candidates gets Hit@1 = 1/K, never 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

INVALID = -1
GROUPS = ("head", "medium", "tail")
PROTOCOL1_METRICS = ("prec_w", "rec_w")
PROTOCOL2_METRICS = ("overall", "head", "medium", "tail")
RANKING_METRICS = ("hit@1", "hit@3", "hit@5", "mrr", "ndcg@5")
CALIBRATION_METRICS = ("ece", "brier", "nll")
DISTRIBUTION_METRICS = RANKING_METRICS + CALIBRATION_METRICS
ECE_BINS = 15
NO_DISTRIBUTION = ("no per-candidate log-probabilities in the predictions file (a method without a distribution, "
                   "or a file written before they were kept: rerun its evaluation)")
SCALAR_METRICS = ("prec_w", "rec_w", "prec_w_eq5", "overall", "head", "medium", "tail",
                  "anchor_accuracy", "tail_behavior_accuracy", "invalid_rate") + DISTRIBUTION_METRICS + (
                  "temperature", "ece_scaled", "brier_scaled", "nll_scaled")


def confusion_matrix(label_ids: Sequence[int], pred_ids: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts [K, K+1]: row true class, column predicted class, last column invalid (pred_id -1)."""
    labels = np.asarray(label_ids, dtype=np.int64)
    preds = np.asarray(pred_ids, dtype=np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"{labels.size} labels but {preds.size} predictions")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"label ids must lie in [0, {n_classes}); a label is not a candidate")
    if preds.size and (preds.min() < INVALID or preds.max() >= n_classes):
        raise ValueError(f"prediction ids must lie in [0, {n_classes}) or be {INVALID} (invalid)")
    cm = np.zeros((n_classes, n_classes + 1), dtype=np.int64)
    np.add.at(cm, (labels, np.where(preds == INVALID, n_classes, preds)), 1)
    return cm


def class_counts(cm: np.ndarray) -> dict[str, np.ndarray]:
    """TP_c, FP_c, FN_c and support (TP_c + FN_c) of every class, as Appendix B defines them."""
    k = cm.shape[0]
    tp = np.diag(cm[:, :k]).astype(np.int64)
    support = cm.sum(axis=1)
    predicted = cm[:, :k].sum(axis=0)
    return {"tp": tp, "fp": predicted - tp, "fn": support - tp, "support": support}


def class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall_c = TP_c / (TP_c + FN_c) (per-class accuracy); NaN where the class has no test sample."""
    c = class_counts(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c["support"] > 0, c["tp"] / np.maximum(c["support"], 1), np.nan)


def class_precision(cm: np.ndarray) -> np.ndarray:
    """Precision_c = TP_c / (TP_c + FP_c); 0 where the class is never predicted (zero_division=0)."""
    c = class_counts(cm)
    predicted = c["tp"] + c["fp"]
    return np.where(predicted > 0, c["tp"] / np.maximum(predicted, 1), 0.0)


def rec_w(cm: np.ndarray) -> float | None:
    """Eq. 6: recall weighted by TP_c + FN_c; equals accuracy (Hit-Rate@1)."""
    c = class_counts(cm)
    total = c["support"].sum()
    return None if total == 0 else float((c["support"] * np.nan_to_num(class_recall(cm))).sum() / total)


def prec_w_eq5(cm: np.ndarray) -> float | None:
    """Eq. 5 as printed: precision weighted by TP_c + FP_c (= correct / valid predictions)."""
    c = class_counts(cm)
    weights = c["tp"] + c["fp"]
    return None if weights.sum() == 0 else float((weights * class_precision(cm)).sum() / weights.sum())


def prec_w(cm: np.ndarray) -> float | None:
    """Prec_w as Table 3 reports it: precision weighted by support TP_c + FN_c (Eq. 5 with the weights
    of Eq. 6; scikit-learn ``precision_score(average="weighted", zero_division=0)``)."""
    c = class_counts(cm)
    total = c["support"].sum()
    return None if total == 0 else float((c["support"] * class_precision(cm)).sum() / total)


def mean_class_accuracy(cm: np.ndarray, members: np.ndarray | None = None) -> float | None:
    """Mean of Recall_c over the classes in ``members`` (bool mask) that have test samples."""
    recall = class_recall(cm)
    keep = ~np.isnan(recall) if members is None else (np.asarray(members, bool) & ~np.isnan(recall))
    return float(recall[keep].mean()) if keep.any() else None


def overall_accuracy(cm: np.ndarray) -> float | None:
    """Eq. 7: category-average accuracy, 1/|C| sum_c TP_c / (TP_c + FN_c) over behaviors with test samples."""
    return mean_class_accuracy(cm)


def head_accuracy(cm: np.ndarray, groups: Sequence[str]) -> float | None:
    """Eq. 8: mean accuracy over C_h, the behaviors with training frequency > 5 %."""
    return mean_class_accuracy(cm, np.asarray(groups) == "head")


def medium_accuracy(cm: np.ndarray, groups: Sequence[str]) -> float | None:
    """Eq. 9: mean accuracy over C_m, the behaviors with training frequency in 1-5 %."""
    return mean_class_accuracy(cm, np.asarray(groups) == "medium")


def tail_accuracy(cm: np.ndarray, groups: Sequence[str]) -> float | None:
    """Eq. 10: mean accuracy over C_t, the behaviors with training frequency < 1 %."""
    return mean_class_accuracy(cm, np.asarray(groups) == "tail")


def anchor_tail_accuracy(cm: np.ndarray, is_anchor: Sequence[bool]) -> tuple[float | None, float | None]:
    """Fig. 1c: mean per-class accuracy over anchor behaviors and over tail (non-anchor) behaviors."""
    anchor = np.asarray(is_anchor, dtype=bool)
    return mean_class_accuracy(cm, anchor), mean_class_accuracy(cm, ~anchor)


def behavior_table(stats: dict) -> tuple[list[str], list[str], list[bool]]:
    """(names, freq_group, is_anchor) of the candidates, in stats.json order (index = label_id)."""
    behaviors = stats["behaviors"]
    for b in behaviors:
        if b.get("freq_group") not in GROUPS:
            raise ValueError(f"stats.json: behavior {b.get('name')!r} has freq_group {b.get('freq_group')!r}")
    return ([b["name"] for b in behaviors], [b["freq_group"] for b in behaviors],
            [bool(b["is_anchor"]) for b in behaviors])


def all_metrics(label_ids: Sequence[int], pred_ids: Sequence[int], stats: dict) -> dict:
    """Every metric of one predictions file, with the per-behavior breakdown and the confusion matrix.

    Which metrics a protocol *reports* is decided by the report (PROTOCOL1_METRICS / PROTOCOL2_METRICS);
    all are computed so that nothing has to be recomputed later."""
    names, groups, is_anchor = behavior_table(stats)
    cm = confusion_matrix(label_ids, pred_ids, len(names))
    counts = class_counts(cm)
    recall = class_recall(cm)
    precision = class_precision(cm)
    anchor_acc, tail_acc = anchor_tail_accuracy(cm, is_anchor)
    n = int(cm.sum())
    n_invalid = int(cm[:, -1].sum())
    return {
        "n_samples": n,
        "n_invalid": n_invalid,
        "invalid_rate": n_invalid / n if n else None,
        "prec_w": prec_w(cm),
        "rec_w": rec_w(cm),
        "prec_w_eq5": prec_w_eq5(cm),
        "overall": overall_accuracy(cm),
        "head": head_accuracy(cm, groups),
        "medium": medium_accuracy(cm, groups),
        "tail": tail_accuracy(cm, groups),
        "anchor_accuracy": anchor_acc,
        "tail_behavior_accuracy": tail_acc,
        "excluded": [name for name, s in zip(names, counts["support"]) if s == 0],
        "group_sizes": {g: int(sum(1 for name, gg, s in zip(names, groups, counts["support"])
                                   if gg == g and s > 0)) for g in GROUPS},
        "per_behavior": {
            name: {"support": int(counts["support"][i]), "correct": int(counts["tp"][i]),
                   "predicted": int(counts["tp"][i] + counts["fp"][i]),
                   "accuracy": None if math.isnan(recall[i]) else float(recall[i]),
                   "precision": float(precision[i]), "freq_group": groups[i], "is_anchor": is_anchor[i]}
            for i, name in enumerate(names)
        },
        "confusion": cm.tolist(),
    }


def metrics_from_predictions(rows: Sequence[dict], stats: dict, temperature: float | None = None) -> dict:
    """all_metrics of prediction rows (the predictions contract); names are mapped through stats. With every
    row's ``logprobs``, the ranking and calibration metrics too; else they are None and ``distribution_missing``
    says why. With a temperature, also ECE, Brier and NLL after scaling (``*_scaled``)."""
    rows = list(rows)
    names = [b["name"] for b in stats["behaviors"]]
    index = {name: i for i, name in enumerate(names)}
    label_ids, pred_ids = [], []
    for row in rows:
        if row["label"] not in index:
            raise ValueError(f"sample {row.get('sample_id')}: label {row['label']!r} is not a candidate")
        label_ids.append(index[row["label"]])
        pred_ids.append(index.get(row.get("pred"), INVALID) if row.get("pred") is not None else INVALID)
    out = all_metrics(label_ids, pred_ids, stats)
    logprobs = row_logprobs(rows, len(names))
    if logprobs is None:
        out.update({key: None for key in DISTRIBUTION_METRICS}, distribution_missing=NO_DISTRIBUTION)
    else:
        out.update(distribution_metrics(logprobs, label_ids, pred_ids))
        if temperature is not None:
            out.update(scaled_calibration(logprobs, label_ids, pred_ids, temperature))
    return out


def scaled_calibration(logprobs: np.ndarray, label_ids: Sequence[int], pred_ids: Sequence[int],
                       temperature: float) -> dict:
    """ECE, Brier, NLL and reliability bins of log_softmax(logprobs / T) (temperature scaling)."""
    m = distribution_metrics(np.asarray(logprobs, dtype=np.float64) / temperature, label_ids, pred_ids)
    return {"temperature": float(temperature), "ece_scaled": m["ece"], "brier_scaled": m["brier"],
            "nll_scaled": m["nll"], "reliability_scaled": m["reliability"]}


def row_logprobs(rows: Sequence[dict], n_classes: int) -> np.ndarray | None:
    """[n, K] ``logprobs`` of prediction rows, or None when a row has none (old files, generation)."""
    if not rows or any(not row.get("logprobs") for row in rows):
        return None
    lp = np.array([row["logprobs"] for row in rows], dtype=np.float64)
    if lp.shape != (len(rows), n_classes):
        raise ValueError(f"logprobs have shape {lp.shape}, expected ({len(rows)}, {n_classes}) (one per candidate)")
    return lp


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64: normalized log p(c|x) from any per-candidate scores."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def label_positions(logprobs: np.ndarray, label_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(better, tied) per sample: candidates scored strictly above the label, and the others scored equal."""
    lp = np.asarray(logprobs, dtype=np.float64)
    own = lp[np.arange(len(lp)), np.asarray(label_ids, dtype=np.int64)][:, None]
    better = (lp > own).sum(axis=1)
    return better, (lp == own).sum(axis=1) - 1


def _expected_over_ties(better: np.ndarray, tied: np.ndarray, gain) -> float:
    """Mean over samples of the mean of gain(rank) over the label's equally likely ranks b+1 .. b+t+1."""
    values = [float(np.mean(gain(np.arange(b + 1, b + t + 2)))) for b, t in zip(better.tolist(), tied.tolist())]
    return float(np.mean(values)) if values else None


def hit_at_k(logprobs: np.ndarray, label_ids: Sequence[int], k: int) -> float | None:
    """Hit@k: the share of samples whose label ranks among the k most probable candidates (ties: expected)."""
    return _expected_over_ties(*label_positions(logprobs, label_ids), lambda r: (r <= k).astype(float))


def mrr(logprobs: np.ndarray, label_ids: Sequence[int]) -> float | None:
    """Mean reciprocal rank of the label, 1 / rank (ties: expected over the tied ranks)."""
    return _expected_over_ties(*label_positions(logprobs, label_ids), lambda r: 1.0 / r)


def ndcg_at_k(logprobs: np.ndarray, label_ids: Sequence[int], k: int) -> float | None:
    """NDCG@k with one relevant item (the label): 1 / log2(rank + 1) when rank <= k, else 0 (ideal DCG is 1)."""
    return _expected_over_ties(*label_positions(logprobs, label_ids),
                               lambda r: np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> list[dict]:
    """Equal-width bins ((i-1)/M, i/M] of the top probability: count, mean confidence and accuracy of each."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    which = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        sel = which == b
        n = int(sel.sum())
        out.append({"count": n, "confidence": float(conf[sel].mean()) if n else None,
                    "accuracy": float(hit[sel].mean()) if n else None})
    return out


def ece_of_bins(bins: list[dict]) -> float | None:
    """Expected calibration error (Guo et al. 2017): sum_b n_b / N * |accuracy_b - confidence_b|."""
    total = sum(b["count"] for b in bins)
    if not total:
        return None
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def ece(probs: np.ndarray, label_ids: Sequence[int], pred_ids: Sequence[int] | None = None,
        n_bins: int = ECE_BINS) -> float | None:
    """ECE over n_bins equal-width bins of the top probability, weighted by bin size; a sample is correct when
    its prediction (pred_ids, default the first argmax) is its label."""
    p = np.asarray(probs, dtype=np.float64)
    preds = p.argmax(axis=1) if pred_ids is None else np.asarray(pred_ids)
    return ece_of_bins(reliability_bins(p.max(axis=1), preds == np.asarray(label_ids), n_bins))


def brier(probs: np.ndarray, label_ids: Sequence[int]) -> float | None:
    """Multi-class Brier score (Brier 1950): sum over candidates of (p_c - 1[c = label])^2, mean over samples
    (ranges 0 .. 2; not the binary top-label variant)."""
    p = np.asarray(probs, dtype=np.float64)
    if not len(p):
        return None
    onehot = np.zeros_like(p)
    onehot[np.arange(len(p)), np.asarray(label_ids, dtype=np.int64)] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def nll(logprobs: np.ndarray, label_ids: Sequence[int]) -> float | None:
    """Negative log-likelihood of the label, -mean log p(label|x) (natural log)."""
    lp = log_softmax(logprobs)
    return float(-lp[np.arange(len(lp)), np.asarray(label_ids, dtype=np.int64)].mean()) if len(lp) else None


def distribution_metrics(logprobs: np.ndarray, label_ids: Sequence[int], pred_ids: Sequence[int]) -> dict:
    """Ranking (Hit@1/3/5, MRR, NDCG@5) and calibration (ECE, Brier, NLL) of per-candidate log-probabilities
    (normalized here), with the reliability bins; pred_ids decide correctness for ECE."""
    lp = log_softmax(logprobs)
    probs = np.exp(lp)
    correct = np.asarray(pred_ids) == np.asarray(label_ids)
    bins = reliability_bins(probs.max(axis=1), correct)
    return {"hit@1": hit_at_k(lp, label_ids, 1), "hit@3": hit_at_k(lp, label_ids, 3),
            "hit@5": hit_at_k(lp, label_ids, 5), "mrr": mrr(lp, label_ids), "ndcg@5": ndcg_at_k(lp, label_ids, 5),
            "ece": ece_of_bins(bins), "brier": brier(probs, label_ids), "nll": nll(lp, label_ids),
            "reliability": bins}


def aggregate_runs(runs: Sequence[dict], keys: Sequence[str] = SCALAR_METRICS) -> dict:
    """Mean and sample standard deviation (ddof=1) of each metric over repeated runs (different seeds).

    A metric that is None in a run (an empty group) is left out of that metric's statistics; ``n`` says
    how many runs were averaged; ``std`` is None for a single run."""
    out = {}
    for key in keys:
        values = np.array([r[key] for r in runs if r.get(key) is not None], dtype=float)
        out[key] = {
            "mean": float(values.mean()) if values.size else None,
            "std": float(values.std(ddof=1)) if values.size > 1 else None,
            "n": int(values.size),
        }
    return out
