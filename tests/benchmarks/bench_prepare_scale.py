"""Benchmark prepare at any size: not a test, run it as a script (registered in run_all.py as prepare_scale).

    python tests/benchmarks/bench_prepare_scale.py [--events 50000000] [--lake-events 500000000] [--parts 100]
                                                   [--ray-events 5000000] [--buckets 16] [--lake-buckets 64]
                                                   [--workdir /tmp/bench_prepare_scale] [--keep]

1. Writes a Parquet log of --events synthetic events (not timed; reused when it exists).
2. Same run, each in its own child process: the in-memory prepare (the baseline) and the out-of-core one
   (--buckets), wall time and peak RSS of each; the ratio is printed against the 1.5x target and the
   written files are checked byte-identical.
3. --lake-events events written as --parts Parquet files (not timed; each part holds its own users, ~1.7 GB
   in all for 500 M events) prepared out of core in --lake-buckets buckets: peak RSS against 8 GB and
   wall time against 12x that of the out-of-core run of step 2 (--lake-events 0 skips it; disk: the log
   plus up to ~30 bytes an event of bucket files while it runs: ~15 GB for 500 M).
4. On a log of --ray-events events: ENGINE=ray with 2 workers (a local instance, RAY_NUM_CPUS=2) against
   ENGINE=local with the same buckets; wall times and identical output checked (--ray-events 0 skips it).
Run directories are removed after each step and the logs at the end, unless --keep.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepare import DAYS, EVENTS_PER_DAY, write_log

ROOT = Path(__file__).resolve().parents[2]
CAPS = ["--train-cap", "200000", "--valid-cap", "50000", "--test-cap", "50000", "--p2-per-behavior", "500"]


def run_prepare(log: Path, out: Path, *extra: str, env: dict | None = None) -> dict:
    """One prepare in a child process: wall seconds and the child's peak RSS (ray workers not included)."""
    code = ("import resource, sys; from data_prep.cli import main; rc = main(sys.argv[1:]); "
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, "prepare", "--input", str(log), "--out", str(out),
                             *CAPS, *extra], check=False, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", **(env or {})})
    wall = time.perf_counter() - t0
    if result.returncode:
        sys.exit(f"prepare {' '.join(extra)} failed:\n{result.stderr[-3000:]}")
    rss = int(next(line for line in result.stdout.splitlines() if line.startswith("RSS")).split()[1])
    return {"wall_s": wall, "peak_rss_gb": rss / 2**20, "load": os.getloadavg()[0]}


