"""Adding a stage option is one field: in a copy of the project (its Makefile too), a new field of selection's config
(with its Make name and help, nothing else edited) is listed by `make help`, written into docs/pipeline.md's table
by `python -m pipeline.settings`, offered by `python -m selection select --help` and passed to the stage by `make
select NAME=value DRY_RUN=1`, the Makefile's dry run (make's own --dry-run would only print the recipe line)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NEW_FIELD = ('    min_pool: int = field(default=0, metadata={"make": "MIN_POOL", "help": "behaviors with fewer scored '
             'samples are left out"})\n')


def _copy_with_new_field(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "runs", "tests",
                                                             "__pycache__", "*.egg-info"))
    assert (copy / "Makefile").is_file()
    config = copy / "selection" / "config.py"
    text = config.read_text(encoding="utf-8")
    anchor = "    seed: int = field(default=ScoreConfig.seed"
    assert text.count(anchor) == 1
    config.write_text(text.replace(anchor, NEW_FIELD + anchor), encoding="utf-8")
    return copy


def _env(copy: Path) -> dict[str, str]:
    drop = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "DRY_RUN")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "PYTHONPATH": str(copy)}


def _python(copy: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=copy, env=_env(copy), capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _venv(tmp_path: Path) -> Path:
    """A VENV for the copy's Makefile: its python is this test's, its setup stamp newer than the copied
    requirements, so `make` runs the target and installs nothing."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (venv / ".setup-stamp").touch()
    return venv


def _make(copy: Path, venv: Path, *args: str) -> str:
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(copy), *args, f"VENV={venv}"], cwd=copy,
                          env=_env(copy), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_new_selection_field_reaches_help_docs_and_the_stage(tmp_path):
    copy, venv = _copy_with_new_field(tmp_path), _venv(tmp_path)
    help_lines = [line.split() for line in _make(copy, venv, "help").splitlines()]
    assert ["MIN_POOL", "behaviors", "with", "fewer", "scored", "samples", "are", "left", "out", "[default:",
            "0]"] in help_lines

    _python(copy, "-m", "pipeline.settings")
    docs = (copy / "docs" / "pipeline.md").read_text(encoding="utf-8")
    assert ("| `MIN_POOL` | `0` | behaviors with fewer scored samples are left out | `SelectConfig.min_pool` |"
            in docs.splitlines())

    assert "--min-pool" in _python(copy, "-m", "selection", "select", "--help")

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "stats.json").write_text("{}")
    (tmp_path / "base").mkdir()
    out = _make(copy, venv, "select", "MIN_POOL=7", "DRY_RUN=1", "MODEL=tiny", f"RUN_DIR={run}",
                f"BASE_MODEL={tmp_path / 'base'}")
    (select,) = [line for line in out.splitlines() if "-m selection select" in line]
    assert " --min-pool 7 " in select
