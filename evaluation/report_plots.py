"""The run report's own plots: per-behavior accuracy by training frequency, one confusion matrix and one
reliability diagram per model (matplotlib, PNG written atomically). The report's tables and metrics.json are
built in :mod:`evaluation.report`; the paper's figures are :mod:`evaluation.comparison_figures`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.writing.outputs import atomic_open

from . import metrics as M
from .files import TEST_SPLITS

# Figures grow with the behaviors up to these widths (inches); beyond, labels shrink. A 200-category data set
# otherwise draws a 66-inch confusion matrix (7000 x 7000 px, half a minute per model to encode).
MAX_CHART_INCHES = 40.0
MAX_CONFUSION_INCHES = 24.0


def behaviors_by_frequency(stats: dict) -> list[int]:
    """label_ids ordered by training count, descending (ties by label_id)."""
    b = stats["behaviors"]
    return sorted(range(len(b)), key=lambda i: (-int(b[i]["train_count"]), i))


def pooled_reliability(model: dict, key: str = "reliability") -> tuple[str, list[dict]] | None:
    """(split, bins) of one model pooled over its runs, protocol 1 first; None without a distribution."""
    for split in TEST_SPLITS:
        runs = [r[split][key] for r in model["runs"] if r.get(split, {}).get(key)]
        if runs:
            return split, [_pool_bin([bins[b] for bins in runs]) for b in range(len(runs[0]))]
    return None


def _pool_bin(bins: list[dict]) -> dict:
    n = sum(b["count"] for b in bins)
    mean = (lambda k: sum(b["count"] * b[k] for b in bins if b["count"]) / n) if n else (lambda k: None)
    return {"count": n, "confidence": mean("confidence"), "accuracy": mean("accuracy")}


def plot_reliability(name: str, model: dict, path: Path) -> Path | None:
    """Reliability diagram: accuracy against mean top probability per bin, before (and after) temperature."""
    pooled = pooled_reliability(model)
    if pooled is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split, bins = pooled
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    series = [("uncalibrated", bins)]
    scaled = pooled_reliability(model, "reliability_scaled")
    if scaled is not None and scaled[0] == split:
        series.append(("temperature-scaled", scaled[1]))
    for label, values in series:
        kept = [b for b in values if b["count"]]
        ax.plot([b["confidence"] for b in kept], [b["accuracy"] for b in kept], marker="o", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"top probability ({M.ECE_BINS} equal-width bins, mean)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(f"{name}: reliability, {split}")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return path


def plot_per_behavior(report: dict, stats: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [n for n, m in report["models"].items() if "test_p2" in m["per_behavior_accuracy"]]
    if not models:
        return None
    order = behaviors_by_frequency(stats)
    behaviors = [stats["behaviors"][i] for i in order]
    x = np.arange(len(behaviors))
    width = 0.8 / len(models)
    width = min(max(8.0, 0.45 * len(behaviors) + 3), MAX_CHART_INCHES)
    fig, ax = plt.subplots(figsize=(width, 4.8))
    n_anchor = sum(bool(b["is_anchor"]) for b in behaviors)
    # anchors are the most frequent behaviors, so they form the left block of the frequency order
    if n_anchor:
        ax.axvspan(-0.5, n_anchor - 0.5, color="0.92", zorder=0, label="anchor behaviors")
    for k, name in enumerate(models):
        acc = report["models"][name]["per_behavior_accuracy"]["test_p2"]
        values = [np.nan if acc.get(b["name"]) is None else acc[b["name"]] for b in behaviors]
        ax.bar(x - 0.4 + width * (k + 0.5), values, width, label=name, zorder=2)
    ax.set_xticks(x)
    ax.set_xticklabels([b["name"] for b in behaviors], rotation=60, ha="right",
                       fontsize=_label_points(width - 3, len(behaviors), 8))
    for tick, b in zip(ax.get_xticklabels(), behaviors):
        tick.set_fontweight("bold" if b["is_anchor"] else "normal")
    ax.set_xlim(-0.5, len(behaviors) - 0.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (protocol 2)")
    ax.set_title("Per-behavior accuracy, behaviors by training frequency (anchors shaded, bold)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return path


def _label_points(inches: float, n_labels: int, largest: float) -> float:
    """Tick label size (points) that fits n_labels side by side in `inches` (60 % of the spacing)."""
    return max(2.0, min(largest, 0.6 * 72 * inches / max(n_labels, 1)))


def _save_figure(fig, path: Path) -> None:
    """PNG through atomic_open (a file object has no extension to infer the format from)."""
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)


def plot_confusion(name: str, model: dict, stats: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = "test_p2" if "test_p2" in model["confusion_pooled"] else next(iter(model["confusion_pooled"]), None)
    if split is None:
        return None
    cm = np.asarray(model["confusion_pooled"][split], dtype=float)
    order = behaviors_by_frequency(stats)
    k = len(order)
    has_invalid = cm[:, k].sum() > 0
    cols = order + ([k] if has_invalid else [])
    cm = cm[order][:, cols]
    rows_sum = cm.sum(axis=1, keepdims=True)
    normalized = np.divide(cm, rows_sum, out=np.zeros_like(cm), where=rows_sum > 0)
    labels = [stats["behaviors"][i]["name"] for i in order]
    size = min(max(6.0, 0.32 * k + 3), MAX_CONFUSION_INCHES)
    points = _label_points(size - 3, len(cols), 7)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(labels + (["(invalid)"] if has_invalid else []), rotation=90, fontsize=points)
    ax.set_yticks(range(k))
    ax.set_yticklabels(labels, fontsize=points)
    n_anchor = sum(bool(stats["behaviors"][i]["is_anchor"]) for i in order)
    if 0 < n_anchor < k:
        ax.axhline(n_anchor - 0.5, color="red", lw=0.8)
        ax.axvline(n_anchor - 0.5, color="red", lw=0.8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (by training frequency; red line: anchor | tail)")
    ax.set_title(f"{name}: confusion, {split}, row-normalized")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return path
