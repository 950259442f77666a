"""Shared by the live-service tests (test_serving.py, test_serving_fuzz.py): the tiny trained run (synthetic
events -> `python -m data_prep prepare` -> the tiny random Llama as the run's final model) and
`python -m serving serve` started as a subprocess on 127.0.0.1 with an ephemeral port."""
from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BEHAVIORS = "Watching videos,Social media,Music,Gaming,Taking a taxi,Cycling"
L = 4
KEY = "test-key"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "PYTHONPATH": str(ROOT)}


def run_py(*args: str) -> None:
    subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, check=True, capture_output=True, timeout=300)


def build_tiny_run(root: Path) -> dict:
    """{"run", "events", "data"}: 40 synthetic users, L = 4, the tiny random Llama as final/."""
    events, run = root / "events.jsonl", root / "run"
    run_py("-m", "data_prep", "synthetic", str(events), "--users", "40", "--days", "6", "--behaviors", BEHAVIORS,
           "--seed", "0")
    run_py("-m", "data_prep", "prepare", "--input", str(events), "--out", str(run / "data"), "--history-len", str(L),
           "--train-cap", "300", "--valid-cap", "20", "--test-cap", "10", "--p2-per-behavior", "3", "--eps", "0")
    run_py(str(ROOT / "tests" / "tiny_models.py"), "--out", str(run / "final"), "--dataset-dir", str(run / "data"),
           "--vocab-size", "300")
    return {"run": run, "events": events, "data": run / "data"}


def read_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str | None:
    """The server's next stdout line starting with `prefix` (None when none comes within `timeout` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if not line:
                return None
            if line.startswith(prefix):
                return line.rstrip("\n")
    return None


def read_url(proc: subprocess.Popen, timeout: float = 180) -> str:
    """The URL from the server's `serving on http://HOST:PORT` line (killed if it does not come)."""
    line = read_line(proc, "serving on ", timeout)
    if line is not None:
        return line.split()[-1]
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")


def start_server(run: Path, *args: str, api_key: str | None = None,
                 log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m serving serve` on 127.0.0.1, port 0, CPU; API_KEY set only when `api_key` is given. The
    server's stderr goes to `log` when given (a pipe nobody reads would block a chatty server), else a pipe."""
    env = {k: v for k, v in ENV.items() if k != "API_KEY"}
    if api_key is not None:
        env["API_KEY"] = api_key
    with open(log, "w") if log is not None else open(os.devnull) as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "serve", "--run-dir", str(run), "--template", "smollm2", "--host",
             "127.0.0.1", "--port", "0", "--device", "cpu", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr if log is not None else subprocess.PIPE,
            text=True)
    return proc, read_url(proc)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def serve_in_thread(app):
    """`app` served by uvicorn on a free loopback port in a thread of this process; yields the port and stops
    the server (the thread must end) on leaving."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def protocol2_samples(tiny_run: dict) -> list[dict]:
    """The tiny run's test_p2 samples with the raw events prepare built them from (same reader: same order and
    codes): {"record", "meta", "history": [(time, place, behavior)] * L, "next": (time, place, behavior)}."""
    import json

    from data_prep.reading.events import load_events

    def jsonl(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    data = tiny_run["data"]
    table = load_events(tiny_run["events"])
    offsets = table.user_offsets()
    out = []
    for record, meta in zip(jsonl(data / "test_p2.jsonl"), jsonl(data / "test_p2.meta.jsonl")):
        uid, pos = meta["sample_id"].rsplit("#", 1)
        target = int(offsets[table.user_ids.index(uid)]) + int(pos)
        events = [(int(table.time[i]), table.places[table.place[i]], table.behaviors[table.behavior[i]])
                  for i in range(target - L, target + 1)]
        out.append({"record": record, "meta": meta, "history": events[:-1], "next": events[-1]})
    return out


def make_requests(events: Path, history_len: int, n: int, seed: int = 0) -> list[dict]:
    """n requests from random windows of the event log: the L events before an event, and its context."""
    import numpy as np

    from data_prep.reading.events import load_events
    from serving.predictor import local_iso

    table = load_events(events)
    offsets = table.user_offsets()
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        u = int(rng.integers(len(table.user_ids)))
        lo, hi = int(offsets[u]) + history_len, int(offsets[u + 1])
        if hi <= lo:
            continue
        t = int(rng.integers(lo, hi))
        out.append({"user_id": table.user_ids[u],
                    "events": [{"timestamp": local_iso(table.time[i]), "place": table.places[table.place[i]],
                                "behavior": table.behaviors[table.behavior[i]]} for i in range(t - history_len, t)],
                    "next": {"timestamp": local_iso(table.time[t]), "place": table.places[table.place[t]]}})
    return out
