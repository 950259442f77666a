"""pi_ref scorer (paper 3.3, Algorithm 1 lines 12-14): candidate log-probabilities, p(.|x), y_hat and E(x).

Every sample is rendered with LLaMA-Factory's own template code (``Template.encode_oneturn``), so the prompt
and answer token ids are exactly those that SFT/DPO training saw, including the end-of-turn tokens.

Cached prefix scoring: the B prompts of a batch are encoded once (left padding, ``use_cache=True``,
``logits_to_keep=1``).  The last prompt position gives the log-prob of every candidate's *first* answer
token.  The remaining answer tokens of all K candidates are merged into a prefix tree (candidates that
start alike share nodes) and packed into ONE extra row per prompt (T nodes <= sum_k (len_k - 1), no padding),
run once against the cached prompt with a custom 4-D attention mask: each node attends to its own prompt and
to its ancestors in the tree only, with explicit ``position_ids`` continuing the prompt.  Compared with
expanding the KV cache to B*K rows, this copies no cache and costs T extra tokens per prompt; for
single-token labels the second forward is skipped entirely.  A label the tokenizer splits into many tokens is handled naturally:
its log-prob is the sum over all its tokens (plus end-of-turn).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.outputs import atomic_open, write_json, write_text_atomic

from .models import load_model_and_tokenizer, resolve_device

logger = logging.getLogger(__name__)

PART_COLUMNS = ("index", "label_id", "pred_id", "p_true", "probs", "logprobs", "embedding")


# ----------------------------------------------------------------------------------------------- rendering
def user_content(record: dict) -> str:
    """The user turn exactly as LLaMA-Factory's alpaca converter builds it: "instruction\\ninput" (input optional)."""
    return "\n".join(part for part in (record.get("instruction") or "", record.get("input") or "") if part)


def load_template(tokenizer, template: str):
    """LLaMA-Factory's template `template`, fixing the tokenizer (eos/pad/stop words) as training does."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    return get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template))


def encode_pair(template, tokenizer, record: dict, answer: str) -> tuple[list[int], list[int]]:
    """(prompt_ids, answer_ids) as LLaMA-Factory's pairwise/supervised processors build them."""
    messages = [{"role": "user", "content": user_content(record)}, {"role": "assistant", "content": answer}]
    prompt_ids, answer_ids = template.encode_oneturn(tokenizer, messages, record.get("system") or None)
    if template.efficient_eos:  # those templates append eos outside the assistant slot
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    return list(prompt_ids), list(answer_ids)


def encode_candidates(template, tokenizer, record: dict, candidates: Sequence[str]) -> list[list[int]]:
    """Answer ids of every candidate, checking that the prompt ids do not depend on the candidate."""
    prompt0, cand_ids = None, []
    for cand in candidates:
        prompt_ids, answer_ids = encode_pair(template, tokenizer, record, cand)
        if prompt0 is None:
            prompt0 = prompt_ids
        elif prompt_ids != prompt0:
            raise RuntimeError(f"template renders a different prompt for candidate {cand!r}: cannot share a prefix")
        if not answer_ids:
            raise RuntimeError(f"candidate {cand!r} encodes to no answer tokens")
        cand_ids.append(answer_ids)
    return cand_ids


class PromptEncoder:
    """Renders records to prompt ids; candidate answer ids are encoded once and checked on every record.

    The assistant turn is encoded on its own by the template (never merged with the prompt), so its ids
    do not depend on the record; we still re-encode candidate 0 for every record and fail loudly if its
    answer ids or the prompt split ever differ.
    """

    def __init__(self, template, tokenizer, candidates: Sequence[str], first_record: dict):
        self.template, self.tokenizer, self.candidates = template, tokenizer, list(candidates)
        self.cand_ids = encode_candidates(template, tokenizer, first_record, self.candidates)

    def prompt(self, record: dict) -> list[int]:
        prompt_ids, answer_ids = encode_pair(self.template, self.tokenizer, record, self.candidates[0])
        if answer_ids != self.cand_ids[0]:
            raise RuntimeError("candidate answer ids depend on the prompt for this template; cannot share a prefix")
        return prompt_ids


# ------------------------------------------------------------------------------------------------ scoring
def _model_dtype(model):
    return next(model.parameters()).dtype


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device):
    import torch

    lengths = [len(p) for p in prompts]
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p) :] = 1
    # Real tokens get positions 0..len-1 whatever the padding, as in an unpadded forward.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device), torch.tensor(lengths, device=device)


