"""`make demo`: the whole BehaviorLM chain, offline, on SmolLM2-135M-Instruct, timed stage by stage.

Every stage is the Make target a user would run by hand, with the variables of a profile file
(`recipes/<model>/demo.env`: one `NAME=value` per line, `#` comments), so the demo cannot drift from the
real recipes. The chain: convert the GGUF -> prepare -> zero-shot evaluation -> A-tune (+ merge) -> score
-> select -> B-tune (DPO) -> full fine-tuning baseline -> evaluation and report. The stage times are
printed, and saved beside the report as `stage_times.json`.

    python -m evaluation.demo [--profile recipes/smollm2-135m-instruct/demo.env] [--run-dir DIR] [NAME=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROFILE = ROOT / "recipes" / "smollm2-135m-instruct" / "demo.env"
BUDGET_S = 15 * 60  # issue 5: the chain after setup on a 2-core CPU


def read_profile(path: Path) -> dict[str, str]:
    """`NAME=value` lines; blank lines and `#` comments ignored; values are taken verbatim (spaces kept)."""
    variables = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip().isidentifier():
            raise SystemExit(f"error: {path}: line {number}: expected NAME=value, got {line!r}")
        variables[name.strip()] = value.strip()
    return variables


def stages(variables: dict[str, str]) -> list[tuple[str, list[str], bool]]:
    """(stage name, make targets and stage-only variables, counted in the budget)."""
    model_dir = variables["SMOLLM2_DIR"]
    chain = [
        ("convert SmolLM2 GGUF (setup, cached)", ["smollm2"], False),
        ("prepare", ["prepare"], True),
        ("zero-shot evaluation", ["eval-model", "EVAL_NAME=zero-shot", f"EVAL_MODEL={model_dir}"], True),
        ("A-tune (LoRA SFT) + merge -> pi_ref", ["a-tune"], True),
        ("score the pool with pi_ref", ["score"], True),
        ("select (difficulty-weighted k-means++) + DPO pairs", ["select"], True),
        ("B-tune (LoRA DPO from pi_ref)", ["b-tune"], True),
    ]
    if variables.get("DEMO_FULL_FT", "1") != "0":
        chain.append(("full fine-tuning baseline (all behaviors) + merge", ["full-ft"], True))
    chain.append(("evaluation of every model + report", ["eval"], True))
    return chain


def run_stage(targets: list[str], variables: dict[str, str]) -> None:
    command = ["make", "--no-print-directory", "-C", str(ROOT), *targets, *(f"{k}={v}" for k, v in variables.items())]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def format_times(times: list[dict]) -> str:
    lines = ["| stage | wall time (s) |", "| --- | ---: |"]
    lines += [f"| {t['stage']}{'' if t['budget'] else ' (not counted)'} | {t['seconds']:.1f} |" for t in times]
    total = sum(t["seconds"] for t in times if t["budget"])
    lines.append(f"| **total, setup excluded** (budget {BUDGET_S} s) | **{total:.1f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE)
    parser.add_argument("--run-dir", type=Path, help="default: runs/<RUN of the profile>")
    parser.add_argument("overrides", nargs="*", metavar="NAME=value", help="override profile variables")
    args = parser.parse_args(argv)

    variables = read_profile(args.profile)
    for item in args.overrides:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"expected NAME=value, got {item!r}")
        variables[name] = value
    run_dir = (args.run_dir or ROOT / "runs" / variables.get("RUN", "demo")).resolve()
    variables["RUN_DIR"] = str(run_dir)
    variables.setdefault("SMOLLM2_DIR", str(ROOT / ".cache" / "smollm2-135m-instruct"))
    variables.setdefault("BASE_MODEL", variables["SMOLLM2_DIR"])

    times = []
    for name, targets, counted in stages(variables):
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        run_stage(targets, variables)
        times.append({"stage": name, "seconds": round(time.perf_counter() - start, 1), "budget": counted})
        print(f"=== {name}: {times[-1]['seconds']:.1f} s ===", flush=True)

    report_dir = run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "stage_times.json").write_text(json.dumps(times, indent=2) + "\n", encoding="utf-8")
    print("\n## Stage wall times\n\n" + format_times(times))
    report = report_dir / "report.md"
    if report.is_file():
        print(f"\nRun report: {report} (charts beside it)")
    total = sum(t["seconds"] for t in times if t["budget"])
    if total > BUDGET_S:
        print(f"warning: the chain took {total:.0f} s, over the {BUDGET_S} s budget", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
