"""`python -m serving predict` at any size; a script, never collected by pytest.

Measured here, with the tiny random Llama on CPU (one torch thread per rank) on the demo profile's data
(12 behaviors, history L = 6):
- baseline: the one-pass path (``serving.predict_files.predict_files``: every user read into memory, one process);
- predict in hash-bucket parts (``serving.parts``) with 1 rank and with 2 torchrun ranks: users per second,
  start-up (model load) included, and whether the two outputs are byte-identical;
- spooling, the part of the work that reads the inputs: events per second routed to a rank's buckets (one rank
  of 8, 64 buckets) from a CSV, and what that makes of 200 M events (10 M users x 20);
- a projection for 10 M users with the 8B recipe on 8 GPUs, from an assumed per-GPU rate (stated), since this
  machine has no GPU.

    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_predict.py [--users 240]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_serve import BEHAVIORS, ENV, ROOT, build_run

L = 6
# The projection's assumptions: ~500-token prompts on Llama-3.1-8B = 2 x 8e9 x 500 = 8 TFLOP per user (one
# instruction template; the candidates' tokens ride on the cached prefix), at 40 % of an H100's 989 dense bf16
# TFLOP/s.
FLOP_PER_USER = 8e12
GPU_FLOPS = 989e12 * 0.40


def write_inputs(work: Path, users: int) -> tuple[Path, Path, int]:
    """Recent events (CSV) of `users` synthetic users and one next context per user, an hour after their last."""
    from data_prep.reading.events import load_events
    from serving.predictor import local_iso

    raw = work / "recent.jsonl"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", str(raw), "--users", str(users), "--days", "2",
                    "--seed", "7", "--behaviors", BEHAVIORS], cwd=ROOT, env=ENV, check=True, capture_output=True)
    table = load_events(raw)
    offsets = table.user_offsets()
    rows, nexts = [], []
    for u, uid in enumerate(table.user_ids):
        lo, hi = int(offsets[u]), int(offsets[u + 1])
        for t, p, b in zip(table.time[lo:hi].tolist(), table.place[lo:hi].tolist(), table.behavior[lo:hi].tolist()):
            rows.append(f"{uid},{local_iso(t)},{table.places[p]},{table.behaviors[b]}\n")
        nexts.append(f"{uid},{local_iso(int(table.time[hi - 1]) + 3600)},home\n")
    events, nxt = work / "recent.csv", work / "next.csv"
    events.write_text("user_id,timestamp,place,behavior\n" + "".join(rows), encoding="utf-8")
    nxt.write_text("user_id,timestamp,place\n" + "".join(nexts), encoding="utf-8")
    return events, nxt, len(table.user_ids)


def timed(cmd: list[str]) -> float:
    env = {**ENV, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - started


BASELINE = """
import sys
from serving.predict_files import ReadOptions, predict_files
from serving.predictor import Predictor
from serving.run import load_run
run = load_run(sys.argv[1], "smollm2")
predict_files(Predictor(run, device="cpu"), sys.argv[2], sys.argv[3], sys.argv[4], ReadOptions(), 5, "2")
"""


def predict_rates(work: Path, users: int) -> None:
    from pipeline.launch import python_module

    run, _, _ = build_run(work / "run", L, tiny=True)
    events, nxt, n = write_inputs(work, users)
    args = ["predict", "--run-dir", str(run), "--template", "smollm2", "--device", "cpu", "--events", str(events),
            "--next", str(nxt), "--buckets", "16"]
    base = timed([sys.executable, "-c", BASELINE, str(run), str(events), str(nxt), str(work / "base.jsonl")])
    one = timed(python_module("serving", *args, "--out", str(work / "one.jsonl")))
    two = timed(python_module("serving", *args, "--out", str(work / "two.jsonl"), nproc=2))
    same = (work / "one.jsonl").read_bytes() == (work / "two.jsonl").read_bytes()
    print(f"predict, tiny model on CPU ({os.cpu_count()} cores, shared), {n} users (wall time, model load "
          f"and torch start-up included; on a few cores 2 ranks pay them twice):")
    print(f"  baseline, one pass in one process : {n / base:7.1f} users/s ({base:.1f} s)")
    print(f"  bucket parts, 1 rank             : {n / one:7.1f} users/s ({one:.1f} s)")
    print(f"  bucket parts, 2 torchrun ranks   : {n / two:7.1f} users/s ({two:.1f} s), "
          f"output byte-identical to 1 rank: {same}")


def spool_rate(work: Path, rows: int = 1_000_000) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from serving.predict_files import ReadOptions
    from serving.spool import spool

    rng = np.random.default_rng(0)
    users = rng.integers(0, rows // 20, rows)
    table = pa.table({"user_id": [f"u{u}" for u in users.tolist()],
                      "timestamp": [f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:00:00" for i in range(rows)],
                      "place": ["home"] * rows, "behavior": ["Music"] * rows})
    path = work / "big.csv"
    pcsv.write_csv(table, path)
    folder = work / "spool"
    folder.mkdir()
    started = time.perf_counter()
    spools, _ = spool(str(path), ReadOptions(), 64, set(range(0, 64, 8)), folder, "events")
    took = time.perf_counter() - started
    kept = sum(len(s.rows) for s in spools.values())
    print(f"spooling {rows:,} CSV events to one rank's 8 of 64 buckets: {rows / took:,.0f} events/s "
          f"({kept:,} kept); 200 M events (10 M users x 20): {2e8 / (rows / took) / 60:.0f} min per rank")


def projection() -> None:
    per_gpu = GPU_FLOPS / FLOP_PER_USER
    hours = 10e6 / (8 * per_gpu) / 3600
    print(f"projection, 10 M users, llama3.1-8b-instruct recipe, 8 GPUs (PREDICT_NPROC=8): assumes {per_gpu:.0f} "
          f"users/s per GPU (8 TFLOP per 500-token prompt at 40 % of an H100's 989 bf16 TFLOP/s; not measured "
          f"here): {hours:.1f} h with one instruction template, {3 * hours:.1f} h with mean; one GPU: "
          f"{8 * hours:.0f} h")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=240)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        predict_rates(work, args.users)
        spool_rate(work)
    projection()
    return 0


if __name__ == "__main__":
    sys.exit(main())
