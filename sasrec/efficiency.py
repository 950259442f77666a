"""Sample efficiency (paper 4.3.2, Fig. 4): SASRec trained on seeded subsets of train_all of several sizes,
beside the run's LLM rows, as Overall and Tail accuracy (protocol 2, Eq. 7 and 10) against training samples.

The subsets are nested (the first n windows of one seeded permutation), so a larger run sees everything a
smaller one saw; a size above the training split is capped to it (and said so). Validation and test splits
are always the full ones. An LLM row (``NAME=METRICS_JSON#MODEL[@SAMPLES]``) is read from a report's
metrics.json and placed at SAMPLES, by default the train_all size the LLM's data was drawn from (as the
paper places BehaviorLM at its 200k samples).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.writing.outputs import atomic_open
from evaluation.ablations import load_model_metrics
from evaluation.files import write_json_atomic, write_predictions, write_text_atomic
from evaluation.metrics import metrics_from_predictions
from evaluation.report import parse_named

from .train import (
    fit,
    load_config,
    load_splits,
    model_config,
    predict_probs,
    prediction_rows,
    to_tensors,
)

METRICS = (("overall", "Overall (P2)"), ("tail", "Tail (P2)"), ("rec_w", "Rec_w (P1)"))


def nested_subsets(n_train: int, sizes: list[int], seed: int) -> list[tuple[int, int, np.ndarray]]:
    """(requested, used, sorted indices) per size: prefixes of one seeded permutation of the training windows."""
    if not sizes or min(sizes) < 1:
        raise ValueError("--sizes must be positive integers")
    order = np.random.default_rng([seed, 12]).permutation(n_train)
    return [(size, min(size, n_train), np.sort(order[:min(size, n_train)])) for size in sorted(set(sizes))]


def parse_llm(spec_name: str, spec: str, default_samples: int) -> tuple[str, int, dict]:
    """NAME, training samples and the six metrics of ``METRICS_JSON#MODEL[@SAMPLES]``."""
    head, sep, tail = spec.rpartition("@")
    if sep and tail.isdigit():
        return spec_name, int(tail), load_model_metrics(head)
    return spec_name, default_samples, load_model_metrics(spec)


def evaluate_size(data: dict, index: np.ndarray, settings: dict, tcfg, device: str, out_dir: Path) -> dict:
    """Train on one subset, write its predictions, return its metrics and training record."""
    train = data["train"].subset(index)
    model, result = fit(train, data["valid"], model_config(data["stats"], data["places"], train, settings), tcfg,
                        device, desc=f"sasrec n={len(index)}")
    row = {"best_epoch": result["epoch"], "epochs": result["epochs"], "valid_accuracy": result["valid_accuracy"],
           "passes_per_epoch": result["passes_per_epoch"], "seconds_total": result["seconds_total"]}
    for split, w in data["tests"].items():
        probs = predict_probs(model, to_tensors(w, device), tcfg.eval_batch_size)
        rows = prediction_rows(probs, w, data["candidates"])
        write_predictions(out_dir, split, rows, {"method": "sasrec", "train_windows": len(index),
                                                 "best_epoch": result["epoch"]})
        metrics = metrics_from_predictions(rows, data["stats"])
        row.update({k: metrics[k] for k in ("overall", "tail", "head", "medium")} if split == "test_p2"
                   else {"rec_w": metrics["rec_w"], "prec_w": metrics["prec_w"]})
    return row


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def render_table(points: list[dict], llms: list[tuple[str, int, dict]]) -> str:
    note = ("SASRec trained on nested seeded subsets of train_all; epoch chosen on the full validation split; "
            "Overall and Tail on protocol 2, Rec_w (accuracy) on protocol 1.")
    lines = ["## Sample efficiency (paper Fig. 4)", "", note, "",
             "| model | training samples | Overall (P2) | Tail (P2) | Rec_w (P1) | best epoch (passes each) |",
             "|---|---:|---:|---:|---:|---:|"]
    for p in points:
        samples = f"{p['used']}" + (f" (asked {p['requested']})" if p["used"] != p["requested"] else "")
        lines.append(f"| sasrec | {samples} | {_num(p['overall'])} | {_num(p['tail'])} | {_num(p['rec_w'])} | "
                     f"{p['best_epoch']} of {p['epochs']} ({p['passes_per_epoch']}) |")
    for name, samples, m in llms:
        lines.append(f"| {name} | {samples} | {_num(m['overall'])} | {_num(m['tail'])} | {_num(m['rec_w'])} | - |")
    return "\n".join(lines) + "\n"


def plot(points: list[dict], llms: list[tuple[str, int, dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    x = [p["used"] for p in points]
    for ax, (key, title) in zip(axes, METRICS[:2]):
        ax.plot(x, [np.nan if p[key] is None else p[key] for p in points], "o-", label="SASRec (from scratch)")
        for k, (name, samples, m) in enumerate(llms):
            if m.get(key) is not None:
                ax.plot([samples], [m[key]], marker="*^sDv"[k % 5], markersize=12, linestyle="none", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("training samples")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(0, 1)
    axes[1].legend(fontsize=8)
    fig.suptitle("Sample efficiency: SASRec trained from scratch vs the LLMs")
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:  # a file object has no suffix: name the format
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return path


def run_sample_efficiency(dataset_dir, sizes: list[int], out_dir, llm_specs: list[str] = (), config=None,
                          overrides: list[str] = (), device: str = "cpu", work_dir=None,
                          skip_missing_llm: bool = False) -> list[Path]:
    """``python -m sasrec sample-efficiency``: sample_efficiency.{png,md,json} in out_dir. ``skip_missing_llm``
    leaves out (with a note) an LLM row whose metrics.json or model does not exist yet, instead of failing."""
    settings, tcfg = load_config(config, overrides)
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir else out_dir / "sample_efficiency"
    named = {n: v[-1] for n, v in parse_named(list(llm_specs), "--llm").items()}
    data = load_splits(dataset_dir, tcfg.valid_cap, tcfg.seed)
    # the LLM rows are read before any training, so that a wrong spec fails before minutes of work
    llms = []
    for name, spec in named.items():
        try:
            llms.append(parse_llm(name, spec, len(data["train"])))
        except (FileNotFoundError, ValueError) as err:
            if not skip_missing_llm:
                raise
            tqdm.write(f"sample-efficiency: no {name} row ({err}): left out")
    points = []
    for requested, used, index in nested_subsets(len(data["train"]), sizes, tcfg.seed):
        if used < requested:
            tqdm.write(f"sample-efficiency: {requested} asked, train_all has {used}: using all of it")
        row = evaluate_size(data, index, settings, tcfg, device, work_dir / f"sasrec-n{used}")
        points.append({"requested": requested, "used": used, **row})
    table = render_table(points, llms)
    paths = [write_text_atomic(out_dir / "sample_efficiency.md", table),
             plot(points, llms, out_dir / "sample_efficiency.png"),
             write_json_atomic(out_dir / "sample_efficiency.json",
                               {"dataset_dir": str(dataset_dir), "sasrec": points,
                                "llm": [{"name": n, "samples": s, **m} for n, s, m in llms]})]
    print(table, end="")
    return [Path(p) for p in paths]

