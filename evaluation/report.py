"""Run report: metric table of every model on both protocols, per-behavior chart, confusion matrices, JSON.

``python -m evaluation report --dataset-dir D --pred NAME=DIR [--pred NAME=DIR ...] --out OUT``

Each DIR holds ``test_p1.predictions.jsonl`` and/or ``test_p2.predictions.jsonl``. Giving the same NAME
several times (or ``NAME=DIR1,DIR2``) treats the directories as repeats with different seeds: the table
shows mean +- standard deviation. Protocol 1 (test_p1) reports Prec_w and Rec_w, protocol 2 (test_p2)
Overall/Head/Medium/Tail and anchor/tail accuracy; metrics.json holds every metric of both, and
``behaviors_without_samples`` (per split, all names; the report shows the count and a few).

Models with per-candidate log-probabilities also get ranking (Hit@1/3/5, MRR, NDCG@5) and calibration (ECE,
Brier, NLL) on both protocols, before and after the temperature of ``<DIR>/temperature.json`` when there is
one, and a reliability diagram ``reliability_<model>.png`` (protocol 1).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from data_prep.prepared import load_stats, protocol2_balance_of
from data_prep.sampling.auxiliary import ratio_line

from . import learned
from . import metrics as M
from .files import TEST_SPLITS, load_predictions, write_json_atomic, write_text_atomic
from .long_tail import plot_long_tail
from .paper_tables import TABLE3
from .report_plots import behaviors_by_frequency, plot_confusion, plot_per_behavior, plot_reliability
from .temperature import bound_note, read_record

LABELS = {"prec_w": "Prec_w", "rec_w": "Rec_w", "overall": "Overall", "head": "Head", "medium": "Medium",
          "tail": "Tail", "anchor_accuracy": "Anchor acc", "tail_behavior_accuracy": "Tail-behavior acc"}
# (metric, split it is reported on)
METRIC_NOTE = (
    "Rec_w (Eq. 6) equals accuracy (Hit-Rate@1). Eq. 5 as printed weights class precision by TP+FP, "
    "which also reduces to accuracy, yet the paper's Table 3 has Prec_w != Rec_w; Prec_w here is "
    "precision weighted by class support (scikit-learn `average=\"weighted\"`, zero_division=0), "
    "the reading that matches the paper's numbers. Eq. 5 as printed is in metrics.json as `prec_w_eq5`. "
    "An output that is not a candidate (generation only) counts as wrong."
)
FEW_NAMES = 5   # behaviors named in the report's "without samples" lines; metrics.json lists all
DIST_LABELS = {"hit@1": "Hit@1", "hit@3": "Hit@3", "hit@5": "Hit@5", "mrr": "MRR", "ndcg@5": "NDCG@5",
               "ece": "ECE", "brier": "Brier", "nll": "NLL", "temperature": "T", "ece_scaled": "ECE (T)",
               "nll_scaled": "NLL (T)"}
DIST_NOTE = (
    "Hit@k, MRR and NDCG@5 (one relevant item: 1/log2(rank+1)) rank the label among all candidates by the "
    "model's probability; a label tied with other candidates takes each tied position with equal chance "
    "(the metric is the mean over them). ECE: 15 equal-width bins of the top probability, |accuracy - "
    "confidence| weighted by bin size. Brier: sum over candidates of (p - one-hot)^2, mean over samples. NLL: "
    "-log p(label), natural log. T: the temperature fitted on a seeded validation subset (temperature.json); "
    "ECE (T) and NLL (T) are after dividing the log-probabilities by T (accuracy and ranking do not change). "
    "Most-frequent and Markov probabilities are smoothed counts (evaluation/baselines.py)."
)
TABLE_COLUMNS = [("prec_w", "test_p1"), ("rec_w", "test_p1"), ("overall", "test_p2"), ("head", "test_p2"),
                 ("medium", "test_p2"), ("tail", "test_p2"), ("anchor_accuracy", "test_p2"),
                 ("tail_behavior_accuracy", "test_p2")]


def parse_named(specs: list[str], what: str = "--pred") -> dict[str, list[str]]:
    """["NAME=A,B", "NAME=C", "X=D"] -> {"NAME": [A, B, C], "X": [D]}, keeping first-seen order."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{what} expects NAME=PATH, got {spec!r}")
        out.setdefault(name.strip(), []).extend(v for v in value.split(",") if v)
    return out


