"""The targets as dry runs (`python -m pipeline --dry-run`, what `make DRY_RUN=1 <target>` calls): which runs,
models and files each one wires together. Nothing is trained or evaluated; prediction files are empty
placeholders where a target looks for them, and a dry run writes nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dry_runs import ROOT, dry_run, fake_predictions, lines_with, pred_args, prepared_data, run_pipeline


def test_eval_model_predicts_both_splits_with_the_recipe_template(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    out = dry_run(run, "eval-model", "EVAL_NAME=mine", f"EVAL_MODEL={tmp_path}/m", f"EVAL_ADAPTER={tmp_path}/a",
               "EVAL_BATCH=3")
    (predict,) = lines_with(out, "-m evaluation predict")
    for part in (f"--model {tmp_path}/m", f"--adapter {tmp_path}/a", "--template smollm2", "--dataset test_p1 test_p2",
                 f"--out {run}/eval/mine ", "--batch-size 3", f"--dataset-dir {run}/data"):
        assert part in predict + " ", part
    assert "--generate" not in predict
    generate = dry_run(run, "eval-model", "EVAL_NAME=mine", f"EVAL_MODEL={tmp_path}/m", "EVAL_GENERATE=1")
    (predict,) = lines_with(generate, "-m evaluation predict")
    assert "--generate" in predict and f"--out {run}/eval/mine-generate" in predict and "--adapter" not in predict
    assert sorted(p.name for p in run.iterdir()) == ["data"]  # a dry run writes nothing


def test_eval_model_needs_a_name_and_a_model(tmp_path):
    proc = run_pipeline(tmp_path / "run", "eval-model", "EVAL_NAME=x", dry=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: EVAL_NAME and EVAL_MODEL are needed:")


def test_tuning_needs_prepared_data(tmp_path):
    proc = run_pipeline(tmp_path / "run", "a-tune", dry=False)
    assert proc.returncode != 0 and "run make prepare first" in proc.stderr


def test_unknown_variable_is_refused(tmp_path):
    proc = run_pipeline(tmp_path / "run", "a-tune", "EPSILON=0.1")
    assert proc.returncode == 2 and "unknown variable(s): EPSILON" in proc.stderr


def test_eval_evaluates_the_models_that_exist(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    for stamp in ("pi_ref.stamp.json", "btune.stamp.json"):
        (run / stamp).write_text("{}")
    out = dry_run(run, "eval", f"BASE_MODEL={tmp_path}/base")
    predicts = lines_with(out, "-m evaluation predict")
    assert len(predicts) == 3
    zero_shot, a_tune, behaviorlm = predicts
    assert f"--model {tmp_path}/base " in zero_shot and f"--out {run}/eval/zero-shot " in zero_shot
    assert f"--model {run}/pi_ref " in a_tune and "--adapter" not in a_tune and f"{run}/eval/a-tune " in a_tune
    assert f"--model {run}/pi_ref --adapter {run}/btune " in behaviorlm and f"{run}/eval/behaviorlm " in behaviorlm
    assert f"skipping full-ft: no finished {run}/ablations/wo_atune/pi_ref" in out
    baselines = lines_with(out, "-m evaluation baseline")
    # the synthetic log (no INPUT) also gets the generator's own law as the oracle
    assert [b.split("--kind ")[1].split()[0] for b in baselines] == ["most-frequent", "last-behavior", "markov",
                                                                     "oracle"]
    (report,) = lines_with(out, "-m evaluation report")
    assert [p.split("=")[0] for p in pred_args(report)] == ["zero-shot", "a-tune", "behaviorlm", "most-frequent",
                                                             "last-behavior", "markov", "oracle"]
    log = tmp_path / "log.csv"
    log.write_text("user_id,timestamp,behavior\n")
    out = dry_run(run, "eval", f"BASE_MODEL={tmp_path}/base", f"INPUT={log}")
    kinds = [b.split("--kind ")[1].split()[0] for b in lines_with(out, "-m evaluation baseline")]
    assert kinds == ["most-frequent", "last-behavior", "markov"]
    # once prepared, the data decide: a run prepared from a log and evaluated without INPUT gets no oracle
    (run / "data" / "stats.json").write_text(json.dumps({"source": {"kind": "input"}}))
    out = dry_run(run, "eval", f"BASE_MODEL={tmp_path}/base")
    assert "--kind oracle" not in out and "--kind markov" in out


def test_eval_ranks_default_to_nproc(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    (predict,) = lines_with(dry_run(run, "eval-model", "EVAL_NAME=x", "EVAL_MODEL=m", "NPROC=4"), "evaluation predict")
    assert "torchrun --standalone --nproc_per_node 4 -m evaluation predict" in predict
    (predict,) = lines_with(dry_run(run, "eval-model", "EVAL_NAME=x", "EVAL_MODEL=m", "NPROC=4", "EVAL_NPROC=2"),
                        "evaluation predict")
    assert "--nproc_per_node 2 " in predict


def test_report_lists_finished_predictions_in_a_fixed_order(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    for name in ("markov", "zz-other", "behaviorlm", "abl-wo_dds", "zero-shot", "a-tune-generate", "a-tune",
                 "most-frequent", "full-ft", "sasrec", "last-behavior"):
        fake_predictions(run, name)
    fake_predictions(run, "half-done", splits=("test_p1",))  # no test_p2 yet: left out
    (report,) = lines_with(dry_run(run, "report", "PAPER_TABLE=behavior"), "-m evaluation report")
    names = [p.split("=", 1)[0] for p in pred_args(report)]
    assert names == ["zero-shot", "full-ft", "a-tune", "a-tune-generate", "behaviorlm", "sasrec", "most-frequent",
                     "last-behavior", "markov", "abl-wo_dds", "zz-other"]
    assert f"behaviorlm={run}/eval/behaviorlm" in pred_args(report)
    assert f"--out {run}/report" in report and "--paper-table behavior" in report


def test_report_without_predictions_fails_clearly(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    proc = run_pipeline(run, "report", dry=False)
    assert proc.returncode != 0 and "run make eval first" in proc.stderr


def test_make_passes_its_variables_to_the_pipeline(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(["make", "-s", "--no-print-directory", "-f", str(ROOT / "Makefile"), "prepare", "DRY_RUN=1",
                           f"RUN_DIR={run}", "EPS=0.3", "ARGS=save_strategy='no' x=1",
                           f"VENV={Path(sys.executable).parents[1]}"], check=False, capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (prepare,) = lines_with(proc.stdout, "-m data_prep prepare")
    assert f"--out {run}/data " in prepare and "--eps 0.3" in prepare and not run.exists()


def test_help_lists_every_variable_with_the_stage_defaults():
    proc = subprocess.run([sys.executable, "-m", "pipeline", "help"], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    from cli import field_default
    from data_prep.config import PrepareConfig
    from serving.config import ServeConfig

    for name, settings, field in (("EPS", PrepareConfig, "eps"), ("TRAIN_CAP", PrepareConfig, "train_cap"),
                                  ("HISTORY_LEN", PrepareConfig, "history_len"), ("PORT", ServeConfig, "port")):
        (line,) = lines_with(proc.stdout, f"  {name} ")
        assert line.endswith(f"[default: {field_default(settings, field)}]"), line


def test_predict_serve_and_sasrec_use_the_runs_layout_and_recipe(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    out = dry_run(run, "predict", "EVENTS=e.jsonl", "NEXT=n.csv", "TOP_K=3", "TIMEZONE=+08:00", "COLUMNS=user=uid",
                  "LABEL_MAP=labels.json", "TIME_FORMAT=%d/%m/%Y %H:%M", "ALLOW_BAD_TIMESTAMPS=1", "serve", "PORT=0",
                  "GRACE_S=5", "LOG_FORMAT=json", "sasrec", "sample-efficiency", "SIZES=100 200")
    (predict,) = lines_with(out, "-m serving predict")
    for part in (f"--run-dir {run} ", "--template smollm2", "--cutoff-len 2048", "--top-k 3", "--tz +08:00",
                 f"--out {run}/predictions.jsonl", f"--events {ROOT}/e.jsonl", "--columns user=uid",
                 f"--label-map {ROOT}/labels.json", "--time-format %d/%m/%Y %H:%M ", "--allow-bad-timestamps 1"):
        assert part in predict + " ", part
    (serve,) = lines_with(out, "-m serving serve")
    assert "--host 127.0.0.1 --port 0 --log-format json --grace-s 5" in serve
    (sasrec,) = lines_with(out, "-m sasrec train")
    assert f"--out {run}/eval/sasrec" in sasrec
    (curve,) = lines_with(out, "-m sasrec sample-efficiency")
    assert "--sizes 100 200" in curve and f"--llm behaviorlm={run}/report/metrics.json#behaviorlm" in curve
    (predict,) = lines_with(dry_run(run, "predict", "EVENTS=s3://lake/events/dt=*/", "NEXT=n.csv"),
                            "-m serving predict")
    assert "--events s3://lake/events/dt=*/ " in predict  # an object-store URI is passed as given
    proc = run_pipeline(run, "predict", dry=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: EVENTS and NEXT are needed: make predict")


def test_token_check_and_select_write_their_own_folders(tmp_path):
    """data/ is prepare's alone: the token check writes token_check/, select selection/ (B-tune's dataset_dir),
    an ablation its own selection/ while reading the run's data/."""
    run = tmp_path / "run"
    prepared_data(run)
    (tmp_path / "base").mkdir()
    out = dry_run(run, "b-tune", f"BASE_MODEL={tmp_path}/base")
    (check,) = lines_with(out, "-m scoring token-lengths")
    assert f"--dataset-dir {run}/data " in check and check.endswith(f"--out {run}/token_check/token_lengths.json")
    (select,) = lines_with(out, "-m selection select")
    assert f"--dataset-dir {run}/data " in select and select.endswith(f"--out {run}/selection")
    (train,) = lines_with(out, f"output_dir={run}/btune")
    assert f"dataset_dir={run}/selection " in train
    out = dry_run(run, "ablation-wo-dpo", f"BASE_MODEL={tmp_path}/base")
    (select,) = [line for line in lines_with(out, "-m selection select") if "ablations" in line]
    assert f"--dataset-dir {run}/data " in select and select.endswith(f"--out {run}/ablations/wo_dpo/selection")
    (train,) = lines_with(out, f"output_dir={run}/ablations/wo_dpo/btune")
    assert f"dataset_dir={run}/ablations/wo_dpo/selection " in train and "wo_dpo_lora_sft.yaml" in train
    assert len(lines_with(out, "-m scoring token-lengths")) == 1  # the run's data, checked once
    assert not (run / "ablations").exists() and sorted(p.name for p in run.iterdir()) == ["data"]


