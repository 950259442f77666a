"""The cached-prefix log-prob kernel of the pi_ref scorer (paper 3.3, Algorithm 1 lines 12-14).

The B prompts of a batch are encoded once (left padding, ``use_cache=True``, ``logits_to_keep=1``).  The
last prompt position gives the log-prob of every candidate's *first* answer token.  The remaining answer
tokens of all K candidates are merged into a prefix tree (candidates that start alike share nodes) and
packed into ONE extra row per prompt (T nodes <= sum_k (len_k - 1), no padding), run once against the cached
prompt with a custom 4-D attention mask: each node attends to its own prompt and to its ancestors in the tree
only, with explicit ``position_ids`` continuing the prompt.  Compared with expanding the KV cache to B*K
rows, this copies no cache and costs T extra tokens per prompt; for single-token labels the second forward is
skipped entirely.  A label the tokenizer splits into many tokens is handled naturally: its log-prob is the
sum over all its tokens (plus end-of-turn).  ``naive_candidate_logprobs`` is the slow reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def model_dtype(model):
    return next(model.parameters()).dtype


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device):
    """(ids, attention mask, position ids, lengths) of left-padded prompts on `device`."""
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
    """log P(answer_k | prompt_b) for every prompt b and candidate k with the prompt encoded once: the E(x),
    y_hat and p(y|x) of Algorithm 1 lines 13-14 (y_hat and p come from the softmax over candidates).

    Returns (logprob [B, K] float32 numpy, embedding [B, H] float32 numpy or None), embedding = mean of the
    last hidden state over the real (non-pad) prompt tokens (the paper's E(x)).
    """
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids, mask, positions, lengths = left_pad(prompts, pad_id, device)
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
            dtype = model_dtype(model)
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
