"""The service's Prometheus metrics (GET /metrics, text format 0.0.4), in a registry of their own per app.

Names follow Prometheus' conventions (a ``behaviorlm_`` prefix, ``_total`` counters, ``_seconds`` times):

  behaviorlm_http_requests_total{route, method, status}    requests answered (499: the client hung up first)
  behaviorlm_http_request_duration_seconds{route}          request latency, first byte in to last byte out
  behaviorlm_scoring_duration_seconds                      one scorer call (one batch of requests)
  behaviorlm_batch_prompts                                 prompts per scorer call
  behaviorlm_queue_depth                                   requests in the batcher not yet being scored
  behaviorlm_model_load_seconds                            loading the model, before the port opened
  behaviorlm_predictions_total{behavior}                   the top-1 behavior of each prediction answered
  behaviorlm_top1_probability                              the top-1 probability of each prediction answered
  behaviorlm_behavior_training_share{behavior}             the behavior's share of training (stats.json train_freq)
  behaviorlm_behavior_live_share{behavior}                 its share of the top-1 predictions since the start
  process_*                                                the server process: RSS, CPU seconds, open files

`route` is the route's path, or ``other`` for a path no route serves (its values stay bounded).
"""
from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()   # no *_created series beside every counter and histogram: half the text, no value

# few buckets: each is a line per route at every scrape, and rendering costs in proportion to the lines
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PROBABILITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def training_shares(stats: dict) -> dict[str, float]:
    """name -> training frequency of each behavior of a prepare stats.json (0 where it has none)."""
    return {b["name"]: float(b.get("train_freq") or 0.0) for b in stats.get("behaviors", [])}


class ServiceMetrics:
    """The metrics of one app; the middleware, the batcher and the prediction handlers feed them."""

    def __init__(self, behaviors: list[str], training_share: dict[str, float]):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("behaviorlm_http_requests", "HTTP requests answered, by route, method and "
                                "status (499: the client hung up before the answer)", ["route", "method", "status"],
                                registry=r)
        self.latency = Histogram("behaviorlm_http_request_duration_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.scoring = Histogram("behaviorlm_scoring_duration_seconds", "one scorer call (a batch of requests)",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("behaviorlm_batch_prompts", "prompts per scorer call", buckets=BATCH_BUCKETS,
                               registry=r)
        self.queue = Gauge("behaviorlm_queue_depth", "requests waiting in the batcher, not yet being scored",
                           registry=r)
        self.load = Gauge("behaviorlm_model_load_seconds", "seconds the model took to load", registry=r)
        self.top1 = Counter("behaviorlm_predictions", "top-1 behavior of each prediction answered", ["behavior"],
                            registry=r)
        self.top1_p = Histogram("behaviorlm_top1_probability", "top-1 probability of each prediction answered",
                                buckets=PROBABILITY_BUCKETS, registry=r)
        train = Gauge("behaviorlm_behavior_training_share", "the behavior's share of the training samples",
                      ["behavior"], registry=r)
        live = Gauge("behaviorlm_behavior_live_share", "the behavior's share of the top-1 predictions answered "
                     "since the server started (0 before the first)", ["behavior"], registry=r)
        ProcessCollector(registry=r)
        self._counts = dict.fromkeys(behaviors, 0)
        self._total = 0
        for name in behaviors:
            self.top1.labels(name)
            train.labels(name).set(training_share.get(name, 0.0))
            live.labels(name).set_function(lambda name=name: self._counts[name] / max(self._total, 1))

    def watch(self, queue_depth, load_s: float | None) -> None:
        """queue_depth() is read at each scrape; load_s is the model's load time."""
        self.queue.set_function(queue_depth)
        if load_s is not None:
            self.load.set(load_s)

    def count_request(self, route: str, method: str, status: int) -> None:
        self.requests.labels(route, method if method in METHODS else OTHER, str(status)).inc()

    def observe_latency(self, route: str, seconds: float) -> None:
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, prompts: int, seconds: float) -> None:
        self.batch.observe(prompts)
        self.scoring.observe(seconds)

    def observe_predictions(self, lines: list[dict]) -> None:
        for line in lines:
            best = line["top"][0]
            self._counts[best["behavior"]] += 1
            self._total += 1
            self.top1.labels(best["behavior"]).inc()
            self.top1_p.observe(best["p"])

    def render(self) -> bytes:
        return generate_latest(self.registry)


def add_metrics_route(app: FastAPI, metrics: ServiceMetrics, dependencies: list, responses: dict) -> None:
    """GET /metrics: the Prometheus text; its `Server-Timing` header says what rendering it cost, in wall-clock
    and in CPU milliseconds of the server's thread (`render;dur=<ms>, render-cpu;dur=<ms>`)."""

    @app.get("/metrics", response_class=Response, dependencies=dependencies, summary="Prometheus metrics",
             responses={**responses, 200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                           "description": "the Prometheus text format 0.0.4"}})
    async def prometheus_metrics():
        started, cpu = time.perf_counter(), time.thread_time()
        text = metrics.render()
        ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000
        return Response(text, media_type=CONTENT_TYPE_PLAIN_0_0_4,
                        headers={"Server-Timing": f"render;dur={ms:.3f}, render-cpu;dur={cpu_ms:.3f}"})


__all__ = ["ServiceMetrics", "add_metrics_route", "training_shares"]
