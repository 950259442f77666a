"""`predict` at any size: users in fixed hash buckets, one resumable part per bucket, ranks under torchrun.

A user's bucket is ``blake2b(user_id) % buckets`` of the user id as prepare reads it (text stripped, 12345.0
written 12345), so it never depends on the number of ranks. Rank r of WORLD_SIZE (torchrun, on one or
several nodes sharing the parts folder) predicts the buckets b with ``b % WORLD_SIZE == r`` that have no
finished part yet. It streams --events and --next once per group of its buckets (Parquet row batches, CSV
blocks, JSONL lines) and spools each bucket's rows to its own file in the input's format family (Parquet for
Parquet and CSV/TSV, the raw lines for JSONL), which data_prep's reader then reads with the same columns,
label map, time zone and time format: memory holds one bucket, not every user. --events may be several files
as prepare's INPUT (a directory, hive partitions included, a glob, a URI): each file is spooled on its own and
a bucket's files are merged as prepare merges them (serving.spool).

A bucket's part is ``part-<b>.jsonl`` (its users' output lines, sorted by user_id) and then ``part-<b>.json``
(its key and counts), both written atomically. A rerun, with any number of ranks, reuses a part whose key
equals its own (inputs' digest, bucket count, model, temperature, every prediction and read option) and
predicts it again otherwise. Rank 0 waits for every part, then merges them in user_id order into --out: the
same bytes whatever the number of ranks.

Timestamp detection (epoch milliseconds, slash dates, the half-bad rule) runs on one bucket's rows, as prepare
runs it on each file of a directory INPUT; compact dates and the share of bad timestamps are decided on the whole
file while it is spooled (serving.spool.TimeCensus).
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm import tqdm

from data_prep.config import resolve_columns
from data_prep.reading.events import PrepareError
from data_prep.writing.outputs import atomic_open, write_json, write_jsonl
from serving.config import PredictFilesConfig, PredictionConfig
from serving.predict_files import CHUNK, ReadOptions, build_queries, read_next
from serving.predictor import error_line, result_line
from serving.queries import BehaviorNames
from serving.run import RunInfo, ServingError
from serving.spool import ALL_DROPPED, Spool, as_input_error, input_digest, read_spooled_events, spool, spool_inputs

GROUP = 128            # buckets spooled in one pass over the inputs (open files, spool disk)
EXIT_HOOK = "PREDICT_EXIT_AFTER_PARTS"   # tests: this process exits after writing that many parts


def dist_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Job:
    """What every part of one predict run shares."""
    run: RunInfo
    events: str
    next_path: str
    opts: ReadOptions
    top_k: int
    mode: str
    buckets: int
    folder: Path            # the parts
    key: dict


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def folder_stamp(path: Path | None) -> str | None:
    """The files of a model or adapter folder by name, size and modification time: a retrained model in the same
    place is another model."""
    if path is None:
        return None
    files = sorted(p for p in Path(path).iterdir() if p.is_file())
    text = "\n".join(f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in files)
    return hashlib.sha256(text.encode()).hexdigest()


def part_key(run: RunInfo, events: str, next_path: str, opts: ReadOptions, top_k: int, mode: str, buckets: int,
             cutoff_len: int | None) -> dict:
    """What makes two parts of the same bucket interchangeable; not how many ranks wrote them."""
    return {"events_sha256": input_digest(events, opts.fmt), "next_sha256": file_digest(next_path), "buckets": buckets,
            "model": str(run.model_path.resolve()),
            "adapter": str(run.adapter_path.resolve()) if run.adapter_path else None,
            "model_files": folder_stamp(run.model_path), "adapter_files": folder_stamp(run.adapter_path),
            "run": str(run.run_dir.resolve()), "template": run.template, "behaviors": run.behaviors,
            "history_len": run.history_len, "seed": run.seed, "temperature": run.temperature(mode),
            "cutoff_len": cutoff_len, "top_k": top_k, "instruction_template": mode, "read": asdict(opts)}


def part_paths(folder: Path, b: int) -> tuple[Path, Path]:
    return folder / f"part-{b:05d}.jsonl", folder / f"part-{b:05d}.json"


def finished(job: Job, b: int) -> dict | None:
    """The part manifest of bucket b when its part is finished with this run's key, else None."""
    lines, meta = part_paths(job.folder, b)
    if not (lines.is_file() and meta.is_file()):
        return None
    try:
        manifest = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return None
    return manifest if manifest.get("key") == job.key else None


