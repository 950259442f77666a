"""Predictions of an LLM on a test split, written as ``<out>/<dataset>.predictions.jsonl``.

Default, candidate-constrained: the scorer of ``scoring`` gives p(c|x) over every candidate behavior
(softmax of the candidate sequence log-probs, the prompt rendered by LLaMA-Factory's template code exactly
as in training); the prediction is the top of the stored log-probabilities (``files.distribution_row``). No
output can fail to parse. The scores are written as Parquet parts under ``<out>/<dataset>.scores/`` first, so
an interrupted run resumes where it stopped.

``generate=True``: free greedy generation (transformers ``generate``, the same rendered prompt), as the
paper's LLM baselines are run; the text is parsed to a candidate by ``parse_generation``, an output that is
no candidate counts as wrong and the invalid rate is reported. Outputs are kept in JSONL parts under
``<out>/<dataset>.generate/`` (resumable).

Test samples keep their own instruction template (one of the three, drawn at prepare time): the records
are used as prepared.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_prep.prepared import load_prepared
from data_prep.rendering.prompts import INSTRUCTION_TEMPLATES, rerender
from data_prep.writing.outputs import read_jsonl

from .config import PredictConfig
from .files import distribution_row, prediction_row, write_jsonl_atomic, write_predictions
from .metrics import log_softmax
from .temperature import calibration_subset, fit_modes_record, write_temperature

DEFAULTS = PredictConfig()   # the keyword defaults below are the command line's


def constrained_rows(scores: dict, meta: list[dict], candidates: list[str]) -> list[dict]:
    """Prediction rows of scored samples: the normalized log-probabilities are stored, pred and the top-3 are
    their ranking (``distribution_row``), p_label and the top probabilities the scorer's."""
    logprobs = log_softmax(scores["logprobs"])
    return [distribution_row(i, m, candidates, logprobs[i], scores["probs"][i]) for i, m in enumerate(meta)]