def test_a_run_of_the_older_layout_is_refused_with_what_to_rerun(tmp_path):
    run = tmp_path / "run"
    data = prepared_data(run)
    (data / "dpo_pairs.jsonl").write_text("{}\n")
    proc = run_pipeline(run, "b-tune")
    assert proc.returncode != 0 and proc.stderr.strip().splitlines() == [
        f"error: {data} was made by an older layout (select wrote into data/): rerun make prepare"]
    (data / "dpo_pairs.jsonl").unlink()
    (data / "stats.json").write_text('{"token_lengths": {"fits": true}}')
    proc = run_pipeline(run, "eval")
    assert proc.returncode != 0 and "older layout" in proc.stderr and "rerun make prepare" in proc.stderr
    (data / "stats.json").write_text("{}")
    linked = run / "ablations" / "wo_dds" / "data"
    linked.mkdir(parents=True)
    (linked / "stats.json").symlink_to(data / "stats.json")
    proc = run_pipeline(run, "ablation-wo-dds")
    assert proc.returncode != 0 and f"remove {run / 'ablations'}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_aux_repeat_reaches_prepare_only_when_set(tmp_path):
    run = tmp_path / "run"
    (prepare,) = lines_with(dry_run(run, "prepare", "AUX_REPEAT=1"), "-m data_prep prepare")
    assert "--aux-repeat 1" in prepare
    (prepare,) = lines_with(dry_run(run, "prepare"), "-m data_prep prepare")
    assert "--aux-repeat" not in prepare   # unset: prepare's parameters (and stamps) are what they were


