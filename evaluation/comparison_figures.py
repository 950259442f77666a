"""The paper's figures over several models or runs, from report metrics.json files (``PATH#MODEL`` points, as
the ablation and sweep tables read them), each written by figure_files.write_figure as `<name>.png/.md/.json`:

- `compare_runs` (Fig. 3a): anchor and tail accuracy per run (model size) and tuning method, grouped bars.
- `sweep_f` (Fig. 3b): anchor and tail accuracy against F, the B-tune samples per behavior.
- `tuning_data` (Fig. 5): fine-tuning on all behaviors, on anchors only and on tails only, side by side.
- `sweep_aux` (Table 7): the six metrics per auxiliary conversation set, a table and bars.

Anchor and tail accuracy are protocol 2's `anchor_accuracy` and `tail_behavior_accuracy` (Fig. 1c).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .ablations import SIX_KEYS, load_model_metrics
from .figure_files import write_figure
from .report import LABELS, parse_named

ACC_KEYS = ("anchor_accuracy", "tail_behavior_accuracy")
ACC_TITLES = {"anchor_accuracy": "anchor accuracy", "tail_behavior_accuracy": "tail accuracy"}
KINDS = ("compare_runs", "sweep_f", "tuning_data", "sweep_aux")


def point_metrics(spec: str) -> dict[str, float | None]:
    """The six metrics and anchor / tail accuracy (protocol 2) of one model of a metrics.json."""
    six = load_model_metrics(spec)   # refuses a missing file or an ambiguous / unknown model
    path, _, model = spec.partition("#")
    models = json.loads(Path(path).read_text(encoding="utf-8"))["models"]
    summary = models[model or next(iter(models))]["summary"].get("test_p2", {})
    return {**six, **{k: summary.get(k, {}).get("mean") for k in ACC_KEYS}}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, groups: dict[str, dict[str, float | None]], ylabel: str) -> None:
    """Grouped bars: one group per key of `groups`, one bar per inner key (missing values left out)."""
    bars = list(dict.fromkeys(b for inner in groups.values() for b in inner))
    width = 0.8 / max(len(bars), 1)
    x = np.arange(len(groups))
    for k, bar in enumerate(bars):
        values = [np.nan if inner.get(bar) is None else inner[bar] for inner in groups.values()]
        ax.bar(x - 0.4 + width * (k + 0.5), values, width, label=bar, zorder=2)
    ax.set_xticks(x)
    ax.set_xticklabels(list(groups), fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="0.9", zorder=0)
    ax.legend(fontsize=7)


def _row(label_key: str, label: str, m: dict, keys=(*SIX_KEYS, *ACC_KEYS)) -> dict:
    return {label_key: label, **{LABELS[k]: m[k] if m[k] is not None else "-" for k in keys}}


def compare_runs(points: dict[str, str], out_dir: Path) -> list[Path]:
    """points: "RUN/METHOD" -> spec. Two panels (anchor, tail): x = run, bars = tuning method."""
    metrics = {label: point_metrics(spec) for label, spec in points.items()}
    runs: dict[str, dict[str, dict]] = {}
    for label, m in metrics.items():
        run, _, method = label.partition("/")
        runs.setdefault(run, {})[method or "model"] = m
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(runs) + 4), 4.2))
    for ax, key in zip(axes, ACC_KEYS):
        _bars(ax, {run: {meth: m[key] for meth, m in methods.items()} for run, methods in runs.items()},
              ACC_TITLES[key] + " (protocol 2)")
        ax.set_title(ACC_TITLES[key])
    fig.suptitle("Anchor and tail accuracy by run (model size) and tuning method (Fig. 3a)")
    fig.tight_layout()
    table = [{"run": run, **_row("method", meth, m)} for run, methods in runs.items() for meth, m in methods.items()]
    summary = f"Anchor and tail accuracy of {len(metrics)} models over {len(runs)} runs ({', '.join(runs)})."
    data = {"runs": {run: methods for run, methods in runs.items()}}
    return _write(out_dir, "compare_runs", fig, table, summary, data)


def sweep_f(points: dict[str, str], out_dir: Path) -> list[Path]:
    """points: F -> spec. Anchor and tail accuracy against F (a line each)."""
    metrics = {value: point_metrics(spec) for value, spec in points.items()}
    xs = [float(v) for v in metrics]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for key in ACC_KEYS:
        ys = [np.nan if m[key] is None else m[key] for m in metrics.values()]
        ax.plot(xs, ys, marker="o", label=ACC_TITLES[key])
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels(list(metrics))
    ax.set_ylim(0, 1)
    ax.set_xlabel("F: B-tune samples per behavior")
    ax.set_ylabel("accuracy (protocol 2)")
    ax.set_title("BehaviorLM against the few-shot samples per behavior (Fig. 3b)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    table = [_row("F", value, m) for value, m in metrics.items()]
    summary = f"B-tune with F = {', '.join(metrics)} from the same pi_ref and scores; anchor and tail accuracy:"
    return _write(out_dir, "sweep_f", fig, table, summary, {"points": metrics})


def tuning_data(points: dict[str, str], out_dir: Path) -> list[Path]:
    """points: tuning data -> spec. Anchor and tail accuracy side by side, one bar per tuning set."""
    metrics = {label: point_metrics(spec) for label, spec in points.items()}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    _bars(ax, {ACC_TITLES[k]: {label: m[k] for label, m in metrics.items()} for k in ACC_KEYS},
          "accuracy (protocol 2)")
    ax.set_title("Fine-tuning on all behaviors, anchors only, tails only (Fig. 5)")
    fig.tight_layout()
    table = [_row("tuning data", label, m) for label, m in metrics.items()]
    summary = "Anchor and tail accuracy after tuning on each set of behaviors:"
    return _write(out_dir, "tuning_data", fig, table, summary, {"points": metrics})


def sweep_aux(points: dict[str, str], out_dir: Path) -> list[Path]:
    """points: auxiliary set -> spec. The six metrics per set (Table 7) as bars."""
    metrics = {label: point_metrics(spec) for label, spec in points.items()}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 4.4))
    _bars(ax, {LABELS[k]: {label: m[k] for label, m in metrics.items()} for k in SIX_KEYS}, "metric")
    ax.set_title("BehaviorLM with each auxiliary conversation set (Table 7)")
    fig.tight_layout()
    table = [_row("auxiliary set", label, m, SIX_KEYS) for label, m in metrics.items()]
    summary = "The six metrics with each auxiliary conversation set at the same eps:"
    return _write(out_dir, "sweep_aux", fig, table, summary, {"points": metrics})


def _write(out_dir: Path, name: str, fig, table: list[dict], summary: str, data: dict) -> list[Path]:
    paths = write_figure(Path(out_dir), name, fig, table, summary, data)
    _pyplot().close(fig)
    return paths


def write(kind: str, point_specs: list[str], out_dir: str) -> list[Path]:
    """`python -m evaluation figure KIND --point LABEL=METRICS_JSON[#MODEL] ... --out DIR`."""
    points = {label: specs[-1] for label, specs in parse_named(point_specs, "--point").items()}
    return {"compare_runs": compare_runs, "sweep_f": sweep_f, "tuning_data": tuning_data,
            "sweep_aux": sweep_aux}[kind](points, Path(out_dir))
