"""End to end through the stock CLIs and the Make targets on a tiny random Llama (no downloads):
prepare -> build tiny model -> a-tune (DeepSpeed ZeRO-2 on 2 CPU ranks) -> interrupted-run resume -> merge
-> score -> select -> DPO -> export-final -> make eval (zero-shot, a-tune, behaviorlm, baselines, report).

Checks: A-tune keeps the best checkpoint and resumes bit-identically after an interrupt; pi_ref differs
from the base model; DPO started from the merged pi_ref has rewards/chosen = rewards/rejected = 0 at step 1,
while DPO started from base + A-tune adapter (reference = base) does not. The report's numbers equal the
metrics recomputed from its predictions files, and BehaviorLM's predictions are the argmax of a fresh scorer
on pi_ref + the DPO adapter. Select with `-m e2e`.
The first run JIT-builds DeepSpeed's CPU communication op (about 70 s, cached afterwards).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
LF_CLI = Path(sys.executable).parent / "llamafactory-cli"
RECIPE_FOLDER = "tiny"
F = 3


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", DISABLE_VERSION_CHECK="1")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(ROOT)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cmd: list[str], log: Path) -> str:
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=_env(), capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}); log {log}:\n{tail}")
    return proc.stdout + proc.stderr


PREPARE = ("USERS=12", "DAYS=5", "HISTORY_LEN=5", "TRAIN_CAP=40", "VALID_CAP=6", "TEST_CAP=6", "P2_PER_BEHAVIOR=1",
           "EPS=0.2", "SEED=7")


# (make's arguments, the stages it ran, the paths under the run dir it created, changed or removed)
WRITES: list[tuple[tuple[str, ...], list[str], list[str]]] = []


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int, int]]:
    files = [p for p in run_dir.rglob("*") if not p.is_dir() or p.is_symlink()] if run_dir.exists() else []
    return {str(p.relative_to(run_dir)): (p.lstat().st_size, p.lstat().st_mtime_ns, p.lstat().st_ino) for p in files}


def _make(run_dir: Path, base: Path | None, *args: str, log: Path) -> str:
    before = _snapshot(run_dir)
    out = _run(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), *args, f"MODEL={RECIPE_FOLDER}",
                f"RUN_DIR={run_dir}", *([f"BASE_MODEL={base}"] if base else []),
                f"VENV={Path(sys.executable).parents[1]}"], log)
    after = _snapshot(run_dir)
    WRITES.append((args, _ran(out), sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))))
    return out


def _ran(log: str) -> list[str]:
    """The stages a pipeline log says it ran ("==> <stage> (<why>)"), in order, without the recipe name."""
    return [line[4:].split(" (")[0] for line in log.splitlines() if line.startswith("==> ")]


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(path))
    assert tensors, f"no safetensors in {model_dir}"
    return tensors


def _weights_adapter(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(adapter_dir / "adapter_model.safetensors")


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _first_log(output_dir: Path) -> dict:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    first = state["log_history"][0]
    assert first["step"] == 1
    return first


def _invalidation(finished_run: Path, base: Path, tmp: Path, logs: Path) -> dict[str, list[str]]:
    """Which stages of `make b-tune` run after each kind of change (pipeline/graph.py), on a copy of the run
    (stamps record content and location-free parameters, so a moved run is still up to date)."""
    run_dir = tmp / "moved-run"
    shutil.copytree(finished_run, run_dir, symlinks=True)
    # the run's last selection is export-final's, with the default F
    ran = {"nothing": _ran(_make(run_dir, base, "b-tune", log=logs / "inv-nothing.log")),
           "F": _ran(_make(run_dir, base, "b-tune", f"F={F - 1}", log=logs / "inv-f.log"))}
    recipes = tmp / "recipes"
    shutil.copytree(ROOT / "recipes", recipes)
    dpo = recipes / RECIPE_FOLDER / "btune_lora_dpo.yaml"
    dpo.write_text(dpo.read_text().replace("pref_beta: 0.1", "pref_beta: 0.2"))
    ran["recipe"] = _ran(_make(run_dir, base, "b-tune", f"F={F - 1}", f"RECIPES={recipes}", log=logs / "inv-r.log"))
    shutil.rmtree(run_dir / "scores")
    ran["deleted"] = _ran(_make(run_dir, base, "b-tune", f"F={F - 1}", f"RECIPES={recipes}", log=logs / "inv-d.log"))
    prepare = [v if not v.startswith("EPS=") else "EPS=0.4" for v in PREPARE]
    ran["eps_prepare"] = _ran(_make(run_dir, None, "prepare", *prepare, log=logs / "inv-eps-prepare.log"))
    ran["eps"] = _ran(_make(run_dir, base, "b-tune", f"F={F - 1}", f"RECIPES={recipes}", log=logs / "inv-eps.log"))
    # the token check switched on later (as if SKIP_TOKEN_CHECK=1 had been set until now)
    shutil.rmtree(run_dir / "token_check")
    (run_dir / "token_check.stamp.json").unlink()
    ran["token_check_on"] = _ran(_make(run_dir, base, "b-tune", f"F={F - 1}", f"RECIPES={recipes}",
                                       log=logs / "inv-token-check.log"))
    return ran


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    run_dir, logs = tmp / "run", tmp / "logs"
    logs.mkdir()
    data = run_dir / "data"
    py = sys.executable
    _make(run_dir, None, "prepare", *PREPARE, log=logs / "prepare.log")
    base = tmp / "tiny-model"
    _run([py, str(ROOT / "tests" / "tiny_models.py"), "--out", str(base), "--dataset-dir", str(data)],
         logs / "build.log")

    # A-tune with DeepSpeed ZeRO-2 on 2 CPU ranks, then merge.
    distributed = ("NPROC=2", "DEEPSPEED=z2")
    _make(run_dir, base, "a-tune", *distributed, log=logs / "atune.log")
    atune = run_dir / "atune"
    uninterrupted = tmp / "atune-uninterrupted"
    shutil.copytree(atune, uninterrupted)

    # Simulate an interrupt after the first epoch: drop the last checkpoint, the final adapter and the stamps.
    checkpoints = sorted(atune.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2, checkpoints
    first_ckpt, last_ckpt = checkpoints
    first_mtime = (first_ckpt / "trainer_state.json").stat().st_mtime_ns
    shutil.rmtree(last_ckpt)
    for name in ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json"):
        (atune / name).unlink()
    resume_log = _make(run_dir, base, "a-tune", *distributed, log=logs / "atune-resume.log")
    rerun_log = _make(run_dir, base, "a-tune", *distributed, log=logs / "atune-rerun.log")

    _make(run_dir, base, "b-tune", f"F={F}", log=logs / "btune.log")
    _make(run_dir, base, "export-final", log=logs / "export.log")

    # Negative control: DPO on base + the A-tune adapter (not merged): the reference is then the base model.
    _run([str(LF_CLI), "train", str(ROOT / "recipes/tiny/btune_lora_dpo.yaml"), f"model_name_or_path={base}",
          f"adapter_name_or_path={atune}", f"dataset_dir={run_dir / 'selection'}", f"output_dir={tmp / 'dpo-unmerged'}",
          "max_steps=1"], logs / "dpo-unmerged.log")
    # Evaluation: every model of the run, the baselines and the report; then a generated-output evaluation and
    # a rerun of make eval, which must redo no finished prediction and report the generated one beside the rest.
    eval_log = _make(run_dir, base, "eval", log=logs / "eval.log")
    _make(run_dir, base, "eval-model", "EVAL_NAME=a-tune", f"EVAL_MODEL={run_dir / 'pi_ref'}", "EVAL_GENERATE=1",
          log=logs / "eval-generate.log")
    eval_rerun_log = _make(run_dir, base, "eval", log=logs / "eval-rerun.log")
    invalidation = _invalidation(run_dir, base, tmp, logs)
    return {"invalidation": invalidation, "run": run_dir, "base": base, "tmp": tmp, "uninterrupted": uninterrupted,
            "first_ckpt": first_ckpt, "first_mtime": first_mtime, "resume_log": resume_log, "rerun_log": rerun_log,
            "eval_log": eval_log, "eval_rerun_log": eval_rerun_log, "writes": list(WRITES)}


def test_atune_evaluates_each_epoch_and_keeps_the_best(chain):
    state = json.loads((chain["run"] / "atune" / "trainer_state.json").read_text())
    evals = [h for h in state["log_history"] if "eval_loss" in h]
    assert [h["epoch"] for h in evals] == [1.0, 2.0]
    best = min(evals, key=lambda h: h["eval_loss"])
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")


def test_interrupted_atune_resumes_from_last_checkpoint(chain):
    assert f"Resuming training from {chain['first_ckpt']}" in chain["resume_log"]
    # The first epoch was not redone (its checkpoint untouched) and the result equals the uninterrupted run.
    assert (chain["first_ckpt"] / "trainer_state.json").stat().st_mtime_ns == chain["first_mtime"]
    resumed = _weights_adapter(chain["run"] / "atune")
    assert _max_abs_diff(resumed, _weights_adapter(chain["uninterrupted"])) < 1e-6


def test_finished_stage_is_not_redone(chain):
    assert "llamafactory-cli" not in chain["rerun_log"]
    assert "up to date: a-tune: train (atune_lora_sft)" in chain["rerun_log"]


# ---- invalidation: a stage reruns exactly when an input's content or a parameter changed ------------------
def test_changing_nothing_runs_nothing(chain):
    assert chain["invalidation"]["nothing"] == []


def test_changing_f_reruns_select_and_btune_only(chain):
    assert chain["invalidation"]["F"] == ["select", "b-tune: train"]


def test_editing_a_recipe_reruns_its_stage(chain):
    assert chain["invalidation"]["recipe"] == ["b-tune: train"]


def test_deleting_an_output_reruns_its_stage(chain):
    ran = chain["invalidation"]["deleted"]
    assert ran[0] == "score" and "a-tune: train" not in ran


def test_changing_eps_reruns_atune_and_everything_after(chain):
    assert chain["invalidation"]["eps_prepare"] == ["prepare"]
    assert chain["invalidation"]["eps"] == ["token check", "a-tune: train", "a-tune: merge", "score", "select",
                                            "b-tune: train"]


def test_switching_the_token_check_on_later_retrains_nothing(chain):
    assert chain["invalidation"]["token_check_on"] == ["token check"]


def test_token_check_records_the_lengths_in_its_own_folder(chain):
    lengths = json.loads((chain["run"] / "token_check" / "token_lengths.json").read_text())
    assert lengths["fits"] and lengths["cutoff_len"] > lengths["max_prompt_plus_longest_candidate"] > 0
    train = lengths["splits"]["train_all"]
    assert 0 < train["min"] <= train["median"] <= train["p99"] <= train["max"]
    assert "token_lengths" not in json.loads((chain["run"] / "data" / "stats.json").read_text())


# What each stage may write under the run dir: its output folder and its stamp (the runner adds .pipeline/).
OWNED = {"prepare": ["data", ".data.prepare"], "token check": ["token_check"], "a-tune: train": ["atune"],
         "a-tune: merge": ["pi_ref"], "score": ["scores"], "select": ["selection"], "b-tune: train": ["btune"],
         "export-final": ["final"]}


def _owned(stage: str) -> list[str]:
    """A stage's own outputs (an unknown stage name fails the test: the check never passes by default)."""
    if stage.startswith("eval "):
        return [f"eval/{stage[5:]}"]
    if stage.startswith("report "):
        return [stage[7:]]
    return OWNED[stage]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith((f"{root}/", f"{root}.stamp.json", f"{root}-", f"{root}.lock"))


