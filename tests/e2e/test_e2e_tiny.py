"""End to end through the stock CLIs and the Make targets on a tiny random Llama (no downloads): the tiny chain
(conftest.py: prepare -> build tiny model -> a-tune (DeepSpeed ZeRO-2 on 2 CPU ranks) -> interrupted-run resume
-> merge -> score -> select -> DPO -> export-final -> make eval); its evaluation is checked in
test_e2e_tiny_eval.py.

Checks: A-tune keeps the best checkpoint and resumes bit-identically after an interrupt; a stage reruns exactly
when an input's content or a parameter changed, and writes only under its own outputs; pi_ref differs from the
base model; DPO started from the merged pi_ref has rewards/chosen = rewards/rejected = 0 at step 1, while DPO
started from base + A-tune adapter (reference = base) does not. Select with `-m e2e`.
The first run JIT-builds DeepSpeed's CPU communication op (about 70 s, cached afterwards).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


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