def _wait_for_parts(paths: list[Path], poll_s: float = 5.0, timeout_s: float = 6 * 3600) -> None:
    """Rank 0 assembles once every part exists (each rank writes its own share)."""
    deadline = time.monotonic() + timeout_s
    while not all(p.is_file() for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{paths[0].parent}: other ranks did not finish; rerun predict to assemble")
        time.sleep(poll_s)


def predict_constrained(model: str, template: str, dataset_dir: str | os.PathLike, dataset: str,
                        out_dir: str | os.PathLike, adapter: str | None = None,
                        batch_size: int = DEFAULTS.batch_size, shard_size: int = DEFAULTS.shard_size,
                        device: str | None = None,
                        cutoff_len: int | None = None, dtype: str | None = None, cache=None) -> Path | None:
    """The top of the scorer's candidate probabilities for every sample of ``dataset``; returns the file.

    With cutoff_len (the recipe's), samples whose prompt + longest candidate exceed it are refused before any
    model forward.  Returns None on ranks other than 0 of a torchrun launch (rank 0 writes the file).
    `cache`: a ``scoring.scorer.ScorerCache`` that keeps the model loaded for the next split."""
    from scoring.devices import dist_env
    from scoring.scorer import score_dataset
    from scoring.shards import load_scores, wait_for_scores

    split = load_prepared(dataset_dir, dataset, records=False)
    candidates, meta = split.candidates, split.meta
    scores_dir = Path(out_dir) / f"{dataset}.scores"
    score_dataset(model, template, dataset_dir, dataset, scores_dir, adapter_path=adapter, batch_size=batch_size,
                  shard_size=shard_size, with_embeddings=False, device=device, dtype=dtype, cutoff_len=cutoff_len,
                  cache=cache)
    if dist_env()[0] != 0:
        return None
    wait_for_scores(scores_dir)
    scores = load_scores(scores_dir)
    if list(scores["candidates"]) != candidates:
        raise ValueError(f"{scores_dir}: scored candidates differ from {dataset_dir}/stats.json; use a new --out")
    if not np.array_equal(scores["index"], np.arange(len(meta))):
        raise ValueError(f"{scores_dir}: scores do not cover {dataset} line by line; use a new --out")
    rows = constrained_rows(scores, meta, candidates)
    return write_predictions(out_dir, dataset, rows, {
        "method": "constrained", "model": str(model), "adapter": None if adapter is None else str(adapter),
        "template": template, "dataset_dir": str(dataset_dir), "scores_dir": str(scores_dir)})


def fit_constrained_temperature(model: str, template: str, dataset_dir: str | os.PathLike,
                                out_dir: str | os.PathLike, samples: int, seed: int, adapter: str | None = None,
                                batch_size: int = DEFAULTS.batch_size, device: str | None = None,
                                cutoff_len: int | None = None, dtype: str | None = None, cache=None) -> Path | None:
    """Score a seeded subset of `samples` validation samples in every instruction template and write
    ``<out>/temperature.json``: the T minimising their NLL in each prompt mode (``evaluation.temperature``).
    Rank 0 scores them; returns the file, None on other ranks and when dataset_dir has no valid split (a warning
    says so)."""
    from scoring.devices import dist_env
    from scoring.scorer import ScorerCache, check_scored_lengths

    if dist_env()[0] != 0:
        return None
    try:
        split = load_prepared(dataset_dir, "valid")
    except FileNotFoundError as err:
        print(f"warning: no temperature fitted ({err}); the model's probabilities are used unscaled")
        return None
    if not split.meta:
        raise ValueError(f"{dataset_dir}: the valid split is empty; no temperature can be fitted (--calib-samples 0)")
    indices = calibration_subset(len(split.meta), samples, seed).tolist()
    own = [int(split.meta[i]["template_id"]) for i in indices]
    records = every_template(split.records, split.meta, indices)
    cache = cache or ScorerCache()
    check_scored_lengths(model, template, records, split.candidates, cutoff_len,
                         "valid samples in every instruction template (prompt + longest candidate)", cache)
    scorer = cache.scorer(model, template, adapter, batch_size, device, dtype)
    logprobs = scorer.score(records, split.candidates, with_embeddings=False).cand_logprob
    labels = [split.candidates.index(split.meta[i]["label"]) for i in indices]
    return write_temperature(out_dir, fit_modes_record(logprobs.reshape(len(indices), len(INSTRUCTION_TEMPLATES), -1),
                                                       own, labels, seed))


def every_template(records: list[dict], meta: list[dict], indices: list[int]) -> list[dict]:
    """Each sample of `indices` rendered in each Appendix D template, template by template within a sample."""
    out = []
    for i in indices:
        try:
            out += [rerender(records[i], int(meta[i]["template_id"]), t) for t in range(len(INSTRUCTION_TEMPLATES))]
        except ValueError as err:
            raise ValueError(f"valid sample {meta[i].get('sample_id')}: {err}") from None
    return out


def _normalize(text: str) -> str:
    return " ".join(text.strip().casefold().split())


def parse_generation(output: str, candidates: Sequence[str]) -> str | None:
    """Map a generated text to a candidate: exact match after strip/case-fold (inner whitespace collapsed);
    else the longest candidate the output starts with (followed by a non-letter, so "game" does not match
    "gamer"); else None (invalid)."""
    text = _normalize(output)
    if not text:
        return None
    for cand in candidates:
        if _normalize(cand) == text:
            return cand
    best = None
    for cand in candidates:
        c = _normalize(cand)
        if not c or not text.startswith(c):
            continue
        nxt = text[len(c):len(c) + 1]
        # a word boundary is needed only between two ASCII letters/digits (CJK names have no spaces)
        if nxt and nxt.isascii() and nxt.isalnum() and c[-1].isascii() and c[-1].isalnum():
            continue
        if best is None or len(c) > len(_normalize(best)):
            best = cand
    return best


def _generate_manifest(model, adapter, template, dataset_path, max_new_tokens, shard_size) -> dict:
    return {"model": str(Path(model).resolve()), "adapter": str(Path(adapter).resolve()) if adapter else None,
            "template": template, "dataset_file": str(Path(dataset_path).resolve()),
            "max_new_tokens": max_new_tokens, "shard_size": shard_size, "decoding": "greedy"}


def generate_outputs(model_path: str, template: str, records: list[dict], parts_dir: Path, manifest: dict,
                     adapter: str | None = None, batch_size: int = DEFAULTS.batch_size,
                     max_new_tokens: int = DEFAULTS.max_new_tokens, shard_size: int = DEFAULTS.shard_size,
                     device: str | None = None, dtype: str | None = None) -> list[str] | None:
    """Greedy outputs of every record, prompt rendered as in training; resumable JSONL parts in parts_dir.

    Parts are keyed by sample range, not by rank: rank r of WORLD_SIZE writes the missing parts n with
    n % WORLD_SIZE == r, so a rerun with any number of ranks resumes; rank 0 assembles (others get None)."""
    from tqdm.auto import tqdm

    from scoring.devices import dist_env
    from scoring.shards import check_or_write_manifest

    rank, world = dist_env()
    parts_dir.mkdir(parents=True, exist_ok=True)
    check_or_write_manifest(parts_dir, manifest, "outputs")
    shards = [range(s, min(s + shard_size, len(records))) for s in range(0, len(records), shard_size)]
    paths = [parts_dir / f"part-{n:05d}.jsonl" for n in range(len(shards))]
    todo = [(n, r) for n, r in enumerate(shards) if n % world == rank and not paths[n].is_file()]
    if todo:
        import torch

        from scoring.kernel import left_pad
        from scoring.models import load_model_and_tokenizer
        from scoring.rendering import encode_pair, load_template

        model, tokenizer = load_model_and_tokenizer(model_path, adapter, dtype=dtype, device=device)
        tmpl = load_template(tokenizer, template)
        stop_ids = sorted(tmpl.get_stop_token_ids(tokenizer))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
        dev = next(model.parameters()).device
        bar = tqdm(total=sum(len(r) for _, r in todo), desc=f"generating (rank {rank})", disable=rank != 0,
                   unit="x")
        for n, shard in todo:
            outputs = []
            for start in range(shard.start, shard.stop, batch_size):
                batch = [records[i] for i in range(start, min(start + batch_size, shard.stop))]
                # the prompt half of encode_oneturn does not depend on the answer
                prompts = [encode_pair(tmpl, tokenizer, r, "")[0] for r in batch]
                # left padding: generation continues every row at the end
                ids, mask, _, _ = left_pad(prompts, pad_id, dev)
                width = ids.shape[1]
                with torch.inference_mode():
                    generated = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                               max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                                               pad_token_id=pad_id)
                for row in generated[:, width:].tolist():
                    outputs.append(tokenizer.decode(row, skip_special_tokens=True))
                bar.update(len(batch))
            write_jsonl_atomic(paths[n], [{"index": i, "output": o} for i, o in zip(shard, outputs)])
        bar.close()
    if rank != 0:
        return None
    _wait_for_parts(paths)
    by_index = {}
    for path in paths:
        for row in read_jsonl(path):
            by_index[row["index"]] = row["output"]
    if sorted(by_index) != list(range(len(records))):
        raise RuntimeError(f"{parts_dir}: generated outputs do not cover every sample; delete it and rerun")
    return [by_index[i] for i in range(len(records))]


