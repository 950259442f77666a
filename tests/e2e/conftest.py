"""The tiny chain, run once for the end-to-end tests that read it (test_e2e_tiny.py, test_e2e_tiny_eval.py):
prepare -> build tiny model -> a-tune (DeepSpeed ZeRO-2 on 2 CPU ranks) -> interrupted-run resume -> b-tune ->
export-final -> a negative-control DPO -> make eval, then the invalidation runs on a copy of the run."""
from __future__ import annotations

import shutil
import sys

import pytest
from tiny_chain import LF_CLI, PREPARE, ROOT, WRITES, F, invalidation_runs, make_target, run_logged


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    run_dir, logs = tmp / "run", tmp / "logs"
    logs.mkdir()
    data = run_dir / "data"
    py = sys.executable
    make_target(run_dir, None, "prepare", *PREPARE, log=logs / "prepare.log")
    base = tmp / "tiny-model"
    run_logged([py, str(ROOT / "tests" / "tiny_models.py"), "--out", str(base), "--dataset-dir", str(data)],
               logs / "build.log")

    # A-tune with DeepSpeed ZeRO-2 on 2 CPU ranks, then merge.
    distributed = ("NPROC=2", "DEEPSPEED=z2")
    make_target(run_dir, base, "a-tune", *distributed, log=logs / "atune.log")
    atune = run_dir / "atune"
    uninterrupted = tmp / "atune-uninterrupted"
    shutil.copytree(atune, uninterrupted)

    # Simulate an interrupt after the first epoch: drop the last checkpoint, the final adapter and the stamps.
    checkpoints = sorted(atune.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2, checkpoints
    first_ckpt, last_ckpt = checkpoints
    first_mtime = (first_ckpt / "trainer_state.json").stat().st_mtime_ns
    shutil.rmtree(last_ckpt)
    for name in ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json"):
        (atune / name).unlink()
    resume_log = make_target(run_dir, base, "a-tune", *distributed, log=logs / "atune-resume.log")
    rerun_log = make_target(run_dir, base, "a-tune", *distributed, log=logs / "atune-rerun.log")

    make_target(run_dir, base, "b-tune", f"F={F}", log=logs / "btune.log")
    make_target(run_dir, base, "export-final", log=logs / "export.log")

    # Negative control: DPO on base + the A-tune adapter (not merged): the reference is then the base model.
    run_logged([str(LF_CLI), "train", str(ROOT / "recipes/tiny/btune_lora_dpo.yaml"), f"model_name_or_path={base}",
                f"adapter_name_or_path={atune}", f"dataset_dir={run_dir / 'selection'}",
                f"output_dir={tmp / 'dpo-unmerged'}", "max_steps=1"], logs / "dpo-unmerged.log")
    # Evaluation: every model of the run, the baselines and the report; then a generated-output evaluation and
    # a rerun of make eval, which must redo no finished prediction and report the generated one beside the rest.
    eval_log = make_target(run_dir, base, "eval", log=logs / "eval.log")
    make_target(run_dir, base, "eval-model", "EVAL_NAME=a-tune", f"EVAL_MODEL={run_dir / 'pi_ref'}", "EVAL_GENERATE=1",
                log=logs / "eval-generate.log")
    eval_rerun_log = make_target(run_dir, base, "eval", log=logs / "eval-rerun.log")
    invalidation = invalidation_runs(run_dir, base, tmp, logs)
    return {"invalidation": invalidation, "run": run_dir, "base": base, "tmp": tmp, "uninterrupted": uninterrupted,
            "first_ckpt": first_ckpt, "first_mtime": first_mtime, "resume_log": resume_log, "rerun_log": rerun_log,
            "eval_log": eval_log, "eval_rerun_log": eval_rerun_log, "writes": list(WRITES)}
