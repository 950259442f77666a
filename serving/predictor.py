"""The model side of predict and serve: one cached-prefix candidate scorer, loaded once, scoring queries.

p(c | x) over the run's behaviors is the softmax of the candidates' sequence log-probabilities (the
scorer's p(y|x), paper 3.3), divided first by the run's temperature T for the query's prompt mode
(``RunInfo.temperature``); in "mean" mode each candidate's log-probability is first averaged over the three
instruction templates.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from serving.config import ServedModelConfig
from serving.prompting import Query, render_records
from serving.queries import top_k_of
from serving.run import RunInfo


@dataclass
class Prediction:
    query: Query
    probs: np.ndarray | None = None    # [K] over the run's behaviors, label_id order
    top: list[dict] | None = None      # the query's top_k of probs, best first
    error: str | None = None


def softmax(logprobs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logprobs / T) in float64."""
    z = np.asarray(logprobs, dtype=np.float64) / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


class Predictor:
    """Loads the run's model once; ``predict(queries)`` scores them all in scorer batches of the model config's
    batch_size, refusing a prompt over its cutoff_len."""

    def __init__(self, run: RunInfo, model: ServedModelConfig | None = None, device: str | None = None,
                 dtype: str | None = None):
        model = model or ServedModelConfig()
        self.run, self.cutoff_len = run, model.cutoff_len
        from scoring.scorer import CandidateScorer  # torch and transformers are slow to import

        self.scorer = CandidateScorer(run.model_path, run.template, run.adapter_path, model.batch_size, device, dtype)
        # candidate answer ids do not depend on the prompt (the scorer checks it on every record)
        probe = {"system": run.system_prompt, "instruction": "-", "input": ""}
        self.encoder = self.scorer.encoder(run.behaviors, probe)
        self.answer_len = max(len(ids) for ids in self.encoder.cand_ids)

    def logprobs(self, records: list[dict]) -> np.ndarray:
        """[n, K] log P(candidate + end of turn | record), float32."""
        batch = self.scorer.score(records, self.run.behaviors, with_embeddings=False, encoder=self.encoder)
        return batch.cand_logprob

    def _too_long(self, records: list[dict]) -> str | None:
        if self.cutoff_len is None:
            return None
        longest = max(len(self.encoder.prompt(r)) for r in records)
        if longest + self.answer_len > self.cutoff_len:
            return (f"prompt too long: {longest} tokens + up to {self.answer_len} answer tokens > cutoff_len "
                    f"{self.cutoff_len}")
        return None

    def predict(self, queries: list[Query]) -> list[Prediction]:
        """One Prediction per query, in order; a prompt over cutoff_len gives an error, not an exception."""
        out = [Prediction(q) for q in queries]
        records, owner = [], []
        for i, q in enumerate(queries):
            rendered = render_records(q, self.run.behaviors, self.run.system_prompt)
            out[i].error = self._too_long(rendered)
            if out[i].error is None:
                records += rendered
                owner += [i] * len(rendered)
        if records:
            lp = self.logprobs(records)
            owner = np.asarray(owner)
            for i in np.unique(owner).tolist():
                out[i].probs = softmax(lp[owner == i].mean(axis=0), self.run.temperature(queries[i].mode))
                out[i].top = top_k_of(out[i].probs, self.run.behaviors, queries[i].top_k)
        return out


def local_iso(time: int) -> str:
    """A local epoch (data_prep's timezone rule) as the naive ISO-8601 wall time it stands for."""
    return datetime.fromtimestamp(int(time), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def error_line(user_id: str | None, error: str, run: RunInfo, mode: str) -> dict:
    """The JSON of a user that could not be predicted (in prompt mode `mode`)."""
    return {"user_id": user_id, "error": error, "model": run.model_name, "run": run.run_name,
            "temperature": run.temperature(mode)}


def result_line(pred: Prediction, run: RunInfo) -> dict:
    """The JSON of one prediction (a predict output line, a /v1/predict response): the top behaviors with
    their probabilities, the context they are for, and the model and run they came from."""
    q = pred.query
    if pred.error:
        return error_line(q.user_id, pred.error, run, q.mode)
    line = {"user_id": q.user_id, "context": {"timestamp": local_iso(q.next_time), **q.context}, "top": pred.top,
            "history_len": len(q.history), "instruction_template": q.mode, "model": run.model_name,
            "run": run.run_name, "temperature": run.temperature(q.mode)}
    if q.warning:
        line["warning"] = q.warning
    return line
