"""The paper's figure targets end to end on the tiny random Llama, on one prepared run (no dry runs):
`behavior-map` (Fig. 1b), `sweep-f` (Fig. 3b), `tuning-data` (Fig. 5), `sweep-aux` (Table 7) and
`compare-runs` (Fig. 3a) over the run and the sweep-aux run. Each writes `<name>.png/.md/.json` into the run's
report/. Select with `-m e2e`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DATA = ("USERS=12", "DAYS=5", "HISTORY_LEN=5", "TRAIN_CAP=40", "VALID_CAP=6", "TEST_CAP=6", "P2_PER_BEHAVIOR=1",
        "EPS=0.2", "CALIB_SAMPLES=0")
FAST = ("MODEL=tiny", "F=2", "POOL=3", "ARGS=num_train_epochs=1")
PNG = b"\x89PNG\r\n\x1a\n"


def _pipeline(tmp: Path, run: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", DISABLE_VERSION_CHECK="1")
    cmd = [sys.executable, "-m", "pipeline", *args, *DATA, *FAST, f"RUN_DIR={tmp / run}",
           f"BASE_MODEL={tmp / 'tiny-model'}"]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    (tmp / f"{run}-{args[0]}.log").write_text(proc.stdout + proc.stderr)
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def _figure(report: Path, name: str) -> dict:
    assert (report / f"{name}.png").read_bytes()[:8] == PNG
    assert (report / f"{name}.md").read_text().count("\n| ") >= 1
    return json.loads((report / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("figures")
    _pipeline(tmp, "main", "prepare")
    subprocess.run([sys.executable, str(ROOT / "tests" / "tiny_models.py"), "--out", str(tmp / "tiny-model"),
                    "--dataset-dir", str(tmp / "main" / "data")], cwd=ROOT, check=True, capture_output=True)
    return tmp


def test_behavior_map_places_every_behavior(tmp):
    _pipeline(tmp, "main", "behavior-map")
    stats = json.loads((tmp / "main" / "data" / "stats.json").read_text())
    data = _figure(tmp / "main" / "report", "behavior_map")
    assert {p["behavior"] for p in data["points"]} == {b["name"] for b in stats["behaviors"]}
    tails = {b["name"] for b in stats["behaviors"] if not b["is_anchor"]}
    assert {n["tail"] for n in data["nearest_anchor"]} == tails
    assert "up to date: behavior map" in _pipeline(tmp, "main", "behavior-map").stdout


def test_sweep_f_btunes_each_f_from_one_pi_ref(tmp):
    assert "POOL=3" in _pipeline(tmp, "main", "sweep-f", "F_SWEEP=1 4", check=False).stderr
    assert not (tmp / "main" / "atune").exists()   # refused before anything trained
    _pipeline(tmp, "main", "sweep-f", "F_SWEEP=1 3")
    pairs = {f: len((tmp / "main" / "ablations" / f"sweep-f{f}" / "selection" / "dpo_pairs.jsonl").read_text()
                    .splitlines()) for f in (1, 3)}
    assert 0 < pairs[1] < pairs[3]
    assert not (tmp / "main" / "ablations" / "sweep-f1" / "pi_ref").exists()   # the run's pi_ref and scores
    data = _figure(tmp / "main" / "report", "sweep_f")
    metrics = json.loads((tmp / "main" / "report" / "metrics.json").read_text())["models"]
    for f in ("1", "3"):
        p2 = metrics[f"sweep-f{f}"]["summary"]["test_p2"]
        assert data["points"][f]["anchor_accuracy"] == p2["anchor_accuracy"]["mean"]
        assert data["points"][f]["tail_behavior_accuracy"] == p2["tail_behavior_accuracy"]["mean"]


def test_tuning_data_compares_all_anchor_and_tail_tuning(tmp):
    log = _pipeline(tmp, "main", "tuning-data").stdout
    assert "auxiliary conversations: eps 0.2 asked" in log
    for folder in ("atune", "ablations/wo_atune/atune", "ablations/reverse/atune"):
        assert (tmp / "main" / folder / "adapter_model.safetensors").is_file(), folder
    assert not (tmp / "main" / "ablations" / "reverse" / "btune").exists()
    data = _figure(tmp / "main" / "report", "tuning_data")
    assert list(data["points"]) == ["all behaviors (full-ft)", "anchors (a-tune)", "tails (reverse A-tune)"]


def test_sweep_aux_and_compare_runs(tmp):
    aux = tmp / "openai.jsonl"
    aux.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Name a colour, {i}."},
                                                    {"role": "assistant", "content": "Blue."}]}) + "\n"
                           for i in range(6)))
    _pipeline(tmp, "main", "sweep-aux", f"AUX_SWEEP={aux}")
    written = (tmp / "main-aux-openai" / "data" / "aux.jsonl").read_text()
    assert "Name a colour, " in written and '"from": "gpt"' in written
    table = _figure(tmp / "main" / "report", "sweep_aux")
    assert list(table["points"]) == ["openai"]

    _pipeline(tmp, "main", "compare-runs", "RUNS=main main-aux-openai")
    runs = _figure(tmp / "main" / "report", "compare_runs")["runs"]
    assert list(runs) == ["main", "main-aux-openai"]
    assert list(runs["main"]) == ["full-ft", "a-tune"]   # what tuning-data evaluated there, in Fig. 3a's order
    assert list(runs["main-aux-openai"]) == ["zero-shot", "a-tune", "behaviorlm"]
