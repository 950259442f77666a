"""pi_ref scorer (paper 3.3, Algorithm 1 lines 12-14): candidate log-probabilities, p(.|x), y_hat and E(x).

``CandidateScorer`` renders records with LLaMA-Factory's template code (``rendering``) and scores every
candidate with the cached-prefix kernel (``kernel``); ``score_dataset`` scores a prepared split into
resumable, data-parallel Parquet parts (``shards``).  Public API used by ``selection`` and ``evaluation``:
``CandidateScorer``, ``ScoreBatch``, ``score_dataset``, ``pool_indices`` here, ``shards.load_scores``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.prepared import load_prepared
from data_prep.writing.outputs import write_text_atomic

from .config import ScoreConfig
from .devices import dist_env
from .kernel import cached_candidate_logprobs, softmax_rows
from .lengths import check_cutoff, scored_token_lengths
from .models import load_model_and_tokenizer
from .rendering import PromptEncoder, load_template, load_tokenizer_and_template
from .shards import LAYOUT_KEYS, check_or_write_manifest, part_path, scored_indices, scoring_manifest, write_part


@dataclass
class ScoreBatch:
    cand_logprob: np.ndarray  # [n, K] float32, log P(candidate + end-of-turn | x)
    probs: np.ndarray  # [n, K] float32, softmax over candidates
    pred_id: np.ndarray  # [n] int64, y_hat
    embedding: np.ndarray | None  # [n, H] float32, E(x)


class CandidateScorer:
    """pi_ref scorer: ``score(records, candidates)`` -> ScoreBatch (see ``kernel`` for the method)."""

    def __init__(self, model_path, template: str, adapter_path=None, batch_size: int = ScoreConfig.batch_size,
                 device=None, dtype=None):
        # batch_size: a value its command's config checked (ScoreConfig, PredictConfig, ServedModelConfig)
        self.model, self.tokenizer = load_model_and_tokenizer(model_path, adapter_path, dtype=dtype, device=device)
        self.template = load_template(self.tokenizer, template)
        vocab = self.model.get_input_embeddings().weight.shape[0]
        if len(self.tokenizer) > vocab:
            raise ValueError(
                f"template {template!r} added tokens to the tokenizer ({len(self.tokenizer)} > model vocab {vocab}):"
                " wrong template for this model?"
            )
        self.batch_size = batch_size
        self.pad_id = self.tokenizer.pad_token_id

    def encoder(self, candidates: Sequence[str], first_record: dict) -> PromptEncoder:
        return PromptEncoder(self.template, self.tokenizer, candidates, first_record)

    def score(
        self,
        records: Sequence[dict],
        candidates: Sequence[str],
        with_embeddings: bool = True,
        encoder: PromptEncoder | None = None,
    ) -> ScoreBatch:
        if not records:
            raise ValueError("no records to score")
        if len(candidates) < 2:
            raise ValueError("need at least two candidate behaviors")
        encoder = encoder or self.encoder(candidates, records[0])
        lps, embs = [], []
        for start in range(0, len(records), self.batch_size):
            prompts = [encoder.prompt(r) for r in records[start : start + self.batch_size]]
            lp, emb = cached_candidate_logprobs(self.model, prompts, encoder.cand_ids, self.pad_id, with_embeddings)
            lps.append(lp)
            if emb is not None:
                embs.append(emb)
        logprob = np.concatenate(lps)
        return ScoreBatch(
            cand_logprob=logprob,
            probs=softmax_rows(logprob),
            pred_id=logprob.argmax(axis=1).astype(np.int64),
            embedding=np.concatenate(embs).astype(np.float32) if with_embeddings else None,
        )


def pool_indices(meta: Sequence[dict], config: ScoreConfig) -> np.ndarray:
    """The scoring pool, Algorithm 1 line 10 (paper footnote: F is small, so not every sample needs scoring).

    A random subset (seeded by config.seed) of at most config.pool_per_behavior samples of each behavior,
    anchors and tails alike; None keeps every sample.  Returns sorted line numbers.
    """
    n, per_behavior, seed = len(meta), config.pool_per_behavior, config.seed
    if per_behavior is None:
        return np.arange(n, dtype=np.int64)
    labels = np.array([m["label_id"] for m in meta], dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = min(per_behavior, len(members))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


class ScorerCache:
    """What one process loads to score with a model, kept for the next split it scores with the same one
    (evaluation scores two test splits and the calibration subset): the tokenizer and the model are loaded once,
    not once per split. One model at a time is kept."""

    def __init__(self):
        self._scorers: dict[tuple, CandidateScorer] = {}
        self._tokenizers: dict[tuple, tuple] = {}

    def scorer(self, model_path, template: str, adapter_path, batch_size: int, device, dtype) -> CandidateScorer:
        key = (str(model_path), template, str(adapter_path), batch_size, str(device), str(dtype))
        if key not in self._scorers:
            self._scorers.clear()
            self._scorers[key] = CandidateScorer(model_path, template, adapter_path, batch_size, device, dtype)
        return self._scorers[key]

    def tokenizer_and_template(self, model_path, template: str):
        key = (str(model_path), template)
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer_and_template(model_path, template)
        return self._tokenizers[key]


def check_scored_lengths(model_path, template: str, records, candidates, cutoff_len: int | None, what: str,
                         cache: ScorerCache | None = None):
    """Refuse, before any model is loaded, samples whose prompt + longest candidate exceeds cutoff_len."""
    if cutoff_len is None:
        return
    tokenizer, tmpl = (cache or ScorerCache()).tokenizer_and_template(model_path, template)
    check_cutoff(scored_token_lengths(tmpl, tokenizer, records, candidates), cutoff_len, what)


def score_dataset(
    model_path,
    template: str,
    dataset_dir,
    dataset: str,
    out_dir,
    adapter_path=None,
    indices=None,
    batch_size: int = ScoreConfig.batch_size,
    shard_size: int = ScoreConfig.shard_size,
    with_embeddings: bool = True,
    device=None,
    dtype=None,
    cutoff_len: int | None = None,
    cache: ScorerCache | None = None,
) -> Path:
    """Score `indices` (line numbers; default all) of a prepared split and write Parquet parts to out_dir.

    Data parallel: rank r of WORLD_SIZE (torchrun / accelerate) scores the rows of indices[r::WORLD_SIZE]
    that no part holds yet, on its own device, in parts of shard_size rows (``shards.part_path``), then writes
    ``done-<r>.json``.  Rows already on disk are never scored again, whatever number of ranks wrote them, so
    an interrupted run resumes with any number of ranks; ``manifest.json`` pins the run's inputs and a rerun
    with different inputs into the same out_dir is refused.  With cutoff_len, a pool whose prompt + longest
    candidate exceeds it is refused before any model is loaded (``lengths.check_cutoff``). `cache`: a
    ``ScorerCache`` shared by the calls of one process that score with the same model.
    """
    from tqdm.auto import tqdm

    data = load_prepared(dataset_dir, dataset)
    indices = np.arange(len(data.records), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
    if len(indices) == 0:
        raise ValueError("empty scoring pool: nothing to score")
    if indices.min() < 0 or indices.max() >= len(data.records):
        raise ValueError(f"pool indices out of range for {data.path.name} ({len(data.records)} lines)")
    if len(np.unique(indices)) != len(indices):
        raise ValueError("scoring pool indices must be distinct")
    indices = np.sort(indices)
    rank, world = dist_env()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = scoring_manifest(model_path, adapter_path, template, data.path, data.candidates, indices)
    check_or_write_manifest(out_dir, manifest, "scores", ignore=LAYOUT_KEYS)

    # Only rank r ever scores the rows of indices[r::world] in this launch, so the rows another rank is
    # writing right now never matter here: no barrier is needed.
    mine = indices[rank::world]
    todo = np.setdiff1d(mine, scored_indices(out_dir), assume_unique=True)
    parts = [todo[s : s + shard_size] for s in range(0, len(todo), shard_size)]
    if parts:
        cache = cache or ScorerCache()
        check_scored_lengths(model_path, template, [data.records[i] for i in indices], data.candidates,
                             cutoff_len, f"{data.path.stem} samples (prompt + longest candidate)", cache)
        scorer = cache.scorer(model_path, template, adapter_path, batch_size, device, dtype)
        encoder = scorer.encoder(data.candidates, data.records[int(indices[0])])
        labels = np.array([m["label_id"] for m in data.meta], dtype=np.int64)
        bar = tqdm(total=len(todo), desc=f"scoring (rank {rank})", disable=rank != 0, unit="x")
        for part in parts:
            batch = scorer.score([data.records[i] for i in part], data.candidates, with_embeddings, encoder)
            y = labels[part]
            write_part(
                part_path(out_dir, part),
                {
                    "index": part,
                    "label_id": y,
                    "pred_id": batch.pred_id,
                    "p_true": batch.probs[np.arange(len(part)), y],
                    "probs": batch.probs,
                    "logprobs": batch.cand_logprob,
                    "embedding": batch.embedding,
                },
            )
            bar.update(len(part))
        bar.close()
    done = {"rank": rank, "world_size": world, "n_rows": len(mine), "n_scored_now": len(todo)}
    write_text_atomic(out_dir / f"done-{rank}.json", json.dumps(done))
    return out_dir
