"""Benchmark `prepare` at the paper's scale: not a test, run it as a script.

    python tests/benchmarks/bench_prepare.py [--events 50000000] [--workdir /tmp/bench_prepare]

1. Writes a Parquet log of N synthetic events (not timed; reused when it already exists).
2. Times the whole prepare in a child process: load -> samples -> 200,000 train + 50,000 valid + 50,000
   protocol-1 + protocol-2 (500 per behavior) rendered and written, auxiliary conversations included;
   prints wall time and the child's peak RSS (getrusage).
3. Times a straightforward per-user pandas loop building every window of a 1M-event slice and prints the
   per-event time ratio against the pipeline.
Target: 50 M events in <= 2 min with peak RSS <= 6 GB on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS_PER_DAY, DAYS, L = 25, 60, 20


def write_log(path: Path, n_events: int) -> None:
    n_users = -(-n_events // (EVENTS_PER_DAY * DAYS))
    code = ("import sys; from data_prep.synthetic import write_events; "
            f"n = write_events(sys.argv[1], n_users={n_users}, n_days={DAYS}, seed=0, progress=True); "
            "print(n)")
    t0 = time.perf_counter()
    rows = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip()
    print(f"wrote {rows} events for {n_users} users to {path} in {time.perf_counter() - t0:.1f}s (not timed)")


CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from data_prep.reading.events import load_events
from data_prep.sampling.auxiliary import DEFAULT_AUX_PATH
from data_prep.config import PrepareConfig
from data_prep.prepare import prepare
table = load_events(sys.argv[1])
t1 = time.perf_counter()
stats = prepare(table, sys.argv[2], PrepareConfig(train_cap=200_000, valid_cap=50_000, test_cap=50_000,
                                                  p2_per_behavior=500, eps=0.05 if DEFAULT_AUX_PATH.exists() else 0))
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "prepare_s": t2 - t1, "events": len(table.user),
                  "samples": stats["samples"],
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def time_pipeline(log: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, str(log), str(out)], check=False, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"})
    if result.returncode:
        sys.exit(f"prepare failed:\n{result.stderr}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["wall_s"] = time.perf_counter() - t0
    figures["peak_rss_children_gb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return figures


def naive_pandas_windows(log: Path, n_events: int) -> tuple[float, int]:
    """The straightforward approach: pandas, group by user, a Python loop over every window."""
    import pandas as pd
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(log)
    batches, n = [], 0
    for batch in pf.iter_batches(batch_size=1 << 20):
        batches.append(batch.to_pandas())
        n += len(batches[-1])
        if n >= n_events:
            break
    df = pd.concat(batches).iloc[:n_events]
    t0 = time.perf_counter()
    df = df.sort_values(["user_id", "timestamp"], kind="stable")
    when = pd.to_datetime(df["timestamp"], unit="s")
    df = df.assign(weekday=when.dt.day_name(), hour=when.dt.hour)
    samples = []
    for _, g in df.groupby("user_id", sort=True):
        rows = list(zip(g["weekday"], g["hour"], g["place"], g["behavior"]))
        for i in range(L, len(rows)):
            samples.append((rows[i - L:i], rows[i][3], rows[i][:3]))
    return time.perf_counter() - t0, len(df)


def time_token_check(data: Path, prepare_s: float) -> None:
    """The token check over every prepared sample (what `make prepare` / A-tune run after prepare),
    with the SmolLM2 tokenizer and chat template; target <= 15 s extra on the 200k + 50k + 50k prepare."""
    model = ROOT / ".cache" / "smollm2-135m-instruct"
    if not (model / "tokenizer.json").is_file():
        print(f"token check: skipped (no {model}; make smollm2 converts it)")
        return
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scoring", "token-lengths", "--dataset-dir", str(data), "--model",
                    str(model), "--template", "smollm2", "--cutoff-len", "2048", "--out", str(data.parent / "tl.json")],
                   check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    wall = time.perf_counter() - t0
    report = json.loads((data.parent / "tl.json").read_text())
    n = sum(s["samples"] for s in report["splits"].values())
    print(f"token check: {n:,} samples (every split) counted as LLaMA-Factory encodes them in {wall:.1f}s wall "
          f"(process start and tokenizer load included; {wall / prepare_s:.0%} of prepare's wall time); "
          f"target <= 15 s: {'met' if wall <= 15 else 'not met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000_000)
    parser.add_argument("--workdir", default="/tmp/bench_prepare")
    parser.add_argument("--naive-events", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"events_{args.events}.parquet"
    if not log.exists():
        write_log(log, args.events)
    fig = time_pipeline(log, work / "data")
    per_event = fig["wall_s"] / fig["events"]
    print(f"prepare: {fig['events']:,} events -> {fig['samples']} in {fig['wall_s']:.1f}s wall "
          f"(load {fig['load_s']:.1f}s, samples+render+write {fig['prepare_s']:.1f}s), "
          f"peak RSS {fig['peak_rss_gb']:.2f} GB")
    naive_s, naive_n = naive_pandas_windows(log, args.naive_events)
    naive_per_event = naive_s / naive_n
    print(f"naive per-user pandas loop: {naive_n:,} events in {naive_s:.1f}s; "
          f"per event {naive_per_event * 1e6:.2f} us vs pipeline {per_event * 1e6:.2f} us "
          f"-> {naive_per_event / per_event:.1f}x; naive extrapolated to {fig['events']:,} events: "
          f"{naive_per_event * fig['events']:.0f}s")
    time_token_check(work / "data", fig["wall_s"])
    target = fig["events"] >= 50_000_000
    print("target (50M events <= 120 s, <= 6 GB): "
          + ("met" if target and fig["wall_s"] <= 120 and fig["peak_rss_gb"] <= 6 else
             "not met" if target else "n/a at this size"))


if __name__ == "__main__":
    main()
