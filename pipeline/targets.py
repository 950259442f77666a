"""The Make targets: each is a chain of stages (stages.py) run in order by one Runner.

Tuning targets never prepare: they need a prepared dataset (`make prepare`). Evaluation targets never
train: they evaluate the models whose stage has finished and say which ones they skip.
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from data_prep.reading.sources import is_uri
from data_prep.sampling import auxiliary

from . import launch, stages
from .graph import Runner, Stage
from .layout import Layout, finished, older_layout, stamp_of
from .settings import ROOT, Settings

ABLATIONS = {  # name -> (settings changed, reuses the run's A-tune, pi_ref and scores); paper Table 4 and 4.5
    "wo_aux": (lambda s: {"ATUNE_ARGS": f"dataset=behavior_anchor {s['ATUNE_ARGS']}".strip()}, False),
    "wo_dds": (lambda s: {"SELECT_MODE": "uniform"}, True),
    "wo_kmeans": (lambda s: {"SELECT_MODE": "topf"}, True),
    "wo_dpo": (lambda s: {"BTUNE_RECIPE": "wo_dpo_lora_sft"}, True),
    "wo_atune": (lambda s: {"ATUNE_RECIPE": "full_lora_sft"}, False),
    "reverse": (lambda s: {"ATUNE_RECIPE": "reverse_lora_sft"}, False),
}


def check_data(r: Runner, lay: Layout) -> None:
    if not r.exists(lay.data / "stats.json"):
        raise SystemExit(f"error: no prepared dataset in {lay.data}: run make prepare first")
    older = older_layout(lay)
    if older:
        raise SystemExit(older)


def prepare(r: Runner, s: Settings, lay: Layout) -> None:
    r.run(stages.prepare(s, lay))
    model = stages.base_model(s, launch.Recipe(s, s["ATUNE_RECIPE"]))
    if Path(model).exists():
        token_check(r, s, lay)
    else:
        print(f"note: token lengths are checked before A-tune ({model} is not here yet)")


def token_check(r: Runner, s: Settings, lay: Layout) -> None:
    if lay.shared_data:
        return  # an ablation or a seed repeat reads the run's data/, which the run's own chain checked
    if s.flag("SKIP_TOKEN_CHECK"):
        print("note: SKIP_TOKEN_CHECK is set: samples longer than the recipes' cutoff_len train on truncated prompts")
        return
    r.run(stages.token_check(s, lay))


def aux_ratio(lay: Layout) -> None:
    """The auxiliary mixture A-tune trains on (eps asked and achieved), read from the run's stats.json."""
    try:
        aux = json.loads((lay.data / "stats.json").read_text(encoding="utf-8")).get("aux")
    except (OSError, ValueError):
        return
    if aux:
        print(auxiliary.ratio_line(aux))


def a_tune(r: Runner, s: Settings, lay: Layout) -> None:
    check_data(r, lay)
    token_check(r, s, lay)
    aux_ratio(lay)
    r.run(stages.atune_train(s, lay))
    r.run(stages.merge(s, lay))


def score(r: Runner, s: Settings, lay: Layout) -> None:
    a_tune(r, s, lay)
    r.run(stages.score(s, lay))


def select(r: Runner, s: Settings, lay: Layout) -> None:
    score(r, s, lay)
    r.run(stages.select(s, lay))


def b_tune(r: Runner, s: Settings, lay: Layout) -> None:
    select(r, s, lay)
    r.run(stages.btune_train(s, lay))


def export_final(r: Runner, s: Settings, lay: Layout) -> None:
    b_tune(r, s, lay)
    r.run(stages.export_final(s, lay))


def a_tune_train(r: Runner, s: Settings, lay: Layout) -> None:
    """Nodes with NODE_RANK > 0: the training part only (same RUN_DIR on a shared filesystem)."""
    check_data(r, lay)
    stages.atune_train(s, lay).run()  # no stamp: node 0 owns the stage


def b_tune_train(r: Runner, s: Settings, lay: Layout) -> None:
    check_data(r, lay)
    pairs = lay.selection / "dpo_pairs.jsonl"
    if not r.exists(pairs):
        raise SystemExit(f"error: no {pairs} yet: node 0 runs make select first")
    stages.btune_train(s, lay).run()


