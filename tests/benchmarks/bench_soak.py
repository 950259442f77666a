"""Soak test of `python -m serving serve` under hostile clients; a script, never collected by pytest.

A bounded load on the loopback address only: N requests (default 5,000) at concurrency 32 against one server on
the tiny trained run (the tests' tiny random Llama), with the server's default body limit (1 MiB). The requests
mix, in a fixed seeded order:
  valid        POST /v1/predict, a real window of the event log                  -> 200
  batch        POST /v1/predict/batch of 3 valid requests                         -> 200
  bad_json     truncated / garbage JSON                                           -> 422
  invalid      schema-invalid: wrong types, missing fields, unknown behavior ...  -> 422
  oversized    a 1.1 MB body announced by Content-Length (raw socket)             -> 413
  chunked      a 1.2 MB chunked body without Content-Length (raw socket)          -> 413
  slow         a valid body sent in 4 pieces 0.15 s apart (raw socket)            -> 200
  abandoned    half a body, then the client hangs up (raw socket)                 -> no answer expected
Asserts: no 5xx, no lost request (every request but the abandoned ones got a response, each with the status
of its kind), the server's RSS after warm-up grows by less than 50 MB, the server log holds no traceback.
Prints p50 / p99 latency overall and per kind, counts by status, RSS before / after warm-up / at the end; the
naive baseline is the same server's latency for the valid requests alone (after one warm-up round of them),
sent before the hostile mix.

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

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from bench_serve import make_requests  # noqa: E402
from serving_helpers import L, build_tiny_run, start_server, stop_server  # noqa: E402

HOST = "127.0.0.1"
KINDS = {"valid": 0.50, "batch": 0.05, "bad_json": 0.12, "invalid": 0.15, "oversized": 0.05, "chunked": 0.03,
         "slow": 0.08, "abandoned": 0.02}
EXPECTED = {"valid": 200, "batch": 200, "bad_json": 422, "invalid": 422, "oversized": 413, "chunked": 413,
            "slow": 200, "abandoned": None}
LIMIT = 1 << 20            # the server's default --max-body-bytes
RSS_GROWTH_MB = 50


def _invalid(base: dict, i: int) -> dict:
    """A schema-invalid variant of a valid request (rotating over kinds of mistakes)."""
    req = json.loads(json.dumps(base))
    mistake = i % 8
    if mistake == 0:
        req.pop("next")
    elif mistake == 1:
        req["events"][0]["timestamp"] = "yesterday"
    elif mistake == 2:
        req["events"][-1]["behavior"] = "Watching vidoes"
    elif mistake == 3:
        req["events"] = []
    elif mistake == 4:
        req["top_k"] = -3
    elif mistake == 5:
        req["next"]["place"] = 42
    elif mistake == 6:
        req["events"][0]["place"] = "\ud800"          # a lone surrogate escape
    else:
        req["next"]["timestamp"] = req["events"][0]["timestamp"][:4] + "-01-01T00:00"   # before the events
    return req


def _bad_json(body: bytes, i: int) -> bytes:
    return [body[: len(body) // 2], b"{not json", b"\xff\xfe\x00", b"[" * 5000, b'{"events": [1,2,]}'][i % 5]


def plan(valid: list[dict], n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """n (kind, body) pairs in a fixed seeded order."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(list(KINDS), size=n, p=np.array(list(KINDS.values())) / sum(KINDS.values()))
    out = []
    for i, kind in enumerate(kinds.tolist()):
        base = valid[i % len(valid)]
        body = json.dumps(base).encode()
        if kind == "batch":
            body = json.dumps([valid[(i + j) % len(valid)] for j in range(3)]).encode()
        elif kind == "bad_json":
            body = _bad_json(body, i)
        elif kind == "invalid":
            body = json.dumps(_invalid(base, i)).encode("utf-8", "surrogatepass")
        elif kind in ("oversized", "chunked"):
            body = b""   # built on the fly: one shared padding block, never 5,000 copies
        out.append((kind, body))
    return out


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    await reader.read()   # Connection: close -> the rest until EOF
    return status


