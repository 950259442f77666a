"""`python -m serving template-eval`: which instruction template to use at prediction time.

Training drew one of the three Appendix D templates per sample (paper 4.1.4); a live request has none.
Every protocol-2 sample is re-rendered in all three templates and scored once per template; from these
log-probabilities follow the predictions of each fixed template, of the sample's own (drawn) template (what
`make eval` measures) and of "mean" (the softmax of the mean candidate log-probability over the three).
Reported per choice: the paper's protocol-2 metrics (Overall / Head / Medium / Tail, Eq. 7-10), accuracy
and the mean negative log-likelihood of the true behavior.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.prepared import load_prepared
from data_prep.rendering.prompts import INSTRUCTION_TEMPLATES
from serving.prompting import rerender

CHOICES = ("0", "1", "2", "own", "mean")
CHUNK = 32


def score_all_templates(predictor, records: list[dict], meta: list[dict]) -> np.ndarray:
    """[n, 3, K] candidate log-probs of every sample in each template."""
    n_t = len(INSTRUCTION_TEMPLATES)
    out = []
    for lo in tqdm(range(0, len(records), CHUNK), desc="scoring 3 templates", unit="chunk", disable=None):
        batch = [rerender(r, m["template_id"], t) for r, m in zip(records[lo:lo + CHUNK], meta[lo:lo + CHUNK])
                 for t in range(n_t)]
        lp = predictor.logprobs(batch)
        out.append(lp.reshape(-1, n_t, lp.shape[-1]))
    return np.concatenate(out)


def choice_logprobs(lp: np.ndarray, own: np.ndarray, choice: str) -> np.ndarray:
    """[n, K] log-probs a template choice predicts from (mean: averaged over the templates)."""
    if choice == "mean":
        return lp.mean(axis=1)
    if choice == "own":
        return lp[np.arange(len(lp)), own]
    return lp[:, int(choice)]


def evaluate(lp: np.ndarray, meta: list[dict], stats: dict) -> dict:
    from evaluation.metrics import all_metrics  # the Appendix B metrics (imported when used)

    labels = np.array([m["label_id"] for m in meta])
    own = np.array([m["template_id"] for m in meta])
    result = {}
    for choice in CHOICES:
        x = choice_logprobs(lp, own, choice).astype(np.float64)
        log_p = x - np.logaddexp.reduce(x, axis=1, keepdims=True)
        pred = x.argmax(axis=1)
        m = all_metrics(labels.tolist(), pred.tolist(), stats)
        result[choice] = {"overall": m["overall"], "head": m["head"], "medium": m["medium"], "tail": m["tail"],
                          "accuracy": float((pred == labels).mean()),
                          "nll": float(-log_p[np.arange(len(labels)), labels].mean())}
    return result


def run_template_eval(predictor, data_dir: str | Path, dataset: str = "test_p2", limit: int | None = None) -> dict:
    data = load_prepared(data_dir, dataset)
    records, meta, stats = data.records[:limit], data.meta[:limit], data.stats
    started = time.perf_counter()
    lp = score_all_templates(predictor, records, meta)
    seconds = time.perf_counter() - started
    return {"dataset": dataset, "n_samples": len(records), "model": predictor.run.model_name,
            "run": predictor.run.run_name, "scoring_s_per_prompt": seconds / max(1, 3 * len(records)),
            "choices": evaluate(lp, meta, stats)}


def markdown(result: dict) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.4f}"
    lines = [f"{result['dataset']} of run {result['run']}, model {result['model']}: {result['n_samples']} samples",
             "", "| instruction template | Overall | Head | Medium | Tail | accuracy | NLL of the label |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    names = {"own": "sample's own (what make eval uses)", "mean": "mean of the three"}
    for choice, m in result["choices"].items():
        lines.append(f"| {names.get(choice, 'fixed ' + choice)} | " + " | ".join(
            fmt(m[k]) for k in ("overall", "head", "medium", "tail", "accuracy", "nll")) + " |")
    return "\n".join(lines) + "\n"
