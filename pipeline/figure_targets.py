"""The figure targets: the paper's figures on the run's own data (Fig. 1b, 3a, 3b, 5; Table 7), each a target
that trains what it needs through the chain's targets and writes `<name>.png/.md/.json` into the run's report/."""
from __future__ import annotations

from pathlib import Path

from cli import UsageError

from . import launch, stages
from .graph import Runner, Stage
from .layout import Layout, stamp_of
from .settings import Variables
from .targets import (
    a_tune,
    ablation,
    always,
    b_tune,
    check_data,
    eval_all,
    eval_if,
    full_ft,
    prepare,
    report,
    score,
    sub_run,
)

TUNING_DATA = {"full-ft": "all behaviors (full-ft)", "a-tune": "anchors (a-tune)",
               "reverse-a-tune": "tails (reverse A-tune)"}   # Fig. 5: eval name -> what it was tuned on
COMPARED = ("zero-shot", "full-ft", "a-tune", "behaviorlm")   # Fig. 3a's tuning methods, as the report names them


def _figure(runner: Runner, layout: Layout, kind: str, points: list[str]) -> None:
    args = [x for point in points for x in ("--point", point)]
    always(runner, kind, launch.python_module("evaluation", "figure", kind, *args, "--out", str(layout.report_dir)))


def behavior_map(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Fig. 1b: the base model's embedding of every behavior name -> report/behavior_map.png/.md/.json."""
    check_data(runner, layout)
    model = stages.base_model(variables, launch.Recipe(variables, variables["ATUNE_RECIPE"]))
    out = layout.report_dir / "behavior_map.json"
    cmd = launch.python_module("evaluation", "behavior-map", "--model", model, "--dataset-dir", str(layout.data),
                               "--out", str(layout.report_dir))
    model_inputs, model_params = stages.model_stamp_inputs(model)
    runner.run(Stage("behavior map", stamp_of(out), lambda: launch.run(cmd), cmd,
                inputs=[*model_inputs, layout.data / "stats.json"], params=model_params, outputs=[out]))


def _f_values(variables: Variables) -> list[str]:
    """F_SWEEP, refused before anything trains when a value is not an F (selection's config checks each) or
    exceeds the scored pool."""
    values = variables.words("F_SWEEP")
    if not values:
        raise UsageError("F_SWEEP is empty: sweep-f needs the values of F")
    for value in values:
        try:
            variables.with_(F=value)
        except UsageError as err:
            raise UsageError(f"F_SWEEP: {err}") from None
    over = [v for v in values if variables["POOL"].isdigit() and int(v) > int(variables["POOL"])]
    if over:
        raise UsageError(f"F_SWEEP {' '.join(over)} above POOL={variables['POOL']}: select can pick at most POOL "
                         "scored samples per behavior (raise POOL or drop those values)")
    return values


def sweep_f(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Fig. 3b: select and B-tune for each F from the run's own pi_ref and scores, each evaluated."""
    values = _f_values(variables)
    score(runner, variables, layout)
    points = []
    for f in values:
        sub_s, sub = variables.with_(F=f), layout.ablation(f"sweep-f{f}", True)
        runner.run(stages.select(sub_s, sub))
        runner.run(stages.btune_train(sub_s, sub))
        eval_if(runner, variables, layout, f"sweep-f{f}", layout.pi_ref, sub.btune, sub.btune)
        points.append(f"{f}={layout.report_dir / 'metrics.json'}#sweep-f{f}")
    report(runner, variables, layout, also=[f"sweep-f{f}" for f in values])
    _figure(runner, layout, "sweep_f", points)


def tuning_data(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Fig. 5: A-tune on all behaviors (full-ft), on anchors (a-tune), on tails + medium + aux (the reverse
    ablation's first stage), each merged and evaluated."""
    a_tune(runner, variables, layout)
    full_ft(runner, variables, layout)
    ablation(runner, variables, layout, "reverse", target=a_tune)
    models = {"full-ft": layout.ablation("wo_atune", False).pi_ref, "a-tune": layout.pi_ref,
              "reverse-a-tune": layout.ablation("reverse", False).pi_ref}
    for name, model in models.items():
        eval_if(runner, variables, layout, name, model, None, model)
    report(runner, variables, layout, also=list(models))
    metrics = layout.report_dir / "metrics.json"
    _figure(runner, layout, "tuning_data", [f"{TUNING_DATA[n]}={metrics}#{n}" for n in models])


def _compared_runs(variables: Variables, layout: Layout):
    """RUNS: names beside this run's directory (runs/<name>) or directories."""
    for word in variables.words("RUNS"):
        run_dir = Path(word).expanduser().resolve() if "/" in word else layout.run_dir.with_name(word)
        sub = variables.with_(RUN=run_dir.name, RUN_DIR=str(run_dir), DATA_DIR=str(run_dir / "data"))
        yield sub, Layout.of(sub)


def compare_runs(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Fig. 3a: each run's report (brought up to date), then anchor and tail accuracy per run and method."""
    if not variables.words("RUNS"):
        raise UsageError('RUNS is needed: make compare-runs RUNS="run-1.5b run-8b run-70b" (each evaluated by '
                         'make eval)')
    points = []
    for sub, sub_lay in _compared_runs(variables, layout):
        report(runner, sub, sub_lay)
        found = stages.finished_predictions([sub_lay.run_dir], runner.exists)
        points += [f"{sub_lay.run_dir.name}/{m}={sub_lay.report_dir / 'metrics.json'}#{m}" for m in COMPARED
                   if m in found]
    _figure(runner, layout, "compare_runs", points)


def sweep_aux(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Table 7: the whole chain once per auxiliary conversation set (its own prepare, the same EPS)."""
    files = variables.words("AUX_SWEEP")
    if not files:
        raise UsageError('AUX_SWEEP is needed: make sweep-aux AUX_SWEEP="chat.json math.jsonl health.jsonl"')
    stems = [Path(f).stem for f in files]
    missing = [f for f in files if not Path(f).is_file()]
    if missing or len(set(stems)) < len(stems):
        raise UsageError(f"AUX_SWEEP: {'no file ' + missing[0] if missing else 'two files named alike'}: "
                         f"{variables['AUX_SWEEP']}")
    points = []
    for f, stem in zip(files, stems):
        sub, sub_lay = sub_run(variables, layout, f"aux-{stem}", AUX=str(Path(f).resolve()))
        prepare(runner, sub, sub_lay)
        b_tune(runner, sub, sub_lay)
        eval_all(runner, sub, sub_lay)
        points.append(f"{stem}={sub_lay.report_dir / 'metrics.json'}#behaviorlm")
    _figure(runner, layout, "sweep_aux", points)



FIGURE_TARGETS = {"behavior-map": behavior_map, "sweep-f": sweep_f, "tuning-data": tuning_data,
                  "compare-runs": compare_runs, "sweep-aux": sweep_aux}