# ---- ablations ------------------------------------------------------------------------------------------
def ablation(r: Runner, s: Settings, lay: Layout, name: str, target=export_final) -> None:
    check_data(r, lay)
    change, reuse = ABLATIONS[name]
    sub = lay.ablation(name, reuse)
    if reuse:
        score(r, s, lay)  # the run's own pi_ref and scores first
    target(r, s.with_(**change(s)), sub)


def ablations(r: Runner, s: Settings, lay: Layout) -> None:
    for name in ABLATIONS:
        ablation(r, s, lay, name)


def full_ft(r: Runner, s: Settings, lay: Layout) -> None:
    """TALLRec-style full fine-tuning baseline = stage 1 of w/o A-tuning, merged."""
    ablation(r, s, lay, "wo_atune", target=a_tune)


# ---- evaluation -----------------------------------------------------------------------------------------
def eval_model(r: Runner, s: Settings, lay: Layout) -> None:
    if not (s["EVAL_NAME"] and s["EVAL_MODEL"]):
        raise SystemExit("usage: make eval-model EVAL_NAME=<name> EVAL_MODEL=<model dir> [EVAL_ADAPTER=<adapter "
                         "dir>] [EVAL_GENERATE=1]")
    check_data(r, lay)
    adapter = Path(s["EVAL_ADAPTER"]).resolve() if s["EVAL_ADAPTER"] else None
    model = str(Path(s["EVAL_MODEL"]).resolve()) if Path(s["EVAL_MODEL"]).exists() else s["EVAL_MODEL"]
    r.run(stages.eval_model(s, lay, s["EVAL_NAME"], model, adapter))


def eval_if(r: Runner, s: Settings, lay: Layout, name: str, model: Path, adapter: Path | None,
             needs: Path) -> None:
    if not finished(needs, r.exists):
        print(f"eval: skipping {name}: no finished {needs}")
        return
    r.run(stages.eval_model(s, lay, name, str(model), adapter))


def eval_baselines(r: Runner, s: Settings, lay: Layout) -> None:
    check_data(r, lay)
    for stage in stages.baselines(s, lay):
        r.run(stage)


def eval_all(r: Runner, s: Settings, lay: Layout) -> None:
    """zero-shot (the paper's NT), a-tune (pi_ref), behaviorlm (pi_ref + DPO adapter), full-ft, baselines."""
    check_data(r, lay)
    r.run(stages.eval_model(s, lay, "zero-shot", stages.base_model(s, launch.Recipe(s, "atune_lora_sft"))))
    eval_if(r, s, lay, "a-tune", lay.pi_ref, None, lay.pi_ref)
    eval_if(r, s, lay, "behaviorlm", lay.pi_ref, lay.btune, lay.btune)
    wo_atune = lay.ablation("wo_atune", False)
    eval_if(r, s, lay, "full-ft", wo_atune.pi_ref, None, wo_atune.pi_ref)
    eval_baselines(r, s, lay)
    report(r, s, lay)


def report(r: Runner, s: Settings, lay: Layout, also=()) -> None:
    check_data(r, lay)
    r.run(stages.report(s, lay, [lay.run_dir], lay.report_dir, r.exists, also))


def always(r: Runner, name: str, cmd: list[str]) -> None:
    """Commands that are not stages (cheap tables over a report that may have just changed, the device check):
    run every time, listed in a dry run."""
    if r.dry_run:
        r.log(f"would run: {name} (every time)\n  $ " + " ".join(cmd))
    else:
        launch.run(cmd)


def ablation_table(r: Runner, s: Settings, lay: Layout) -> None:
    done = [a for a in ABLATIONS if r.exists(lay.eval_dir / f"abl-{a}" / "test_p2.predictions.jsonl")]
    if not done:
        raise SystemExit(f"error: no finished ablation under {lay.run_dir / 'ablations'}: run make ablations first")
    metrics = lay.report_dir / "metrics.json"
    args = ["--full", f"behaviorlm={metrics}#behaviorlm"]
    for a in done:
        args += ["--variant", f"{a}={metrics}#abl-{a}"]
    args += ["--out", str(lay.report_dir / "ablations.md")]
    if s["PAPER_TABLE"] in ("behavior", "app"):
        args += ["--paper-table", s["PAPER_TABLE"]]
    always(r, "ablation table", launch.python_module("evaluation", "ablation-table", *args))


