"""Soak test of `python -m serving serve` under hostile clients; a script, never collected by pytest.

A bounded load on the loopback address only: N requests (default 5,000) at concurrency 32 against one server on
the tiny trained run (the tests' tiny random Llama), with the server's default body limit (1 MiB) and its
metrics on. The mix and its checks are tests/serving/serving_soak.py's (`make test` runs a short one): no 5xx, no lost
request, every status the one of its kind, and /metrics' request counters equal to the client's tally by route
and status (abandoned requests apart, as 499). Here also: the server's RSS after warm-up grows by less than
50 MB, and the server log holds no traceback.
Prints p50 / p99 latency overall and per kind, counts by status, RSS before / after warm-up / at the end; the
naive baseline is the same server's latency for the valid requests alone (after one warm-up round of them),
sent before the hostile mix. Then, on the idle server: GET /metrics 500 times, the handler's own time (its
Server-Timing header: CPU time, the cost, with a target of p99 under 5 ms, and wall time, which on a shared
machine also holds other processes' turns) beside the round trips of /metrics and of /healthz (the baseline).
And the metrics' cost per request, metrics on vs off in the same run: a second server with `--metrics 0` on the
same run, both sent the same requests one at a time, alternating, and their latencies; and the app in process
(no sockets), its CPU time per request with and without metrics in alternating rounds.

    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_soak.py [--requests 5000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "serving"))

from serving_helpers import L, build_tiny_run, make_requests, start_server, stop_server  # noqa: E402
from serving_soak import HOST, KINDS, LIMIT, counted_difference, plan, problems, scrape, soak  # noqa: E402

RSS_GROWTH_MB = 50
METRICS_P99_MS = 5.0   # target: the /metrics handler's p99 on an idle server


def _pcts(ms: list[float]) -> str:
    if not ms:
        return "-"
    return f"p50 {np.percentile(ms, 50):7.1f} ms  p99 {np.percentile(ms, 99):7.1f} ms"


def idle_metrics(url: str, n: int) -> dict[str, list[float]]:
    """On an idle server, GET /metrics and GET /healthz n times each, one after the other (ms): the /metrics
    handler's own time (its Server-Timing header) and both round trips."""
    import httpx

    out: dict[str, list[float]] = {"handler": [], "handler_cpu": [], "/metrics": [], "/healthz": []}
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(n):
            for path in ("/metrics", "/healthz"):
                started = time.perf_counter()
                r = client.get(path)
                out[path].append((time.perf_counter() - started) * 1000)
                r.raise_for_status()
                if path == "/metrics":
                    wall, cpu = (float(x.split("dur=")[1]) for x in r.headers["server-timing"].split(", "))
                    out["handler"].append(wall)
                    out["handler_cpu"].append(cpu)
    return out


def metrics_cost(urls: dict[str, str], valid: list[dict], n: int) -> dict:
    """The same requests, one at a time, to the server with metrics ("on") and the one without ("off"),
    alternating which goes first: (server, path) -> latencies (ms)."""
    import httpx

    out: dict = {}
    with httpx.Client(timeout=60) as client:
        for i in range(n):
            for name in (("on", "off") if i % 2 == 0 else ("off", "on")):
                for path in ("/v1/predict", "/v1/behaviors"):
                    started = time.perf_counter()
                    if path == "/v1/predict":
                        r = client.post(urls[name] + path, json=valid[i % len(valid)])
                    else:
                        r = client.get(urls[name] + path)
                    out.setdefault((name, path), []).append((time.perf_counter() - started) * 1000)
                    r.raise_for_status()
    return out


