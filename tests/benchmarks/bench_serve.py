"""Load test of `python -m serving serve`; a script, never collected by pytest.

A bounded load on the loopback address only: a fixed number of /v1/predict requests at concurrency 1, 8
and 32, against one server with request batching (up to --max-batch prompts gathered within a few ms) and
one without (--max-batch 1: one request per forward pass). Prints p50 / p99 latency and requests/s.
Target: with batching, at concurrency 8 at least 3x the requests/s of concurrency 1.

The model is SmolLM2-135M-Instruct from .cache/smollm2-135m-instruct when it exists (make smollm2, or
python -m scoring convert-gguf --out .cache/smollm2-135m-instruct), else the tiny random Llama. The data
are the demo profile's: 12 synthetic behaviors, history L = 6 (prompts of ~230 tokens).

    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_serve.py [--requests 48]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "serving"))

from serving_helpers import make_requests  # noqa: E402

SMOLLM2 = ROOT / ".cache" / "smollm2-135m-instruct"
BEHAVIORS = ("Watching videos,Social media,Music,Gaming,Public transportation,Online shopping,Reading,Exercise,"
             "Watching sports matches,Podcasts,Taking a taxi,Cycling")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "PYTHONPATH": str(ROOT)}


def _py(*args: str) -> None:
    subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, check=True, capture_output=True)


def build_run(work: Path, history_len: int, tiny: bool = False) -> tuple[Path, Path, Path | None]:
    """(run dir, events file, model override): demo-profile data; the tiny model as final/ without SmolLM2."""
    events, run = work / "events.jsonl", work / "run"
    if not (run / "data" / "stats.json").is_file():
        _py("-m", "data_prep", "synthetic", str(events), "--users", "60", "--days", "7", "--behaviors", BEHAVIORS)
        _py("-m", "data_prep", "prepare", "--input", str(events), "--out", str(run / "data"), "--history-len",
            str(history_len), "--train-cap", "300", "--valid-cap", "20", "--test-cap", "20", "--eps", "0")
    if SMOLLM2.is_dir() and not tiny:
        return run, events, SMOLLM2
    if not (run / "final" / "config.json").is_file():
        _py(str(ROOT / "tests" / "tiny_models.py"), "--out", str(run / "final"), "--dataset-dir", str(run / "data"))
    return run, events, None


def start_server(run: Path, model: Path | None, max_batch: int, mode: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "serving", "serve", "--run-dir", str(run), "--template", "smollm2", "--port", "0",
           "--max-batch", str(max_batch), "--batch-size", str(max_batch), "--instruction-template", mode]
    if model is not None:
        cmd += ["--model", str(model)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 1.0)[0]:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("serving on "):
                return proc, line.split()[-1]
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read()[-2000:]}")


async def load(url: str, requests: list[dict], concurrency: int) -> dict:
    """Send every request, `concurrency` at a time; latency of each and the overall requests/s."""
    import httpx

    latencies = []
    queue = list(requests)

    async def client_loop(client):
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            r = await client.post("/v1/predict", json=body)
            r.raise_for_status()
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {"n": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "rps": len(lat) / wall}


def scorer_ceiling(run: Path, model: Path | None, batch: int = 8, repeats: int = 3) -> float:
    """The most request batching can give on this machine: prompts/s of the bare scorer (no HTTP, no queue)
    scoring `batch` prompts in one call against one prompt per call, on the run's own test prompts. On a GPU a
    forward of one ~230-token prompt leaves the device mostly idle, so batching multiplies throughput; on a
    CPU the one-prompt forward is already compute-bound and this ratio bounds any server's gain."""
    import json

    from data_prep.prepared import candidate_names, load_stats
    from scoring.kernel import cached_candidate_logprobs
    from scoring.scorer import CandidateScorer

    scorer = CandidateScorer(model or run / "final", "smollm2", batch_size=batch, device="cpu")
    lines = (run / "data" / "test_p1.jsonl").read_text(encoding="utf-8").splitlines()[:batch]
    records = [json.loads(line) for line in lines]
    encoder = scorer.encoder(candidate_names(load_stats(run / "data")), records[0])
    prompts = [encoder.prompt(r) for r in records]

    def seconds(chunks: list[list]) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for chunk in chunks:
                cached_candidate_logprobs(scorer.model, chunk, encoder.cand_ids, scorer.pad_id, False)
            best = min(best, time.perf_counter() - started)
        return best

    one, together = seconds([[p] for p in prompts]), seconds([prompts])
    print(f"bare scorer, {len(prompts)} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens: one per "
          f"call {len(prompts) / one:.2f} prompts/s, all in one call {len(prompts) / together:.2f} prompts/s "
          f"({one / together:.2f}x: the ceiling of batching here)", flush=True)
    return one / together


def bench(run: Path, model: Path | None, requests: list[dict], levels: list[int], max_batch: int, mode: str,
          warmup: int, batching_modes: list[str]) -> list[dict]:
    rows = []
    for batching, mb in (("on", max_batch), ("off", 1)):
        if batching not in batching_modes:
            continue
        proc, url = start_server(run, model, mb, mode)
        try:
            asyncio.run(load(url, requests[:warmup], 1))
            for c in levels:
                result = asyncio.run(load(url, requests, c))
                rows.append({"batching": batching, "concurrency": c, **result})
                print(f"batching {batching:3s}  concurrency {c:2d}  n {result['n']:3d}  p50 {result['p50_ms']:8.1f} ms"
                      f"  p99 {result['p99_ms']:8.1f} ms  {result['rps']:7.2f} req/s", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--max-batch", type=int, default=32, help="prompts per batch with batching on")
    parser.add_argument("--instruction-template", default="2",
                        help="template mode of the requests (mean scores three prompts per request)")
    parser.add_argument("--history-len", type=int, default=6)
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench_serve"))
    parser.add_argument("--tiny", action="store_true", help="the tiny random Llama even when SmolLM2 is there")
    parser.add_argument("--batching", default="on,off", help="which servers to measure: on, off or both")
    args = parser.parse_args()
    run, events, model = build_run(Path(args.work), args.history_len, args.tiny)
    print(f"model: {model or run / 'final'}; {args.requests} requests per level; template mode "
          f"{args.instruction_template}; {os.cpu_count()} CPUs", flush=True)
    requests = make_requests(events, args.history_len, args.requests)
    ceiling = scorer_ceiling(run, model)
    rows = bench(run, model, requests, [int(x) for x in args.levels.split(",")], args.max_batch,
                 args.instruction_template, warmup=min(4, args.requests), batching_modes=args.batching.split(","))
    base = {r["batching"]: r["rps"] for r in rows if r["concurrency"] == 1}
    print("\n| batching | concurrency | requests | p50 (ms) | p99 (ms) | req/s | vs concurrency 1 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['batching']} | {r['concurrency']} | {r['n']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['rps']:.2f} | {r['rps'] / base[r['batching']]:.2f}x |")
    on8 = next((r["rps"] / base["on"] for r in rows if r["batching"] == "on" and r["concurrency"] == 8), None)
    if on8 is not None:
        print(f"\ntarget (batching on, concurrency 8 >= 3x concurrency 1): {on8:.2f}x "
              f"{'met' if on8 >= 3 else 'NOT met'}; the bare scorer's own ceiling on this machine: {ceiling:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