def ablation_report(r: Runner, s: Settings, lay: Layout) -> None:
    """Table 4: each finished ablation's final model as abl-<name> in the run report."""
    check_data(r, lay)
    for a in ABLATIONS:
        sub = lay.ablation(a, ABLATIONS[a][1])
        eval_if(r, s, lay, f"abl-{a}", sub.final, None, sub.final)
    eval_all(r, s, lay)
    ablation_table(r, s, lay)


# ---- sweeps and repeats (Tables 5, 6; mean ± std over seeds) ----------------------------------------------
def sub_run(s: Settings, lay: Layout, suffix: str, **changes: str) -> tuple[Settings, Layout]:
    run_dir = lay.sub_run(suffix)
    sub = s.with_(**{"RUN": run_dir.name, "RUN_DIR": str(run_dir), "DATA_DIR": str(run_dir / "data"), **changes})
    return sub, Layout.of(sub)


def _sweep(r: Runner, s: Settings, lay: Layout, var: str, values: str, stem: str, title: str, paper: str) -> None:
    points = []
    for v in s.words(values):
        sub, sub_lay = sub_run(s, lay, f"{stem}{v}", **{var: v})
        prepare(r, sub, sub_lay)
        b_tune(r, sub, sub_lay)
        eval_all(r, sub, sub_lay)
        points += ["--point", f"{v}={sub_lay.report_dir / 'metrics.json'}#behaviorlm"]
    args = ["--param", title, *points, "--out", str(lay.report_dir / f"sweep_{stem}.md")]
    if s["PAPER_TABLE"] == "behavior":
        args += ["--paper-table", paper]
    always(r, f"sweep table {stem}", launch.python_module("evaluation", "sweep-table", *args))


def sweep_eps(r: Runner, s: Settings, lay: Layout) -> None:
    _sweep(r, s, lay, "EPS", "EPS_SWEEP", "eps", "aux ratio", "aux-ratio")


def sweep_anchor(r: Runner, s: Settings, lay: Layout) -> None:
    _sweep(r, s, lay, "ANCHOR_THRESHOLD", "ANCHOR_SWEEP", "anchor", "anchor threshold", "threshold")


def _seed_runs(s: Settings, lay: Layout):
    for seed in s.words("SEEDS"):
        args = f"seed={seed} {s['ARGS']}".strip()
        sub, sub_lay = sub_run(s, lay, f"seed{seed}", SEED=seed, ARGS=args, DATA_DIR=str(lay.data))
        yield sub, replace(sub_lay, shared_data=True)


def repeats(r: Runner, s: Settings, lay: Layout) -> None:
    """Seed repeats on this run's prepared data (read from its data/), so the spread is the training and
    selection seeds'."""
    prepare(r, s, lay)
    for sub, sub_lay in _seed_runs(s, lay):
        b_tune(r, sub, sub_lay)
        eval_all(r, sub, sub_lay)
    report_seeds(r, s, lay)


def report_seeds(r: Runner, s: Settings, lay: Layout) -> None:
    check_data(r, lay)
    runs = [sub_lay.run_dir for _, sub_lay in _seed_runs(s, lay)]
    r.run(stages.report(s, lay, runs, lay.run_dir / "report-seeds", r.exists))


# ---- after training: predictions for users now, SASRec beside the LLMs ---------------------------------------
def _serving_args(s: Settings, lay: Layout) -> list[str]:
    return ["--run-dir", str(lay.run_dir), "--dataset-dir", str(lay.data), "--template", stages.template(s),
            "--cutoff-len", str(stages.cutoff_len(s)), *s.options("prediction"), *s.words("SERVE_ARGS")]