def middleware_cpu(run: Path, n: int = 400, rounds: int = 10) -> dict[str, list[float]]:
    """CPU microseconds per request of the app in process (no sockets: no network noise), metrics on and off,
    GET /v1/behaviors through httpx's ASGI transport, in alternating rounds; the difference is what the
    metrics middleware and its counters cost a request."""
    import httpx

    from serving.app import AppConfig, create_app
    from serving.config import ServeConfig
    from serving.run import load_run

    predictor = SimpleNamespace(run=load_run(run, "smollm2"), predict=None)   # this route never scores
    apps = {"on": create_app(predictor, AppConfig()),
            "off": create_app(predictor, AppConfig(server=ServeConfig(metrics=False)))}

    async def cpu_us(app) -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            for _ in range(20):
                (await client.get("/v1/behaviors")).raise_for_status()
            started = time.thread_time()
            for _ in range(n):
                await client.get("/v1/behaviors")
            return (time.thread_time() - started) / n * 1e6

    out: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(rounds):
        for name in (("on", "off") if i % 2 == 0 else ("off", "on")):
            out[name].append(asyncio.run(cpu_us(apps[name])))
    return out


def report_mix(args, results: list[dict], baseline: list[dict], wall: float) -> None:
    print(f"tiny model, {args.requests} requests at concurrency {args.concurrency} on {HOST}, body limit "
          f"{LIMIT} bytes, metrics on, {os.cpu_count()} CPUs: {len(results)} done in {wall:.1f} s "
          f"({len(results) / wall:.1f} req/s)")
    print(f"baseline (the same server, {len(baseline)} valid requests alone, warm): "
          f"{_pcts([r['ms'] for r in baseline])}")
    answered = [r for r in results if r["status"] is not None]
    print(f"hostile mix, every answered request:          {_pcts([r['ms'] for r in answered])}")
    print("\n| kind | sent | statuses | p50 (ms) | p99 (ms) |\n| --- | ---: | --- | ---: | ---: |")
    for kind in KINDS:
        rows = [r for r in results if r["kind"] == kind]
        counts: dict = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        ms = [r["ms"] for r in rows if r["status"] is not None]
        p50, p99 = (f"{np.percentile(ms, 50):.1f}", f"{np.percentile(ms, 99):.1f}") if ms else ("-", "-")
        print(f"| {kind} | {len(rows)} | {', '.join(f'{k}: {v}' for k, v in sorted(counts.items(), key=str))} | "
              f"{p50} | {p99} |")
    by_status: dict = {}
    for r in results:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    print(f"\nby status: {dict(sorted(by_status.items(), key=str))}")


def report_metrics(idle: dict, cost: dict, cpu: dict, load: tuple) -> float:
    """Prints the /metrics figures and the metrics' cost per request; returns the handler's CPU p99 (ms)."""
    p99 = float(np.percentile(idle["handler_cpu"], 99))
    print(f"\nidle server (1-min load average of the machine {load[0]:.2f}), {len(idle['handler'])} scrapes: "
          f"/metrics handler CPU p50 {np.percentile(idle['handler_cpu'], 50):.2f} ms, p99 {p99:.2f} ms (target < "
          f"{METRICS_P99_MS:g} ms); wall p50 {np.percentile(idle['handler'], 50):.2f} ms, p99 "
          f"{np.percentile(idle['handler'], 99):.2f} ms; round trip /metrics {_pcts(idle['/metrics'])}, /healthz "
          f"(baseline) {_pcts(idle['/healthz'])}")
    on, off = float(np.median(cpu["on"])), float(np.median(cpu["off"]))
    print(f"in process, GET /v1/behaviors, median of {len(cpu['on'])} rounds: metrics off {off:.0f} us CPU per "
          f"request, on {on:.0f} us: the metrics cost {on - off:+.0f} us ({(on - off) / off:+.1%})")
    print("\n| path | requests per server | metrics off: mean / p50 (ms) | metrics on: mean / p50 (ms) | "
          "on - off, mean (ms) |\n| --- | ---: | ---: | ---: | ---: |")
    for path in ("/v1/predict", "/v1/behaviors"):
        off, on = cost[("off", path)], cost[("on", path)]
        print(f"| {path} | {len(on)} | {np.mean(off):.3f} / {np.median(off):.3f} | {np.mean(on):.3f} / "
              f"{np.median(on):.3f} | {np.mean(on) - np.mean(off):+.3f} |")
    return p99


