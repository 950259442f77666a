"""The Make targets: each is a chain of stages (stages.py) run in order by one Runner.

Tuning targets never prepare: they need a prepared dataset (`make prepare`). Evaluation targets never
train: they evaluate the models whose stage has finished and say which ones they skip.
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from cli import UsageError
from data_prep.reading.sources import is_uri
from data_prep.sampling import auxiliary
from serving.config import EventFilesConfig, EventLabelsConfig, PredictFilesConfig, PredictionConfig, ServeConfig

from . import launch, stages
from .graph import Runner, Stage
from .layout import Layout, finished, older_layout, stamp_of
from .settings import ROOT, Variables

ABLATIONS = {  # name -> (settings changed, reuses the run's A-tune, pi_ref and scores); paper Table 4 and 4.5
    "wo_aux": (lambda variables: {"ATUNE_ARGS": f"dataset=behavior_anchor {variables['ATUNE_ARGS']}".strip()}, False),
    "wo_dds": (lambda variables: {"SELECT_MODE": "uniform"}, True),
    "wo_kmeans": (lambda variables: {"SELECT_MODE": "topf"}, True),
    "wo_dpo": (lambda variables: {"BTUNE_RECIPE": "wo_dpo_lora_sft"}, True),
    "wo_atune": (lambda variables: {"ATUNE_RECIPE": "full_lora_sft"}, False),
    "reverse": (lambda variables: {"ATUNE_RECIPE": "reverse_lora_sft"}, False),
}


def check_data(runner: Runner, layout: Layout) -> None:
    if not runner.exists(layout.data / "stats.json"):
        raise UsageError(f"no prepared dataset in {layout.data}: run make prepare first")
    older = older_layout(layout)
    if older:
        raise UsageError(older)


def prepare(runner: Runner, variables: Variables, layout: Layout) -> None:
    runner.run(stages.prepare(variables, layout))
    model = stages.base_model(variables, launch.Recipe(variables, variables["ATUNE_RECIPE"]))
    if Path(model).exists():
        token_check(runner, variables, layout)
    else:
        print(f"note: token lengths are checked before A-tune ({model} is not here yet)")


def token_check(runner: Runner, variables: Variables, layout: Layout) -> None:
    if layout.shared_data:
        return  # an ablation or a seed repeat reads the run's data/, which the run's own chain checked
    if variables.flag("SKIP_TOKEN_CHECK"):
        print("note: SKIP_TOKEN_CHECK is set: samples longer than the recipes' cutoff_len train on truncated prompts")
        return
    runner.run(stages.token_check(variables, layout))


def aux_ratio(layout: Layout) -> None:
    """The auxiliary mixture A-tune trains on (eps asked and achieved), read from the run's stats.json."""
    try:
        aux = json.loads((layout.data / "stats.json").read_text(encoding="utf-8")).get("aux")
    except (OSError, ValueError):
        return
    if aux:
        print(auxiliary.ratio_line(aux))


def a_tune(runner: Runner, variables: Variables, layout: Layout) -> None:
    check_data(runner, layout)
    token_check(runner, variables, layout)
    aux_ratio(layout)
    runner.run(stages.atune_train(variables, layout))
    runner.run(stages.merge(variables, layout))


def score(runner: Runner, variables: Variables, layout: Layout) -> None:
    a_tune(runner, variables, layout)
    runner.run(stages.score(variables, layout))


def select(runner: Runner, variables: Variables, layout: Layout) -> None:
    score(runner, variables, layout)
    runner.run(stages.select(variables, layout))


_WARNED: set[Path] = set()   # later round folders already named in this process


def btune_rounds(variables: Variables, layout: Layout) -> list[Layout]:
    """The rounds BTUNE_ROUNDS asks for; says so when the run holds a later round's folder from an earlier
    setting, which `predict` and `serve` would take for the run's model (they serve the highest round<r>/)."""
    rounds = layout.btune_rounds(variables.int("BTUNE_ROUNDS"))
    later = layout.stage_dir / f"round{len(rounds) + 1}"
    if later.is_dir() and later not in _WARNED:
        _WARNED.add(later)
        print(f"warning: {later} is from an earlier BTUNE_ROUNDS above {len(rounds)}; predict and serve use the "
              f"highest round<r>/ they find: remove it to serve round {len(rounds)}'s model", file=sys.stderr)
    return rounds


def _in_round(stage: Stage, r: int) -> Stage:
    return replace(stage, name=f"{stage.name} (round {r})")