def predict_generate(model: str, template: str, dataset_dir: str | os.PathLike, dataset: str,
                     out_dir: str | os.PathLike, adapter: str | None = None, batch_size: int = DEFAULTS.batch_size,
                     max_new_tokens: int = DEFAULTS.max_new_tokens, shard_size: int = DEFAULTS.shard_size,
                     device: str | None = None, cutoff_len: int | None = None,
                     dtype: str | None = None) -> Path | None:
    """Free generation parsed to a candidate; an output that is no candidate is ``pred: null``.

    cutoff_len as in predict_constrained; returns None on ranks other than 0."""
    from scoring.scorer import check_scored_lengths

    split = load_prepared(dataset_dir, dataset)
    candidates, records, meta = split.candidates, split.records, split.meta
    check_scored_lengths(model, template, records, candidates, cutoff_len,
                         f"{dataset} samples (prompt + longest candidate)")
    parts_dir = Path(out_dir) / f"{dataset}.generate"
    manifest = _generate_manifest(model, adapter, template, split.path,
                                  max_new_tokens, shard_size)
    outputs = generate_outputs(model, template, records, parts_dir, manifest, adapter=adapter,
                               batch_size=batch_size, max_new_tokens=max_new_tokens, shard_size=shard_size,
                               device=device, dtype=dtype)
    if outputs is None:
        return None
    rows = [prediction_row(i, m, parse_generation(o, candidates), candidates, output=o)
            for i, (m, o) in enumerate(zip(meta, outputs))]
    path = write_predictions(out_dir, dataset, rows, {**manifest, "method": "generate",
                                                      "dataset_dir": str(dataset_dir)})
    invalid = sum(not r["valid"] for r in rows)
    print(f"{dataset}: {invalid}/{len(rows)} generated outputs are not a candidate "
          f"(invalid rate {invalid / max(len(rows), 1):.4f})")
    return path