def run_mix(args, work: Path, valid: list[dict], mix: list) -> dict:
    """The soak on a server with metrics, then the idle scrapes, then the cost beside a server without."""
    log = work / "server.log"
    proc, url = start_server(work / "run", log=log)
    port = int(url.rsplit(":", 1)[1])
    server = psutil.Process(proc.pid)
    mb = 1 << 20
    out: dict = {"rss": {}}
    try:
        out["rss"]["start"] = server.memory_info().rss / mb
        alone = [("valid", json.dumps(v).encode()) for v in valid]
        asyncio.run(soak(port, alone, args.concurrency, time.monotonic() + 300))   # warms the model up
        out["baseline"] = asyncio.run(soak(port, alone, args.concurrency, time.monotonic() + 300))
        before = scrape(url)

        def progress(done: int) -> None:
            if done == args.warmup:
                out["rss"]["warm"] = server.memory_info().rss / mb

        started = time.monotonic()
        out["results"] = asyncio.run(soak(port, mix, args.concurrency, started + args.time_limit, progress))
        out["wall"] = time.monotonic() - started
        out["rss"]["end"] = server.memory_info().rss / mb
        out["counted"] = counted_difference(url, before, out["results"])
        out["load"] = os.getloadavg()
        out["idle"] = idle_metrics(url, args.scrapes)
        off, off_url = start_server(work / "run", "--metrics", "0", log=work / "server-off.log")
        try:
            for _ in range(2):   # warmed up as the first server was: every valid request, twice
                asyncio.run(soak(int(off_url.rsplit(":", 1)[1]), alone, args.concurrency, time.monotonic() + 300))
            out["cost"] = metrics_cost({"on": url, "off": off_url}, valid, args.cost_requests)
        finally:
            stop_server(off)
        out["alive"] = proc.poll() is None
    finally:
        stop_server(proc)
    out["log"] = log.read_text(encoding="utf-8", errors="replace")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=500, help="requests of the mix before the RSS baseline")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for the whole mix")
    parser.add_argument("--scrapes", type=int, default=500, help="GET /metrics on the idle server")
    parser.add_argument("--cost-requests", type=int, default=300, help="requests per server and path, on vs off")
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench_soak"))
    args = parser.parse_args()

    work = Path(args.work)
    if not (work / "run" / "final" / "config.json").is_file():
        work.mkdir(parents=True, exist_ok=True)
        build_tiny_run(work)
    valid = make_requests(work / "events.jsonl", L, 200)
    mix = plan(valid, args.requests)
    out = run_mix(args, work, valid, mix)
    results, rss = out["results"], out["rss"]
    report_mix(args, results, out["baseline"], out["wall"])
    warm = rss.get("warm", float("nan"))
    print(f"server RSS: {rss['start']:.1f} MB at start, {warm:.1f} MB after {args.warmup} requests of warm-up, "
          f"{rss['end']:.1f} MB at the end ({rss['end'] - warm:+.1f} MB after warm-up; limit +{RSS_GROWTH_MB} MB)")
    print("/metrics request counters vs the client's tally by route and status: "
          + (f"DIFFER {out['counted']}" if out["counted"] else "equal"))
    p99 = report_metrics(out["idle"], out["cost"], middleware_cpu(work / "run"), out["load"])

    failed = problems(results, len(mix))
    if out["counted"]:
        failed.append(f"/metrics counted otherwise than the client, (route, status): (client, server) "
                      f"{out['counted']}")
    if not rss["end"] - warm < RSS_GROWTH_MB:
        failed.append(f"RSS grew by {rss['end'] - warm:.1f} MB after warm-up")
    if not out["alive"] or "Traceback" in out["log"]:
        failed.append(f"server died or logged a traceback: {out['log'][-3000:]}")
    if not p99 < METRICS_P99_MS:
        failed.append(f"/metrics handler CPU p99 {p99:.2f} ms, target < {METRICS_P99_MS:g} ms")
    for p in failed:
        print(f"FAILED: {p}", file=sys.stderr)
    print("soak: " + ("FAILED" if failed else "passed (no 5xx, no lost request, /metrics counted every answer, "
                                              "RSS growth and /metrics p99 under their limits)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