def evaluate_model(stats: dict, pred_dirs: list[str]) -> dict:
    """Metrics of each run (directory) of one model, their aggregate, and pooled per-behavior figures."""
    runs = []
    for pred_dir in pred_dirs:
        run = {"pred_dir": str(pred_dir)}
        record = read_record(pred_dir)
        temperature = None if record is None else float(record["temperature"])
        run["temperature_note"] = bound_note(record)   # a T at its search bound, said in one line
        for split in TEST_SPLITS:
            loaded = load_predictions(pred_dir, split)
            if loaded is not None:
                rows, info = loaded
                run[split] = M.metrics_from_predictions(rows, stats, temperature)
                run[split]["info"] = info
        if not any(split in run for split in TEST_SPLITS):
            raise FileNotFoundError(f"{pred_dir}: no test_p1/test_p2 .predictions.jsonl")
        runs.append(run)
    summary, per_behavior, confusion = {}, {}, {}
    for split in TEST_SPLITS:
        split_runs = [r[split] for r in runs if split in r]
        if not split_runs:
            continue
        summary[split] = M.aggregate_runs(split_runs)
        names = list(split_runs[0]["per_behavior"])
        per_behavior[split] = {
            name: _mean_or_none([r["per_behavior"][name]["accuracy"] for r in split_runs]) for name in names}
        confusion[split] = np.sum([np.asarray(r["confusion"]) for r in split_runs], axis=0).tolist()
    methods = sorted({r[s]["info"].get("method", "?") for r in runs for s in TEST_SPLITS if s in r})
    return {"runs": runs, "summary": summary, "per_behavior_accuracy": per_behavior,
            "confusion_pooled": confusion, "methods": methods}


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _fmt(stat: dict | None) -> str:
    if not stat or stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.4f}" if stat["std"] is None else f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def _uses_invalid(models: dict) -> bool:
    return any(m.startswith("generate") for model in models.values() for m in model["methods"]) or any(
        s.get("invalid_rate", {}).get("mean") for model in models.values() for s in model["summary"].values())


