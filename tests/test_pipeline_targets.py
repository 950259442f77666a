"""The targets as dry runs (`python -m pipeline --dry-run`, what `make DRY_RUN=1 <target>` calls): which runs,
models and files each one wires together. Nothing is trained or evaluated; prediction files are empty
placeholders where a target looks for them, and a dry run writes nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOTH = ("test_p1", "test_p2")


def _pipeline(run_dir: Path, *args: str, dry: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipeline", *(["--dry-run"] if dry else []), "MODEL=tiny", f"RUN_DIR={run_dir}",
           *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)


def _dry(run_dir: Path, *args: str) -> str:
    proc = _pipeline(run_dir, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _lines(out: str, needle: str) -> list[str]:
    return [line for line in out.splitlines() if needle in line]


def _prepared(run_dir: Path) -> Path:
    data = run_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "stats.json").write_text("{}")
    return data


def _fake_predictions(run_dir: Path, name: str, splits=BOTH) -> Path:
    out = run_dir / "eval" / name
    out.mkdir(parents=True, exist_ok=True)
    for split in splits:
        (out / f"{split}.predictions.jsonl").write_text("")
    return out


def _pred_args(report_line: str) -> list[str]:
    words = report_line.split()
    return [words[i + 1] for i, w in enumerate(words) if w == "--pred"]


def test_eval_model_predicts_both_splits_with_the_recipe_template(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    out = _dry(run, "eval-model", "EVAL_NAME=mine", f"EVAL_MODEL={tmp_path}/m", f"EVAL_ADAPTER={tmp_path}/a",
               "EVAL_BATCH=3")
    (predict,) = _lines(out, "-m evaluation predict")
    for part in (f"--model {tmp_path}/m", f"--adapter {tmp_path}/a", "--template smollm2", "--dataset test_p1 test_p2",
                 f"--out {run}/eval/mine ", "--batch-size 3", f"--dataset-dir {run}/data"):
        assert part in predict + " ", part
    assert "--generate" not in predict
    generate = _dry(run, "eval-model", "EVAL_NAME=mine", f"EVAL_MODEL={tmp_path}/m", "EVAL_GENERATE=1")
    (predict,) = _lines(generate, "-m evaluation predict")
    assert "--generate" in predict and f"--out {run}/eval/mine-generate" in predict and "--adapter" not in predict
    assert sorted(p.name for p in run.iterdir()) == ["data"]  # a dry run writes nothing


def test_eval_model_needs_a_name_and_a_model(tmp_path):
    proc = _pipeline(tmp_path / "run", "eval-model", "EVAL_NAME=x", dry=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: EVAL_NAME and EVAL_MODEL are needed:")


def test_tuning_needs_prepared_data(tmp_path):
    proc = _pipeline(tmp_path / "run", "a-tune", dry=False)
    assert proc.returncode != 0 and "run make prepare first" in proc.stderr


def test_unknown_variable_is_refused(tmp_path):
    proc = _pipeline(tmp_path / "run", "a-tune", "EPSILON=0.1")
    assert proc.returncode == 2 and "unknown variable(s): EPSILON" in proc.stderr


def test_eval_evaluates_the_models_that_exist(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    for stamp in ("pi_ref.stamp.json", "btune.stamp.json"):
        (run / stamp).write_text("{}")
    out = _dry(run, "eval", f"BASE_MODEL={tmp_path}/base")
    predicts = _lines(out, "-m evaluation predict")
    assert len(predicts) == 3
    zero_shot, a_tune, behaviorlm = predicts
    assert f"--model {tmp_path}/base " in zero_shot and f"--out {run}/eval/zero-shot " in zero_shot
    assert f"--model {run}/pi_ref " in a_tune and "--adapter" not in a_tune and f"{run}/eval/a-tune " in a_tune
    assert f"--model {run}/pi_ref --adapter {run}/btune " in behaviorlm and f"{run}/eval/behaviorlm " in behaviorlm
    assert f"skipping full-ft: no finished {run}/ablations/wo_atune/pi_ref" in out
    baselines = _lines(out, "-m evaluation baseline")
    assert [b.split("--kind ")[1].split()[0] for b in baselines] == ["most-frequent", "last-behavior", "markov"]
    (report,) = _lines(out, "-m evaluation report")
    assert [p.split("=")[0] for p in _pred_args(report)] == ["zero-shot", "a-tune", "behaviorlm", "most-frequent",
                                                             "last-behavior", "markov"]


def test_eval_ranks_default_to_nproc(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    (predict,) = _lines(_dry(run, "eval-model", "EVAL_NAME=x", "EVAL_MODEL=m", "NPROC=4"), "evaluation predict")
    assert "torchrun --standalone --nproc_per_node 4 -m evaluation predict" in predict
    (predict,) = _lines(_dry(run, "eval-model", "EVAL_NAME=x", "EVAL_MODEL=m", "NPROC=4", "EVAL_NPROC=2"),
                        "evaluation predict")
    assert "--nproc_per_node 2 " in predict


def test_report_lists_finished_predictions_in_a_fixed_order(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    for name in ("markov", "zz-other", "behaviorlm", "abl-wo_dds", "zero-shot", "a-tune-generate", "a-tune",
                 "most-frequent", "full-ft", "sasrec", "last-behavior"):
        _fake_predictions(run, name)
    _fake_predictions(run, "half-done", splits=("test_p1",))  # no test_p2 yet: left out
    (report,) = _lines(_dry(run, "report", "PAPER_TABLE=behavior"), "-m evaluation report")
    names = [p.split("=", 1)[0] for p in _pred_args(report)]
    assert names == ["zero-shot", "full-ft", "a-tune", "a-tune-generate", "behaviorlm", "sasrec", "most-frequent",
                     "last-behavior", "markov", "abl-wo_dds", "zz-other"]
    assert f"behaviorlm={run}/eval/behaviorlm" in _pred_args(report)
    assert f"--out {run}/report" in report and "--paper-table behavior" in report


def test_report_without_predictions_fails_clearly(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    proc = _pipeline(run, "report", dry=False)
    assert proc.returncode != 0 and "run make eval first" in proc.stderr


def test_ablation_table_maps_ablation_dirs_to_table4_names(tmp_path):
    run = tmp_path / "run"
    for name in ("wo_aux", "reverse", "wo_atune"):
        _fake_predictions(run, f"abl-{name}")
    (table,) = _lines(_dry(run, "ablation-table"), "-m evaluation ablation-table")
    metrics = f"{run}/report/metrics.json"
    assert f"--full behaviorlm={metrics}#behaviorlm" in table
    words = table.split()
    variants = [words[i + 1] for i, w in enumerate(words) if w == "--variant"]
    assert variants == [f"wo_aux={metrics}#abl-wo_aux", f"wo_atune={metrics}#abl-wo_atune",
                        f"reverse={metrics}#abl-reverse"]
    assert f"--out {run}/report/ablations.md" in table


def test_ablation_report_evaluates_each_finished_ablation(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    (run / "ablations" / "wo_dds").mkdir(parents=True)
    (run / "ablations" / "wo_dds" / "final.stamp.json").write_text("{}")
    out = _dry(run, "ablation-report", f"BASE_MODEL={tmp_path}/base")
    predict = [line for line in _lines(out, "-m evaluation predict") if "abl-" in line]
    assert len(predict) == 1
    assert f"--model {run}/ablations/wo_dds/final " in predict[0] and f"--out {run}/eval/abl-wo_dds " in predict[0]
    assert "skipping abl-wo_aux" in out


def test_ablations_that_change_only_btuning_reuse_the_runs_pi_ref_and_scores(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    out = _dry(run, "ablation-wo-dds", f"BASE_MODEL={tmp_path}/base")
    (select,) = [line for line in _lines(out, "-m selection select") if "ablations" in line]
    assert f"--scores {run}/scores " in select and f"--dataset-dir {run}/data " in select
    assert f"--out {run}/ablations/wo_dds/selection" in select
    assert "--mode uniform" in select
    assert len(_lines(out, "output_dir=" + str(run / "atune"))) == 1  # the run's own A-tune, listed once
    out = _dry(run, "ablation-wo-aux", f"BASE_MODEL={tmp_path}/base", "ATUNE_ARGS=num_train_epochs=1")
    (train,) = _lines(out, f"output_dir={run}/ablations/wo_aux/atune")
    assert train.endswith("dataset=behavior_anchor num_train_epochs=1")


def test_sweep_eps_runs_the_chain_per_value(tmp_path):
    run = tmp_path / "run"
    out = _dry(run, "sweep-eps", "EPS_SWEEP=0 0.05", "DATA_DIR=/elsewhere/data")
    for value in ("0", "0.05"):
        sub = f"{run}-eps{value}"
        (prepare,) = _lines(out, f"--out {sub}/data ")
        assert f"--eps {value} " in prepare + " " and "--seed 42" in prepare
        train = _lines(out, "llamafactory-cli train")
        assert any(f"output_dir={sub}/atune" in t and f"dataset_dir={sub}/data" in t for t in train)
        assert any(f"model_name_or_path={sub}/pi_ref" in t and f"output_dir={sub}/btune" in t for t in train)
        assert any(f"--out {sub}/eval/zero-shot" in p for p in _lines(out, "-m evaluation predict"))
        assert any(f"--out {sub}/report" in r for r in _lines(out, "-m evaluation report"))
    (table,) = _lines(out, "-m evaluation sweep-table")
    assert (f"--point 0={run}-eps0/report/metrics.json#behaviorlm "
            f"--point 0.05={run}-eps0.05/report/metrics.json#behaviorlm") in table
    assert f"--out {run}/report/sweep_eps.md" in table
    assert "/elsewhere" not in out  # each value prepares its own data
    assert not tmp_path.joinpath("run-eps0").exists()


def test_sweep_anchor_changes_the_anchor_threshold(tmp_path):
    run = tmp_path / "run"
    out = _dry(run, "sweep-anchor", "ANCHOR_SWEEP=0.005 0.02", "PAPER_TABLE=behavior")
    for value in ("0.005", "0.02"):
        (prepare,) = _lines(out, f"--out {run}-anchor{value}/data ")
        assert f"--anchor-threshold {value} " in prepare
    (table,) = _lines(out, "-m evaluation sweep-table")
    assert f"--out {run}/report/sweep_anchor.md" in table and "--paper-table threshold" in table


def test_repeats_train_each_seed_on_the_shared_data(tmp_path):
    run = tmp_path / "run"
    out = _dry(run, "repeats", "SEEDS=1 2", "ARGS=num_train_epochs=1")
    assert len(_lines(out, "-m data_prep prepare")) == 1  # this run's data, once, read by each seed run
    assert "would link" not in out and len(_lines(out, "-m scoring token-lengths")) <= 1
    for seed in ("1", "2"):
        sub = f"{run}-seed{seed}"
        train = [t for t in _lines(out, "llamafactory-cli train") if f"output_dir={sub}/" in t]
        assert len(train) == 2 and all(t.endswith(f"seed={seed} num_train_epochs=1") for t in train)
        (select,) = _lines(out, f"--scores {sub}/scores")
        assert f"--seed {seed}" in select and f"--dataset-dir {run}/data " in select
        assert select.endswith(f"--out {sub}/selection")
        assert any(f"dataset_dir={run}/data " in t for t in train)           # A-tune on the run's data
        assert any(f"dataset_dir={sub}/selection " in t for t in train)      # B-tune on its own selection
        assert any(f"--out {sub}/eval/zero-shot" in p for p in _lines(out, "-m evaluation predict"))


def test_report_seeds_pools_each_model_over_the_seed_runs(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    for seed in (1, 2):
        for name in ("behaviorlm", "zero-shot", "markov"):
            _fake_predictions(tmp_path / f"run-seed{seed}", name)
    (report,) = _lines(_dry(run, "report-seeds", "SEEDS=1 2"), "-m evaluation report")
    assert _pred_args(report) == [f"{n}={tmp_path}/run-seed1/eval/{n},{tmp_path}/run-seed2/eval/{n}"
                                  for n in ("zero-shot", "behaviorlm", "markov")]
    assert f"--dataset-dir {run}/data" in report and f"--out {run}/report-seeds" in report


def test_make_passes_its_variables_to_the_pipeline(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(["make", "-s", "--no-print-directory", "-f", str(ROOT / "Makefile"), "prepare", "DRY_RUN=1",
                           f"RUN_DIR={run}", "EPS=0.3", "ARGS=save_strategy='no' x=1",
                           f"VENV={Path(sys.executable).parents[1]}"], check=False, capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (prepare,) = _lines(proc.stdout, "-m data_prep prepare")
    assert f"--out {run}/data " in prepare and "--eps 0.3" in prepare and not run.exists()


def test_help_lists_every_variable_with_the_stage_defaults():
    proc = subprocess.run([sys.executable, "-m", "pipeline", "help"], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    from cli import field_default
    from data_prep.config import PrepareConfig
    from serving.config import ServeConfig

    for name, settings, field in (("EPS", PrepareConfig, "eps"), ("TRAIN_CAP", PrepareConfig, "train_cap"),
                                  ("HISTORY_LEN", PrepareConfig, "history_len"), ("PORT", ServeConfig, "port")):
        (line,) = _lines(proc.stdout, f"  {name} ")
        assert line.endswith(f"[default: {field_default(settings, field)}]"), line


def test_predict_serve_and_sasrec_use_the_runs_layout_and_recipe(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    out = _dry(run, "predict", "EVENTS=e.jsonl", "NEXT=n.csv", "TOP_K=3", "TIMEZONE=+08:00", "serve", "PORT=0",
               "GRACE_S=5", "LOG_FORMAT=json", "sasrec", "sample-efficiency", "SIZES=100 200")
    (predict,) = _lines(out, "-m serving predict")
    for part in (f"--run-dir {run} ", "--template smollm2", "--cutoff-len 2048", "--top-k 3", "--tz +08:00",
                 f"--out {run}/predictions.jsonl", f"--events {ROOT}/e.jsonl"):
        assert part in predict + " ", part
    (serve,) = _lines(out, "-m serving serve")
    assert "--host 127.0.0.1 --port 0 --log-format json --grace-s 5" in serve
    (sasrec,) = _lines(out, "-m sasrec train")
    assert f"--out {run}/eval/sasrec" in sasrec
    (curve,) = _lines(out, "-m sasrec sample-efficiency")
    assert "--sizes 100 200" in curve and f"--llm behaviorlm={run}/report/metrics.json#behaviorlm" in curve
    (predict,) = _lines(_dry(run, "predict", "EVENTS=s3://lake/events/dt=*/", "NEXT=n.csv"), "-m serving predict")
    assert "--events s3://lake/events/dt=*/ " in predict  # an object-store URI is passed as given
    proc = _pipeline(run, "predict", dry=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: EVENTS and NEXT are needed: make predict")


def test_token_check_and_select_write_their_own_folders(tmp_path):
    """data/ is prepare's alone: the token check writes token_check/, select selection/ (B-tune's dataset_dir),
    an ablation its own selection/ while reading the run's data/."""
    run = tmp_path / "run"
    _prepared(run)
    (tmp_path / "base").mkdir()
    out = _dry(run, "b-tune", f"BASE_MODEL={tmp_path}/base")
    (check,) = _lines(out, "-m scoring token-lengths")
    assert f"--dataset-dir {run}/data " in check and check.endswith(f"--out {run}/token_check/token_lengths.json")
    (select,) = _lines(out, "-m selection select")
    assert f"--dataset-dir {run}/data " in select and select.endswith(f"--out {run}/selection")
    (train,) = _lines(out, f"output_dir={run}/btune")
    assert f"dataset_dir={run}/selection " in train
    out = _dry(run, "ablation-wo-dpo", f"BASE_MODEL={tmp_path}/base")
    (select,) = [line for line in _lines(out, "-m selection select") if "ablations" in line]
    assert f"--dataset-dir {run}/data " in select and select.endswith(f"--out {run}/ablations/wo_dpo/selection")
    (train,) = _lines(out, f"output_dir={run}/ablations/wo_dpo/btune")
    assert f"dataset_dir={run}/ablations/wo_dpo/selection " in train and "wo_dpo_lora_sft.yaml" in train
    assert len(_lines(out, "-m scoring token-lengths")) == 1  # the run's data, checked once
    assert not (run / "ablations").exists() and sorted(p.name for p in run.iterdir()) == ["data"]


