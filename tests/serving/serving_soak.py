"""The soak's hostile request mix and its checks, shared by tests/serving/test_serving_soak.py (a short soak in
`make test`) and tests/benchmarks/bench_soak.py (the full one in `make bench`).

The mix, in a fixed seeded order:
  valid        POST /v1/predict, a real window of the event log                  -> 200
  batch        POST /v1/predict/batch of 3 valid requests                         -> 200
  bad_json     truncated / garbage JSON                                           -> 422
  invalid      schema-invalid: wrong types, missing fields, unknown behavior ...  -> 422
  oversized    a 1.1 MB body announced by Content-Length (raw socket)             -> 413
  chunked      a 1.2 MB chunked body without Content-Length (raw socket)          -> 413
  slow         a valid body sent in 4 pieces 0.15 s apart (raw socket)            -> 200
  abandoned    half a body, then the client hangs up (raw socket)                 -> no answer expected
The checks: no 5xx, no lost request (every request but the abandoned ones got a response, each with the status
of its kind), and the server's behaviorlm_http_requests_total counted, by route and status, exactly the answers
the client got; the abandoned requests apart, as status 499 (the client hung up before the answer).
"""
from __future__ import annotations

import asyncio
import json
import time

import numpy as np

HOST = "127.0.0.1"
KINDS = {"valid": 0.50, "batch": 0.05, "bad_json": 0.12, "invalid": 0.15, "oversized": 0.05, "chunked": 0.03,
         "slow": 0.08, "abandoned": 0.02}
EXPECTED = {"valid": 200, "batch": 200, "bad_json": 422, "invalid": 422, "oversized": 413, "chunked": 413,
            "slow": 200, "abandoned": None}
LIMIT = 1 << 20            # the server's default --max-body-bytes


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

    # a kept-alive connection expires here (1 s) well before the server closes it (uvicorn: 5 s idle), so no
    # request is ever sent on a connection the server is closing at that moment
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results


def route_of(kind: str) -> str:
    return "/v1/predict/batch" if kind == "batch" else "/v1/predict"


def scrape(url: str, headers: dict | None = None) -> dict[tuple[str, tuple], float]:
    """GET /metrics parsed: (sample name, sorted label items) -> value."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(f"{url}/metrics", headers=headers or {}, timeout=30)
    r.raise_for_status()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def server_tally(metrics: dict) -> dict[tuple[str, int], float]:
    """(route, status) -> behaviorlm_http_requests_total of the prediction routes."""
    out: dict = {}
    for (name, labels), value in metrics.items():
        labels = dict(labels)
        if name == "behaviorlm_http_requests_total" and labels["route"] in ("/v1/predict", "/v1/predict/batch"):
            key = (labels["route"], int(labels["status"]))
            out[key] = out.get(key, 0) + value
    return out


def client_tally(results: list[dict]) -> dict[tuple[str, int], int]:
    """(route, status) of each answered request; each abandoned one as (route, 499)."""
    out: dict = {}
    for r in results:
        status = 499 if r["kind"] == "abandoned" else r["status"]
        if status is not None:
            key = (route_of(r["kind"]), status)
            out[key] = out.get(key, 0) + 1
    return out


def counted_difference(url: str, before: dict, results: list[dict], wait_s: float = 10.0) -> dict:
    """{(route, status): (client, server)} where the server's count since `before` differs from the client's,
    after letting it see the last hang-ups (a bounded wait: at most `wait_s`); {} when they agree."""
    want = client_tally(results)
    deadline = time.monotonic() + wait_s
    while True:
        after = server_tally(scrape(url))
        old = server_tally(before)
        got = {k: v - old.get(k, 0) for k, v in after.items() if v - old.get(k, 0)}
        diff = {k: (want.get(k, 0), got.get(k, 0)) for k in set(want) | set(got) if want.get(k, 0) != got.get(k, 0)}
        if not diff or time.monotonic() > deadline:
            return diff
        time.sleep(0.2)


def problems(results: list[dict], planned: int) -> list[str]:
    """What the answers break: unsent requests, 5xx, lost requests, unexpected statuses."""
    server_errors = [r for r in results if r["status"] is not None and r["status"] >= 500]
    lost = [r for r in results if r["status"] is None and r["kind"] != "abandoned"]
    wrong = [r for r in results if r["status"] is not None and r["status"] != EXPECTED[r["kind"]]]
    out = []
    if len(results) < planned:
        out.append(f"only {len(results)} of {planned} requests sent in time")
    if server_errors:
        out.append(f"{len(server_errors)} 5xx, e.g. {server_errors[0]}")
    if lost:
        out.append(f"{len(lost)} requests got no response, e.g. {lost[0]}")
    if wrong:
        out.append(f"{len(wrong)} requests got an unexpected status, e.g. {wrong[0]}")
    return out
