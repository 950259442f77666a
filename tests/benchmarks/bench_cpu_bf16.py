"""Benchmark of bf16 on the CPU (CPU_BF16): training step time and scoring speed and agreement; a script, never a test.

1. Scoring (the scorer of `make score` and `make eval`) of the demo's 161 test samples on the same checkpoints in
   fp32 and bf16, batch by batch alternately: seconds per sample of each, and how often the two agree on the
   top-1 candidate (the quality check: at least 95 %). Checkpoints: the base SmolLM2 and, when a demo run is
   there, its pi_ref and its final model (pi_ref + the DPO adapter).
2. The demo's A-tune (recipes/smollm2-135m-instruct/atune_lora_sft.yaml, the demo profile's data and ATUNE_ARGS) through
   LLaMA-Factory's own training entry point, a few optimizer steps per variant: fp32 with gradient checkpointing
   (the recipes before), bf16 with checkpointing, bf16 without (the recipes now: use_cpu=true bf16=true, as the
   pipeline passes them). Each variant runs in its own process, the variants interleaved and repeated; a callback
   times every optimizer step, so the figures are the minimum and median step times (the machine may be shared).

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_cpu_bf16.py [--steps 4] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
RECIPE = ROOT / "recipes" / "smollm2-135m-instruct" / "atune_lora_sft.yaml"
BF16 = {"use_cpu": True, "bf16": True}
VARIANTS = {  # name -> overrides of the recipe
    "fp32, checkpointing on (before)": {"bf16": False, "disable_gradient_checkpointing": False},
    "bf16, checkpointing on": {**BF16, "disable_gradient_checkpointing": False},
    "bf16, checkpointing off (now)": {**BF16, "disable_gradient_checkpointing": True},
}
AGREEMENT_MIN = 0.95


# ---- 1. training steps ----
def train_worker(config_path: str) -> None:
    """One training run in this process; writes {"steps": [seconds per optimizer step], "loss": [...]}."""
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    config = json.loads(Path(config_path).read_text())
    out, args = config["result"], config["args"]
    steps: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            steps.append(time.perf_counter() - self.start)

    run_exp(args, callbacks=[StepTimer()])
    history = json.loads((Path(args["output_dir"]) / "trainer_state.json").read_text())["log_history"]
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps({"steps": steps, "loss": [h["loss"] for h in history if "loss" in h],
                                     "peak_rss_mb": peak_mb}))


def demo_profile() -> dict[str, str]:
    from pipeline.demo import read_profile

    return read_profile(ROOT / "recipes" / "smollm2-135m-instruct" / "demo.env")


def recipe_args(model: Path, data: Path, out: Path, steps: int, overrides: dict) -> dict:
    import yaml

    args = yaml.safe_load(RECIPE.read_text())
    for word in demo_profile()["ATUNE_ARGS"].split():
        key, _, value = word.partition("=")
        args[key] = yaml.safe_load(value)
    args.update(model_name_or_path=str(model), dataset_dir=str(data), output_dir=str(out), max_steps=steps,
                eval_strategy="no", save_strategy="no", load_best_model_at_end=False, plot_loss=False,
                logging_steps=1, **overrides)
    return args


def bench_training(model: Path, data: Path, work: Path, steps: int, repeats: int) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for rep in range(repeats):
        for i, (name, overrides) in enumerate(VARIANTS.items()):
            out = work / f"train-{i}-{rep}"
            config = work / f"train-{i}-{rep}.json"
            config.write_text(json.dumps({"result": str(out) + ".result.json",
                                          "args": recipe_args(model, data, out, steps, overrides)}))
            proc = subprocess.run([sys.executable, __file__, "--train-worker", str(config)], cwd=ROOT,
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{name}: training failed\n{proc.stderr[-3000:]}")
            runs[name].append(json.loads(Path(str(out) + ".result.json").read_text()))
            print(f"  {name}, repeat {rep + 1}: steps " + " ".join(f"{s:.1f}" for s in runs[name][-1]["steps"])
                  + " s", flush=True)
    summary = {}
    for name, results in runs.items():
        times = [s for r in results for s in r["steps"]]
        summary[name] = {"min_s": min(times), "median_s": statistics.median(times), "steps": len(times),
                         "loss_first_run": results[0]["loss"],
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}
    return summary


# ---- 2. scoring ----
def bench_scoring(checkpoints: dict[str, tuple[Path, Path | None]], data: Path, batch_size: int) -> dict[str, dict]:
    import numpy as np
    import torch

    from data_prep.prepared import load_prepared
    from scoring.scorer import CandidateScorer

    records, candidates = [], None
    for split in ("test_p1", "test_p2"):
        prepared = load_prepared(data, split)
        records += prepared.records
        candidates = prepared.candidates
    result = {}
    for name, (model, adapter) in checkpoints.items():
        scorers = {d: CandidateScorer(model, "smollm2", adapter, batch_size, "cpu", getattr(torch, d))
                   for d in ("float32", "bfloat16")}
        encoder = scorers["float32"].encoder(candidates, records[0])
        preds = {d: [] for d in scorers}
        per_sample = {d: [] for d in scorers}  # seconds per sample of each batch
        for start in range(0, len(records), batch_size):
            batch = records[start:start + batch_size]
            order = list(scorers) if (start // batch_size) % 2 == 0 else list(reversed(scorers))
            for d in order:  # alternately first: neither dtype always gets the warmer cache
                begin = time.perf_counter()
                preds[d].append(scorers[d].score(batch, candidates, False, encoder).pred_id)
                per_sample[d].append((time.perf_counter() - begin) / len(batch))
        p32, p16 = np.concatenate(preds["float32"]), np.concatenate(preds["bfloat16"])
        # the median batch: a shared machine slows some batches of either dtype several times over
        result[name] = {"samples": len(records), "agreement": float((p32 == p16).mean()),
                        "fp32_s_per_sample": statistics.median(per_sample["float32"]),
                        "bf16_s_per_sample": statistics.median(per_sample["bfloat16"])}
        print(f"  {name}: top-1 agreement {result[name]['agreement']:.3f}, "
              f"{result[name]['fp32_s_per_sample']:.3f} s vs {result[name]['bf16_s_per_sample']:.3f} s per sample",
              flush=True)
        del scorers
    return result


# ---- inputs ----
def smollm2() -> Path:
    from pipeline.settings import default_of
    from scoring.models import is_complete

    path = Path(default_of("SMOLLM2_DIR"))
    if not is_complete(path):
        subprocess.run([sys.executable, "-m", "scoring", "convert-gguf", "--out", str(path)], cwd=ROOT, check=True)
    return path


def demo_data(work: Path, model: Path) -> Path:
    """The demo profile's prepared data (prepare only; the token check is the pipeline's)."""
    profile = demo_profile()
    names = ("USERS", "DAYS", "BEHAVIORS", "HISTORY_LEN", "TRAIN_CAP", "ANCHOR_CAP", "VALID_CAP", "TEST_CAP",
             "P2_PER_BEHAVIOR")
    words = [f"{n}={profile[n]}" for n in names if n in profile]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "pipeline", "prepare", f"RUN_DIR={work / 'run'}", "SKIP_TOKEN_CHECK=1",
                    f"BASE_MODEL={model}", *words], cwd=ROOT, env=env, check=True, capture_output=True)
    return work / "run" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per training run (8 samples each)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each training variant, interleaved")
    parser.add_argument("--batch-size", type=int, default=8, help="scorer batch (EVAL_BATCH)")
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "demo"), help="a demo run whose pi_ref and "
                        "B-tune adapter are scored too, when there")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--train-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_worker:
        train_worker(args.train_worker)
        return 0
    from pipeline.precision import cpu_flags, native_bf16

    print(f"CPU bf16: {native_bf16(cpu_flags()) or 'not native (no avx512_bf16 / amx_bf16): expect no gain'}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    model = smollm2()
    with tempfile.TemporaryDirectory(prefix="bench_cpu_bf16.") as tmp:
        work = Path(tmp)
        data = demo_data(work, model)
        report = {"scoring": {}}
        run = Path(args.run_dir)
        checkpoints = {"base SmolLM2-135M": (model, None)}
        if (run / "pi_ref" / "config.json").is_file():
            checkpoints[f"{run.name}/pi_ref"] = (run / "pi_ref", None)
            if (run / "btune" / "adapter_config.json").is_file():
                checkpoints[f"{run.name}/pi_ref + btune"] = (run / "pi_ref", run / "btune")
        if not args.skip_scoring:
            print(f"\n1. Scoring the {run.name if run.is_dir() else 'demo'} test samples, fp32 vs bf16:", flush=True)
            report["scoring"] = bench_scoring(checkpoints, data, args.batch_size)
        print("\n| checkpoint | samples | top-1 agreement | fp32 s/sample (median batch) | bf16 s/sample | speed-up |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, r in report["scoring"].items():
            print(f"| {name} | {r['samples']} | {r['agreement']:.3f} | {r['fp32_s_per_sample']:.3f} | "
                  f"{r['bf16_s_per_sample']:.3f} | {r['fp32_s_per_sample'] / r['bf16_s_per_sample']:.2f}x |")
        if not args.skip_training:
            print(f"\n2. A-tune steps of 8 samples x ~230 tokens ({args.steps} steps x {args.repeats} runs each):",
                  flush=True)
            report["training"] = bench_training(model, data, work, args.steps, args.repeats)
            base = report["training"]["fp32, checkpointing on (before)"]["median_s"]
            print("\n| variant | min step (s) | median step (s) | speed-up (median) | peak RSS (MB) | losses (run 1) |"
                  "\n| --- | ---: | ---: | ---: | ---: | --- |")
            for name, r in report["training"].items():
                print(f"| {name} | {r['min_s']:.2f} | {r['median_s']:.2f} | {base / r['median_s']:.2f}x | "
                      f"{r['peak_rss_mb']:.0f} | {' '.join(f'{x:.3f}' for x in r['loss_first_run'])} |")
    low = {n: r["agreement"] for n, r in report["scoring"].items() if r["agreement"] < AGREEMENT_MIN}
    if low:
        print(f"FAIL: bf16 top-1 agreement below {AGREEMENT_MIN:.0%}: {low}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