def test_a_tune_states_the_auxiliary_ratio_before_training(tmp_path):
    run = tmp_path / "run"
    aux = {"eps": 0.2, "requested": 8, "written": 3, "distinct": 3, "repeated": 0, "shortfall": 5, "available": 3,
           "eps_achieved": 0.075}
    prepared_data(run).joinpath("stats.json").write_text(json.dumps({"aux": aux}))
    out = dry_run(run, "a-tune")
    (line,) = lines_with(out, "auxiliary conversations:")
    assert "eps 0.2 asked (8), 0.075 achieved (3 written" in line and "AUX_REPEAT=1" in line
    assert out.index(line) < out.index("llamafactory-cli train")


def test_every_pipeline_target_is_a_make_target():
    from pipeline.__main__ import ALL_TARGETS

    text = (ROOT / "Makefile").read_text().split("RUN_TARGETS :=")[1].split(".PHONY")[0]
    assert set(ALL_TARGETS) <= set(text.replace("\\", " ").split())


def test_a_second_btune_round_scores_selects_and_trains_on_the_first_rounds_merged_model(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    out = dry_run(run, "export-final", "BTUNE_ROUNDS=2", f"BASE_MODEL={tmp_path}/base")
    (merge1,) = lines_with(out, f"export_dir={run}/final")
    assert f"model_name_or_path={run}/pi_ref adapter_name_or_path={run}/btune " in merge1
    (score2,) = lines_with(out, f"--out {run}/round2/scores")
    assert f"--model {run}/final " in score2
    (select2,) = lines_with(out, f"--out {run}/round2/selection")
    assert f"--scores {run}/round2/scores " in select2
    (train2,) = lines_with(out, f"output_dir={run}/round2/btune")
    assert f"model_name_or_path={run}/final dataset_dir={run}/round2/selection " in train2
    (merge2,) = lines_with(out, f"export_dir={run}/round2/final")
    assert f"model_name_or_path={run}/final adapter_name_or_path={run}/round2/btune " in merge2
    assert [line.split(" (")[0] for line in lines_with(out, "(round ")] == [
        "would run: export-final", "would run: score", "would run: select", "would run: b-tune: train"]
    three = dry_run(run, "export-final", "BTUNE_ROUNDS=3", f"BASE_MODEL={tmp_path}/base")
    (score3,) = lines_with(three, f"--out {run}/round3/scores")
    assert f"--model {run}/round2/final " in score3
    one = dry_run(run, "export-final", f"BASE_MODEL={tmp_path}/base")
    assert "round2" not in one and len(lines_with(one, "export_dir=")) == 2   # pi_ref and final
    (run / "round2").mkdir()
    proc = run_pipeline(run, "export-final", f"BASE_MODEL={tmp_path}/base")
    assert proc.returncode == 0 and proc.stderr.count(f"warning: {run}/round2 is from an earlier BTUNE_ROUNDS") == 1


def test_eval_scores_the_last_btune_round(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    (run / "round2").mkdir()
    for stamp in ("pi_ref.stamp.json", "btune.stamp.json", "round2/btune.stamp.json"):
        (run / stamp).write_text("{}")
    out = dry_run(run, "eval", "BTUNE_ROUNDS=2", f"BASE_MODEL={tmp_path}/base")
    (behaviorlm,) = lines_with(lines_with(out, "-m evaluation predict")[-1], f"{run}/eval/behaviorlm ")
    assert f"--model {run}/final --adapter {run}/round2/btune " in behaviorlm


def test_btune_rounds_must_be_a_positive_integer(tmp_path):
    for bad in ("0", "two", "-1"):
        proc = run_pipeline(tmp_path / "run", "b-tune", f"BTUNE_ROUNDS={bad}")
        assert proc.returncode == 2 and proc.stderr == f"error: BTUNE_ROUNDS='{bad}': must be a positive integer\n"