def test_a_run_of_the_older_layout_is_refused_with_what_to_rerun(tmp_path):
    run = tmp_path / "run"
    data = _prepared(run)
    (data / "dpo_pairs.jsonl").write_text("{}\n")
    proc = _pipeline(run, "b-tune")
    assert proc.returncode != 0 and proc.stderr.strip().splitlines() == [
        f"error: {data} was made by an older layout (select wrote into data/): rerun make prepare"]
    (data / "dpo_pairs.jsonl").unlink()
    (data / "stats.json").write_text('{"token_lengths": {"fits": true}}')
    proc = _pipeline(run, "eval")
    assert proc.returncode != 0 and "older layout" in proc.stderr and "rerun make prepare" in proc.stderr
    (data / "stats.json").write_text("{}")
    linked = run / "ablations" / "wo_dds" / "data"
    linked.mkdir(parents=True)
    (linked / "stats.json").symlink_to(data / "stats.json")
    proc = _pipeline(run, "ablation-wo-dds")
    assert proc.returncode != 0 and f"remove {run / 'ablations'}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_aux_repeat_reaches_prepare_only_when_set(tmp_path):
    run = tmp_path / "run"
    (prepare,) = _lines(_dry(run, "prepare", "AUX_REPEAT=1"), "-m data_prep prepare")
    assert "--aux-repeat 1" in prepare
    (prepare,) = _lines(_dry(run, "prepare"), "-m data_prep prepare")
    assert "--aux-repeat" not in prepare   # unset: prepare's parameters (and stamps) are what they were


