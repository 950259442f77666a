"""serving: prompts rendered as training rendered them, `python -m serving predict` files, and a live HTTP
service (uvicorn on 127.0.0.1, an ephemeral port, real httpx calls) on a tiny run: synthetic events ->
`python -m data_prep prepare` -> the tiny random Llama as the run's final model. predict, serve and
`python -m evaluation predict` must give the same probabilities for the same samples."""
from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import KEY, L, build_tiny_run, protocol2_samples, serve_in_thread, start_server, stop_server

from serving.__main__ import main as serving_main
from serving.app import AppConfig, create_app
from serving.config import PredictionConfig, ServedModelConfig
from serving.predictor import Predictor, local_iso
from serving.prompting import DEFAULT_MODE, Event, Query, render_record, rerender
from serving.run import load_run


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def samples(tiny_run):
    """test_p2 samples with the raw events prepare built them from (same readers: same order and codes)."""
    out = [{**x, "history": [Event(*e) for e in x["history"]], "next": Event(*x["next"])}
           for x in protocol2_samples(tiny_run)]
    assert out, "the tiny run has no protocol-2 sample"
    return out


@pytest.fixture(scope="module")
def run_info(tiny_run):
    return load_run(tiny_run["run"], "smollm2")


@pytest.fixture(scope="module")
def predictor(run_info):
    return Predictor(run_info, ServedModelConfig(batch_size=4), device="cpu")


@pytest.fixture(scope="module")
def evaluation_preds(tiny_run, tmp_path_factory):
    """`python -m evaluation predict` (what make eval runs) on test_p2."""
    out = tmp_path_factory.mktemp("eval")
    from evaluation.__main__ import main as evaluation_main

    assert evaluation_main(["predict", "--model", str(tiny_run["run"] / "final"), "--template", "smollm2",
                            "--dataset-dir", str(tiny_run["data"]), "--dataset", "test_p2", "--out", str(out),
                            "--device", "cpu"]) == 0
    return _jsonl(out / "test_p2.predictions.jsonl")


def _query(sample, mode=None, top_k=100) -> Query:
    nxt = sample["next"]
    return Query(None, sample["history"], nxt.time, nxt.place, top_k, mode or str(sample["meta"]["template_id"]))


def _request(sample, **extra) -> dict:
    nxt = sample["next"]
    return {"events": [{"timestamp": local_iso(e.time), "place": e.place, "behavior": e.behavior}
                       for e in sample["history"]],
            "next": {"timestamp": local_iso(nxt.time), "place": nxt.place}, **extra}


def _assert_same_probs(top: list[dict], eval_row: dict) -> None:
    """`top` (all behaviors) against an evaluation prediction row (p_label and its top 3)."""
    probs = {t["behavior"]: t["p"] for t in top}
    assert probs[eval_row["label"]] == pytest.approx(eval_row["p_label"], rel=1e-4, abs=1e-6)
    for t in eval_row["top"]:
        assert probs[t["name"]] == pytest.approx(t["p"], rel=1e-4, abs=1e-6)
    assert top[0]["behavior"] == eval_row["pred"]


# ------------------------------------------------------------------------------------------ rendering
def test_rendered_prompt_equals_the_prepared_line(samples, run_info):
    for s in samples:
        expected = {k: s["record"][k] for k in ("system", "instruction", "input")}
        assert render_record(_query(s), run_info.behaviors, run_info.system_prompt,
                             s["meta"]["template_id"]) == expected


def test_rerender_round_trips_every_template(samples):
    for s in samples:
        own = s["meta"]["template_id"]
        assert rerender(s["record"], own, own) == s["record"]
        others = [rerender(s["record"], own, t)["instruction"] for t in range(3)]
        assert len(set(others)) == 3 and all(s["meta"]["history"][-1] in text for text in others)


# ------------------------------------------------------------------------------- predictions agree
def test_predictor_matches_evaluation_predict(samples, predictor, evaluation_preds):
    preds = predictor.predict([_query(s) for s in samples])
    for pred, row in zip(preds, evaluation_preds):
        assert pred.probs.sum() == pytest.approx(1.0, abs=1e-9)
        _assert_same_probs(pred.top, row)


def test_mean_mode_is_the_softmax_of_the_mean_logprob(samples, predictor):
    s = samples[0]
    lp = predictor.logprobs([rerender(s["record"], s["meta"]["template_id"], t) for t in range(3)])
    mean = lp.astype(np.float64).mean(axis=0)
    expected = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
    (pred,) = predictor.predict([_query(s, mode="mean")])
    np.testing.assert_allclose(pred.probs, expected, rtol=1e-5, atol=1e-9)