@dataclass
class PrefixTree:
    """Answer tokens of all candidates merged into a prefix tree (candidates sharing "go to the" share nodes).

    Node i holds one input token at answer offset depth[i]; it may attend to its ancestors only
    (ancestor[i, j]).  Each scored token (candidate k, answer position j+1 >= 1) reads the logits of the node of
    its prefix ids[:j+1].  The last token of a candidate is never an input.
    """

    tokens: list[int]
    depth: list[int]
    ancestor: np.ndarray  # [T, T] bool, ancestor-or-self
    node: list[int]  # per scored token: node whose logits predict it
    target: list[int]  # per scored token: its id
    cand: list[int]  # per scored token: its candidate


def prefix_tree(cand_ids: Sequence[Sequence[int]]) -> PrefixTree:
    index: dict[tuple, int] = {}
    tokens, depth, parent, node, target, cand = [], [], [], [], [], []
    for k, ids in enumerate(cand_ids):
        for j in range(len(ids) - 1):
            prefix = tuple(ids[: j + 1])
            if prefix not in index:
                index[prefix] = len(tokens)
                tokens.append(ids[j])
                depth.append(j)
                parent.append(index[prefix[:-1]] if j else -1)
            node.append(index[prefix])
            target.append(ids[j + 1])
            cand.append(k)
    ancestor = np.zeros((len(tokens), len(tokens)), dtype=bool)
    for i in range(len(tokens)):
        a = i
        while a != -1:
            ancestor[i, a] = True
            a = parent[a]
    return PrefixTree(tokens, depth, ancestor, node, target, cand)


