"""Token lengths of samples exactly as LLaMA-Factory tokenizes them, fast enough for every sample of a run.

Training, scoring and evaluation must see the same tokens: a sample whose prompt + answer is
longer than the recipe's ``cutoff_len`` is trained on a truncated prompt (LLaMA-Factory keeps the answer and
cuts the prompt's end: the answer stem and candidates are lost), while the scorer would see it whole.  We
REFUSE such samples (``check_cutoff``) rather than truncate them as LLaMA-Factory does: a truncated prompt
no longer holds the candidate list or the answer stem, so its score would be meaningless; the fix is a larger
``cutoff_len``, and the message says which.

Counting (``LengthCounter``; ``budget.py`` applies the same decomposition to whole split files): LLaMA-Factory
encodes each template element with ``tokenizer.encode``; BPE merges never cross a pre-tokenizer boundary, and
with byte-level pre-tokenizers (GPT-2, Llama-3, Qwen2, SmolLM2) a space preceded by a non-space always starts
a new pre-token. Our prompts join their parts with ", " (history events, candidates), so the user content
``p0, p1, ..., pn`` costs ``len(prompt(p0, pn)) + sum_i len(" " + p_i + ",")``: the outer pair is encoded
exactly through the template (cached: it varies only with the instruction template and the first/last item),
the middle pieces are counted once each and cached. Every call checks the fast count against the exact
encoding on a seeded sample of records (and the longest one); on any difference it warns and counts every
record exactly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np

from .rendering import encode_pair, user_content

logger = logging.getLogger(__name__)

SEP = ", "
# A space after ", " that is followed by more whitespace would merge with it into one pre-token.
_UNSAFE = re.compile(r", \s")


class LengthCounter:
    """Prompt / answer token counts of alpaca records under one LLaMA-Factory template, with caches."""

    def __init__(self, template, tokenizer):
        self.template, self.tokenizer = template, tokenizer
        self._outer: dict[tuple, int] = {}
        self._middle: dict[str, int] = {}
        self._answer: dict[str, int] = {}

    def exact_prompt(self, record: dict) -> int:
        return len(encode_pair(self.template, self.tokenizer, record, "")[0])

    def answer(self, answer: str) -> int:
        """Answer tokens as trained (end-of-turn included); they do not depend on the prompt."""
        if answer not in self._answer:
            self._answer[answer] = len(encode_pair(self.template, self.tokenizer, {"instruction": "x"}, answer)[1])
        return self._answer[answer]

    def middle_piece(self, piece: str) -> int:
        """Tokens of one middle piece of the user turn: " piece," (the space after ", " starts a pre-token)."""
        if piece not in self._middle:
            self._middle[piece] = len(self.tokenizer.encode(" " + piece + ",", add_special_tokens=False))
        return self._middle[piece]

    def outer(self, system: str, first: str, last: str) -> int:
        """Tokens of the prompt with only its first and last pieces: system, template, assistant header."""
        key = (system, first, last)
        if key not in self._outer:
            self._outer[key] = self.exact_prompt({"system": system, "instruction": first + SEP + last})
        return self._outer[key]

    def fast_prompt(self, record: dict) -> int:
        content = user_content(record)
        pieces = content.split(SEP)
        if len(pieces) < 3 or _UNSAFE.search(content):
            return self.exact_prompt(record)
        middle = self._middle
        try:
            inner = sum(map(middle.__getitem__, pieces[1:-1]))
        except KeyError:
            inner = sum(map(self.middle_piece, pieces[1:-1]))
        return self.outer(record.get("system") or "", pieces[0], pieces[-1]) + inner


def _verified(counter: LengthCounter, records: Sequence[dict], fast: np.ndarray, n_check: int, seed: int) -> bool:
    rng = np.random.default_rng(seed)
    picks = set(rng.choice(len(records), size=min(n_check, len(records)), replace=False).tolist())
    picks.add(int(fast.argmax()))
    for i in sorted(picks):
        exact = counter.exact_prompt(records[i])
        if exact != fast[i]:
            logger.warning("fast token count differs from LLaMA-Factory's encoding on record %d (%d vs %d): "
                           "counting every record exactly (slower)", i, fast[i], exact)
            return False
    return True


def prompt_token_lengths(template, tokenizer, records: Sequence[dict], n_check: int = 64, seed: int = 0,
                         counter: LengthCounter | None = None) -> np.ndarray:
    """Prompt tokens of every record (system, user turn, assistant header) as LLaMA-Factory encodes them."""
    from tqdm.auto import tqdm

    counter = counter or LengthCounter(template, tokenizer)
    if not len(records):
        return np.zeros(0, dtype=np.int64)
    fast = np.fromiter((counter.fast_prompt(r) for r in records), dtype=np.int64, count=len(records))
    if _verified(counter, records, fast, n_check, seed):
        return fast
    return np.array([counter.exact_prompt(r) for r in tqdm(records, desc="token lengths", unit="x")], np.int64)


def sample_token_lengths(template, tokenizer, records: Sequence[dict], answers: Sequence[str] | None = None,
                         n_check: int = 64, seed: int = 0) -> np.ndarray:
    """Tokens of prompt + answer per record, exactly the sequence LLaMA-Factory trains on before ``cutoff_len``
    (answer = ``record["output"]`` unless `answers` is given; end-of-turn included).  int64 [n]."""
    counter = LengthCounter(template, tokenizer)
    prompts = prompt_token_lengths(template, tokenizer, records, n_check, seed, counter)
    answers = [r["output"] for r in records] if answers is None else answers
    return prompts + np.fromiter((counter.answer(a) for a in answers), dtype=np.int64, count=len(prompts))


def scored_token_lengths(template, tokenizer, records: Sequence[dict], candidates: Sequence[str]) -> np.ndarray:
    """Prompt + LONGEST candidate per record: every sequence the scorer evaluates (and every DPO pair built from
    it, whose rejected answer may be any candidate) must fit the cutoff."""
    counter = LengthCounter(template, tokenizer)
    longest = max(counter.answer(c) for c in candidates)
    return prompt_token_lengths(template, tokenizer, records, counter=counter) + longest


def check_cutoff(lengths: np.ndarray, cutoff_len: int | None, what: str) -> None:
    """Refuse (ValueError, one line) when any length exceeds cutoff_len (positive, as its config checked): how many,
    the longest, what to set."""
    if cutoff_len is None or not len(lengths):
        return
    over = int((lengths > cutoff_len).sum())
    if over:
        longest = int(lengths.max())
        raise ValueError(
            f"{over} of {len(lengths)} {what} are longer than cutoff_len={cutoff_len} tokens (longest {longest}): "
            f"LLaMA-Factory trains on a truncated prompt there, so set cutoff_len: {longest} (or more) in the "
            "recipe and pass the same --cutoff-len"
        )
