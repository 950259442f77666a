"""Token lengths of samples exactly as LLaMA-Factory tokenizes them, fast enough for every sample of a run.

Training, scoring and evaluation must see the same tokens (issue 9.1): a sample whose prompt + answer is
longer than the recipe's ``cutoff_len`` is trained on a truncated prompt (LLaMA-Factory keeps the answer and
cuts the prompt's end: the answer stem and candidates are lost), while the scorer would see it whole.  We
REFUSE such samples (``check_cutoff``) rather than truncate them as LLaMA-Factory does: a truncated prompt
no longer holds the candidate list or the answer stem, so its score would be meaningless; the fix is a larger
``cutoff_len``, and the message says which.

Counting (``LengthCounter``): LLaMA-Factory encodes each template element with ``tokenizer.encode``; BPE
merges never cross a pre-tokenizer boundary, and with byte-level pre-tokenizers (GPT-2, Llama-3, Qwen2,
SmolLM2) a space preceded by a non-space always starts a new pre-token.  Our prompts join their parts with
", " (history events, candidates), so the user content ``p0, p1, ..., pn`` costs
``len(prompt(p0, pn)) + sum_i len(" " + p_i + ",")``: the outer pair is encoded exactly through the template
(cached: it varies only with the instruction template and the first/last item), the middle pieces are
counted once each and cached.  Every call checks the fast count against the exact encoding on a seeded
sample of records (and the longest one); on any difference it warns and counts every record exactly.
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

    def _count_middle(self, pieces: list[str]) -> int:
        try:
            return sum(map(self._middle.__getitem__, pieces))
        except KeyError:
            encode = self.tokenizer.encode
            for p in pieces:
                if p not in self._middle:
                    self._middle[p] = len(encode(" " + p + ",", add_special_tokens=False))
            return sum(map(self._middle.__getitem__, pieces))

    def fast_prompt(self, record: dict) -> int:
        content = user_content(record)
        pieces = content.split(SEP)
        if len(pieces) < 3 or _UNSAFE.search(content):
            return self.exact_prompt(record)
        system = record.get("system") or ""
        key = (system, pieces[0], pieces[-1])
        if key not in self._outer:
            self._outer[key] = self.exact_prompt({"system": system, "instruction": pieces[0] + SEP + pieces[-1]})
        return self._outer[key] + self._count_middle(pieces[1:-1])


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
    """Refuse (ValueError, one line) when any length exceeds cutoff_len: how many, the longest, what to set."""
    if cutoff_len is None or not len(lengths):
        return
    if cutoff_len <= 0:
        raise ValueError(f"cutoff_len must be positive, got {cutoff_len}")
    over = int((lengths > cutoff_len).sum())
    if over:
        longest = int(lengths.max())
        raise ValueError(
            f"{over} of {len(lengths)} {what} are longer than cutoff_len={cutoff_len} tokens (longest {longest}): "
            f"LLaMA-Factory trains on a truncated prompt there, so set cutoff_len: {longest} (or more) in the "
            "recipe and pass the same --cutoff-len"
        )


def _split_lengths(counter: LengthCounter, path, known: dict[str, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, answer) token lengths of every record of one split file. A line already seen in another split
    is not parsed or counted again: anchor.jsonl and tail_medium.jsonl repeat train_all.jsonl's lines, so the
    check costs what the distinct samples cost."""
    import json

    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    new = [line for line in dict.fromkeys(lines) if line not in known]
    records = []
    for line in new:
        try:
            records.append(json.loads(line))
        except ValueError as err:
            raise ValueError(f"{path}: line {lines.index(line) + 1}: not JSON ({err})") from None
    if records:
        fresh = prompt_token_lengths(counter.template, counter.tokenizer, records, counter=counter)
        known.update((line, (int(n), counter.answer(r["output"]))) for line, r, n in zip(new, records, fresh))
    pairs = np.array([known[line] for line in lines], dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def split_token_budget(dataset_dir, model_path, template_name: str, cutoff_len: int | None,
                       splits: Sequence[str] = ("anchor", "train_all", "tail_medium", "valid", "test_p1", "test_p2")
                       ) -> dict:
    """Token lengths of every prepared split under the recipe's tokenizer and chat template (issue 9.1):
    per split min / median / p99 / max of prompt + answer (what LLaMA-Factory trains on) and the longest
    prompt + longest candidate (what the scorer and DPO see), and the verdict against ``cutoff_len``."""
    from data_prep.prepared import candidate_names, load_stats, resolve_dataset_file

    from .rendering import load_tokenizer_and_template

    tokenizer, template = load_tokenizer_and_template(model_path, template_name)
    counter = LengthCounter(template, tokenizer)
    candidates = candidate_names(load_stats(dataset_dir))
    longest_answer = max(counter.answer(c) for c in candidates)
    report = {"model": str(model_path), "template": template_name, "cutoff_len": cutoff_len, "splits": {}}
    longest_scored, known = 0, {}
    for split in splits:
        prompts, answers = _split_lengths(counter, resolve_dataset_file(dataset_dir, split), known)
        if not len(prompts):
            continue
        total = prompts + answers
        scored = int(prompts.max()) + longest_answer
        longest_scored = max(longest_scored, scored)
        report["splits"][split] = {
            "samples": len(total), "min": int(total.min()), "median": float(np.median(total)),
            "p99": float(np.percentile(total, 99)), "max": int(total.max()),
            "max_prompt_plus_longest_candidate": scored,
            "over_cutoff": int((prompts + longest_answer > cutoff_len).sum()) if cutoff_len else 0}
    report["max_prompt_plus_longest_candidate"] = longest_scored
    report["fits"] = cutoff_len is None or longest_scored <= cutoff_len
    return report


def budget_error(report: dict) -> str | None:
    """One line when some sample does not fit: how many, the longest, the cutoff_len to set."""
    if report["fits"]:
        return None
    over = sum(s["over_cutoff"] for s in report["splits"].values())
    total = sum(s["samples"] for s in report["splits"].values())
    longest = report["max_prompt_plus_longest_candidate"]
    return (f"{over} of {total} prepared samples do not fit cutoff_len={report['cutoff_len']} with their longest "
            f"candidate (longest {longest} tokens): LLaMA-Factory would train on truncated prompts. Set "
            f"cutoff_len: {longest} (or more) in the recipes, or shorten the prompts (HISTORY_LEN, fewer behaviors)")