def cached_candidate_logprobs(model, prompts, cand_ids, pad_id: int, with_embeddings: bool = True):
    """log P(answer_k | prompt_b) for every prompt b and candidate k with the prompt encoded once.

    Returns (logprob [B, K] float32 numpy, embedding [B, H] float32 numpy or None), embedding = mean of the
    last hidden state over the real (non-pad) prompt tokens.
    """
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids, mask, positions, lengths = _left_pad(prompts, pad_id, device)
    B, Lp = ids.shape
    with torch.inference_mode():
        cache = DynamicCache()
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            output_hidden_states=with_embeddings,
            logits_to_keep=1,
        )
        first_lp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # predicts answer token 0
        first_tok = torch.tensor([c[0] for c in cand_ids], device=device)
        total = first_lp[:, first_tok]  # [B, K]

        embedding = None
        if with_embeddings:
            last = out.hidden_states[-1].float()
            m = mask.unsqueeze(-1).float()
            embedding = ((last * m).sum(1) / m.sum(1)).cpu().numpy()

        tree = prefix_tree(cand_ids)
        if tree.tokens:
            T = len(tree.tokens)
            cand_in = torch.tensor(tree.tokens, device=device).unsqueeze(0).expand(B, T)
            # positions continue each prompt: node at answer offset d sits at prompt_len + d
            cand_pos = lengths.unsqueeze(1) + torch.tensor(tree.depth, device=device).unsqueeze(0)
            tree_mask = torch.from_numpy(tree.ancestor).to(device)
            allowed = torch.cat(
                [mask.bool().unsqueeze(1).expand(B, T, Lp), tree_mask.unsqueeze(0).expand(B, T, T)], dim=-1
            )
            dtype = _model_dtype(model)
            mask4d = torch.zeros(allowed.shape, dtype=dtype, device=device)
            mask4d.masked_fill_(~allowed, torch.finfo(dtype).min)
            out2 = model(
                input_ids=cand_in,
                attention_mask=mask4d.unsqueeze(1),
                position_ids=cand_pos,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
            logits = out2.logits.float()  # [B, T, V]
            node = torch.tensor(tree.node, device=device)
            target = torch.tensor(tree.target, device=device)
            tok_lp = logits[:, node, target] - logits.logsumexp(-1)[:, node]  # [B, scored tokens]
            total = total.index_add(1, torch.tensor(tree.cand, device=device), tok_lp)
    return total.cpu().numpy().astype(np.float32), embedding


def naive_candidate_logprobs(model, prompts, cand_ids) -> np.ndarray:
    """Reference path: one full forward over prompt + answer per (prompt, candidate). Slow; tests/bench only."""
    import torch

    device = next(model.parameters()).device
    result = np.zeros((len(prompts), len(cand_ids)), dtype=np.float32)
    with torch.inference_mode():
        for b, prompt in enumerate(prompts):
            for k, answer in enumerate(cand_ids):
                seq = torch.tensor([list(prompt) + list(answer)], device=device)
                logits = model(input_ids=seq, use_cache=False).logits[0].float()
                lp = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
                result[b, k] = lp.gather(-1, torch.tensor(answer, device=device).unsqueeze(-1)).sum().item()
    return result


def softmax_rows(logprobs: np.ndarray) -> np.ndarray:
    """p(c|x) over the candidate set: softmax of the candidate sequence log-probs (paper's p(y|x))."""
    z = logprobs - logprobs.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class ScoreBatch:
    cand_logprob: np.ndarray  # [n, K] float32, log P(candidate + end-of-turn | x)
    probs: np.ndarray  # [n, K] float32, softmax over candidates
    pred_id: np.ndarray  # [n] int64, y_hat
    embedding: np.ndarray | None  # [n, H] float32, E(x)


class CandidateScorer:
    """pi_ref scorer: ``score(records, candidates)`` -> ScoreBatch (see module docstring)."""

    def __init__(self, model_path, template: str, adapter_path=None, batch_size: int = 8, device=None, dtype=None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
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


# ------------------------------------------------------------------------------------------- dataset I/O
def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def resolve_dataset_file(dataset_dir, dataset: str) -> Path:
    """`dataset` as a dataset_info.json name (``behavior_train_all``) or its stem (``train_all``) -> jsonl path."""
    dataset_dir = Path(dataset_dir)
    info_path = dataset_dir / "dataset_info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{str(info_path)!r} not found: is {str(dataset_dir)!r} a prepared dataset dir?")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    for name in (dataset, f"behavior_{dataset}"):
        if name in info:
            path = dataset_dir / info[name]["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"dataset {dataset!r} is registered but {str(path)!r} does not exist")
            return path
    for entry in info.values():
        if Path(entry.get("file_name", "")).stem == dataset:
            return dataset_dir / entry["file_name"]
    raise ValueError(f"dataset {dataset!r} is not in {str(info_path)!r} (known: {', '.join(sorted(info))})")


@dataclass
class PreparedDataset:
    path: Path
    records: list[dict]
    meta: list[dict]
    stats: dict
    candidates: list[str]


def load_prepared(dataset_dir, dataset: str = "train_all") -> PreparedDataset:
    """A prepared split with its meta lines and the candidate list of stats.json (README contracts)."""
    path = resolve_dataset_file(dataset_dir, dataset)
    meta_path = path.with_name(path.name[: -len(".jsonl")] + ".meta.jsonl")
    stats_path = Path(dataset_dir) / "stats.json"
    for p in (meta_path, stats_path):
        if not p.is_file():
            raise FileNotFoundError(f"{str(p)!r} not found (written by data_prep)")
    records, meta = read_jsonl(path), read_jsonl(meta_path)
    if len(records) != len(meta):
        raise ValueError(f"{path.name} has {len(records)} lines but {meta_path.name} has {len(meta)}")
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    behaviors = stats.get("behaviors") or []
    if [b["label_id"] for b in behaviors] != list(range(len(behaviors))):
        raise ValueError("stats.json behaviors must be ordered by label_id 0..K-1")
    return PreparedDataset(path, records, meta, stats, [b["name"] for b in behaviors])


def pool_indices(meta: Sequence[dict], per_behavior: int | str | None, seed: int) -> np.ndarray:
    """The scoring pool (paper footnote: F is small, so not every sample needs scoring).

    A seeded random subset of at most `per_behavior` samples of each behavior, anchors and tails alike;
    None or "all" keeps every sample.  Returns sorted line numbers.
    """
    n = len(meta)
    if per_behavior is None or per_behavior == "all":
        return np.arange(n, dtype=np.int64)
    per_behavior = int(per_behavior)
    if per_behavior <= 0:
        raise ValueError(f"pool size per behavior must be positive or 'all', got {per_behavior}")
    labels = np.array([m["label_id"] for m in meta], dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = min(per_behavior, len(members))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def dist_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun / accelerate launch environment variables."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _write_part(path: Path, rows: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    list32 = pa.list_(pa.float32())
    emb = rows["embedding"]
    table = pa.table(
        {
            "index": pa.array(rows["index"], pa.int64()),
            "label_id": pa.array(rows["label_id"], pa.int64()),
            "pred_id": pa.array(rows["pred_id"], pa.int64()),
            "p_true": pa.array(rows["p_true"], pa.float32()),
            "probs": pa.array(list(rows["probs"]), list32),
            "logprobs": pa.array(list(rows["logprobs"]), list32),
            "embedding": pa.array(list(emb) if emb is not None else [None] * len(rows["index"]), list32),
        }
    )
    with atomic_open(path, "wb") as handle:
        pq.write_table(table, handle)


def check_or_write_manifest(out_dir: Path, manifest: dict, what: str) -> None:
    """Pin a resumable run's inputs: write out_dir/manifest.json on the first run; on a rerun refuse (ValueError,
    naming the differing keys) if it differs, so parts of two different runs never mix."""
    path = Path(out_dir) / "manifest.json"
    if not path.is_file():
        write_json(path, manifest)
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    if old != manifest:
        diff = sorted(k for k in manifest if old.get(k) != manifest[k])
        raise ValueError(f"{str(out_dir)!r} holds {what} of a different run (differs in {diff}); use a new --out")


def _manifest(model_path, adapter_path, template, dataset_path, candidates, indices, world_size, shard_size):
    digest = hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()
    return {
        "model": str(Path(model_path).resolve()),
        "adapter": str(Path(adapter_path).resolve()) if adapter_path else None,
        "template": template,
        "dataset": str(Path(dataset_path).resolve()),
        "candidates": list(candidates),
        "n_indices": len(indices),
        "indices_sha256": digest,
        "world_size": world_size,
        "shard_size": shard_size,
    }


def score_dataset(
    model_path,
    template: str,
    dataset_dir,
    dataset: str,
    out_dir,
    adapter_path=None,
    indices=None,
    batch_size: int = 8,
    shard_size: int = 256,
    with_embeddings: bool = True,
    device=None,
    dtype=None,
) -> Path:
    """Score `indices` (line numbers; default all) of a prepared split and write Parquet parts to out_dir.

    Data parallel: rank r of WORLD_SIZE (torchrun / accelerate) scores indices[r::WORLD_SIZE] on its own
    device and writes ``part-<r>-<NNNNN>.parquet`` (shard_size rows each) then ``done-<r>.json``.  Parts
    already on disk are skipped, so an interrupted run resumes; ``manifest.json`` pins the run's inputs and a
    rerun with different inputs into the same out_dir is refused.
    """
    from tqdm.auto import tqdm

    data = load_prepared(dataset_dir, dataset)
    indices = np.arange(len(data.records), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
    if len(indices) == 0:
        raise ValueError("empty scoring pool: nothing to score")
    if indices.min() < 0 or indices.max() >= len(data.records):
        raise ValueError(f"pool indices out of range for {data.path.name} ({len(data.records)} lines)")
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    rank, world = dist_env()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(model_path, adapter_path, template, data.path, data.candidates, indices, world, shard_size)
    check_or_write_manifest(out_dir, manifest, "scores")

    mine = indices[rank::world]
    parts = [mine[s : s + shard_size] for s in range(0, len(mine), shard_size)]
    todo = [(n, p) for n, p in enumerate(parts) if not (out_dir / f"part-{rank}-{n:05d}.parquet").is_file()]
    if todo:
        scorer = CandidateScorer(model_path, template, adapter_path, batch_size, resolve_device(device), dtype)
        encoder = scorer.encoder(data.candidates, data.records[int(indices[0])])
        labels = np.array([m["label_id"] for m in data.meta], dtype=np.int64)
        bar = tqdm(total=sum(len(p) for _, p in todo), desc=f"scoring (rank {rank})", disable=rank != 0, unit="x")
        for n, part in todo:
            batch = scorer.score([data.records[i] for i in part], data.candidates, with_embeddings, encoder)
            y = labels[part]
            _write_part(
                out_dir / f"part-{rank}-{n:05d}.parquet",
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
    done = {"rank": rank, "world_size": world, "n_rows": len(mine), "n_parts": len(parts)}
    write_text_atomic(out_dir / f"done-{rank}.json", json.dumps(done))
    return out_dir


def load_scores(out_dir) -> dict[str, np.ndarray]:
    """All parts of a finished scoring run as numpy arrays sorted by `index`; refuses incomplete runs.

    Keys: index, label_id, pred_id, p_true [n]; probs, logprobs [n, K]; embedding [n, H] (or None when
    scored without embeddings); plus "candidates" (list of names) from the manifest.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{str(out_dir)!r} holds no scoring run (no manifest.json)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    world = manifest["world_size"]
    missing = [r for r in range(world) if not (out_dir / f"done-{r}.json").is_file()]
    if missing:
        raise RuntimeError(f"scoring in {str(out_dir)!r} is incomplete: ranks {missing} not done (rerun to resume)")
    files = sorted(out_dir.glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    n = 0 if table is None else table.num_rows
    if n != manifest["n_indices"]:
        raise RuntimeError(f"scoring in {str(out_dir)!r} has {n} rows, expected {manifest['n_indices']}")
    order = np.argsort(table.column("index").to_numpy(), kind="stable")
    K = len(manifest["candidates"])

    def matrix(name):
        col = table.column(name).combine_chunks()
        if col.null_count == len(col):
            return None
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(n, -1)[order] if n else flat.reshape(0, K)

    result = {c: table.column(c).to_numpy()[order] for c in ("index", "label_id", "pred_id", "p_true")}
    if len(np.unique(result["index"])) != n:
        raise RuntimeError(f"scoring in {str(out_dir)!r} has duplicate rows")
    result.update(probs=matrix("probs"), logprobs=matrix("logprobs"), embedding=matrix("embedding"))
    result["candidates"] = manifest["candidates"]
    return result
