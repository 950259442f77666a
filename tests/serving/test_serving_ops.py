"""serving as operators run it, on the tiny trained run: GET /metrics (Prometheus text) counting every answer by
route and status, the drift gauges, request ids echoed and in the access log, JSON log lines, and the drain on
SIGTERM: /healthz says "draining", new connections are refused, every accepted request is answered, exit 0."""
from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import numpy as np
import pytest
from serving_helpers import L, build_tiny_run, make_requests, read_line, start_server, stop_server
from serving_soak import scrape

from serving.app import AppConfig, create_app
from serving.config import ServeConfig
from serving.logs import JsonFormatter, log_config
from serving.predictor import Prediction, softmax
from serving.queries import top_k_of
from serving.run import load_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.mktemp("ops"))


@pytest.fixture(scope="module")
def valid(tiny_run):
    return make_requests(tiny_run["events"], L, 12)


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """A live server logging at info level in JSON lines, with a small body limit."""
    log = tmp_path_factory.mktemp("ops-log") / "server.log"
    proc, url = start_server(tiny_run["run"], "--max-body-bytes", "20000", "--log-level", "info", "--log-format",
                             "json", log=log)
    yield {"proc": proc, "url": url, "log": log}
    stop_server(proc)


def _value(metrics: dict, name: str, **labels) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def _requests_delta(before: dict, after: dict, route: str, method: str, status: int) -> float:
    labels = {"route": route, "method": method, "status": str(status)}
    return (_value(after, "behaviorlm_http_requests_total", **labels)
            - _value(before, "behaviorlm_http_requests_total", **labels))


def test_metrics_count_every_answer_by_route_and_status(server, valid):
    url = server["url"]
    before = scrape(url)
    with httpx.Client(base_url=url, timeout=60) as c:
        assert all(c.post("/v1/predict", json=v).status_code == 200 for v in valid[:3])
        assert c.post("/v1/predict/batch", json=valid[3:5]).status_code == 200
        assert c.post("/v1/predict", json={**valid[0], "top_k": 0}).status_code == 422
        assert c.post("/v1/predict", json={**valid[0], "events": valid[0]["events"] * 300}).status_code == 413
        assert c.get("/no/such/path").status_code == 404
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    wall, cpu = (float(part.split("dur=")[1]) for part in r.headers["server-timing"].split(", "))
    assert wall >= 0 and cpu >= 0
    after = scrape(url)
    assert _requests_delta(before, after, "/v1/predict", "POST", 200) == 3
    assert _requests_delta(before, after, "/v1/predict/batch", "POST", 200) == 1
    assert _requests_delta(before, after, "/v1/predict", "POST", 422) == 1
    assert _requests_delta(before, after, "/v1/predict", "POST", 413) == 1   # the body limit is inside the count
    assert _requests_delta(before, after, "other", "GET", 404) == 1          # unknown paths share one label
    predicted = sum(v - before.get(k, 0) for k, v in after.items() if k[0] == "behaviorlm_predictions_total")
    assert predicted == 5
    assert (_value(after, "behaviorlm_top1_probability_count")
            - _value(before, "behaviorlm_top1_probability_count")) == 5
    assert _value(after, "behaviorlm_batch_prompts_sum") > _value(before, "behaviorlm_batch_prompts_sum")
    assert _value(after, "behaviorlm_scoring_duration_seconds_count") >= 1
    assert _value(after, "behaviorlm_model_load_seconds") > 0 and _value(after, "behaviorlm_queue_depth") == 0
    assert _value(after, "process_resident_memory_bytes") > 0


def test_drift_gauges_hold_the_training_and_live_shares(server, tiny_run):
    stats = json.loads((tiny_run["data"] / "stats.json").read_text(encoding="utf-8"))
    m = scrape(server["url"])
    for b in stats["behaviors"]:
        assert _value(m, "behaviorlm_behavior_training_share", behavior=b["name"]) == pytest.approx(b["train_freq"])
    counts = {b["name"]: _value(m, "behaviorlm_predictions_total", behavior=b["name"]) for b in stats["behaviors"]}
    total = sum(counts.values())
    assert total > 0
    for name, count in counts.items():
        assert _value(m, "behaviorlm_behavior_live_share", behavior=name) == pytest.approx(count / total)


def _log_lines(path, ids: set[str], timeout: float = 10.0) -> list[dict]:
    """The log's lines as JSON once the access lines of all `ids` are in it (each is written just after its
    answer, so the last may land after the client has it; the module's server has earlier tests' lines too)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(encoding="utf-8")   # from the first JSON line on: the two startup lines are text
        lines = [json.loads(x) for x in text[text.index("\n{") + 1:].splitlines() if x.strip()]
        logged = {x.get("request_id") for x in lines if x["logger"] == "serving.access"}
        if ids <= logged or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_request_ids_are_echoed_and_logged_in_json_lines(server, valid):
    with httpx.Client(base_url=server["url"], timeout=60) as c:
        given = c.post("/v1/predict", json=valid[0], headers={"X-Request-ID": "order-7f3a:1"})
        made = c.post("/v1/predict", json=valid[1])
        refused = c.get("/healthz", headers={"X-Request-ID": "has a space"})
        too_big = c.post("/v1/predict", json={"events": [valid[0]["events"][0]] * 400},
                         headers={"X-Request-ID": "big-1"})
    assert given.headers["x-request-id"] == "order-7f3a:1"
    assert len(made.headers["x-request-id"]) == 32 and int(made.headers["x-request-id"], 16) >= 0
    assert refused.headers["x-request-id"] not in ("has a space", made.headers["x-request-id"])
    assert too_big.status_code == 413 and too_big.headers["x-request-id"] == "big-1"
    ids = {r.headers["x-request-id"] for r in (given, made, refused, too_big)}
    lines = _log_lines(server["log"], ids)   # every line is one JSON object
    access = {x["request_id"]: x for x in lines if x["logger"] == "serving.access"}
    assert ids <= set(access)
    line = access["order-7f3a:1"]
    assert (line["method"], line["path"], line["status"], line["level"]) == ("POST", "/v1/predict", 200, "INFO")
    assert line["duration_ms"] > 0 and "order-7f3a:1" in line["message"]
    assert access["big-1"]["status"] == 413


class _StubPredictor:
    """The run's behaviors, uniform probabilities: the app without a model."""

    def __init__(self, run):
        self.run = run

    def predict(self, queries):
        probs = softmax(np.zeros(len(self.run.behaviors)))
        return [Prediction(q, probs, top_k_of(probs, self.run.behaviors, q.top_k)) for q in queries]


