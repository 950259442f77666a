"""DPO pairs and the selected-SFT set (Algorithm 1 lines 23-28), plus the selection report.

Outputs (docs/data-preparation.md), in select's own folder (never the prepared dataset_dir it reads):
``dpo_pairs.jsonl`` ({"system", "instruction", "input", "chosen", "rejected"}, registered as
``behavior_dpo_pairs`` with ``ranking: true``), ``selected_sft.jsonl`` (alpaca, output = truth;
``behavior_selected_sft``), the ``dataset_info.json`` registering those two (the folder is B-tune's
dataset_dir), ``selection_report.json`` and ``selection_report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_prep.writing.outputs import write_json, write_jsonl, write_text_atomic

_ALPACA = {"prompt": "instruction", "query": "input", "system": "system"}
# LLaMA-Factory's registry of the selection folder: its two files, nothing of the prepared data.
DATASET_INFO = {
    "behavior_dpo_pairs": {"file_name": "dpo_pairs.jsonl", "ranking": True,
                           "columns": {**_ALPACA, "chosen": "chosen", "rejected": "rejected"}},
    "behavior_selected_sft": {"file_name": "selected_sft.jsonl", "columns": {**_ALPACA, "response": "output"}},
}


def build_pairs(records: Sequence[dict], selection: dict, candidates: Sequence[str]) -> tuple[list[dict], list[dict]]:
    """(dpo_pairs, selected_sft) rows for the selected line numbers (Algorithm 1 lines 23-28): chosen = y,
    rejected = y_hat; the prompt fields are copied verbatim."""
    pairs, sft = [], []
    for index, label, rejected in zip(selection["index"], selection["label_id"], selection["rejected_id"]):
        record = records[int(index)]
        truth = candidates[int(label)]
        if record.get("output") is not None and record["output"] != truth:
            raise ValueError(
                f"line {int(index)}: output {record['output']!r} != stats.json label {truth!r} "
                f"for label_id {int(label)}"
            )
        if int(rejected) == int(label):
            raise AssertionError("rejected response equals the chosen one")
        prompt = {
            "system": record.get("system", ""),
            "instruction": record["instruction"],
            "input": record.get("input", ""),
        }
        pairs.append({**prompt, "chosen": truth, "rejected": candidates[int(rejected)]})
        sft.append({**prompt, "output": truth})
    return pairs, sft


def _fmt(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def report_markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [
        "# Selection report",
        "",
        (
            f"mode `{cfg['mode']}`, F = {cfg['F']}, lambda = {cfg['lam']}, Eq. 3 reading `{cfg['eq3']}`, "
            f"seed {cfg['seed']}; pool {report['pool_size']} samples, {report['pairs']} pairs, "
            f"pi_ref accuracy on the pool {_fmt(report['pi_ref_accuracy'])}."
            + (f" Repeat share {cfg['repeat_share']}." if cfg.get("repeat_share") is not None else "")
            + (f" At most {cfg['max_rejected']} pairs reject one behavior." if cfg.get("max_rejected") else "")
            + (f" Chosen answer = the history's last behavior in {report['pairs_chosen_is_last']} pairs, "
               f"rejected answer in {report['pairs_rejected_is_last']}." if "pairs_chosen_is_last" in report else "")
        ),
        "",
        "| behavior | anchor | group | pool | pi_ref acc | mean D | mean D selected | selected | pairs | rejected in |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in report["per_behavior"]:
        lines.append(
            f"| {b['behavior']} | {'yes' if b['is_anchor'] else 'no'} | {b.get('freq_group') or '-'} "
            f"| {b['pool_size']} | {_fmt(b['pi_ref_accuracy'])} | {_fmt(b['mean_difficulty'])} "
            f"| {_fmt(b.get('mean_selected_difficulty'))} "
            f"| {b['selected']} | {b['pairs']} | {b.get('rejected', '-')} |"
        )
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def write_outputs(
    out_dir,
    records,
    selection: dict,
    candidates,
    per_behavior: list[dict],
    notes: list[str],
    config: dict,
    scores: dict,
) -> dict:
    """Write dpo_pairs.jsonl, selected_sft.jsonl, dataset_info.json, selection_report.{json,md} into out_dir;
    returns the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs, sft = build_pairs(records, selection, candidates)
    pred, label = np.asarray(scores["pred_id"]), np.asarray(scores["label_id"])
    report = {
        "config": config,
        "pool_size": len(label),
        "pi_ref_accuracy": float((pred == label).mean()) if len(label) else None,
        "pairs": len(pairs),
        "pairs_rejected_is_prediction": int((selection["rejected_id"] == selection["pred_id"]).sum()),
        # how many pairs prefer repeating the history's last behavior, and how many reject it: a set that mostly
        # rejects it teaches DPO one rule for every prompt ("do not repeat"), whatever the behavior
        **({"pairs_chosen_is_last": int((selection["label_id"] == selection["last_id"]).sum()),
            "pairs_rejected_is_last": int((selection["rejected_id"] == selection["last_id"]).sum())}
           if "last_id" in selection else {}),
        "per_behavior": per_behavior,
        "warnings": notes,
        "selected_index": [int(i) for i in selection["index"]],
    }
    write_jsonl(out_dir / "dpo_pairs.jsonl", pairs)
    write_jsonl(out_dir / "selected_sft.jsonl", sft)
    write_json(out_dir / "dataset_info.json", DATASET_INFO)
    write_text_atomic(out_dir / "selection_report.json", json.dumps(report, indent=1, ensure_ascii=False))
    write_text_atomic(out_dir / "selection_report.md", report_markdown(report))
    return report