def predict(r: Runner, s: Settings, lay: Layout) -> None:
    """Batch predictions with the run's final model: one JSONL line per user (serving/)."""
    if not (s["EVENTS"] and s["NEXT"]):
        raise SystemExit("usage: make predict RUN=... EVENTS=recent.jsonl NEXT=next.csv [OUT=...] [TOP_K=...]")
    check_data(r, lay)
    out = Path(s["OUT"]).resolve() if s["OUT"] else lay.run_dir / "predictions.jsonl"
    source = [x for name, flag in (("COLUMNS", "--columns"), ("LABEL_MAP", "--label-map"), ("TIMEZONE", "--tz"),
                                   ("TIME_FORMAT", "--time-format"), ("ALLOW_BAD_TIMESTAMPS", "--allow-bad-timestamps"))
              if s[name] for x in (flag, s[name])]
    nproc = s.int("PREDICT_NPROC") if s["PREDICT_NPROC"] else s.int("NPROC")
    events = s["EVENTS"] if is_uri(s["EVENTS"]) else str(Path(s["EVENTS"]).resolve())  # s3://... stays as given
    cmd = launch.python_module("serving", "predict", *_serving_args(s, lay), "--events", events,
                               "--next", str(Path(s["NEXT"]).resolve()), "--out", str(out),
                               *s.options("predict"), *source, nproc=nproc, nodes=launch.nodes(s))
    always(r, "predict", cmd)


def serve(r: Runner, s: Settings, lay: Layout) -> None:
    """The HTTP service (FastAPI + uvicorn) on the run's final model; API_KEY from the environment."""
    check_data(r, lay)
    always(r, "serve", launch.python_module("serving", "serve", *_serving_args(s, lay), *s.options("serve")))


def sasrec(r: Runner, s: Settings, lay: Layout) -> None:
    """SASRec trained on the run's train_all windows -> eval/sasrec, a row of make eval's report (Table 3)."""
    check_data(r, lay)
    out = lay.eval_dir / "sasrec"
    cmd = launch.python_module("sasrec", "train", "--dataset-dir", str(lay.data), "--out", str(out),
                               *s.words("SASREC_ARGS"))
    r.run(Stage("sasrec", stamp_of(out), lambda: launch.run(cmd), cmd,
                       inputs=[*lay.prepared(), ROOT / "recipes" / "sasrec" / "sasrec.yaml"],
                       params={"SASREC_ARGS": s.words("SASREC_ARGS")},
                       outputs=[out / f"{t}.predictions.jsonl" for t in stages.TEST_SPLITS], clean=[out]))


def sample_efficiency(r: Runner, s: Settings, lay: Layout) -> None:
    """Fig. 4: SASRec on seeded subsets of SIZES training windows, beside the run's BehaviorLM and A-tune rows."""
    check_data(r, lay)
    metrics = lay.report_dir / "metrics.json"
    cmd = launch.python_module("sasrec", "sample-efficiency", "--dataset-dir", str(lay.data), "--sizes",
                               *s.words("SIZES"), "--out", str(lay.report_dir), "--skip-missing-llm",
                               "--llm", f"behaviorlm={metrics}#behaviorlm", "--llm", f"a-tune={metrics}#a-tune",
                               *s.words("SASREC_ARGS"))
    always(r, "sample efficiency", cmd)


def gpu_check(r: Runner, s: Settings, lay: Layout) -> None:
    """The device check (one GPU, no network): figures to <RUN_DIR>/gpu_check.json."""
    cmd = [sys.executable, str(ROOT / "tests" / "gpu" / "gpu_check.py"), "--out", str(lay.run_dir / "gpu_check.json")]
    always(r, "gpu check", cmd)


TARGETS = {
    "prepare": prepare, "prepared": prepare, "a-tune": a_tune, "merge": a_tune, "score": score, "select": select,
    "b-tune": b_tune, "export-final": export_final, "a-tune-train": a_tune_train, "b-tune-train": b_tune_train,
    "full-ft": full_ft, "ablations": ablations,
    **{f"ablation-{n.replace('_', '-')}": (lambda r, s, lay, n=n: ablation(r, s, lay, n)) for n in ABLATIONS},
    "eval-model": eval_model, "eval-baselines": eval_baselines, "eval": eval_all, "report": report,
    "ablation-report": ablation_report, "ablation-table": ablation_table, "sweep-eps": sweep_eps,
    "sweep-anchor": sweep_anchor, "repeats": repeats, "report-seeds": report_seeds, "gpu-check": gpu_check,
    "predict": predict, "serve": serve, "sasrec": sasrec, "sample-efficiency": sample_efficiency,
}