def _write_inputs(tmp_path, samples) -> tuple[Path, Path]:
    """One pseudo-user per sample: its L history events, and its next context."""
    events, nexts = [], []
    for i, s in enumerate(samples):
        events += [{"user_id": f"s{i:03d}", "timestamp": local_iso(e.time), "place": e.place,
                    "behavior": e.behavior} for e in s["history"]]
        nexts.append({"user_id": f"s{i:03d}", "timestamp": local_iso(s["next"].time), "place": s["next"].place})
    ev, nx = tmp_path / "recent.jsonl", tmp_path / "next.csv"
    ev.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    nx.write_text("user_id,timestamp,place\n" + "".join(f"{n['user_id']},{n['timestamp']},{n['place']}\n"
                                                       for n in nexts), encoding="utf-8")
    return ev, nx


def test_predict_cli_matches_evaluation_predict(tiny_run, samples, evaluation_preds, tmp_path):
    ev, nx = _write_inputs(tmp_path, samples)
    checked = 0
    for template in sorted({s["meta"]["template_id"] for s in samples}):
        out = tmp_path / f"pred{template}.jsonl"
        assert serving_main(["predict", "--run-dir", str(tiny_run["run"]), "--template", "smollm2", "--events",
                             str(ev), "--next", str(nx), "--out", str(out), "--top-k", "100",
                             "--instruction-template", str(template), "--device", "cpu"]) == 0
        lines = {line["user_id"]: line for line in _jsonl(out)}
        assert len(lines) == len(samples)
        for i, (s, row) in enumerate(zip(samples, evaluation_preds)):
            line = lines[f"s{i:03d}"]
            assert line["history_len"] == L and "warning" not in line and line["run"] == "run"
            assert line["model"] == "final" and line["instruction_template"] == str(template)
            assert line["context"]["place"] == s["next"].place
            assert sum(t["p"] for t in line["top"]) == pytest.approx(1.0, abs=1e-6)
            if s["meta"]["template_id"] == template:
                _assert_same_probs(line["top"], row)
                checked += 1
    assert checked == len(samples)


