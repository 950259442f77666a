"""Adding a stage option is one field: in a copy of the project, a new field of selection's config (with its Make
name and help, nothing else edited) is listed by `make help`, written into docs/pipeline.md's table by `python -m
pipeline.settings`, offered by `python -m selection select --help` and passed to the stage by a dry run."""
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
    config = copy / "selection" / "config.py"
    text = config.read_text(encoding="utf-8")
    anchor = "    seed: int = field(default=ScoreConfig.seed"
    assert text.count(anchor) == 1
    config.write_text(text.replace(anchor, NEW_FIELD + anchor), encoding="utf-8")
    return copy


def _python(copy: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    proc = subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_new_selection_field_reaches_help_docs_and_the_stage(tmp_path):
    copy = _copy_with_new_field(tmp_path)
    help_lines = [line.split() for line in _python(copy, "-m", "pipeline", "help").splitlines()]
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
    out = _python(copy, "-m", "pipeline", "select", "--dry-run", "MODEL=tiny", f"RUN_DIR={run}",
                  f"BASE_MODEL={tmp_path / 'base'}", "MIN_POOL=7")
    (select,) = [line for line in out.splitlines() if "-m selection select" in line]
    assert " --min-pool 7 " in select
