"""serving's micro-batcher: concurrent requests gathered into batches of at most max_batch prompts, each result routed
to its request, and a request that makes the scorer fail failing alone."""
from __future__ import annotations

import asyncio
import time

from serving.micro_batcher import MicroBatcher


def test_micro_batcher_gathers_concurrent_requests_and_routes_results():
    calls = []

    def predict(queries):
        calls.append(len(queries))
        time.sleep(0.02)   # a forward pass: requests arriving meanwhile wait for the next batch
        return [q * 10 for q in queries]

    async def scenario():
        batcher = MicroBatcher(predict, size_of=lambda q: 1, max_batch=4, max_wait_ms=10)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(10)))
        await batcher.stop()
        return results, batcher.stats

    results, stats = asyncio.run(scenario())
    assert results == [[i * 10, (i + 100) * 10] for i in range(10)]
    assert stats.requests == 10 and stats.prompts == 20 and sum(calls) == 20
    assert stats.batches < 10 and max(calls) <= 4   # gathered, never over max_batch prompts


def test_micro_batcher_isolates_a_request_that_breaks_the_scorer():
    def predict(queries):
        if "bad" in queries:
            raise TypeError("the tokenizer cannot take this")
        return [q.upper() for q in queries]

    async def scenario():
        batcher = MicroBatcher(predict, size_of=lambda q: 1, max_batch=8, max_wait_ms=50)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit([q]) for q in ("a", "bad", "c")), return_exceptions=True)
        await batcher.stop()
        return results, batcher.stats

    (a, bad, c), stats = asyncio.run(scenario())
    assert a == ["A"] and c == ["C"] and isinstance(bad, TypeError)   # the others gathered with it still answered
    assert stats.requests == 3
