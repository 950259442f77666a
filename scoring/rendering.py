"""Prompt rendering with LLaMA-Factory's own template code (``Template.encode_oneturn``).

Every sample is rendered exactly as SFT/DPO training renders it, so the prompt and answer token ids the
scorer and the evaluation use are those the model was trained on, end-of-turn tokens included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def user_content(record: dict) -> str:
    """The user turn exactly as LLaMA-Factory's alpaca converter builds it: "instruction\\ninput" (input optional)."""
    return "\n".join(part for part in (record.get("instruction") or "", record.get("input") or "") if part)


def load_template(tokenizer, template: str):
    """LLaMA-Factory's template `template`, fixing the tokenizer (eos/pad/stop words) as training does."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    return get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template))


def load_tokenizer_and_template(model_path: str | os.PathLike, template: str):
    """(tokenizer, template) of a local model dir without loading the model (cheap: for length checks)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return tokenizer, load_template(tokenizer, template)


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