def _first_value(sp: Spool, fmt: str, column: str):
    """The raw value of `column` in a spool's first row."""
    if fmt == "jsonl":
        with open(sp.path, encoding="utf-8") as f:
            return json.loads(f.readline()).get(column)
    import pyarrow.parquet as pq

    return pq.read_table(sp.path, columns=[column]).column(0)[0].as_py()


def _read_next(job: Job, sp: Spool, fmt: str) -> tuple[dict, dict]:
    try:
        return read_next(str(sp.path), replace(job.opts, fmt=fmt))
    except (PrepareError, ServingError) as err:
        every = ALL_DROPPED.search(str(err))
        if every:
            value = _first_value(sp, fmt, resolve_columns(job.opts.columns)["time"])
            what = f"unparseable timestamp {value!r}" if "bad_timestamp" in every.group(1) else every.group(1)
            raise ServingError(f"{job.next_path}: row {sp.rows[0]}: {what} (every user needs a valid next-event "
                               f"timestamp)") from None
        raise as_input_error(err, sp, job.next_path) from None


def _read_bucket(job: Job, b: int, ev: dict, nx: dict, next_fmt: str):
    histories, dropped = read_spooled_events(ev[b], job.opts) if b in ev else ({}, {})
    contexts, errors = _read_next(job, nx[b], next_fmt) if b in nx else ({}, {})
    return histories, dropped, contexts, errors


def predict_bucket(job: Job, predictor, b: int, ev: dict, nx: dict, next_fmt: str) -> dict:
    """Predict bucket b's users and write its part (lines, then manifest); returns the manifest.
    ev: bucket -> its events' spools (spool_inputs); nx: bucket -> its --next spool."""
    run = job.run
    histories, dropped, contexts, errors = _read_bucket(job, b, ev, nx, next_fmt)
    names = BehaviorNames(run.behaviors, job.opts.label_map)
    queries, errors = build_queries(histories, contexts, errors, run, names, job.top_k, job.mode)
    preds = []
    for lo in range(0, len(queries), CHUNK):
        preds += predictor.predict(queries[lo:lo + CHUNK])
    lines = {p.query.user_id: result_line(p, run) for p in preds}
    lines.update({uid: error_line(uid, message, run, job.mode) for uid, message in errors.items()})
    out, meta = part_paths(job.folder, b)
    write_jsonl(out, (lines[uid] for uid in sorted(lines)))
    manifest = {"key": job.key, "bucket": b, "users": len(lines),
                "predicted": sum("top" in v for v in lines.values()),
                "errors": sum("error" in v for v in lines.values()),
                "short_history": sum("warning" in v for v in lines.values()), "dropped_events": dropped}
    write_json(meta, manifest)
    return manifest


def _exit_hook(written: int) -> None:
    limit = os.environ.get(EXIT_HOOK)
    if limit and written >= int(limit):
        print(f"{EXIT_HOOK}={limit}: exiting after {written} parts", file=sys.stderr, flush=True)
        os._exit(3)


