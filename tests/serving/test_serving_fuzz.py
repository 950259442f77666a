"""The HTTP service under hostile clients: schemathesis generates requests from the service's own OpenAPI schema
(valid ones and ones that break it: wrong types, missing fields, junk values) and sends them to a live
`python -m serving serve` (uvicorn on 127.0.0.1, an ephemeral port) on the tiny trained run, with and without
API_KEY. No response may be a 5xx, and each must be one the schema declares, with a body that conforms to it.

Bounded: a fixed number of examples per operation and generation mode, derandomized (the same cases on every
run), no shrinking, and every request with a timeout: the whole file takes under a minute on 2 CPU cores.
FUZZ_EXAMPLES=500 FUZZ_SEED=7 fuzz deeper with other cases.
"""
from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serving_helpers import KEY, build_tiny_run, start_server, stop_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 50))   # per operation and generation mode
SEED = os.environ.get("FUZZ_SEED")   # unset: derandomized, the same cases on every run
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
LIMIT = 20000   # --max-body-bytes of the server
PROTECTED = {"/v1/predict", "/v1/predict/batch", "/v1/behaviors", "/metrics"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module", params=[None, KEY], ids=["no-api-key", "api-key"])
def live(request, tiny_run, tmp_path_factory):
    """A live server with a small body limit (oversized bodies are cheap to send), and its loaded schema. The
    server's log must hold no traceback at the end (an exception the responses might not have shown)."""
    log = tmp_path_factory.mktemp("fuzz-log") / "server.log"
    proc, url = start_server(tiny_run["run"], "--max-body-bytes", str(LIMIT), api_key=request.param, log=log)
    assert url.startswith("http://127.0.0.1:")   # loopback only
    try:
        yield {"url": url, "key": request.param,
               "schema": schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=30)}
    finally:
        stop_server(proc)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in text, text[-6000:]


def _operations(schema) -> list:
    ops = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in ops} >= PROTECTED | {"/healthz"}
    return ops


def _fuzz(operation, mode: GenerationMode, send) -> None:
    """`send(case)` for EXAMPLES cases of one operation, the same cases on every run."""

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=SEED is None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=operation.as_strategy(mode))
    def run(case):
        send(case)

    if SEED is not None:
        run = seed(int(SEED))(run)
    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_get_declared_responses_and_no_5xx(live, mode):
    headers = {"Authorization": f"Bearer {live['key']}"} if live["key"] else {}
    statuses: dict[int, int] = {}

    def send(case):
        response = case.call_and_validate(base_url=live["url"], headers=headers, checks=CHECKS, timeout=60)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    for operation in _operations(live["schema"]):
        if mode == GenerationMode.POSITIVE or len(operation.body):   # a GET without parameters has no invalid form
            _fuzz(operation, mode, send)
    print(f"{mode.value}, API_KEY {'set' if live['key'] else 'unset'}: statuses {sorted(statuses.items())}")
    assert all(code < 500 for code in statuses)
    if mode == GenerationMode.POSITIVE:
        assert statuses.get(200), "no generated request was answered with 200"
    else:
        assert statuses.get(422), "no generated invalid request was rejected with 422"


def test_fuzzed_requests_without_the_key_get_401(live):
    """With API_KEY set: schema-valid requests lacking the key (or with a wrong one) get 401 (413 when over the
    body limit), never a 5xx;
    the health probe needs none (/metrics does: docs/serving.md says why). Without API_KEY no operation asks for
    one."""
    seen: dict[str, set[int]] = {}
    sent = []

    def send(case):
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        sent.append(case.path)
        wrong = {"Authorization": "Bearer not-the-key"} if len(sent) % 2 else {}   # every other one: a wrong key
        response = case.call(base_url=live["url"], headers=wrong, timeout=60)
        seen.setdefault(case.path, set()).add(response.status_code)
        assert response.status_code < 500, response.text
        if live["key"] and case.path in PROTECTED:
            if len(response.request.body or b"") > LIMIT:   # the body limit answers first, without reading it
                assert response.status_code == 413, response.text
                return
            assert response.status_code == 401, response.text
            assert "API_KEY" in response.json()["error"] and response.headers["www-authenticate"] == ["Bearer"]

    for operation in _operations(live["schema"]):
        _fuzz(operation, GenerationMode.POSITIVE, send)
    assert seen["/healthz"] == {200}
    declared = httpx.get(f"{live['url']}/openapi.json", timeout=30).json()
    schemes = declared.get("components", {}).get("securitySchemes", {})
    if live["key"]:
        assert seen["/v1/behaviors"] == seen["/metrics"] == {401}
        assert list(schemes.values()) == [{"type": "http", "scheme": "bearer", "description": "API_KEY of the server"}]
    else:
        assert seen["/v1/behaviors"] == seen["/metrics"] == {200} and not schemes