def render_markdown(report: dict, stats: dict) -> str:
    models = report["models"]
    invalid = _uses_invalid(models)
    header = ["model", "runs"] + [LABELS[m] for m, _ in TABLE_COLUMNS] + (["invalid P1 / P2"] if invalid else [])
    lines = ["# Evaluation report", "", f"dataset_dir: `{report['dataset_dir']}`", ""]
    names = [b["name"] for b in stats["behaviors"]]
    groups = {g: [b["name"] for b in stats["behaviors"] if b["freq_group"] == g] for g in M.GROUPS}
    anchors = [b["name"] for b in stats["behaviors"] if b["is_anchor"]]
    lines += [f"{len(names)} behaviors; groups by training frequency: "
              + ", ".join(f"{g} {len(groups[g])}" for g in M.GROUPS) + f"; anchors {len(anchors)}.", ""]
    if stats.get("aux"):
        lines += [f"A-tune's {ratio_line(stats['aux'])}.", ""]
    lines += [("Protocol 1 (test_p1, natural distribution): Prec_w, Rec_w. Protocol 2 (test_p2, "
               f"{protocol2_balance_of(stats)}): Overall, Head, Medium, Tail (mean per-behavior accuracy, "
               "Eq. 7-10) and anchor / tail-behavior accuracy (Fig. 1c). Mean ± std over runs where a model has "
               "several."), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, model in models.items():
        cells = [name, str(len(model["runs"]))]
        cells += [_fmt(model["summary"].get(split, {}).get(metric)) for metric, split in TABLE_COLUMNS]
        if invalid:
            cells.append(" / ".join(_fmt(model["summary"].get(s, {}).get("invalid_rate")) for s in TEST_SPLITS))
        lines.append("| " + " | ".join(cells) + " |")
    if report.get("warnings"):
        lines += [""] + [f"**{w}**" for w in report["warnings"]]
    if report.get("paper_table"):
        title, rows = report["paper_table"]["title"], report["paper_table"]["rows"]
        lines += ["", f"Paper, {title} (their data and backbone; for orientation, not a like-for-like comparison):",
                  "", "| model | " + " | ".join(LABELS[m] for m, _ in TABLE_COLUMNS[:6]) + " |",
                  "|" + "---|" * 7]
        for model, values in rows.items():
            lines.append(f"| {model} | " + " | ".join(f"{values[m]:.4f}" for m, _ in TABLE_COLUMNS[:6]) + " |")
    for split, label in (("test_p2", "protocol 2"), ("test_p1", "protocol 1")):
        missing = report["behaviors_without_samples"].get(split)
        if missing:
            lines += ["", f"Behaviors without {split} samples ({label}; left out of its per-behavior means): "
                      + _few(missing, len(names), f"behaviors_without_samples.{split}")]
    # per-behavior accuracy on protocol 2, by training frequency
    order = behaviors_by_frequency(stats)
    with_p2 = [n for n, m in models.items() if "test_p2" in m["per_behavior_accuracy"]]
    if with_p2:
        lines += ["", "## Per-behavior accuracy (protocol 2), by training frequency", "",
                  "| behavior | train freq | group | anchor | " + " | ".join(with_p2) + " |",
                  "|" + "---|" * (4 + len(with_p2))]
        for i in order:
            b = stats["behaviors"][i]
            accs = [models[n]["per_behavior_accuracy"]["test_p2"].get(b["name"]) for n in with_p2]
            lines.append(f"| {b['name']} | {float(b['train_freq']):.4f} | {b['freq_group']} | "
                         f"{'yes' if b['is_anchor'] else ''} | "
                         + " | ".join("-" if a is None else f"{a:.3f}" for a in accs) + " |")
    lines += distribution_tables(models)
    lines += ["", "## Figures", ""] + [f"- `{f}`" for f in report["figures"]]
    lines += ["", "## Metric notes", "", METRIC_NOTE, "", DIST_NOTE]
    return "\n".join(lines) + "\n"


def distribution_tables(models: dict) -> list[str]:
    """Markdown: ranking and calibration per protocol ("-" where a model has no distribution, with the reason)."""
    lines = ["", "## Ranking and calibration", ""]
    for split, label in (("test_p1", "Protocol 1"), ("test_p2", "Protocol 2")):
        lines += [f"{label} ({split}):", "", "| model | " + " | ".join(DIST_LABELS.values()) + " |",
                  "|" + "---|" * (1 + len(DIST_LABELS))]
        for name, model in models.items():
            summary = model["summary"].get(split, {})
            lines.append(f"| {name} | " + " | ".join(_fmt(summary.get(k)) for k in DIST_LABELS) + " |")
        lines.append("")
    missing = {name: reason for name, model in models.items() for run in model["runs"] for split in TEST_SPLITS
               if (reason := run.get(split, {}).get("distribution_missing"))}
    lines += [f"- {name}: {reason}." for name, reason in missing.items()]
    return lines + [f"- {name}: {note}." for name, model in models.items() for run in model["runs"]
                    if (note := run.get("temperature_note"))]


def behaviors_without_samples(models: dict, stats: dict) -> dict[str, list[str]]:
    """Per test split, the behaviors without a sample in it (no support in any run), most frequent in training
    first: they have no recall and are left out of the per-behavior means (Eq. 7-10)."""
    order = [stats["behaviors"][i]["name"] for i in behaviors_by_frequency(stats)]
    out = {}
    for split in TEST_SPLITS:
        excluded = {b for model in models.values() for run in model["runs"] if split in run
                    for b in run[split]["excluded"]}
        if any(split in run for model in models.values() for run in model["runs"]):
            out[split] = [name for name in order if name in excluded]
    return out


def _few(names: list[str], total: int, key: str) -> str:
    """'133 of 192, e.g. A, B, C, D, E and 128 more (all in metrics.json `key`)': a real dataset can miss a
    hundred behaviors, which as one paragraph of names hides the rest of the report."""
    shown = names[:FEW_NAMES]
    more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return f"{len(names)} of {total}, e.g. {', '.join(shown)}{more} (all in metrics.json `{key}`)."


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def build_report(dataset_dir: str | os.PathLike, preds: dict[str, list[str]], out_dir: str | os.PathLike,
                 paper_table: str | None = None) -> dict:
    """Write report.md, metrics.json, per_behavior_accuracy.png, long_tail.png (+ .md, .json: Fig. 1a),
    confusion_<model>.png and reliability_<model>.png into out_dir."""
    if not preds:
        raise ValueError("report needs at least one --pred NAME=DIR")
    stats = load_stats(dataset_dir)
    out_dir = Path(out_dir)
    report = {
        "dataset_dir": str(dataset_dir),
        "behaviors": [stats["behaviors"][i]["name"] for i in behaviors_by_frequency(stats)],
        "models": {name: evaluate_model(stats, dirs) for name, dirs in preds.items()},
        "protocol2": protocol2_balance_of(stats),
        "figures": [],
    }
    report["behaviors_without_samples"] = behaviors_without_samples(report["models"], stats)
    report["warnings"] = learned.warnings(report["models"], stats)
    if paper_table:
        title, rows = TABLE3[paper_table]
        report["paper_table"] = {"name": paper_table, "title": title, "rows": rows}
    if plot_per_behavior(report, stats, out_dir / "per_behavior_accuracy.png"):
        report["figures"].append("per_behavior_accuracy.png")
    report["figures"].append(plot_long_tail(stats, out_dir)[0].name)
    for name, model in report["models"].items():
        filename = f"confusion_{_safe(name)}.png"
        if plot_confusion(name, model, stats, out_dir / filename):
            report["figures"].append(filename)
        filename = f"reliability_{_safe(name)}.png"
        if plot_reliability(name, model, out_dir / filename):
            report["figures"].append(filename)
    write_json_atomic(out_dir / "metrics.json", report)
    write_text_atomic(out_dir / "report.md", render_markdown(report, stats))
    return report
