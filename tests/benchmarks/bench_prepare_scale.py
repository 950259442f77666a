"""Benchmark prepare at any size: not a test, run it as a script (registered in run_all.py as prepare_scale).

    python tests/benchmarks/bench_prepare_scale.py [--events 50000000] [--ray-events 5000000] [--buckets 16]
                                                   [--workdir /tmp/bench_prepare_scale]

1. Writes a Parquet log of N synthetic events (not timed; reused when it exists).
2. Same run, each in its own child process: the in-memory prepare (the baseline) and the out-of-core one
   (--buckets), wall time and peak RSS of each; the ratio is printed against the 1.5x target and the
   written files are checked byte-identical.
3. On a second log of --ray-events events: ENGINE=ray with 2 workers (a local instance, RAY_NUM_CPUS=2)
   against ENGINE=local with the same buckets; wall times and identical output checked.
--events 500000000 runs the 500 M-event figure (disk: ~17 GB of log plus the buckets).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepare import write_log

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
    return {"wall_s": wall, "peak_rss_gb": rss / 2**20}


def digests(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


def log_of(work: Path, n: int) -> Path:
    log = work / f"events_{n}.parquet"
    if not log.exists():
        write_log(log, n)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000_000)
    parser.add_argument("--ray-events", type=int, default=5_000_000)
    parser.add_argument("--buckets", type=int, default=16)
    parser.add_argument("--workdir", default="/tmp/bench_prepare_scale")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    log = log_of(work, args.events)
    mem = run_prepare(log, work / "in_memory")
    ooc = run_prepare(log, work / "out_of_core", "--buckets", str(args.buckets))
    same = digests(work / "in_memory") == digests(work / "out_of_core")
    ratio = ooc["wall_s"] / mem["wall_s"]
    print(f"prepare {args.events:,} events: in memory {mem['wall_s']:.1f}s, peak RSS {mem['peak_rss_gb']:.2f} GB "
          f"(baseline) | out of core, {args.buckets} buckets: {ooc['wall_s']:.1f}s, peak RSS "
          f"{ooc['peak_rss_gb']:.2f} GB -> {ratio:.2f}x the in-memory time (target <= 1.5x: "
          f"{'met' if ratio <= 1.5 else 'not met'}); files byte-identical: {same}")
    ray_log = log_of(work, args.ray_events)
    local = run_prepare(ray_log, work / "ray_local", "--buckets", str(args.buckets))
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ENGINE=ray: skipped (ray is not installed)")
        return
    on_ray = run_prepare(ray_log, work / "ray_ray", "--buckets", str(args.buckets), "--engine", "ray",
                         env={"RAY_NUM_CPUS": "2", "RAY_ADDRESS": ""})
    same_ray = digests(work / "ray_local") == digests(work / "ray_ray")
    print(f"prepare {args.ray_events:,} events, {args.buckets} buckets: ENGINE=local {local['wall_s']:.1f}s "
          f"(baseline) | ENGINE=ray, 2 workers {on_ray['wall_s']:.1f}s (Ray start included; driver peak RSS "
          f"{on_ray['peak_rss_gb']:.2f} GB) -> {on_ray['wall_s'] / local['wall_s']:.2f}x; files byte-identical: "
          f"{same_ray}")
    if not (same and same_ray):
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
