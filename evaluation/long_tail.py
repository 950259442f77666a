"""The long tail of a run's behaviors (Fig. 1a / Fig. 6): the behaviors by training frequency, the anchor
threshold and the head / medium / tail groups marked, as `long_tail.png/.md/.json`
(:func:`evaluation.figure_files.write_figure`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .figure_files import write_figure

GROUP_COLORS = {"head": "tab:blue", "medium": "tab:orange", "tail": "tab:red"}


def long_tail(stats: dict) -> dict:
    """Fig. 1a's numbers: behaviors by training frequency (most frequent first), the anchor threshold, the
    group thresholds and each group's share of the training samples."""
    config = stats.get("config", {})
    rows = sorted(stats["behaviors"], key=lambda b: (-b["train_count"], b["label_id"]))
    behaviors = [{"rank": k + 1, "behavior": b["name"], "train_count": int(b["train_count"]),
                  "train_freq": float(b["train_freq"]), "group": b["freq_group"], "anchor": bool(b["is_anchor"])}
                 for k, b in enumerate(rows)]
    total = sum(b["train_count"] for b in behaviors) or 1
    groups = {g: {"behaviors": sum(b["group"] == g for b in behaviors),
                  "share_of_samples": sum(b["train_count"] for b in behaviors if b["group"] == g) / total}
              for g in GROUP_COLORS}
    return {"anchor_threshold": config.get("anchor_threshold"), "head_threshold": config.get("head_threshold"),
            "tail_threshold": config.get("tail_threshold"), "anchors": sum(b["anchor"] for b in behaviors),
            "groups": groups, "behaviors": behaviors}


def plot_long_tail(stats: dict, out_dir: Path) -> list[Path]:
    """long_tail.png / .md / .json into out_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    data = long_tail(stats)
    rows = data["behaviors"]
    freq = np.array([max(b["train_freq"], 1e-6) for b in rows])   # a behavior never seen in training: at the floor
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(min(max(8.0, 0.3 * len(rows) + 3), 40.0), 4.8))
    ax.bar(x, freq, color=[GROUP_COLORS[b["group"]] for b in rows], zorder=2)
    ax.set_yscale("log")
    if data["anchor_threshold"] is not None:
        ax.axhline(data["anchor_threshold"], color="black", linestyle="--", linewidth=1,
                   label=f"anchor threshold {data['anchor_threshold']:g}")
    n_anchor = data["anchors"]
    if n_anchor:
        ax.axvspan(-0.5, n_anchor - 0.5, color="0.92", zorder=0, label=f"anchors ({n_anchor})")
    handles, _ = ax.get_legend_handles_labels()
    for group, color in GROUP_COLORS.items():
        g = data["groups"][group]
        handles.append(Patch(color=color, label=f"{group}: {g['behaviors']} behaviors, "
                                                f"{g['share_of_samples']:.1%} of samples"))
    ax.set_xticks(x)
    ax.set_xticklabels([b["behavior"] for b in rows], rotation=60, ha="right",
                       fontsize=max(2.0, min(8.0, 600 / max(len(rows), 1))))
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_ylabel("share of training samples (log)")
    ax.set_title("Behaviors by training frequency (Fig. 1a)")
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    fig.tight_layout()
    head = data["groups"]
    summary = (f"{len(rows)} behaviors by training frequency; {n_anchor} anchors above "
               f"{data['anchor_threshold']}; head {head['head']['behaviors']}, medium {head['medium']['behaviors']}, "
               f"tail {head['tail']['behaviors']} behaviors.")
    paths = write_figure(out_dir, "long_tail", fig, rows, summary, data)
    plt.close(fig)
    return paths
