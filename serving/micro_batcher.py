"""Gathers concurrent requests into one scorer call: a single worker takes the first waiting request, then
whatever else arrives within `max_wait_ms` or while the previous batch was being scored, up to `max_batch`
prompts, and scores them together in a thread (the event loop keeps accepting requests meanwhile).

One worker means one forward pass at a time on the model; throughput grows with load because a forward
over B prompts costs much less than B forwards where per-call overhead or memory bandwidth dominates.

`drain()` (on shutdown) stops the waiting: what is queued is scored at once, and so is anything submitted after.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

_WAKE = object()   # put by drain(): the gathering stops waiting


@dataclass
class _Item:
    queries: list
    size: int
    future: asyncio.Future


@dataclass
class BatchStats:
    requests: int = 0
    batches: int = 0
    prompts: int = 0
    largest_batch: int = 0
    busy_s: float = 0.0

    def as_dict(self) -> dict:
        return {"requests": self.requests, "batches": self.batches, "prompts": self.prompts,
                "largest_batch": self.largest_batch, "busy_s": round(self.busy_s, 3)}


class MicroBatcher:
    """``await submit(queries)`` -> predict_fn's results for those queries, computed in a shared batch."""

    def __init__(self, predict_fn: Callable[[list], list], size_of: Callable[[object], int], max_batch: int = 32,
                 max_wait_ms: float = 5.0, on_batch: Callable[[int, float], None] | None = None):
        # max_batch >= 1 and max_wait_ms >= 0: ServeConfig checked them
        self.predict_fn, self.size_of = predict_fn, size_of
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.stats = BatchStats()
        self.on_batch = on_batch   # (prompts, seconds) of each scorer call
        self.waiting = 0           # requests submitted and not yet being scored
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then end the worker."""
        if self._worker is not None:
            await self._queue.put(None)
            await self._worker
            self._worker = None

    def drain(self) -> None:
        """Wait no more for requests to gather: score what is queued now (call it on the event loop)."""
        self.max_wait = 0.0
        if self._queue is not None:
            self._queue.put_nowait(_WAKE)

    async def submit(self, queries: list) -> list:
        if self._worker is None or self._worker.done():
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self.waiting += 1
        await self._queue.put(_Item(queries, sum(self.size_of(q) for q in queries), future))
        return await future

    async def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        """first + more items until max_batch prompts or max_wait; True when the stop sentinel was seen."""
        items, size = [first], first.size
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if item is None:
                return items, True
            if item is _WAKE:
                deadline = 0.0   # take what is queued, wait for nothing more
                continue
            items.append(item)
            size += item.size
        return items, False

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            if first is _WAKE:
                continue
            items, stopping = await self._gather(first)
            self.waiting -= len(items)
            await self._score(items)

    async def _score(self, items: list[_Item]) -> None:
        queries = [q for item in items for q in item.queries]
        started = time.perf_counter()
        try:
            results = await asyncio.to_thread(self.predict_fn, queries)
        except Exception as err:
            if len(items) > 1:   # one request's bad input must not fail the others gathered with it: each alone
                self.stats.busy_s += time.perf_counter() - started
                for item in items:
                    await self._score([item])
                return
            self._count(items, time.perf_counter() - started)
            if not items[0].future.done():   # handed to the waiting request, never lost
                items[0].future.set_exception(err)
            return
        self._count(items, time.perf_counter() - started)
        at = 0
        for item in items:
            if not item.future.done():
                item.future.set_result(results[at:at + len(item.queries)])
            at += len(item.queries)

    def _count(self, items: list[_Item], seconds: float) -> None:
        size = sum(item.size for item in items)
        s = self.stats
        s.requests += len(items)
        s.batches += 1
        s.prompts += size
        s.largest_batch = max(s.largest_batch, size)
        s.busy_s += seconds
        if self.on_batch is not None:
            self.on_batch(size, seconds)