def predict_mine(job: Job, new_predictor: Callable, rank: int, world: int) -> tuple[int, int]:
    """This rank's buckets without a finished part: spooled a group at a time, predicted, written.
    Returns (parts predicted now, parts reused)."""
    mine = [b for b in range(job.buckets) if b % world == rank]
    todo = [b for b in mine if finished(job, b) is None]
    predictor, written = None, 0
    bar = tqdm(total=len(todo), desc=f"predicting (rank {rank})", unit="part", disable=None if rank == 0 else True)
    for lo in range(0, len(todo), GROUP):
        group = todo[lo:lo + GROUP]
        spool_dir = job.folder / f".spool-{rank}-{os.getpid()}"
        spool_dir.mkdir(parents=True, exist_ok=True)
        try:
            ev = spool_inputs(job.events, job.opts, job.buckets, set(group), spool_dir, "events")
            nx, f_nx = spool(job.next_path, job.opts, job.buckets, set(group), spool_dir, "next",
                             columns=next_columns(job.opts))
            predictor = predictor or new_predictor()
            for b in group:
                predict_bucket(job, predictor, b, ev, nx, f_nx)
                written += 1
                bar.update(1)
                _exit_hook(written)
        finally:
            shutil.rmtree(spool_dir, ignore_errors=True)
    bar.close()
    return written, len(mine) - len(todo)


def next_columns(opts: ReadOptions) -> dict:
    """--next has no behavior column: the user column stands in for it (as batch.read_next reads it)."""
    cols = dict(opts.columns or {})
    cols["behavior"] = cols.get("user", "user_id")
    return cols


# ---- rank 0: wait for every part, merge ----------------------------------------------------------------------
def wait_for_parts(job: Job, poll_s: float = 2.0, timeout_s: float = 24 * 3600) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        manifests = [finished(job, b) for b in range(job.buckets)]
        if all(manifests):
            return manifests
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job.folder}: other ranks did not finish; rerun to resume and merge")
        time.sleep(poll_s)


def _keyed_lines(path: Path) -> Iterator[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["user_id"], line


def merge_parts(job: Job, out: str) -> None:
    """Every part's lines in user_id order into `out`, atomically (a user is in exactly one part)."""
    streams = [_keyed_lines(part_paths(job.folder, b)[0]) for b in range(job.buckets)]
    with atomic_open(out) as f:
        f.writelines(line for _, line in heapq.merge(*streams, key=lambda kv: kv[0]))


def totals(manifests: list[dict]) -> dict:
    counts = {k: sum(m[k] for m in manifests) for k in ("users", "predicted", "errors", "short_history")}
    dropped: dict[str, int] = {}
    for m in manifests:
        for k, v in m["dropped_events"].items():
            dropped[k] = dropped.get(k, 0) + v
    return {**counts, "dropped_events": dropped}


def predict_parts(run: RunInfo, new_predictor: Callable, events: str, next_path: str, out: str,
                  opts: ReadOptions, prediction: PredictionConfig, files: PredictFilesConfig | None = None,
                  parts: str | None = None, cutoff_len: int | None = None, log=print) -> dict | None:
    """This rank's share of a predict run; on rank 0 also the merge. Returns the counts on rank 0, else None."""
    top_k, mode, buckets = prediction.top_k, prediction.instruction_template, (files or PredictFilesConfig()).buckets
    rank, world = dist_env()
    folder = Path(parts) if parts else Path(f"{out}.parts")
    folder.mkdir(parents=True, exist_ok=True)
    job = Job(run, events, next_path, opts, top_k, mode, buckets, folder,
              part_key(run, events, next_path, opts, top_k, mode, buckets, cutoff_len))
    now, reused = predict_mine(job, new_predictor, rank, world)
    log(f"rank {rank}/{world}: {now} parts predicted now, {reused} reused ({folder})", file=sys.stderr, flush=True)
    if rank != 0:
        return None
    manifests = wait_for_parts(job)
    merge_parts(job, out)
    counts = totals(manifests)
    if counts["dropped_events"]:
        log(f"warning: {events}: events dropped by prepare's rules: "
            + ", ".join(f"{k}={v}" for k, v in sorted(counts["dropped_events"].items())), file=sys.stderr)
    return counts
