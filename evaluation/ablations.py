"""Ablation (Table 4) and hyper-parameter sweep (Tables 5, 6) tables from report metrics.json files.

A metrics source is ``NAME=PATH`` or ``NAME=PATH#MODEL``: PATH is a metrics.json written by
``python -m evaluation report``; MODEL picks one of its models (needed when it holds several).
Values are the protocol-2 means (Overall/Head/Medium/Tail) and protocol-1 means (Prec_w/Rec_w).

Variant names that match the paper's Table 4 rows get the paper's drop beside ours:
``wo_aux`` (A-Tuning w/o Aux. Task), ``wo_dds`` (B-Tuning w/o DDS), ``wo_kmeans`` (B-Tuning w/o KMeans),
``wo_dpo`` (B-Tuning w/o DPO), ``wo_atune`` (w/o A-Tuning).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .files import write_text_atomic
from .paper_tables import SWEEP_TABLES, TABLE4
from .report import LABELS, parse_named

P2_KEYS = ("overall", "head", "medium", "tail")
SIX_KEYS = ("prec_w", "rec_w") + P2_KEYS
_SPLIT_OF = {"prec_w": "test_p1", "rec_w": "test_p1", "overall": "test_p2", "head": "test_p2",
             "medium": "test_p2", "tail": "test_p2"}
ABLATION_TITLES = {"wo_aux": "A-Tuning w/o Aux. Task", "wo_dds": "B-Tuning w/o DDS",
                   "wo_kmeans": "B-Tuning w/o KMeans", "wo_dpo": "B-Tuning w/o DPO", "wo_atune": "w/o A-Tuning"}


def load_model_metrics(spec: str) -> dict[str, float | None]:
    """The six mean metrics of one model of a report's metrics.json (``PATH`` or ``PATH#MODEL``)."""
    path, _, model = spec.partition("#")
    if not Path(path).is_file():
        raise FileNotFoundError(f"metrics file {path!r} does not exist")
    models = json.loads(Path(path).read_text(encoding="utf-8")).get("models") or {}
    if not model:
        if len(models) != 1:
            raise ValueError(f"{path} holds {len(models)} models ({', '.join(models)}): write {path}#MODEL")
        model = next(iter(models))
    if model not in models:
        raise ValueError(f"{path} has no model {model!r} (has {', '.join(models)})")
    summary = models[model]["summary"]
    return {key: summary.get(_SPLIT_OF[key], {}).get(key, {}).get("mean") for key in SIX_KEYS}


def relative_drop(variant: float | None, full: float | None) -> float | None:
    """Table 4's entry: (variant - full) / full, in percent (negative = the variant is worse)."""
    if variant is None or full is None or full == 0:
        return None
    return 100.0 * (variant - full) / full


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}%"


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ablation_table(full: tuple[str, str], variants: dict[str, str], paper: str | None = None) -> str:
    """Markdown: absolute protocol-2 metrics of full BehaviorLM and each variant, then the relative drops
    (Table 4), with the paper's drops for recognised variant names when ``paper`` (app|behavior) is given."""
    full_name, full_spec = full
    base = load_model_metrics(full_spec)
    rows = {name: load_model_metrics(spec) for name, spec in variants.items()}
    cols = " | ".join(LABELS[k] for k in P2_KEYS)
    lines = ["## Ablations (protocol 2)", "", f"| model | {cols} |", "|" + "---|" * 5,
             f"| {full_name} (full) | " + " | ".join(_num(base[k]) for k in P2_KEYS) + " |"]
    lines += [f"| {n} | " + " | ".join(_num(r[k]) for k in P2_KEYS) + " |" for n, r in rows.items()]
    lines += ["", f"Relative change against {full_name}, (variant - full) / full:", "",
              f"| variant | {cols} |" + (" paper (Table 4) |" if paper else ""), "|" + "---|" * (5 + bool(paper))]
    for name, r in rows.items():
        cells = [_pct(relative_drop(r[k], base[k])) for k in P2_KEYS]
        label = f"{name} ({ABLATION_TITLES[name]})" if name in ABLATION_TITLES else name
        if paper:
            ref = TABLE4[paper].get(name)
            cells.append("-" if ref is None else " / ".join(f"{v:+.2f}%" for v in ref))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_table(param: str, points: dict[str, str], paper: str | None = None) -> str:
    """Markdown: all six metrics at each value of a swept parameter (Table 5: aux ratio, Table 6:
    anchor threshold), with the paper's row for the same value when ``paper`` (aux-ratio|threshold)."""
    header = f"| {param} | " + " | ".join(LABELS[k] for k in SIX_KEYS) + " |"
    lines = [f"## Sweep: {param}", "", header, "|" + "---|" * 7]
    for value, spec in points.items():
        m = load_model_metrics(spec)
        lines.append(f"| {value} | " + " | ".join(_num(m[k]) for k in SIX_KEYS) + " |")
    if paper:
        lines += ["", f"Paper ({'Table 5' if paper == 'aux-ratio' else 'Table 6'}, Behavior dataset):", "",
                  header, "|" + "---|" * 7]
        for value, ref in SWEEP_TABLES[paper].items():
            lines.append(f"| {value} | " + " | ".join(_num(ref.get(k)) for k in SIX_KEYS) + " |")
    return "\n".join(lines) + "\n"


def write_ablation_table(full_spec: str, variant_specs: list[str], out: str | os.PathLike,
                         paper: str | None = None) -> str:
    full = parse_named([full_spec], "--full")
    if len(full) != 1 or len(next(iter(full.values()))) != 1:
        raise ValueError("--full expects exactly one NAME=METRICS_JSON")
    name, (spec,) = next(iter(full.items()))
    variants = {n: s[-1] for n, s in parse_named(variant_specs, "--variant").items()}
    text = ablation_table((name, spec), variants, paper)
    write_text_atomic(out, text)
    return text


def write_sweep_table(param: str, point_specs: list[str], out: str | os.PathLike, paper: str | None = None) -> str:
    points = {n: s[-1] for n, s in parse_named(point_specs, "--point").items()}
    text = sweep_table(param, points, paper)
    write_text_atomic(out, text)
    return text
