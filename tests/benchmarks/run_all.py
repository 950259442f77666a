"""`make bench`: every benchmark script under tests/benchmarks/, one after the other, each printing its own
figures beside a naive baseline measured in the same run. `python tests/benchmarks/run_all.py [name ...]` runs
a subset (e.g. `prepare selection`)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = []
    for script in scripts:
        print(f"\n######## {script.name} ########", flush=True)
        start = time.perf_counter()
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(script.name)
        print(f"######## {script.name}: {time.perf_counter() - start:.0f} s ########", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
