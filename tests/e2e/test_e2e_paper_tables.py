"""Every paper-table target end to end on the tiny random Llama (no dry runs): `sweep-eps` (Table 5, including
eps = 0, whose empty aux.jsonl must not reach LLaMA-Factory), `sweep-anchor` (Table 6), `repeats` (mean ± std
over seeds), `ablations` + `ablation-report` (Table 4). Small value lists keep it to minutes. Select with
`-m e2e`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DATA = ("USERS=12", "DAYS=5", "HISTORY_LEN=5", "TRAIN_CAP=40", "VALID_CAP=6", "TEST_CAP=6", "P2_PER_BEHAVIOR=1")
FAST = ("MODEL=tiny", "F=2", "POOL=3", "ARGS=num_train_epochs=1")


def _pipeline(tmp: Path, run: str, *args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", DISABLE_VERSION_CHECK="1")
    cmd = [sys.executable, "-m", "pipeline", *args, *DATA, *FAST, f"RUN_DIR={tmp / run}",
           f"BASE_MODEL={tmp / 'tiny-model'}"]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (tmp / f"{run}-{args[0]}.log").write_text(log)
    assert proc.returncode == 0, log[-4000:]
    return log


def _table_rows(markdown: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("|")]
    return [r for r in rows[2:] if r and r[0]]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tables")
    _pipeline(tmp, "main", "prepare")
    subprocess.run([sys.executable, str(ROOT / "tests" / "tiny_models.py"), "--out", str(tmp / "tiny-model"),
                    "--dataset-dir", str(tmp / "main" / "data")], cwd=ROOT, check=True, capture_output=True)
    return tmp


def test_sweep_eps_runs_every_point_including_eps_0(tmp):
    log = _pipeline(tmp, "main", "sweep-eps", "EPS_SWEEP=0 0.2")
    assert (tmp / "main-eps0" / "data" / "aux.jsonl").stat().st_size == 0
    assert "behavior_aux is empty" in log and "training on behavior_anchor" in log
    assert json.loads((tmp / "main-eps0.2" / "data" / "stats.json").read_text())["samples"]["aux"] > 0
    rows = _table_rows((tmp / "main" / "report" / "sweep_eps.md").read_text())
    assert [r[0] for r in rows] == ["0", "0.2"]
    for run in ("main-eps0", "main-eps0.2"):
        assert (tmp / run / "btune" / "adapter_model.safetensors").is_file()
        assert "behaviorlm" in json.loads((tmp / run / "report" / "metrics.json").read_text())["models"]


def test_sweep_anchor_runs_end_to_end(tmp):
    _pipeline(tmp, "main", "sweep-anchor", "ANCHOR_SWEEP=0.02")
    stats = json.loads((tmp / "main-anchor0.02" / "data" / "stats.json").read_text())
    assert stats["config"]["anchor_threshold"] == 0.02
    assert all(b["train_freq"] > 0.02 for b in stats["behaviors"] if b["is_anchor"])
    assert [r[0] for r in _table_rows((tmp / "main" / "report" / "sweep_anchor.md").read_text())] == ["0.02"]


def test_repeats_report_mean_and_spread_over_seeds(tmp):
    _pipeline(tmp, "main", "repeats", "SEEDS=1 2")
    for seed in (1, 2):
        assert not (tmp / f"main-seed{seed}" / "data").exists()  # the run's own prepared data, read in place
        assert (tmp / f"main-seed{seed}" / "selection" / "dpo_pairs.jsonl").is_file()
        args = json.loads((tmp / f"main-seed{seed}" / "btune" / "trainer_state.json").read_text())
        assert args["global_step"] > 0
    report = json.loads((tmp / "main" / "report-seeds" / "metrics.json").read_text())
    behaviorlm = report["models"]["behaviorlm"]
    assert len(behaviorlm["runs"]) == 2 and "±" in (tmp / "main" / "report-seeds" / "report.md").read_text()


def test_ablations_and_their_table(tmp):
    _pipeline(tmp, "main", "b-tune")
    log = _pipeline(tmp, "main", "ablations")
    _pipeline(tmp, "main", "ablation-report")
    for name in ("wo_aux", "wo_dds", "wo_kmeans", "wo_dpo", "wo_atune", "reverse"):
        assert (tmp / "main" / "ablations" / name / "final" / "config.json").is_file(), name
        assert (tmp / "main" / "eval" / f"abl-{name}" / "test_p2.predictions.jsonl").is_file(), name
    # the B-tune-only ablations reused the run's pi_ref: A-tune ran once for them
    assert not (tmp / "main" / "ablations" / "wo_dds" / "pi_ref").exists()
    rows = _table_rows((tmp / "main" / "report" / "ablations.md").read_text())
    names = {r[0] for r in rows}
    assert "behaviorlm (full)" in names and {"wo_aux", "wo_dds", "wo_kmeans", "wo_dpo", "wo_atune", "reverse"} <= names
    assert "up to date: a-tune: train (atune_lora_sft)" in log  # the run's own A-tune, reused
