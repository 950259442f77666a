"""The token budget of a prepared run: every split's token lengths under the recipe's tokenizer and chat template.

Target: at most 15 s on the 200k + 50k + 50k prepare, where the split files hold 570k records (1 GB of
JSON). Two things make that cost: importing transformers + LLaMA-Factory (~8 s on 2 cores, most of it
``AutoTokenizer``'s import of the model registry) and touching every record. So the tokenizer loads in a
background thread while the main thread reads the files with Arrow (its JSON reader and string kernels
release the GIL, so both cores work), and the per-record work is vectorised: each user turn is split on
", " into pieces by Arrow, the distinct pieces (a few hundred) are counted once by the tokenizer, and a
record's prompt length is the exact length of its outer pair plus a cumulative sum over its middle pieces:
the same decomposition as :class:`~scoring.lengths.LengthCounter` (see why it is exact there), checked
against LLaMA-Factory's own encoding on a few records of every batch. A record the decomposition does not
cover (fewer than three pieces, ", " followed by more whitespace) is counted exactly; a batch whose check
fails is counted exactly, record by record, with a warning.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .lengths import SEP, LengthCounter

logger = logging.getLogger(__name__)

CHECKED_SPLITS = ("anchor", "train_all", "tail_medium", "valid", "test_p1", "test_p2")
FIELDS = ("system", "instruction", "input", "output")
BLOCK_BYTES = 1 << 24  # Arrow's JSON block; a longer line makes the reader fail and the file is read by Python
CHECKS_FIRST_BATCH, CHECKS_PER_BATCH = 64, 4  # seeded rows checked against the exact encoding


@dataclass
class _Batch:
    """One block of records reduced to integer codes: what remains to be done once the tokenizer is loaded."""
    middle: list[str]  # distinct pieces (first and last ones included: they cost a lookup, never a sum)
    middle_ids: np.ndarray  # int32, every middle piece of every record, record by record
    bounds: np.ndarray  # int64 [n + 1]: record i's middle pieces are middle_ids[bounds[i]:bounds[i + 1]]
    outer: list[tuple[str, str, str]]  # distinct (system, first piece, last piece)
    outer_ids: np.ndarray  # int64 [n]
    answers: list[str]
    answer_ids: np.ndarray  # int32 [n]
    exact: dict[int, dict]  # records counted exactly (not decomposable), by row
    checks: dict[int, dict]  # a few seeded rows and the longest one, checked against the exact encoding


def _column(table, name: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in table.column_names:
        return pa.array([""] * table.num_rows, pa.string())
    column = table[name].combine_chunks().cast(pa.string())
    return pc.fill_null(column, "") if column.null_count else column


def _user_content(table):
    """``user_content`` for every row: instruction, "\n", input, each part only when non-empty."""
    import pyarrow.compute as pc

    instruction, extra = _column(table, "instruction"), _column(table, "input")
    if not pc.any(pc.not_equal(extra, "")).as_py():  # prepare writes no input: skip a copy of every prompt
        return instruction
    both = pc.binary_join_element_wise(instruction, extra, "\n")
    return pc.if_else(pc.equal(extra, ""), instruction, pc.if_else(pc.equal(instruction, ""), extra, both))


def _codes(array) -> tuple[list[str], np.ndarray]:
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(array)
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False)


def _reduce(table, rng: np.random.Generator, n_check: int) -> _Batch:
    """Arrow work only (no tokenizer): pieces, their distinct values and codes, rows to check or count exactly."""
    import pyarrow.compute as pc

    n = table.num_rows
    content, system = _user_content(table), _column(table, "system")
    pieces = pc.split_pattern(content, SEP)
    offsets = pieces.offsets.to_numpy()
    sizes = np.diff(offsets)
    flat = pieces.values
    inner = np.ones(len(flat), dtype=bool)
    inner[offsets[:-1]] = False
    inner[offsets[1:] - 1] = False
    distinct, piece_ids = _codes(flat)  # first, middle and last pieces share one dictionary: one hash pass
    middle_ids, first_ids, last_ids = piece_ids[inner], piece_ids[offsets[:-1]], piece_ids[offsets[1:] - 1]
    bounds = np.concatenate([[0], np.cumsum(np.maximum(sizes - 2, 0))])
    systems, system_ids = _codes(system)
    m = len(distinct)
    keys, outer_ids = np.unique((system_ids.astype(np.int64) * m + first_ids) * m + last_ids, return_inverse=True)
    outer = [(systems[k // m // m], distinct[k // m % m], distinct[k % m]) for k in keys.tolist()]
    answers, answer_ids = _codes(_column(table, "output"))

    # _UNSAFE (", " then whitespace) holds exactly where a piece after a separator starts with whitespace
    # (", " cannot overlap itself, so every occurrence is a split point): test the distinct pieces only.
    def starts_blank(values: list[str]) -> np.ndarray:
        return np.array([v[:1].isspace() for v in values] or [False])

    blank_piece = starts_blank(distinct)
    blank = np.concatenate([[0], np.cumsum(blank_piece[middle_ids])])
    unsafe = (sizes < 3) | (blank[bounds[1:]] > blank[bounds[:-1]]) | blank_piece[last_ids]
    picks = set(rng.choice(n, size=min(n_check, n), replace=False).tolist()) if n else set()
    picks.add(int(pc.utf8_length(content).to_numpy(zero_copy_only=False).argmax()) if n else 0)

    def record(i: int) -> dict:
        return {"system": system[i].as_py(), "instruction": content[i].as_py()}

    return _Batch(distinct, middle_ids, bounds, outer, outer_ids.reshape(-1), answers, answer_ids,
                  {int(i): record(int(i)) for i in np.flatnonzero(unsafe)},
                  {i: record(i) for i in picks if n and not unsafe[i]})


def _lengths(counter: LengthCounter, batch: _Batch) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, answer) tokens of every record of a reduced batch."""
    piece_cost = np.array([counter.middle_piece(p) for p in batch.middle] or [0], dtype=np.int64)
    cumulative = np.concatenate([[0], np.cumsum(piece_cost[batch.middle_ids])])
    middle = cumulative[batch.bounds[1:]] - cumulative[batch.bounds[:-1]]
    outer = np.array([counter.outer(*key) for key in batch.outer] or [0], dtype=np.int64)
    prompts = outer[batch.outer_ids] + middle
    for i, rec in batch.exact.items():
        prompts[i] = counter.exact_prompt(rec)
    for i, rec in batch.checks.items():
        exact = counter.exact_prompt(rec)
        if exact != prompts[i]:
            raise _Mismatch(f"fast token count differs from LLaMA-Factory's encoding ({prompts[i]} vs {exact})")
    answers = np.array([counter.answer(a) for a in batch.answers] or [0], dtype=np.int64)[batch.answer_ids]
    return prompts, answers


