"""Benchmark of SASRec training; a script, never collected by pytest.

    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_sasrec.py [--dataset-dir D] [--workdir /tmp/bench_sasrec]

1. A prepared dataset with 200,000 training windows (L = 20): the embedded synthetic log, 2,000 users x 14 days,
   prepared with the Makefile's caps (not timed; reused when it exists), unless --dataset-dir is given.
2. Reading the windows (with the history contexts parsed from the prompts), timed on its own.
3. Training with the default settings (TrainConfig) until early stopping: time per epoch, epochs, the best validation
   epoch and the wall time up to it (target: <= 10 minutes on this 2-core CPU), then the test predictions.
4. Naive baselines measured in the same run: (a) speed: the same model trained one window per step (an
   unbatched loop) against the batched steps, back to back, extrapolated to an epoch; (b) accuracy: the
   most-frequent and per-user Markov references of `python -m evaluation baseline` on the same test splits.
The machine is shared: the load average is printed at the start and the end, and CPU time beside wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from evaluation.baselines import run_baseline  # noqa: E402
from evaluation.files import load_predictions  # noqa: E402
from evaluation.metrics import metrics_from_predictions  # noqa: E402
from sasrec import train as st  # noqa: E402
from sasrec.model import SASRec  # noqa: E402


def prepared(args) -> Path:
    if args.dataset_dir:
        return Path(args.dataset_dir)
    data = Path(args.workdir) / "data"
    if not (data / "stats.json").is_file():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "data_prep", "prepare", "--synthetic", "--users", str(args.users),
                        "--days", str(args.days), "--train-cap", "200000", "--valid-cap", "50000",
                        "--test-cap", "50000", "--out", str(data)], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        print(f"prepared {data} in {time.perf_counter() - t0:.0f} s (not timed)")
    return data


def step_seconds(model: SASRec, t: dict, batch: int, steps: int) -> float:
    """CPU-process seconds per window of `steps` training steps of `batch` windows (the loss of sasrec.train)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    model.train()
    start = time.process_time()
    for s in range(steps):
        idx = torch.arange(s * batch, (s + 1) * batch)
        beh, wd, hr, pl, y = (t[k][idx] for k in ("behavior", "weekday", "hour", "place", "label"))
        logits = model(beh, wd, hr, pl)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                               torch.cat([beh[:, 1:], y[:, None]], 1).reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.process_time() - start) / (steps * batch)


def accuracy_rows(pred_dir: Path, stats: dict) -> dict:
    out = {}
    for split in ("test_p1", "test_p2"):
        rows, _ = load_predictions(pred_dir, split)
        m = metrics_from_predictions(rows, stats)
        out[split] = m["rec_w"] if split == "test_p1" else (m["overall"], m["tail"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-dir")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "bench_sasrec"))
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--unbatched-windows", type=int, default=256)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    data_dir = prepared(args)
    settings, tcfg = st.load_config(args.config, args.overrides)
    t0 = time.perf_counter()
    data = st.load_splits(data_dir, tcfg.valid_cap, tcfg.seed)
    print(f"read {len(data['train'])} train, {len(data['valid'])} valid windows "
          f"(history contexts parsed from the prompts) in {time.perf_counter() - t0:.1f} s")
    cfg = st.model_config(data["stats"], data["places"], data["train"], settings)

    # naive speed baseline first, back to back with the batched steps it is compared to
    st.set_determinism(tcfg.seed, tcfg.threads, "cpu")
    t = st.to_tensors(data["train"], "cpu")
    batched = step_seconds(SASRec(cfg), t, tcfg.batch_size, max(1, 2560 // tcfg.batch_size))
    unbatched = step_seconds(SASRec(cfg), t, 1, args.unbatched_windows)
    n = len(data["train"])
    print(f"training CPU time per window: batched ({tcfg.batch_size}) {batched * 1e3:.3f} ms, unbatched loop "
          f"{unbatched * 1e3:.3f} ms ({unbatched / batched:.1f}x); one epoch of {n} windows: "
          f"{batched * n:.0f} s batched vs {unbatched * n:.0f} s unbatched (CPU time)")

    wall0, cpu0 = time.perf_counter(), time.process_time()
    model, result = st.fit(data["train"], data["valid"], cfg, tcfg, "cpu")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    for h in result["history"]:
        print(f"  epoch {h['epoch']}: {h['seconds']:.1f} s (incl. validation), loss {h['train_loss']:.4f}, "
              f"valid accuracy {h['valid_accuracy']:.4f}")
    per_epoch = sum(h["seconds"] for h in result["history"]) / result["epochs"]
    print(f"SASRec: {result['epochs']} epochs, {per_epoch:.1f} s per epoch (wall); best validation epoch "
          f"{result['epoch']} reached after {result['seconds_to_best']:.0f} s (target <= 600 s); all epochs "
          f"{wall:.0f} s wall, {cpu:.0f} s CPU ({cpu / wall:.2f} of one core)")

    eval_dir = Path(args.workdir) / "eval"
    st.write_outputs(model, data, result, tcfg, eval_dir / "sasrec", {"dataset_dir": str(data_dir)})
    for kind in ("most-frequent", "markov"):
        for split in ("test_p1", "test_p2"):
            run_baseline(data_dir, kind, split, eval_dir / kind)
    print("| model | Rec_w (P1) | Overall (P2) | Tail (P2) |\n|---|---:|---:|---:|")
    for name in ("sasrec", "most-frequent", "markov"):
        acc = accuracy_rows(eval_dir / name, data["stats"])
        print(f"| {name} | {acc['test_p1']:.4f} | {acc['test_p2'][0]:.4f} | {acc['test_p2'][1]:.4f} |")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