def test_predict_cli_bad_input_never_skips_a_user(tiny_run, samples, tmp_path, capsys):
    s = samples[0]
    rows = [{"user_id": "ok", "timestamp": local_iso(e.time), "place": e.place, "behavior": e.behavior}
            for e in s["history"]]
    rows += [{"user_id": "short", "timestamp": local_iso(s["history"][-1].time), "place": "home",
              "behavior": "Music"},
             {"user_id": "typo", "timestamp": local_iso(s["history"][-1].time), "place": "home",
              "behavior": "Socal media"},
             {"user_id": "no-next", "timestamp": local_iso(s["history"][-1].time), "place": "home",
              "behavior": "Music"},
             {"user_id": "late", "timestamp": local_iso(s["next"].time + 3600), "place": "home",
              "behavior": "Music"}]
    ev = tmp_path / "recent.csv"
    ev.write_text("user_id,timestamp,place,behavior\n" + "".join(
        f"{r['user_id']},{r['timestamp']},{r['place']},{r['behavior']}\n" for r in rows), encoding="utf-8")
    when = local_iso(s["next"].time)
    nx = tmp_path / "next.jsonl"
    nx.write_text("".join(json.dumps({"user_id": u, "timestamp": when, "place": "home"}) + "\n"
                          for u in ("ok", "short", "typo", "late", "no-events")), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["predict", "--run-dir", str(tiny_run["run"]), "--template", "smollm2", "--events", str(ev), "--next",
            str(nx), "--out", str(out), "--device", "cpu", "--top-k", "2"]
    assert serving_main(args) == 0
    lines = {line["user_id"]: line for line in _jsonl(out)}
    assert sorted(lines) == sorted(["ok", "short", "typo", "no-next", "late", "no-events"])
    assert len(lines["ok"]["top"]) == 2 and "error" not in lines["ok"]
    assert lines["short"]["history_len"] == 1 and "shorter history" in lines["short"]["warning"]
    assert "unknown behavior 'Socal media'" in lines["typo"]["error"] and "Social media" in lines["typo"]["error"]
    assert "no next-event context" in lines["no-next"]["error"]
    assert "no events" in lines["no-events"]["error"]
    assert "at or after the next event" in lines["late"]["error"]

    nx.write_text(nx.read_text() + json.dumps({"user_id": "x", "timestamp": "soon", "place": "home"}) + "\n")
    assert serving_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "row 6" in err and "soon" in err and "Traceback" not in err
    assert serving_main(["predict", "--run-dir", str(tmp_path), "--template", "smollm2", "--events", str(ev),
                         "--next", str(nx), "--out", str(out)]) == 2
    assert "stats.json" in capsys.readouterr().err


def test_cutoff_len_refuses_long_prompts(run_info, samples):
    short = Predictor(run_info, ServedModelConfig(batch_size=4, cutoff_len=16), device="cpu")
    (pred,) = short.predict([_query(samples[0])])
    assert pred.probs is None and "cutoff_len 16" in pred.error


# ------------------------------------------------------------------------------------- live HTTP
@pytest.fixture(scope="module")
def server(tiny_run):
    """`python -m serving serve` with API_KEY, a small body limit and a 20 ms gathering window."""
    proc, url = start_server(tiny_run["run"], "--max-body-bytes", "20000", "--max-wait-ms", "20", api_key=KEY)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        yield {"proc": proc, "url": url, "client": client}
    stop_server(proc)


def test_http_predict_sums_to_one_and_matches_evaluation(server, samples, evaluation_preds, run_info):
    c = server["client"]
    r = c.post("/v1/predict", json=_request(samples[0], user_id="alice", top_k=100))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == "alice" and body["run"] == "run" and body["model"] == "final"
    assert body["instruction_template"] == DEFAULT_MODE and body["history_len"] == L
    assert sorted(t["behavior"] for t in body["top"]) == sorted(run_info.behaviors)   # top_k clamped to K
    assert sum(t["p"] for t in body["top"]) == pytest.approx(1.0, abs=1e-6)
    assert len(c.post("/v1/predict", json=_request(samples[0])).json()["top"]) == 5   # server default

    reqs = [_request(s, instruction_template=str(s["meta"]["template_id"]), top_k=100) for s in samples]
    r = c.post("/v1/predict/batch", json=reqs)
    assert r.status_code == 200, r.text
    for pred, row in zip(r.json()["predictions"], evaluation_preds):
        _assert_same_probs(pred["top"], row)


def test_http_behaviors_health_and_docs(server, run_info):
    c = server["client"]
    body = c.get("/v1/behaviors").json()
    assert [b["name"] for b in body["behaviors"]] == run_info.behaviors and body["history_len"] == L
    assert c.get("/healthz").json()["status"] == "ok"
    assert c.get("/docs").status_code == 200
    assert "/v1/predict/batch" in c.get("/openapi.json").json()["paths"]


def test_http_auth(server, samples):
    url = server["url"]
    assert httpx.post(f"{url}/v1/predict", json=_request(samples[0])).status_code == 401
    r = httpx.post(f"{url}/v1/predict", json=_request(samples[0]), headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "API_KEY" in r.json()["error"]
    assert httpx.get(f"{url}/v1/behaviors").status_code == 401
    assert httpx.get(f"{url}/healthz").status_code == 200   # probes need no key


@pytest.mark.parametrize("change, field, words", [
    (lambda r: r.pop("next"), "next", "required"),
    (lambda r: r["events"][1].update(timestamp="yesterday"), "events[1].timestamp", "unparseable"),
    (lambda r: r["events"][0].update(timestamp=True), "events[0].timestamp", ""),
    (lambda r: r["events"][0].pop("place"), "events[0].place", "required"),
    (lambda r: r.update(events=[]), "events", ""),
    (lambda r: r.update(top_k=0), "top_k", "greater"),
    (lambda r: r.update(instruction_template="7"), "instruction_template", ""),
    (lambda r: r["next"].update(timestamp="2020-01-01T00:00"), "events[0].timestamp", "at or after"),
    (lambda r: r["events"][1].update(timestamp=2024030107), "events[1].timestamp", "(%Y%m%d%H)"),
    (lambda r: r["events"][1].update(timestamp="2024030107"), "events[1].timestamp", "(%Y%m%d%H)"),
    (lambda r: r["next"].update(timestamp=2024030107), "next.timestamp", "(%Y%m%d%H)"),
    (lambda r: r["events"][1].update(timestamp="2090-01-01T07:00"), "events[1].timestamp", "plus a day"),
])
def test_http_invalid_requests_name_the_field(server, samples, change, field, words):
    req = _request(samples[0])
    change(req)
    r = server["client"].post("/v1/predict", json=req)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and words in r.json()["error"]


def test_http_unknown_behavior_lists_closest_names(server, samples):
    req = _request(samples[0])
    req["events"][2]["behavior"] = "watching vidoes"
    r = server["client"].post("/v1/predict", json=req)
    assert r.status_code == 422 and r.json()["field"] == "events[2].behavior"
    assert r.json()["closest"][0] == "Watching videos"
    r = server["client"].post("/v1/predict/batch", json=[_request(samples[0]), req])
    assert r.status_code == 422 and r.json()["field"] == "[1].events[2].behavior"
    r = server["client"].post("/v1/predict", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_http_batch_has_a_size_limit(server, samples):
    from serving.app import MAX_BATCH_ITEMS

    body = server["client"].get("/openapi.json").json()["paths"]["/v1/predict/batch"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["maxItems"] == MAX_BATCH_ITEMS


def test_http_short_history_says_so(server, samples):
    req = _request(samples[0])
    req["events"] = req["events"][-1:]
    body = server["client"].post("/v1/predict", json=req).json()
    assert body["history_len"] == 1 and "shorter history" in body["warning"]


def test_http_body_limit(server, samples):
    req = _request(samples[0])
    req["events"] = req["events"] * 400
    r = server["client"].post("/v1/predict", json=req)
    assert r.status_code == 413 and "20000 bytes" in r.json()["error"]
    chunks = (json.dumps([req]).encode()[i:i + 4096] for i in range(0, 60000, 4096))   # no Content-Length
    assert server["client"].post("/v1/predict/batch", content=chunks).status_code == 413


def test_http_413_reaches_a_client_that_sends_the_whole_body_first(server):
    """The server reads and drops an oversized body before answering: closing a socket with unread data would
    reset the connection and could destroy the 413 before the client reads it."""
    host, port = server["url"].removeprefix("http://").split(":")
    body = b'{"events": [' + b" " * 300_000 + b"]}"
    for chunked in (False, True):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            head = f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n"
            if chunked:
                sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
                for i in range(0, len(body), 8192):
                    piece = body[i:i + 8192]
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            else:
                sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert b"20000 bytes" in reply


def test_http_lone_surrogate_is_a_422_not_a_crash(server, samples):
    for change, field in ((lambda r: r["next"].update(place="\ud800"), "next.place"),
                          (lambda r: r["events"][1].update(behavior="Music\udfff"), "events[1].behavior"),
                          (lambda r: r.update(user_id="\udbff"), "user_id")):
        req = _request(samples[0])
        change(req)
        r = server["client"].post("/v1/predict", content=json.dumps(req).encode(),
                                  headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] == field and "Unicode" in r.json()["error"], r.text
    assert server["client"].post("/v1/predict", json=_request(samples[0])).status_code == 200


def test_http_concurrent_clients_are_batched(server, samples):
    reqs = [_request(samples[i % len(samples)], user_id=f"u{i}", top_k=3) for i in range(16)]
    before = server["client"].get("/healthz").json()["batching"]
    sequential = [server["client"].post("/v1/predict", json=r).json() for r in reqs[:4]]

    async def burst():
        async with httpx.AsyncClient(base_url=server["url"], headers={"Authorization": f"Bearer {KEY}"},
                                     timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/predict", json=r) for r in reqs))

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["user_id"] for r in responses] == [f"u{i}" for i in range(16)]
    for seq, conc in zip(sequential, responses):
        assert [t["behavior"] for t in seq["top"]] == [t["behavior"] for t in conc.json()["top"]]
        np.testing.assert_allclose([t["p"] for t in seq["top"]], [t["p"] for t in conc.json()["top"]],
                                   rtol=1e-4, atol=1e-6)
    after = server["client"].get("/healthz").json()["batching"]
    assert after["requests"] - before["requests"] == 20
    assert after["batches"] - before["batches"] < 20   # some concurrent requests shared a scorer batch


def test_http_without_api_key_in_process(predictor, samples):
    """create_app served by uvicorn in a thread: no API_KEY means no Authorization needed."""
    with serve_in_thread(create_app(predictor, AppConfig(PredictionConfig(top_k=2)))) as port:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json=_request(samples[0]), timeout=30)
        assert r.status_code == 200 and len(r.json()["top"]) == 2


def test_sigterm_shuts_down_cleanly(server):
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "shut down cleanly on SIGTERM" in out and "Traceback" not in err
