"""The figure targets: the paper's figures on the run's own data (Fig. 1b, 3a, 3b, 5; Table 7), each a target
that trains what it needs through the chain's targets and writes `<name>.png/.md/.json` into the run's report/."""
from __future__ import annotations

from pathlib import Path

from . import launch, stages
from .graph import Runner, Stage
from .layout import Layout, stamp_of
from .settings import Settings
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


def _figure(r: Runner, lay: Layout, kind: str, points: list[str]) -> None:
    args = [x for point in points for x in ("--point", point)]
    always(r, kind, launch.python_module("evaluation", "figure", kind, *args, "--out", str(lay.report_dir)))


def behavior_map(r: Runner, s: Settings, lay: Layout) -> None:
    """Fig. 1b: the base model's embedding of every behavior name -> report/behavior_map.png/.md/.json."""
    check_data(r, lay)
    model = stages.base_model(s, launch.Recipe(s, s["ATUNE_RECIPE"]))
    out = lay.report_dir / "behavior_map.json"
    cmd = launch.python_module("evaluation", "behavior-map", "--model", model, "--dataset-dir", str(lay.data),
                               "--out", str(lay.report_dir))
    model_inputs, model_params = stages.model_stamp_inputs(model)
    r.run(Stage("behavior map", stamp_of(out), lambda: launch.run(cmd), cmd,
                inputs=[*model_inputs, lay.data / "stats.json"], params=model_params, outputs=[out]))


def _f_values(s: Settings) -> list[str]:
    """F_SWEEP, refused before anything trains when a value is not a count or exceeds the scored pool."""
    values = s.words("F_SWEEP")
    if not values or not all(v.isdigit() and int(v) > 0 for v in values):
        raise SystemExit(f"error: F_SWEEP must be positive integers, got {s['F_SWEEP']!r}")
    over = [v for v in values if s["POOL"].isdigit() and int(v) > int(s["POOL"])]
    if over:
        raise SystemExit(f"error: F_SWEEP {' '.join(over)} above POOL={s['POOL']}: select can pick at most POOL "
                         "scored samples per behavior (raise POOL or drop those values)")
    return values


def sweep_f(r: Runner, s: Settings, lay: Layout) -> None:
    """Fig. 3b: select and B-tune for each F from the run's own pi_ref and scores, each evaluated."""
    values = _f_values(s)
    score(r, s, lay)
    points = []
    for f in values:
        sub_s, sub = s.with_(F=f), lay.ablation(f"sweep-f{f}", True)
        r.run(stages.select(sub_s, sub))
        r.run(stages.btune_train(sub_s, sub))
        eval_if(r, s, lay, f"sweep-f{f}", lay.pi_ref, sub.btune, sub.btune)
        points.append(f"{f}={lay.report_dir / 'metrics.json'}#sweep-f{f}")
    report(r, s, lay, also=[f"sweep-f{f}" for f in values])
    _figure(r, lay, "sweep_f", points)


def tuning_data(r: Runner, s: Settings, lay: Layout) -> None:
    """Fig. 5: A-tune on all behaviors (full-ft), on anchors (a-tune), on tails + medium + aux (the reverse
    ablation's first stage), each merged and evaluated."""
    a_tune(r, s, lay)
    full_ft(r, s, lay)
    ablation(r, s, lay, "reverse", target=a_tune)
    models = {"full-ft": lay.ablation("wo_atune", False).pi_ref, "a-tune": lay.pi_ref,
              "reverse-a-tune": lay.ablation("reverse", False).pi_ref}
    for name, model in models.items():
        eval_if(r, s, lay, name, model, None, model)
    report(r, s, lay, also=list(models))
    _figure(r, lay, "tuning_data", [f"{TUNING_DATA[n]}={lay.report_dir / 'metrics.json'}#{n}" for n in models])


def _compared_runs(s: Settings, lay: Layout):
    """RUNS: names beside this run's directory (runs/<name>) or directories."""
    for word in s.words("RUNS"):
        run_dir = Path(word).expanduser().resolve() if "/" in word else lay.run_dir.with_name(word)
        sub = s.with_(RUN=run_dir.name, RUN_DIR=str(run_dir), DATA_DIR=str(run_dir / "data"))
        yield sub, Layout.of(sub)


def compare_runs(r: Runner, s: Settings, lay: Layout) -> None:
    """Fig. 3a: each run's report (brought up to date), then anchor and tail accuracy per run and method."""
    if not s.words("RUNS"):
        raise SystemExit('usage: make compare-runs RUNS="run-1.5b run-8b run-70b" (each evaluated by make eval)')
    points = []
    for sub, sub_lay in _compared_runs(s, lay):
        report(r, sub, sub_lay)
        found = stages.finished_predictions([sub_lay.run_dir], r.exists)
        points += [f"{sub_lay.run_dir.name}/{m}={sub_lay.report_dir / 'metrics.json'}#{m}" for m in COMPARED
                   if m in found]
    _figure(r, lay, "compare_runs", points)


def sweep_aux(r: Runner, s: Settings, lay: Layout) -> None:
    """Table 7: the whole chain once per auxiliary conversation set (its own prepare, the same EPS)."""
    files = s.words("AUX_SWEEP")
    if not files:
        raise SystemExit('usage: make sweep-aux AUX_SWEEP="chat.json math.jsonl health.jsonl"')
    stems = [Path(f).stem for f in files]
    missing = [f for f in files if not Path(f).is_file()]
    if missing or len(set(stems)) < len(stems):
        raise SystemExit(f"error: AUX_SWEEP: {'no file ' + missing[0] if missing else 'two files named alike'}: "
                         f"{s['AUX_SWEEP']}")
    points = []
    for f, stem in zip(files, stems):
        sub, sub_lay = sub_run(s, lay, f"aux-{stem}", AUX=str(Path(f).resolve()))
        prepare(r, sub, sub_lay)
        b_tune(r, sub, sub_lay)
        eval_all(r, sub, sub_lay)
        points.append(f"{stem}={sub_lay.report_dir / 'metrics.json'}#behaviorlm")
    _figure(r, lay, "sweep_aux", points)



FIGURE_TARGETS = {"behavior-map": behavior_map, "sweep-f": sweep_f, "tuning-data": tuning_data,
                  "compare-runs": compare_runs, "sweep-aux": sweep_aux}