def b_tune(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Algorithm 1's B-tune, then each further round (BTUNE_ROUNDS) on the previous round's merged model."""
    select(runner, variables, layout)
    runner.run(stages.btune_train(variables, layout))
    rounds = btune_rounds(variables, layout)
    for r, (prev, cur) in enumerate(zip(rounds, rounds[1:]), start=2):
        runner.run(_in_round(stages.export_final(variables, prev), r - 1))
        for stage in (stages.score, stages.select, stages.btune_train):
            runner.run(_in_round(stage(variables, cur), r))


def export_final(runner: Runner, variables: Variables, layout: Layout) -> None:
    b_tune(runner, variables, layout)
    runner.run(stages.export_final(variables, btune_rounds(variables, layout)[-1]))


def a_tune_train(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Nodes with NODE_RANK > 0: the training part only (same RUN_DIR on a shared filesystem)."""
    check_data(runner, layout)
    stages.atune_train(variables, layout).run()  # no stamp: node 0 owns the stage


def b_tune_train(runner: Runner, variables: Variables, layout: Layout) -> None:
    check_data(runner, layout)
    if variables.int("BTUNE_ROUNDS") > 1:
        raise UsageError("b-tune-train trains round 1 only: several nodes run BTUNE_ROUNDS=1")
    pairs = layout.selection / "dpo_pairs.jsonl"
    if not runner.exists(pairs):
        raise UsageError(f"no {pairs} yet: node 0 runs make select first")
    stages.btune_train(variables, layout).run()


# ---- ablations ------------------------------------------------------------------------------------------
def ablation(runner: Runner, variables: Variables, layout: Layout, name: str, target=export_final) -> None:
    check_data(runner, layout)
    change, reuse = ABLATIONS[name]
    sub = layout.ablation(name, reuse)
    if reuse:
        score(runner, variables, layout)  # the run's own pi_ref and scores first
    target(runner, variables.with_(**change(variables)), sub)


def ablations(runner: Runner, variables: Variables, layout: Layout) -> None:
    for name in ABLATIONS:
        ablation(runner, variables, layout, name)


def full_ft(runner: Runner, variables: Variables, layout: Layout) -> None:
    """TALLRec-style full fine-tuning baseline = stage 1 of w/o A-tuning, merged."""
    ablation(runner, variables, layout, "wo_atune", target=a_tune)


# ---- evaluation -----------------------------------------------------------------------------------------
def eval_model(runner: Runner, variables: Variables, layout: Layout) -> None:
    if not (variables["EVAL_NAME"] and variables["EVAL_MODEL"]):
        raise UsageError("EVAL_NAME and EVAL_MODEL are needed: make eval-model EVAL_NAME=<name> "
                         "EVAL_MODEL=<model dir> [EVAL_ADAPTER=<adapter dir>] [EVAL_GENERATE=1]")
    check_data(runner, layout)
    adapter = Path(variables["EVAL_ADAPTER"]).resolve() if variables["EVAL_ADAPTER"] else None
    model = variables["EVAL_MODEL"]
    model = str(Path(model).resolve()) if Path(model).exists() else model
    runner.run(stages.eval_model(variables, layout, variables["EVAL_NAME"], model, adapter))


def eval_if(runner: Runner, variables: Variables, layout: Layout, name: str, model: Path, adapter: Path | None,
             needs: Path) -> None:
    if not finished(needs, runner.exists):
        print(f"eval: skipping {name}: no finished {needs}")
        return
    runner.run(stages.eval_model(variables, layout, name, str(model), adapter))


def eval_baselines(runner: Runner, variables: Variables, layout: Layout) -> None:
    check_data(runner, layout)
    for stage in stages.baselines(variables, layout):
        runner.run(stage)


def eval_all(runner: Runner, variables: Variables, layout: Layout) -> None:
    """zero-shot (the paper's NT), a-tune (pi_ref), behaviorlm (pi_ref + DPO adapter), full-ft, baselines."""
    check_data(runner, layout)
    base = stages.base_model(variables, launch.Recipe(variables, "atune_lora_sft"))
    runner.run(stages.eval_model(variables, layout, "zero-shot", base))
    eval_if(runner, variables, layout, "a-tune", layout.pi_ref, None, layout.pi_ref)
    last = btune_rounds(variables, layout)[-1]
    eval_if(runner, variables, layout, "behaviorlm", last.pi_ref, last.btune, last.btune)
    wo_atune = layout.ablation("wo_atune", False)
    eval_if(runner, variables, layout, "full-ft", wo_atune.pi_ref, None, wo_atune.pi_ref)
    eval_baselines(runner, variables, layout)
    report(runner, variables, layout)


def report(runner: Runner, variables: Variables, layout: Layout, also=()) -> None:
    check_data(runner, layout)
    runner.run(stages.report(variables, layout, [layout.run_dir], layout.report_dir, runner.exists, also))


def always(runner: Runner, name: str, cmd: list[str]) -> None:
    """Commands that are not stages (cheap tables over a report that may have just changed, the device check):
    run every time, listed in a dry run."""
    if runner.dry_run:
        runner.log(f"would run: {name} (every time)\n  $ " + " ".join(cmd))
    else:
        launch.run(cmd)


def ablation_table(runner: Runner, variables: Variables, layout: Layout) -> None:
    done = [a for a in ABLATIONS if runner.exists(layout.eval_dir / f"abl-{a}" / "test_p2.predictions.jsonl")]
    if not done:
        raise UsageError(f"no finished ablation under {layout.run_dir / 'ablations'}: run make ablations first")
    metrics = layout.report_dir / "metrics.json"
    args = ["--full", f"behaviorlm={metrics}#behaviorlm"]
    for a in done:
        args += ["--variant", f"{a}={metrics}#abl-{a}"]
    args += ["--out", str(layout.report_dir / "ablations.md")]
    if variables["PAPER_TABLE"] in ("behavior", "app"):
        args += ["--paper-table", variables["PAPER_TABLE"]]
    always(runner, "ablation table", launch.python_module("evaluation", "ablation-table", *args))


def ablation_report(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Table 4: each finished ablation's final model as abl-<name> in the run report."""
    check_data(runner, layout)
    for a in ABLATIONS:
        sub = btune_rounds(variables, layout.ablation(a, ABLATIONS[a][1]))[-1]
        eval_if(runner, variables, layout, f"abl-{a}", sub.final, None, sub.final)
    eval_all(runner, variables, layout)
    ablation_table(runner, variables, layout)


# ---- sweeps and repeats (Tables 5, 6; mean ± std over seeds) ----------------------------------------------
def sub_run(variables: Variables, layout: Layout, suffix: str, **changes: str) -> tuple[Variables, Layout]:
    run_dir = layout.sub_run(suffix)
    sub = variables.with_(**{"RUN": run_dir.name, "RUN_DIR": str(run_dir), "DATA_DIR": str(run_dir / "data"),
                             **changes})
    return sub, Layout.of(sub)


def _sweep(runner: Runner, variables: Variables, layout: Layout, var: str, values: str, stem: str, title: str,
           paper: str) -> None:
    points = []
    for v in variables.words(values):
        sub, sub_lay = sub_run(variables, layout, f"{stem}{v}", **{var: v})
        prepare(runner, sub, sub_lay)
        b_tune(runner, sub, sub_lay)
        eval_all(runner, sub, sub_lay)
        points += ["--point", f"{v}={sub_lay.report_dir / 'metrics.json'}#behaviorlm"]
    args = ["--param", title, *points, "--out", str(layout.report_dir / f"sweep_{stem}.md")]
    if variables["PAPER_TABLE"] == "behavior":
        args += ["--paper-table", paper]
    always(runner, f"sweep table {stem}", launch.python_module("evaluation", "sweep-table", *args))


def sweep_eps(runner: Runner, variables: Variables, layout: Layout) -> None:
    _sweep(runner, variables, layout, "EPS", "EPS_SWEEP", "eps", "aux ratio", "aux-ratio")


def sweep_anchor(runner: Runner, variables: Variables, layout: Layout) -> None:
    _sweep(runner, variables, layout, "ANCHOR_THRESHOLD", "ANCHOR_SWEEP", "anchor", "anchor threshold", "threshold")


def _seed_runs(variables: Variables, layout: Layout):
    for seed in variables.words("SEEDS"):
        args = f"seed={seed} {variables['ARGS']}".strip()
        sub, sub_lay = sub_run(variables, layout, f"seed{seed}", SEED=seed, ARGS=args, DATA_DIR=str(layout.data))
        yield sub, replace(sub_lay, shared_data=True)


def repeats(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Seed repeats on this run's prepared data (read from its data/), so the spread is the training and
    selection seeds'."""
    prepare(runner, variables, layout)
    for sub, sub_lay in _seed_runs(variables, layout):
        b_tune(runner, sub, sub_lay)
        eval_all(runner, sub, sub_lay)
    report_seeds(runner, variables, layout)


def report_seeds(runner: Runner, variables: Variables, layout: Layout) -> None:
    check_data(runner, layout)
    runs = [sub_lay.run_dir for _, sub_lay in _seed_runs(variables, layout)]
    runner.run(stages.report(variables, layout, runs, layout.run_dir / "report-seeds", runner.exists))


# ---- after training: predictions for users now, SASRec beside the LLMs ---------------------------------------
def _serving_args(variables: Variables, layout: Layout) -> list[str]:
    return ["--run-dir", str(layout.run_dir), "--dataset-dir", str(layout.data), "--template",
            stages.template(variables), "--cutoff-len", str(stages.cutoff_len(variables)),
            *variables.options(PredictionConfig), *variables.words("SERVE_ARGS")]


def predict(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Batch predictions with the run's final model: one JSONL line per user (serving/)."""
    if not (variables["EVENTS"] and variables["NEXT"]):
        raise UsageError("EVENTS and NEXT are needed: make predict RUN=... EVENTS=recent.jsonl NEXT=next.csv "
                         "[OUT=...] [TOP_K=...]")
    check_data(runner, layout)
    out = Path(variables["OUT"]).resolve() if variables["OUT"] else layout.run_dir / "predictions.jsonl"
    nproc = variables.int("PREDICT_NPROC") if variables["PREDICT_NPROC"] else variables.int("NPROC")
    events = variables["EVENTS"]
    events = events if is_uri(events) else str(Path(events).resolve())  # s3://... stays as given
    cmd = launch.python_module("serving", "predict", *_serving_args(variables, layout), "--events", events,
                               "--next", str(Path(variables["NEXT"]).resolve()), "--out", str(out),
                               *(word for config in (EventLabelsConfig, EventFilesConfig, PredictFilesConfig)
                                 for word in variables.options(config)), nproc=nproc,
                               nodes=launch.nodes(variables))
    always(runner, "predict", cmd)


def serve(runner: Runner, variables: Variables, layout: Layout) -> None:
    """The HTTP service (FastAPI + uvicorn) on the run's final model; API_KEY from the environment."""
    check_data(runner, layout)
    always(runner, "serve", launch.python_module("serving", "serve", *_serving_args(variables, layout),
                                                 *variables.options(ServeConfig)))


def sasrec(runner: Runner, variables: Variables, layout: Layout) -> None:
    """SASRec trained on the run's train_all windows -> eval/sasrec, a row of make eval's report (Table 3)."""
    check_data(runner, layout)
    out = layout.eval_dir / "sasrec"
    cmd = launch.python_module("sasrec", "train", "--dataset-dir", str(layout.data), "--out", str(out),
                               *variables.words("SASREC_ARGS"))
    runner.run(Stage("sasrec", stamp_of(out), lambda: launch.run(cmd), cmd,
                       inputs=layout.prepared(),
                       params={"SASREC_ARGS": variables.words("SASREC_ARGS")},
                       outputs=[out / f"{t}.predictions.jsonl" for t in stages.TEST_SPLITS], clean=[out]))


def sample_efficiency(runner: Runner, variables: Variables, layout: Layout) -> None:
    """Fig. 4: SASRec on seeded subsets of SIZES training windows, beside the run's BehaviorLM and A-tune rows."""
    check_data(runner, layout)
    metrics = layout.report_dir / "metrics.json"
    cmd = launch.python_module("sasrec", "sample-efficiency", "--dataset-dir", str(layout.data), "--sizes",
                               *variables.words("SIZES"), "--out", str(layout.report_dir), "--skip-missing-llm",
                               "--llm", f"behaviorlm={metrics}#behaviorlm", "--llm", f"a-tune={metrics}#a-tune",
                               *variables.words("SASREC_ARGS"))
    always(runner, "sample efficiency", cmd)


def gpu_check(runner: Runner, variables: Variables, layout: Layout) -> None:
    """The device check (one GPU, no network): figures to <RUN_DIR>/gpu_check.json."""
    cmd = [sys.executable, str(ROOT / "tests" / "gpu" / "gpu_check.py"), "--out",
           str(layout.run_dir / "gpu_check.json")]
    always(runner, "gpu check", cmd)


TARGETS = {
    "prepare": prepare, "prepared": prepare, "a-tune": a_tune, "merge": a_tune, "score": score, "select": select,
    "b-tune": b_tune, "export-final": export_final, "a-tune-train": a_tune_train, "b-tune-train": b_tune_train,
    "full-ft": full_ft, "ablations": ablations,
    **{f"ablation-{n.replace('_', '-')}": (lambda runner, variables, layout, n=n:
                                            ablation(runner, variables, layout, n)) for n in ABLATIONS},
    "eval-model": eval_model, "eval-baselines": eval_baselines, "eval": eval_all, "report": report,
    "ablation-report": ablation_report, "ablation-table": ablation_table, "sweep-eps": sweep_eps,
    "sweep-anchor": sweep_anchor, "repeats": repeats, "report-seeds": report_seeds, "gpu-check": gpu_check,
    "predict": predict, "serve": serve, "sasrec": sasrec, "sample-efficiency": sample_efficiency,
}