class _Mismatch(Exception):
    pass


def _read_batches(path: Path):
    """Arrow record batches of a JSONL split file (the four alpaca fields as strings)."""
    import pyarrow as pa
    import pyarrow.json as pj

    if path.stat().st_size == 0:
        return
    schema = pa.schema([(name, pa.string()) for name in FIELDS])
    reader = pj.open_json(path, read_options=pj.ReadOptions(block_size=BLOCK_BYTES),
                          parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    for batch in reader:
        yield pa.Table.from_batches([batch])


def _python_lengths(counter: LengthCounter, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every record of one file counted exactly through the template (the slow, sure way)."""
    from tqdm.auto import tqdm

    from data_prep.writing.outputs import iter_jsonl

    prompts, answers = [], []
    for rec in tqdm(iter_jsonl(path), desc=f"token lengths ({path.name}, exact)", unit=" records"):
        prompts.append(counter.exact_prompt(rec))
        answers.append(counter.answer(rec["output"]))
    return np.array(prompts, dtype=np.int64), np.array(answers, dtype=np.int64)


class _TokenizerLoader(threading.Thread):
    """Imports transformers + LLaMA-Factory and loads the tokenizer and template while Arrow reads; then runs
    `then` (reading the split files the main thread has not taken yet), so both cores count to the end."""

    def __init__(self, model_path, template_name: str, then=None):
        super().__init__(daemon=True)
        self.args, self.then, self.loaded = (model_path, template_name), then, threading.Event()
        self.counter, self.error, self.then_error = None, None, None

    def run(self):
        from .rendering import load_tokenizer_and_template

        try:
            tokenizer, template = load_tokenizer_and_template(*self.args)
            self.counter = LengthCounter(template, tokenizer)
        except BaseException as err:  # re-raised in the main thread by result()
            self.error = err
            return
        finally:
            self.loaded.set()
        if self.then is not None:
            try:
                self.then()
            except BaseException as err:  # re-raised in the main thread by finish()
                self.then_error = err

    def result(self) -> LengthCounter:
        self.loaded.wait()
        if self.error is not None:
            raise self.error
        return self.counter

    def finish(self) -> None:
        self.join()
        if self.then_error is not None:
            raise self.then_error


class _Files:
    """Reduced batches of every split file; counted as soon as the tokenizer is there, so reading never waits
    for the import (the split files are read while it runs) and memory holds codes, not text.

    anchor and tail_medium repeat train_all's records; looking them up (Arrow's index_in) instead of counting
    them again measured slower (16 s vs 13 s on the bench) and took 3 GB, so every file is counted."""

    def __init__(self, loader: _TokenizerLoader):
        self.loader, self.batches, self.exact = loader, {}, set()
        self.lock = threading.Lock()  # a fast tokenizer must not encode in two threads at once

    def read(self, path: Path, seed: int = 0) -> None:
        import pyarrow as pa

        rng, self.batches[path] = np.random.default_rng(seed), []
        try:
            for table in _read_batches(path):
                n_check = CHECKS_PER_BATCH if self.batches[path] else CHECKS_FIRST_BATCH
                self.batches[path].append(_reduce(table, rng, n_check))
                if self.loader.loaded.is_set():  # tokenizer ready: count now, keep nothing but the lengths
                    self.count(path)
        except pa.ArrowInvalid as err:  # a line Arrow cannot read (too long, not JSON): Python names the line
            logger.warning("%s: Arrow's JSON reader failed (%s): counting every record exactly", path, err)
            self.exact.add(path)

    def count(self, path: Path) -> None:
        batches = self.batches[path]
        try:
            with self.lock:
                batches[:] = [_lengths(self.loader.result(), b) if isinstance(b, _Batch) else b for b in batches]
        except _Mismatch as err:
            logger.warning("%s: %s: counting every record exactly (slower)", path, err)
            self.exact.add(path)

    def lengths(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(prompt, answer) token lengths of every record of one file, in file order."""
        self.count(path)
        if path in self.exact:
            return _python_lengths(self.loader.result(), path)
        done = self.batches[path]
        if not done:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate([d[0] for d in done]), np.concatenate([d[1] for d in done])


def split_token_budget(dataset_dir, model_path, template_name: str, cutoff_len: int | None,
                       splits: Sequence[str] = CHECKED_SPLITS) -> dict:
    """Token lengths of every prepared split under the recipe's tokenizer and chat template:
    per split min / median / p99 / max of prompt + answer (what LLaMA-Factory trains on) and the longest
    prompt + longest candidate (what the scorer and DPO see), and the verdict against ``cutoff_len``."""
    from data_prep.prepared import candidate_names, load_stats, resolve_dataset_file

    candidates = candidate_names(load_stats(dataset_dir))
    paths = {split: resolve_dataset_file(dataset_dir, split) for split in splits}
    todo = deque(paths.values())

    def read_remaining() -> None:  # the main thread from the start, the loader's thread once it has loaded
        while todo:
            try:
                path = todo.popleft()
            except IndexError:
                return
            files.read(path)

    loader = _TokenizerLoader(model_path, template_name, then=read_remaining)
    files = _Files(loader)
    loader.start()
    read_remaining()
    loader.finish()
    counter = loader.result()
    longest_answer = max(counter.answer(c) for c in candidates)
    report = {"model": str(model_path), "template": template_name, "cutoff_len": cutoff_len, "splits": {}}
    longest_scored = 0
    for split, path in paths.items():
        prompts, answers = files.lengths(path)
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
