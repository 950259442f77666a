"""A short soak of a live `python -m serving serve` with its metrics on (the full one is `make bench`'s
bench_soak.py): a few hundred requests of the hostile mix of tests/serving/serving_soak.py at concurrency 8 on the tiny
trained run. No 5xx, no lost request, each status the one of its kind, /metrics' request counters equal to the
client's tally by route and status (abandoned requests as 499), RSS growth after warm-up under 50 MB, and no
traceback in the server log. Bounded: every request has a timeout and the whole mix a deadline."""
from __future__ import annotations

import asyncio
import json
import time

import psutil
import pytest
from serving_helpers import L, build_tiny_run, make_requests, start_server, stop_server
from serving_soak import counted_difference, plan, problems, scrape, soak

REQUESTS, CONCURRENCY, WARMUP = 300, 8, 60
RSS_GROWTH_MB = 50


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.mktemp("soak"))


def test_short_soak_answers_everything_and_metrics_count_it(tiny_run, tmp_path):
    valid = make_requests(tiny_run["events"], L, 50)
    mix = plan(valid, REQUESTS, seed=1)
    log = tmp_path / "server.log"
    proc, url = start_server(tiny_run["run"], log=log)
    port = int(url.rsplit(":", 1)[1])
    rss = {}
    try:
        server = psutil.Process(proc.pid)
        asyncio.run(soak(port, [("valid", json.dumps(v).encode()) for v in valid], CONCURRENCY,
                         time.monotonic() + 120))   # warms the model up
        before = scrape(url)

        def progress(done: int) -> None:
            if done == WARMUP:
                rss["warm"] = server.memory_info().rss

        results = asyncio.run(soak(port, mix, CONCURRENCY, time.monotonic() + 240, progress))
        rss["end"] = server.memory_info().rss
        counted = counted_difference(url, before, results)
        alive = proc.poll() is None
    finally:
        stop_server(proc)
    assert problems(results, len(mix)) == []
    assert {r["kind"] for r in results} >= {"valid", "batch", "invalid", "oversized", "abandoned"}
    assert counted == {}, f"(route, status): (client, server) {counted}"
    assert (rss["end"] - rss["warm"]) / (1 << 20) < RSS_GROWTH_MB
    text = log.read_text(encoding="utf-8", errors="replace")
    assert alive and "Traceback" not in text, text[-3000:]