def test_a_tune_states_the_auxiliary_ratio_before_training(tmp_path):
    run = tmp_path / "run"
    aux = {"eps": 0.2, "requested": 8, "written": 3, "distinct": 3, "repeated": 0, "shortfall": 5, "available": 3,
           "eps_achieved": 0.075}
    _prepared(run).joinpath("stats.json").write_text(json.dumps({"aux": aux}))
    out = _dry(run, "a-tune")
    (line,) = _lines(out, "auxiliary conversations:")
    assert "eps 0.2 asked (8), 0.075 achieved (3 written" in line and "AUX_REPEAT=1" in line
    assert out.index(line) < out.index("llamafactory-cli train")


def test_behavior_map_embeds_with_the_base_model_into_the_report(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    out = _dry(run, "behavior-map", f"BASE_MODEL={tmp_path}/base")
    (cmd,) = _lines(out, "-m evaluation behavior-map")
    assert f"--model {tmp_path}/base --dataset-dir {run}/data --out {run}/report" in cmd
    assert f"would run: behavior map (output {run}/report/behavior_map.json missing)" in out


def test_sweep_f_reselects_and_btunes_from_the_runs_pi_ref_and_scores(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    out = _dry(run, "sweep-f", "F_SWEEP=1 3", "POOL=3")
    assert len(_lines(out, "would run: score")) == 1 and len(_lines(out, "a-tune: train")) == 1
    for f in ("1", "3"):
        (select,) = _lines(out, f"--out {run}/ablations/sweep-f{f}/selection")
        assert f"--scores {run}/scores " in select and f"--F {f} " in select
        assert any(f"model_name_or_path={run}/pi_ref" in t and f"output_dir={run}/ablations/sweep-f{f}/btune" in t
                   for t in _lines(out, "llamafactory-cli train"))
        (predict,) = _lines(out, f"--out {run}/eval/sweep-f{f} ")
        assert f"--model {run}/pi_ref --adapter {run}/ablations/sweep-f{f}/btune" in predict
    (figure,) = _lines(out, "-m evaluation figure sweep_f")
    assert f"--point 1={run}/report/metrics.json#sweep-f1 --point 3={run}/report/metrics.json#sweep-f3" in figure


def test_sweep_f_above_the_pool_is_refused_before_anything_trains(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    proc = _pipeline(run, "sweep-f", "F_SWEEP=1 5 20", "POOL=4", dry=False)
    assert proc.returncode != 0 and "llamafactory" not in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "error: F_SWEEP 5 20 above POOL=4: select can pick at most POOL scored samples per behavior (raise POOL or "
        "drop those values)"]


def test_tuning_data_evaluates_all_anchor_and_tail_tuning(tmp_path):
    run = tmp_path / "run"
    _prepared(run)
    out = _dry(run, "tuning-data")
    for recipe, folder in (("atune_lora_sft", run), ("full_lora_sft", run / "ablations" / "wo_atune"),
                           ("reverse_lora_sft", run / "ablations" / "reverse")):
        assert any(f"output_dir={folder}/atune" in t and recipe in t for t in _lines(out, "llamafactory-cli train"))
    for name, model in (("full-ft", run / "ablations" / "wo_atune"), ("a-tune", run),
                        ("reverse-a-tune", run / "ablations" / "reverse")):
        (predict,) = _lines(out, f"--out {run}/eval/{name} ")
        assert f"--model {model}/pi_ref --template" in predict
    assert not _lines(out, "ablations/reverse/btune")   # the reverse ablation's first stage only
    (figure,) = _lines(out, "-m evaluation figure tuning_data")
    assert f"--point tails (reverse A-tune)={run}/report/metrics.json#reverse-a-tune" in figure


def test_compare_runs_reports_each_run_and_draws_their_methods(tmp_path):
    for run in ("run-1.5b", "run-8b"):
        _prepared(tmp_path / run)
        for name in ("zero-shot", "behaviorlm", "markov"):
            _fake_predictions(tmp_path / run, name)
    out = _dry(tmp_path / "here", "compare-runs", "RUNS=run-1.5b run-8b")
    assert len(_lines(out, "-m evaluation report")) == 2
    (figure,) = _lines(out, "-m evaluation figure compare_runs")
    points = [figure.split("--point ")[k].split()[0] for k in range(1, 5)]
    assert points == [f"{run}/{m}={tmp_path}/{run}/report/metrics.json#{m}" for run in ("run-1.5b", "run-8b")
                      for m in ("zero-shot", "behaviorlm")]
    assert f"--out {tmp_path}/here/report" in figure
    assert _pipeline(tmp_path / "here", "compare-runs").stderr.startswith("error: RUNS is needed: make")


def test_sweep_aux_prepares_a_run_per_auxiliary_set(tmp_path):
    run = tmp_path / "run"
    for name in ("chat.json", "math.jsonl"):
        (tmp_path / name).write_text("[]")
    out = _dry(run, "sweep-aux", f"AUX_SWEEP={tmp_path}/chat.json {tmp_path}/math.jsonl", "EPS=0.1")
    for stem in ("chat", "math"):
        (prepare,) = _lines(out, f"--out {run}-aux-{stem}/data ")
        assert f"--aux {tmp_path}/{stem}.json" in prepare and "--eps 0.1 " in prepare
        assert any(f"output_dir={run}-aux-{stem}/btune" in t for t in _lines(out, "llamafactory-cli train"))
    (figure,) = _lines(out, "-m evaluation figure sweep_aux")
    assert f"--point chat={run}-aux-chat/report/metrics.json#behaviorlm" in figure
    proc = _pipeline(run, "sweep-aux", f"AUX_SWEEP={tmp_path}/none.json")
    assert proc.returncode != 0 and f"AUX_SWEEP: no file {tmp_path}/none.json" in proc.stderr


def test_every_pipeline_target_is_a_make_target():
    from pipeline.__main__ import ALL_TARGETS

    text = (ROOT / "Makefile").read_text().split("RUN_TARGETS :=")[1].split(".PHONY")[0]
    assert set(ALL_TARGETS) <= set(text.replace("\\", " ").split())
