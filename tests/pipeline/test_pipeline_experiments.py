"""The paper's experiment targets as dry runs (`python -m pipeline --dry-run`): ablations and their report, the
sweeps (eps, anchor threshold, f, auxiliary sets), repeats over seeds, the behavior map, the tuning-data comparison
and the comparison of runs. Nothing is trained or evaluated; a dry run writes nothing."""
from __future__ import annotations

from dry_runs import dry_run, fake_predictions, lines_with, pred_args, prepared_data, run_pipeline


def test_ablation_table_maps_ablation_dirs_to_table4_names(tmp_path):
    run = tmp_path / "run"
    for name in ("wo_aux", "reverse", "wo_atune"):
        fake_predictions(run, f"abl-{name}")
    (table,) = lines_with(dry_run(run, "ablation-table"), "-m evaluation ablation-table")
    metrics = f"{run}/report/metrics.json"
    assert f"--full behaviorlm={metrics}#behaviorlm" in table
    words = table.split()
    variants = [words[i + 1] for i, w in enumerate(words) if w == "--variant"]
    assert variants == [f"wo_aux={metrics}#abl-wo_aux", f"wo_atune={metrics}#abl-wo_atune",
                        f"reverse={metrics}#abl-reverse"]
    assert f"--out {run}/report/ablations.md" in table