def test_every_stage_writes_only_under_its_own_outputs(chain):
    stages = set()
    for args, ran, changed in chain["writes"]:
        roots = [".pipeline", *(root for stage in ran for root in _owned(stage))]
        assert [p for p in changed if not any(_under(p, r) for r in roots)] == [], (args, ran)
        if "prepare" not in ran:  # data/ never changes after prepare (select and the token check only read it)
            assert [p for p in changed if _under(p, "data")] == [], (args, ran)
        stages |= set(ran)
    assert {"prepare", "token check", "a-tune: train", "a-tune: merge", "score", "select", "b-tune: train",
            "export-final", "eval zero-shot", "report report"} <= stages


def test_pi_ref_differs_from_base(chain):
    assert _max_abs_diff(_weights(chain["run"] / "pi_ref"), _weights(chain["base"])) > 1e-5


def test_selection_wrote_pairs(chain):
    selection = chain["run"] / "selection"
    pairs = [json.loads(line) for line in (selection / "dpo_pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)
    info = json.loads((selection / "dataset_info.json").read_text())  # B-tune's dataset_dir: these two only
    assert {k: v["file_name"] for k, v in info.items()} == {"behavior_dpo_pairs": "dpo_pairs.jsonl",
                                                           "behavior_selected_sft": "selected_sft.jsonl"}
    assert not (chain["run"] / "data" / "dpo_pairs.jsonl").exists()


def test_dpo_reference_is_pi_ref(chain):
    first = _first_log(chain["run"] / "btune")
    assert abs(first["rewards/chosen"]) < 1e-6 and abs(first["rewards/rejected"]) < 1e-6
    # Control: with the unmerged adapter the frozen reference is the base model, so the rewards are not 0.
    control = _first_log(chain["tmp"] / "dpo-unmerged")
    assert max(abs(control["rewards/chosen"]), abs(control["rewards/rejected"])) > 1e-4


def test_final_model_is_pi_ref_plus_dpo(chain):
    final, pi_ref = _weights(chain["run"] / "final"), _weights(chain["run"] / "pi_ref")
    assert _max_abs_diff(final, pi_ref) > 0


# ---- evaluation ---------------------------------------------------------------------------------------
# make's order
REPORTED = ["zero-shot", "a-tune", "a-tune-generate", "behaviorlm", "most-frequent", "last-behavior", "markov"]
SIX_COLUMNS = ["Prec_w", "Rec_w", "Overall", "Head", "Medium", "Tail"]
SIX_METRICS = {"prec_w": "test_p1", "rec_w": "test_p1", "overall": "test_p2", "head": "test_p2",
               "medium": "test_p2", "tail": "test_p2"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _report_table(report_md: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table (the metric table) of report.md."""
    lines = [line for line in report_md.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, body = cells[0], []
    for row in cells[2:]:
        if row[0] == "behavior" or len(row) != len(header):
            break
        body.append(row)
    return header, body


def test_eval_test_sets_are_tiny(chain):
    for split in ("test_p1", "test_p2"):
        n = len(_jsonl(chain["run"] / "data" / f"{split}.jsonl"))
        assert 0 < n <= 40, (split, n)


def test_eval_skips_missing_models_and_prints_the_report(chain):
    log = chain["eval_log"]
    assert "skipping full-ft" in log  # no ablations/wo_atune/pi_ref in this run
    assert "# Evaluation report" in log


def test_eval_report_rows_and_metric_columns(chain):
    header, rows = _report_table((chain["run"] / "report" / "report.md").read_text())
    assert all(col in header for col in SIX_COLUMNS), header
    assert [row[0] for row in rows] == REPORTED
    assert "invalid P1 / P2" in header  # a generated evaluation is in the report
    for row in rows:
        values = [row[header.index(col)] for col in ("Prec_w", "Rec_w", "Overall")]
        assert all(0.0 <= float(v) <= 1.0 for v in values), row


def test_eval_metrics_json_equals_metrics_recomputed_from_predictions(chain):
    from evaluation import metrics as M

    run = chain["run"]
    stats = json.loads((run / "data" / "stats.json").read_text())
    report = json.loads((run / "report" / "metrics.json").read_text())
    assert list(report["models"]) == REPORTED
    for name, model in report["models"].items():
        assert [r["pred_dir"] for r in model["runs"]] == [str(run / "eval" / name)]
        for split in ("test_p1", "test_p2"):
            rows = _jsonl(run / "eval" / name / f"{split}.predictions.jsonl")
            meta = _jsonl(run / "data" / f"{split}.meta.jsonl")
            assert [r["label"] for r in rows] == [m["label"] for m in meta]  # line i is test sample i
            expected = M.metrics_from_predictions(rows, stats)
            summary = model["summary"][split]
            for key in (*SIX_METRICS, "anchor_accuracy", "tail_behavior_accuracy", "invalid_rate"):
                assert summary[key]["mean"] == pytest.approx(expected[key]), (name, split, key)
            # Rec_w is accuracy (Hit-Rate@1), counted here without the metrics module
            accuracy = sum(r["pred"] == r["label"] for r in rows) / len(rows)
            assert summary["rec_w"]["mean"] == pytest.approx(accuracy)
            # ranking and calibration: every model but the generated one keeps every candidate's log-probability
            assert (expected["hit@1"] is None) == name.endswith("-generate"), name
            for key in M.DISTRIBUTION_METRICS:
                want = expected[key]
                assert summary[key]["mean"] == (None if want is None else pytest.approx(want)), (name, split, key)
    for name in ("zero-shot", "a-tune", "behaviorlm"):   # make eval fits each constrained LLM's temperature
        record = json.loads((run / "eval" / name / "temperature.json").read_text())
        assert record["split"] == "valid" and record["n_samples"] > 0
        got = report["models"][name]["summary"]["test_p1"]["temperature"]["mean"]
        assert got == pytest.approx(record["temperature"])


def test_eval_figures_are_png_files(chain):
    from PIL import Image

    out = chain["run"] / "report"
    report = json.loads((out / "metrics.json").read_text())
    expected = {"per_behavior_accuracy.png", "long_tail.png"} | {f"confusion_{name}.png" for name in REPORTED}
    expected |= {f"reliability_{name}.png" for name in REPORTED if not name.endswith("-generate")}  # log-probs
    assert set(report["figures"]) == expected
    for name in expected:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100


def test_behaviorlm_predictions_are_the_scorer_argmax_on_pi_ref_plus_dpo_adapter(chain):
    from scoring.scorer import CandidateScorer

    run = chain["run"]
    stats = json.loads((run / "data" / "stats.json").read_text())
    candidates = [b["name"] for b in stats["behaviors"]]
    scorer = CandidateScorer(run / "pi_ref", "smollm2", adapter_path=run / "btune", batch_size=2, device="cpu")
    for split in ("test_p1", "test_p2"):
        records = _jsonl(run / "data" / f"{split}.jsonl")[:3]
        rows = _jsonl(run / "eval" / "behaviorlm" / f"{split}.predictions.jsonl")[:3]
        batch = scorer.score(records, candidates, with_embeddings=False)
        assert [r["pred"] for r in rows] == [candidates[i] for i in batch.pred_id]
        for row, probs in zip(rows, batch.probs):
            assert row["p_label"] == pytest.approx(float(probs[candidates.index(row["label"])]), abs=1e-5)
    # The adapter was applied: BehaviorLM's probabilities differ from pi_ref's (a-tune) on the same samples.
    a_tune = _jsonl(run / "eval" / "a-tune" / "test_p2.predictions.jsonl")
    behaviorlm = _jsonl(run / "eval" / "behaviorlm" / "test_p2.predictions.jsonl")
    assert max(abs(a["p_label"] - b["p_label"]) for a, b in zip(a_tune, behaviorlm)) > 0


def test_generated_evaluation_is_parsed_and_counted(chain):
    out = chain["run"] / "eval" / "a-tune-generate"
    info = json.loads((out / "test_p2.predictions.info.json").read_text())
    rows = _jsonl(out / "test_p2.predictions.jsonl")
    assert info["method"] == "generate" and info["n_samples"] == len(rows)
    assert all("output" in r and r["valid"] == (r["pred"] is not None) for r in rows)
    assert info["n_invalid"] == sum(not r["valid"] for r in rows)


def test_finished_evaluation_is_not_redone(chain):
    assert "evaluation predict" not in chain["eval_rerun_log"]
    assert "evaluation report" in chain["eval_rerun_log"]