def test_drain_makes_healthz_503_and_flushes_the_batcher(tiny_run, valid):
    """In process: a request held by a 10-minute gathering window is answered as soon as the app drains."""
    app = create_app(_StubPredictor(load_run(tiny_run["run"], "smollm2")),
                     AppConfig(server=ServeConfig(max_wait_ms=600_000)))

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app", timeout=60) as client:
                assert (await client.get("/healthz")).json()["status"] == "ok"
                held = asyncio.create_task(client.post("/v1/predict", json=valid[0]))
                for _ in range(500):   # bounded: until the batcher holds it
                    if app.state.batcher.waiting:
                        break
                    await asyncio.sleep(0.01)
                depth = scrape_text(await client.get("/metrics"))
                app.state.drain()
                health = await client.get("/healthz")
                return depth, health, await asyncio.wait_for(held, 60)

    depth, health, answer = asyncio.run(scenario())
    assert depth == 1.0
    assert health.status_code == 503 and health.json()["status"] == "draining"
    assert answer.status_code == 200 and len(answer.json()["top"]) == 5


def scrape_text(response: httpx.Response) -> float:
    """behaviorlm_queue_depth of a /metrics response."""
    (line,) = [x for x in response.text.splitlines() if x.startswith("behaviorlm_queue_depth ")]
    return float(line.split()[1])


def test_sigterm_drains_every_accepted_request(tiny_run, valid, tmp_path):
    """Requests held in the batcher by a 10-minute --max-wait-ms (the queue depth says so) when SIGTERM comes:
    each gets a complete 200, new connections are refused, and the process exits 0 within the grace time."""
    grace, n = 60, 6
    proc, url = start_server(tiny_run["run"], "--max-wait-ms", "600000", "--max-batch", "64", "--grace-s",
                             str(grace), log=tmp_path / "server.log")
    try:
        depth, drained, late, answers, signalled = asyncio.run(_drain_scenario(proc, url, valid[:n]))
        proc.wait(timeout=max(grace - (time.monotonic() - signalled), 1))   # exits within the grace time
        out = proc.stdout.read()
    finally:
        stop_server(proc)
    assert depth == n, "the requests were not all queued when SIGTERM was sent"
    assert drained is not None and "draining" in drained
    assert all(isinstance(x, httpx.ConnectError) or x.status_code == 503 for x in late), late
    assert [a.status_code for a in answers] == [200] * n
    assert [a.json()["user_id"] for a in answers] == [v["user_id"] for v in valid[:n]]
    assert [a.headers["x-request-id"] for a in answers] == [f"drain-{i}" for i in range(n)]
    assert proc.returncode == 0 and "shut down cleanly on SIGTERM" in out
    assert "Traceback" not in (tmp_path / "server.log").read_text(encoding="utf-8")


async def _drain_scenario(proc, url: str, requests: list[dict]):
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        held = [asyncio.create_task(client.post("/v1/predict", json=r, headers={"X-Request-ID": f"drain-{i}"}))
                for i, r in enumerate(requests)]
        async with httpx.AsyncClient(base_url=url, timeout=30) as probe:
            for _ in range(600):   # bounded: until the batcher holds every request (or 30 s)
                depth = scrape_text(await probe.get("/metrics"))
                if depth == len(requests):
                    break
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        drained = await asyncio.to_thread(read_line, proc, "draining:", 30)
        late = []
        async with httpx.AsyncClient(base_url=url, timeout=30) as fresh:
            for send in (lambda: fresh.get("/healthz"), lambda: fresh.post("/v1/predict", json=requests[0])):
                try:
                    late.append(await send())
                except httpx.ConnectError as err:
                    late.append(err)
        answers = await asyncio.gather(*held)
    return depth, drained, late, answers, signalled


def test_serve_settings_are_checked():
    with pytest.raises(ValueError, match="grace time must be a positive number of seconds, got 0"):
        ServeConfig(grace_s=0)
    with pytest.raises(ValueError, match="log format must be one of text, json"):
        ServeConfig(log_format="xml")
    assert ServeConfig().metrics is True and ServeConfig().grace_s == 30


def test_json_log_lines_are_one_object_each():
    import logging

    assert log_config("info", "json")["formatters"]["default"]["()"] is JsonFormatter
    record = logging.LogRecord("serving.access", logging.INFO, __file__, 1, "a\nb %s", ("x",), None)
    record.request_id, record.status = "r1", 200
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line) | {"time": None} == {"time": None, "level": "INFO", "logger": "serving.access",
                                                 "message": "a\nb x", "request_id": "r1", "status": 200}


def test_metrics_can_be_switched_off(tiny_run):
    predictor = _StubPredictor(load_run(tiny_run["run"], "smollm2"))
    assert "/metrics" in create_app(predictor, AppConfig()).openapi()["paths"]
    assert "/metrics" not in create_app(predictor, AppConfig(server=ServeConfig(metrics=False))).openapi()["paths"]