def test_ablation_report_evaluates_each_finished_ablation(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    (run / "ablations" / "wo_dds").mkdir(parents=True)
    (run / "ablations" / "wo_dds" / "final.stamp.json").write_text("{}")
    out = dry_run(run, "ablation-report", f"BASE_MODEL={tmp_path}/base")
    predict = [line for line in lines_with(out, "-m evaluation predict") if "abl-" in line]
    assert len(predict) == 1
    assert f"--model {run}/ablations/wo_dds/final " in predict[0] and f"--out {run}/eval/abl-wo_dds " in predict[0]
    assert "skipping abl-wo_aux" in out


def test_ablations_that_change_only_btuning_reuse_the_runs_pi_ref_and_scores(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    out = dry_run(run, "ablation-wo-dds", f"BASE_MODEL={tmp_path}/base")
    (select,) = [line for line in lines_with(out, "-m selection select") if "ablations" in line]
    assert f"--scores {run}/scores " in select and f"--dataset-dir {run}/data " in select
    assert f"--out {run}/ablations/wo_dds/selection" in select
    assert "--mode uniform" in select
    assert len(lines_with(out, "output_dir=" + str(run / "atune"))) == 1  # the run's own A-tune, listed once
    out = dry_run(run, "ablation-wo-aux", f"BASE_MODEL={tmp_path}/base", "ATUNE_ARGS=num_train_epochs=1")
    (train,) = lines_with(out, f"output_dir={run}/ablations/wo_aux/atune")
    assert train.endswith("dataset=behavior_anchor num_train_epochs=1")


def test_sweep_eps_runs_the_chain_per_value(tmp_path):
    run = tmp_path / "run"
    out = dry_run(run, "sweep-eps", "EPS_SWEEP=0 0.05", "DATA_DIR=/elsewhere/data")
    for value in ("0", "0.05"):
        sub = f"{run}-eps{value}"
        (prepare,) = lines_with(out, f"--out {sub}/data ")
        assert f"--eps {value} " in prepare + " " and "--seed 42" in prepare
        train = lines_with(out, "llamafactory-cli train")
        assert any(f"output_dir={sub}/atune" in t and f"dataset_dir={sub}/data" in t for t in train)
        assert any(f"model_name_or_path={sub}/pi_ref" in t and f"output_dir={sub}/btune" in t for t in train)
        assert any(f"--out {sub}/eval/zero-shot" in p for p in lines_with(out, "-m evaluation predict"))
        assert any(f"--out {sub}/report" in r for r in lines_with(out, "-m evaluation report"))
    (table,) = lines_with(out, "-m evaluation sweep-table")
    assert (f"--point 0={run}-eps0/report/metrics.json#behaviorlm "
            f"--point 0.05={run}-eps0.05/report/metrics.json#behaviorlm") in table
    assert f"--out {run}/report/sweep_eps.md" in table
    assert "/elsewhere" not in out  # each value prepares its own data
    assert not tmp_path.joinpath("run-eps0").exists()


def test_sweep_anchor_changes_the_anchor_threshold(tmp_path):
    run = tmp_path / "run"
    out = dry_run(run, "sweep-anchor", "ANCHOR_SWEEP=0.005 0.02", "PAPER_TABLE=behavior")
    for value in ("0.005", "0.02"):
        (prepare,) = lines_with(out, f"--out {run}-anchor{value}/data ")
        assert f"--anchor-threshold {value} " in prepare
    (table,) = lines_with(out, "-m evaluation sweep-table")
    assert f"--out {run}/report/sweep_anchor.md" in table and "--paper-table threshold" in table


def test_repeats_train_each_seed_on_the_shared_data(tmp_path):
    run = tmp_path / "run"
    out = dry_run(run, "repeats", "SEEDS=1 2", "ARGS=num_train_epochs=1")
    assert len(lines_with(out, "-m data_prep prepare")) == 1  # this run's data, once, read by each seed run
    assert "would link" not in out and len(lines_with(out, "-m scoring token-lengths")) <= 1
    for seed in ("1", "2"):
        sub = f"{run}-seed{seed}"
        train = [t for t in lines_with(out, "llamafactory-cli train") if f"output_dir={sub}/" in t]
        assert len(train) == 2 and all(t.endswith(f"seed={seed} num_train_epochs=1") for t in train)
        (select,) = lines_with(out, f"--scores {sub}/scores")
        assert f"--seed {seed}" in select and f"--dataset-dir {run}/data " in select
        assert select.endswith(f"--out {sub}/selection")
        assert any(f"dataset_dir={run}/data " in t for t in train)           # A-tune on the run's data
        assert any(f"dataset_dir={sub}/selection " in t for t in train)      # B-tune on its own selection
        assert any(f"--out {sub}/eval/zero-shot" in p for p in lines_with(out, "-m evaluation predict"))


def test_report_seeds_pools_each_model_over_the_seed_runs(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    for seed in (1, 2):
        for name in ("behaviorlm", "zero-shot", "markov"):
            fake_predictions(tmp_path / f"run-seed{seed}", name)
    (report,) = lines_with(dry_run(run, "report-seeds", "SEEDS=1 2"), "-m evaluation report")
    assert pred_args(report) == [f"{n}={tmp_path}/run-seed1/eval/{n},{tmp_path}/run-seed2/eval/{n}"
                                  for n in ("zero-shot", "behaviorlm", "markov")]
    assert f"--dataset-dir {run}/data" in report and f"--out {run}/report-seeds" in report


def test_behavior_map_embeds_with_the_base_model_into_the_report(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    out = dry_run(run, "behavior-map", f"BASE_MODEL={tmp_path}/base")
    (cmd,) = lines_with(out, "-m evaluation behavior-map")
    assert f"--model {tmp_path}/base --dataset-dir {run}/data --out {run}/report" in cmd
    assert f"would run: behavior map (output {run}/report/behavior_map.json missing)" in out


def test_sweep_f_reselects_and_btunes_from_the_runs_pi_ref_and_scores(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    out = dry_run(run, "sweep-f", "F_SWEEP=1 3", "POOL=3")
    assert len(lines_with(out, "would run: score")) == 1 and len(lines_with(out, "a-tune: train")) == 1
    for f in ("1", "3"):
        (select,) = lines_with(out, f"--out {run}/ablations/sweep-f{f}/selection")
        assert f"--scores {run}/scores " in select and f"--F {f} " in select
        assert any(f"model_name_or_path={run}/pi_ref" in t and f"output_dir={run}/ablations/sweep-f{f}/btune" in t
                   for t in lines_with(out, "llamafactory-cli train"))
        (predict,) = lines_with(out, f"--out {run}/eval/sweep-f{f} ")
        assert f"--model {run}/pi_ref --adapter {run}/ablations/sweep-f{f}/btune" in predict
    (figure,) = lines_with(out, "-m evaluation figure sweep_f")
    assert f"--point 1={run}/report/metrics.json#sweep-f1 --point 3={run}/report/metrics.json#sweep-f3" in figure


def test_sweep_f_above_the_pool_is_refused_before_anything_trains(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    proc = run_pipeline(run, "sweep-f", "F_SWEEP=1 5 20", "POOL=4", dry=False)
    assert proc.returncode != 0 and "llamafactory" not in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "error: F_SWEEP 5 20 above POOL=4: select can pick at most POOL scored samples per behavior (raise POOL or "
        "drop those values)"]


def test_tuning_data_evaluates_all_anchor_and_tail_tuning(tmp_path):
    run = tmp_path / "run"
    prepared_data(run)
    out = dry_run(run, "tuning-data")
    for recipe, folder in (("atune_lora_sft", run), ("full_lora_sft", run / "ablations" / "wo_atune"),
                           ("reverse_lora_sft", run / "ablations" / "reverse")):
        assert any(f"output_dir={folder}/atune" in t and recipe in t for t in lines_with(out, "llamafactory-cli train"))
    for name, model in (("full-ft", run / "ablations" / "wo_atune"), ("a-tune", run),
                        ("reverse-a-tune", run / "ablations" / "reverse")):
        (predict,) = lines_with(out, f"--out {run}/eval/{name} ")
        assert f"--model {model}/pi_ref --template" in predict
    assert not lines_with(out, "ablations/reverse/btune")   # the reverse ablation's first stage only
    (figure,) = lines_with(out, "-m evaluation figure tuning_data")
    assert f"--point tails (reverse A-tune)={run}/report/metrics.json#reverse-a-tune" in figure


def test_compare_runs_reports_each_run_and_draws_their_methods(tmp_path):
    for run in ("run-1.5b", "run-8b"):
        prepared_data(tmp_path / run)
        for name in ("zero-shot", "behaviorlm", "markov"):
            fake_predictions(tmp_path / run, name)
    out = dry_run(tmp_path / "here", "compare-runs", "RUNS=run-1.5b run-8b")
    assert len(lines_with(out, "-m evaluation report")) == 2
    (figure,) = lines_with(out, "-m evaluation figure compare_runs")
    points = [figure.split("--point ")[k].split()[0] for k in range(1, 5)]
    assert points == [f"{run}/{m}={tmp_path}/{run}/report/metrics.json#{m}" for run in ("run-1.5b", "run-8b")
                      for m in ("zero-shot", "behaviorlm")]
    assert f"--out {tmp_path}/here/report" in figure
    assert run_pipeline(tmp_path / "here", "compare-runs").stderr.startswith("error: RUNS is needed: make")


def test_sweep_aux_prepares_a_run_per_auxiliary_set(tmp_path):
    run = tmp_path / "run"
    for name in ("chat.json", "math.jsonl"):
        (tmp_path / name).write_text("[]")
    out = dry_run(run, "sweep-aux", f"AUX_SWEEP={tmp_path}/chat.json {tmp_path}/math.jsonl", "EPS=0.1")
    for stem in ("chat", "math"):
        (prepare,) = lines_with(out, f"--out {run}-aux-{stem}/data ")
        assert f"--aux {tmp_path}/{stem}.json" in prepare and "--eps 0.1 " in prepare
        assert any(f"output_dir={run}-aux-{stem}/btune" in t for t in lines_with(out, "llamafactory-cli train"))
    (figure,) = lines_with(out, "-m evaluation figure sweep_aux")
    assert f"--point chat={run}-aux-chat/report/metrics.json#behaviorlm" in figure
    proc = run_pipeline(run, "sweep-aux", f"AUX_SWEEP={tmp_path}/none.json")
    assert proc.returncode != 0 and f"AUX_SWEEP: no file {tmp_path}/none.json" in proc.stderr
