"""Dry runs of the pipeline (`python -m pipeline --dry-run`) and the placeholder files the targets look for,
shared by the pipeline's target tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOTH = ("test_p1", "test_p2")


def run_pipeline(run_dir: Path, *args: str, dry: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipeline", *(["--dry-run"] if dry else []), "MODEL=tiny", f"RUN_DIR={run_dir}",
           *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)


def dry_run(run_dir: Path, *args: str) -> str:
    proc = run_pipeline(run_dir, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def lines_with(out: str, needle: str) -> list[str]:
    return [line for line in out.splitlines() if needle in line]


def prepared_data(run_dir: Path) -> Path:
    data = run_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "stats.json").write_text("{}")
    return data


def fake_predictions(run_dir: Path, name: str, splits=BOTH) -> Path:
    out = run_dir / "eval" / name
    out.mkdir(parents=True, exist_ok=True)
    for split in splits:
        (out / f"{split}.predictions.jsonl").write_text("")
    return out


def pred_args(report_line: str) -> list[str]:
    words = report_line.split()
    return [words[i + 1] for i, w in enumerate(words) if w == "--pred"]
