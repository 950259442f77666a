"""The tiny chain's commands: pipeline targets through make and the stock llamafactory-cli on the tiny random
Llama, each with its log, shared by the end-to-end tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LF_CLI = Path(sys.executable).parent / "llamafactory-cli"
RECIPE_FOLDER = "tiny"
F = 3


def run_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", DISABLE_VERSION_CHECK="1")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(ROOT)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_logged(cmd: list[str], log: Path) -> str:
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=run_env(), capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}); log {log}:\n{tail}")
    return proc.stdout + proc.stderr


PREPARE = ("USERS=12", "DAYS=5", "HISTORY_LEN=5", "TRAIN_CAP=40", "VALID_CAP=6", "TEST_CAP=6", "P2_PER_BEHAVIOR=1",
           "EPS=0.2", "SEED=7")


# (make's arguments, the stages it ran, the paths under the run dir it created, changed or removed)
WRITES: list[tuple[tuple[str, ...], list[str], list[str]]] = []


def snapshot(run_dir: Path) -> dict[str, tuple[int, int, int]]:
    files = [p for p in run_dir.rglob("*") if not p.is_dir() or p.is_symlink()] if run_dir.exists() else []
    return {str(p.relative_to(run_dir)): (p.lstat().st_size, p.lstat().st_mtime_ns, p.lstat().st_ino) for p in files}


def make_target(run_dir: Path, base: Path | None, *args: str, log: Path) -> str:
    before = snapshot(run_dir)
    out = run_logged(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), *args, f"MODEL={RECIPE_FOLDER}",
                      f"RUN_DIR={run_dir}", *([f"BASE_MODEL={base}"] if base else []),
                      f"VENV={Path(sys.executable).parents[1]}"], log)
    after = snapshot(run_dir)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    WRITES.append((args, stages_ran(out), changed))
    return out


def stages_ran(log: str) -> list[str]:
    """The stages a pipeline log says it ran ("==> <stage> (<why>)"), in order, without the recipe name."""
    return [line[4:].split(" (")[0] for line in log.splitlines() if line.startswith("==> ")]


def invalidation_runs(finished_run: Path, base: Path, tmp: Path, logs: Path) -> dict[str, list[str]]:
    """Which stages of `make b-tune` run after each kind of change (pipeline/graph.py), on a copy of the run
    (stamps record content and location-free parameters, so a moved run is still up to date)."""
    run_dir = tmp / "moved-run"
    shutil.copytree(finished_run, run_dir, symlinks=True)
    # the run's last selection is export-final's, with the default F
    ran = {"nothing": stages_ran(make_target(run_dir, base, "b-tune", log=logs / "inv-nothing.log")),
           "F": stages_ran(make_target(run_dir, base, "b-tune", f"F={F - 1}", log=logs / "inv-f.log"))}
    recipes = tmp / "recipes"
    shutil.copytree(ROOT / "recipes", recipes)
    dpo = recipes / RECIPE_FOLDER / "btune_lora_dpo.yaml"
    dpo.write_text(dpo.read_text().replace("pref_beta: 0.1", "pref_beta: 0.2"))
    ran["recipe"] = stages_ran(make_target(run_dir, base, "b-tune", f"F={F - 1}", f"RECIPES={recipes}",
                                           log=logs / "inv-r.log"))
    shutil.rmtree(run_dir / "scores")
    ran["deleted"] = stages_ran(make_target(run_dir, base, "b-tune", f"F={F - 1}", f"RECIPES={recipes}",
                                            log=logs / "inv-d.log"))
    prepare = [v if not v.startswith("EPS=") else "EPS=0.4" for v in PREPARE]
    ran["eps_prepare"] = stages_ran(make_target(run_dir, None, "prepare", *prepare, log=logs / "inv-eps-prepare.log"))
    ran["eps"] = stages_ran(make_target(run_dir, base, "b-tune", f"F={F - 1}", f"RECIPES={recipes}",
                                        log=logs / "inv-eps.log"))
    # the token check switched on later (as if SKIP_TOKEN_CHECK=1 had been set until now)
    shutil.rmtree(run_dir / "token_check")
    (run_dir / "token_check.stamp.json").unlink()
    ran["token_check_on"] = stages_ran(make_target(run_dir, base, "b-tune", f"F={F - 1}", f"RECIPES={recipes}",
                                                   log=logs / "inv-token-check.log"))
    return ran