async def raw_request(port: int, kind: str, body: bytes, padding: bytes) -> int | None:
    """One request over its own socket; the status, or None when no response came (or none was expected)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        head = f"POST /v1/predict HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n" \
               "Connection: close\r\n"
        if kind == "oversized":
            writer.write(f"{head}Content-Length: {len(padding)}\r\n\r\n".encode())
            pieces, pause = [padding], 0.0
        elif kind == "chunked":
            block = padding[: 64 * 1024]
            writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
            pieces = [f"{len(block):x}\r\n".encode() + block + b"\r\n"] * ((LIMIT + LIMIT // 5) // len(block))
            pieces.append(b"0\r\n\r\n")
            pause = 0.0
        else:
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode())
            step = -(-len(body) // 4)
            pieces = [body[k:k + step] for k in range(0, len(body), step)]
            pause = 0.15
            if kind == "abandoned":
                pieces = pieces[:2]
        try:
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)
        except (ConnectionResetError, BrokenPipeError):
            pass   # the server answered early (413) and closed: its answer may still be readable
        if kind == "abandoned":
            return None
        try:
            return await _read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionResetError, BrokenPipeError):
            pass


async def soak(port: int, requests: list[tuple[str, bytes]], concurrency: int, deadline: float,
               on_progress=None) -> list[dict]:
    """Every request sent, `concurrency` at a time, until done or the deadline; one result row per request."""
    import httpx

    padding = b'{"events": [' + b" " * (LIMIT + LIMIT // 10) + b"]}"
    results: list[dict] = []
    queue = list(enumerate(requests))
    queue.reverse()

    async def worker(client):
        while queue and time.monotonic() < deadline:
            i, (kind, body) = queue.pop()
            started = time.perf_counter()
            status, error = None, None
            try:
                if kind in ("valid", "batch", "bad_json", "invalid"):
                    path = "/v1/predict/batch" if kind == "batch" else "/v1/predict"
                    r = await client.post(path, content=body, headers={"Content-Type": "application/json"})
                    status = r.status_code
                else:
                    status = await asyncio.wait_for(raw_request(port, kind, body, padding), 120)
            except Exception as err:   # a lost request: counted, never hidden
                error = f"{type(err).__name__}: {err}"
            results.append({"i": i, "kind": kind, "status": status, "error": error,
                            "ms": (time.perf_counter() - started) * 1000})
            if on_progress is not None:
                on_progress(len(results))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results


def _pcts(ms: list[float]) -> str:
    if not ms:
        return "-"
    return f"p50 {np.percentile(ms, 50):7.1f} ms  p99 {np.percentile(ms, 99):7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=500, help="requests of the mix before the RSS baseline")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for the whole mix")
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench_soak"))
    args = parser.parse_args()

    work = Path(args.work)
    if not (work / "run" / "final" / "config.json").is_file():
        work.mkdir(parents=True, exist_ok=True)
        build_tiny_run(work)
    valid = make_requests(work / "events.jsonl", L, 200)
    mix = plan(valid, args.requests)
    log = work / "server.log"
    proc, url = start_server(work / "run", log=log)
    port = int(url.rsplit(":", 1)[1])
    server = psutil.Process(proc.pid)
    mb = 1 << 20
    try:
        rss_start = server.memory_info().rss / mb
        alone = [("valid", json.dumps(v).encode()) for v in valid]
        asyncio.run(soak(port, alone, args.concurrency, time.monotonic() + 300))   # warms the model up
        baseline = asyncio.run(soak(port, alone, args.concurrency, time.monotonic() + 300))
        rss = {}

        def progress(done: int) -> None:
            if done == args.warmup:
                rss["warm"] = server.memory_info().rss / mb

        started = time.monotonic()
        results = asyncio.run(soak(port, mix, args.concurrency, started + args.time_limit, progress))
        wall = time.monotonic() - started
        rss_end = server.memory_info().rss / mb
        alive = proc.poll() is None
    finally:
        stop_server(proc)
    log_text = log.read_text(encoding="utf-8", errors="replace")

    print(f"tiny model, {args.requests} requests at concurrency {args.concurrency} on {HOST}, body limit "
          f"{LIMIT} bytes, {os.cpu_count()} CPUs: {len(results)} done in {wall:.1f} s "
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
    warm = rss.get("warm", float("nan"))
    print(f"\nby status: {dict(sorted(by_status.items(), key=str))}")
    print(f"server RSS: {rss_start:.1f} MB at start, {warm:.1f} MB after {args.warmup} requests of warm-up, "
          f"{rss_end:.1f} MB at the end ({rss_end - warm:+.1f} MB after warm-up; limit +{RSS_GROWTH_MB} MB)")

    server_errors = [r for r in results if r["status"] is not None and r["status"] >= 500]
    lost = [r for r in results if r["status"] is None and r["kind"] != "abandoned"]
    wrong = [r for r in results if r["status"] is not None and r["status"] != EXPECTED[r["kind"]]]
    problems = []
    if len(results) < len(mix):
        problems.append(f"only {len(results)} of {len(mix)} requests sent within {args.time_limit:.0f} s")
    if server_errors:
        problems.append(f"{len(server_errors)} 5xx, e.g. {server_errors[0]}")
    if lost:
        problems.append(f"{len(lost)} requests got no response, e.g. {lost[0]}")
    if wrong:
        problems.append(f"{len(wrong)} requests got an unexpected status, e.g. {wrong[0]}")
    if not rss_end - warm < RSS_GROWTH_MB:
        problems.append(f"RSS grew by {rss_end - warm:.1f} MB after warm-up")
    if not alive or "Traceback" in log_text:
        problems.append(f"server died or logged a traceback: {log_text[-3000:]}")
    for p in problems:
        print(f"FAILED: {p}", file=sys.stderr)
    print("soak: " + ("FAILED" if problems else "passed (no 5xx, no lost request, RSS growth under the limit)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