def digests(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


def log_of(work: Path, n: int) -> Path:
    log = work / f"events_{n}.parquet"
    if not log.exists():
        write_log(log, n)
    return log


LAKE_WRITER = """
import sys
from pathlib import Path
import pyarrow as pa, pyarrow.parquet as pq
from data_prep.synthetic.catalogue import PLACES
from data_prep.synthetic.generator import behavior_names, iter_event_chunks, user_id_names
root, n_users, days, per_day, parts = Path(sys.argv[1]), *map(int, sys.argv[2:6])
names, rows = behavior_names(), 0
for k, (first, stop, user, time, place, behavior) in enumerate(iter_event_chunks(
        n_users, days, seed=0, chunk_users=-(-n_users // parts), events_per_day=per_day)):
    text = lambda codes, vocab: pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(vocab))
    table = pa.table({"user_id": text(user - first, user_id_names(first, stop, n_users)),
                      "timestamp": pa.array(time, pa.int64()), "place": text(place, PLACES),
                      "behavior": text(behavior, names)})
    pq.write_table(table, root / f"part-{k:05d}.parquet", compression="zstd", row_group_size=1 << 20)
    rows += table.num_rows
(root / "_SUCCESS").write_text(str(rows))
"""


def lake_of(work: Path, n: int, parts: int) -> Path:
    """n synthetic events (the bench_prepare user profile) as about `parts` Parquet files, one chunk of
    users each; reused when complete."""
    lake = work / f"lake_{n}_{parts}"
    if not (lake / "_SUCCESS").exists():
        shutil.rmtree(lake, ignore_errors=True)
        lake.mkdir(parents=True)
        n_users = -(-n // (EVENTS_PER_DAY * DAYS))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", LAKE_WRITER, str(lake), str(n_users), str(DAYS),
                        str(EVENTS_PER_DAY), str(parts)], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        files = list(lake.glob("*.parquet"))
        print(f"wrote {(lake / '_SUCCESS').read_text()} events for {n_users} users as {len(files)} Parquet parts "
              f"({sum(f.stat().st_size for f in files) / 1e9:.2f} GB) to {lake} in {time.perf_counter() - t0:.0f}s "
              f"(not timed)", flush=True)
    return lake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000_000)
    parser.add_argument("--lake-events", type=int, default=500_000_000)
    parser.add_argument("--parts", type=int, default=100)
    parser.add_argument("--ray-events", type=int, default=5_000_000)
    parser.add_argument("--buckets", type=int, default=16)
    parser.add_argument("--lake-buckets", type=int, default=64)
    parser.add_argument("--workdir", default="/tmp/bench_prepare_scale")
    parser.add_argument("--keep", action="store_true", help="keep the logs and run directories")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    log = log_of(work, args.events)
    mem = run_prepare(log, work / "in_memory")
    ooc = run_prepare(log, work / "out_of_core", "--buckets", str(args.buckets))
    same = digests(work / "in_memory") == digests(work / "out_of_core")
    ratio = ooc["wall_s"] / mem["wall_s"]
    print(f"prepare {args.events:,} events: in memory {mem['wall_s']:.1f}s, peak RSS {mem['peak_rss_gb']:.2f} GB "
          f"(baseline) | out of core, {args.buckets} buckets: {ooc['wall_s']:.1f}s, peak RSS "
          f"{ooc['peak_rss_gb']:.2f} GB -> {ratio:.2f}x the in-memory time (target <= 1.5x: "
          f"{'met' if ratio <= 1.5 else 'not met'}); files byte-identical: {same} (1-min load average after each: "
          f"{mem['load']:.1f}, {ooc['load']:.1f})", flush=True)
    tidy(args, work / "in_memory", work / "out_of_core")
    if args.lake_events:
        lake = lake_of(work, args.lake_events, args.parts)
        big = run_prepare(lake, work / "lake_run", "--buckets", str(args.lake_buckets))
        times = big["wall_s"] / ooc["wall_s"]
        n_parts = len(list(lake.glob("*.parquet")))
        print(f"prepare {args.lake_events:,} events in {n_parts} Parquet parts, out of core, {args.lake_buckets} "
              f"buckets: {big['wall_s']:.1f}s ({times:.1f}x the {args.events:,}-event out-of-core run; target "
              f"<= 12x: {'met' if times <= 12 else 'not met'}), peak RSS {big['peak_rss_gb']:.2f} GB (target "
              f"<= 8 GB: {'met' if big['peak_rss_gb'] <= 8 else 'not met'}; 1-min load average after it: "
              f"{big['load']:.1f})", flush=True)
        tidy(args, work / "lake_run", lake)
    same_ray = ray_against_local(args, work) if args.ray_events else True
    tidy(args, log)
    if not (same and same_ray):
        sys.exit("outputs differ")


def ray_against_local(args, work: Path) -> bool:
    """ENGINE=ray with 2 workers against ENGINE=local on --ray-events events; whether the files are equal."""
    ray_log = log_of(work, args.ray_events)
    local = run_prepare(ray_log, work / "ray_local", "--buckets", str(args.buckets))
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ENGINE=ray: skipped (ray is not installed)")
        tidy(args, work / "ray_local", ray_log)
        return True
    on_ray = run_prepare(ray_log, work / "ray_ray", "--buckets", str(args.buckets), "--engine", "ray",
                         env={"RAY_NUM_CPUS": "2", "RAY_ADDRESS": ""})
    same_ray = digests(work / "ray_local") == digests(work / "ray_ray")
    print(f"prepare {args.ray_events:,} events, {args.buckets} buckets: ENGINE=local {local['wall_s']:.1f}s "
          f"(baseline) | ENGINE=ray, 2 workers {on_ray['wall_s']:.1f}s (Ray start included; driver peak RSS "
          f"{on_ray['peak_rss_gb']:.2f} GB) -> {on_ray['wall_s'] / local['wall_s']:.2f}x; files byte-identical: "
          f"{same_ray}", flush=True)
    tidy(args, work / "ray_local", work / "ray_ray", ray_log)
    return same_ray


def tidy(args, *paths: Path) -> None:
    """Remove run directories and logs (the disk they take) unless --keep."""
    if args.keep:
        return
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
