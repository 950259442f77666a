"""Training teaches: the chain's own stages and recipes, through the stock llamafactory-cli, on a log whose next
behavior is a rule of its context (tests/e2e/rule_log.py), with a tiny random Llama in fp32.

- A-tune (anchors only) lifts anchor accuracy far above the untuned model's.
- B-tune (difficulty-selected DPO pairs from pi_ref) lifts tail accuracy above pi_ref's, keeping most anchors.
- Negative control: the same DPO with chosen and rejected swapped in the pairs file does not lift the tail.
- Full fine-tuning on the natural distribution is trained beside them and reported.

Accuracies are read from the evaluation's prediction files on protocol 2 (18 test samples per behavior: 108
anchor, 54 tail samples). The thresholds are at most half the margins measured on two training seeds
(docs/tuning.md, "What training is shown to teach"). Select with `-m e2e`.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import rule_log
from tiny_chain import LF_CLI, ROOT, run_logged
from tiny_models import build_tiny_llama, texts_from_dataset_dir

pytestmark = pytest.mark.e2e

RECIPE_FOLDER = "tiny"
# Short prompts (L = 2, a one-sentence system prompt, no auxiliary conversations, whose 1,000-token turns would
# dominate the time); each tail is 3.5 % of the events, under the 5 % anchor threshold.
PREPARE = ("HISTORY_LEN=2", "ANCHOR_THRESHOLD=0.05", "TRAIN_CAP=3000", "VALID_CAP=64", "TEST_CAP=120",
           "P2_PER_BEHAVIOR=18", "EPS=0", "SEED=0", "SKIP_TOKEN_CHECK=1",
           "PREPARE_ARGS=--system-prompt 'Predict the next behavior.'")
# The tests' own training settings (the recipes keep the paper's): 450 A-tune steps at a rate a random model
# moves at (full fine-tuning, reported beside, gets 150); B-tune, 2 epochs (4 lost more anchors), adds
# LLaMA-Factory's SFT term on the chosen answer (pref_ftx), without which DPO on this random model either barely
# moves the tail (beta 0.1) or pushes every answer onto one tail (beta <= 0.05).
TRAIN_SEED = os.environ.get("LEARNING_TRAIN_SEED", "42")   # another seed: LEARNING_TRAIN_SEED=7 pytest ...
ATUNE = f"num_train_epochs=3 max_samples=1200 learning_rate=5.0e-3 per_device_train_batch_size=8 seed={TRAIN_SEED}"
FULL_FT = ATUNE.replace("num_train_epochs=3", "num_train_epochs=1")
BTUNE = f"num_train_epochs=2 learning_rate=5.0e-3 per_device_train_batch_size=8 pref_ftx=1.0 seed={TRAIN_SEED}"
TRAIN = (f"ATUNE_ARGS={ATUNE}", f"BTUNE_ARGS={BTUNE}", "POOL=40", "F=30")
# LEARNING_RULE=0 trains on the shuffled log: the tests must then fail (nothing in the context to learn).
RULE = os.environ.get("LEARNING_RULE", "1") != "0"


def _make(run_dir: Path, base: Path, *args: str, log: Path) -> str:
    """make <args> with the run's settings; a variable in `args` overrides the same one of PREPARE or TRAIN."""
    return run_logged(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), f"MODEL={RECIPE_FOLDER}",
                      f"RUN_DIR={run_dir}", f"BASE_MODEL={base}", f"VENV={Path(sys.executable).parents[1]}",
                      *PREPARE, *TRAIN, *args], log)


def accuracy(predictions: Path, anchors: set[str]) -> dict[str, float]:
    """Accuracy over anchor-labelled and tail-labelled samples, and the largest share one answer takes."""
    rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    out = {}
    for group, keep in (("anchor", lambda r: r["label"] in anchors), ("tail", lambda r: r["label"] not in anchors)):
        chosen = [r for r in rows if keep(r)]
        out[group] = sum(r["pred"] == r["label"] for r in chosen) / len(chosen)
    preds = [r["pred"] for r in rows]
    out["top_share"] = max(preds.count(p) for p in set(preds)) / len(preds)
    return out


def swap_pairs(selection: Path, out: Path) -> Path:
    """A copy of select's folder whose DPO pairs have chosen and rejected exchanged."""
    shutil.copytree(selection, out)
    pairs = out / "dpo_pairs.jsonl"
    rows = [json.loads(line) for line in pairs.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


def train_chain(tmp: Path, events: Path) -> dict[str, dict[str, float]]:
    run_dir, logs = tmp / "run", tmp / "logs"
    logs.mkdir()
    base = tmp / "tiny-model"
    _make(run_dir, base, "prepare", f"INPUT={events}", log=logs / "prepare.log")
    build_tiny_llama(base, texts_from_dataset_dir(run_dir / "data"), hidden=128, layers=4, intermediate=256,
                     init_std=0.05)
    _make(run_dir, base, "export-final", log=logs / "btune.log")
    _make(run_dir, base, "full-ft", f"ATUNE_ARGS={FULL_FT}", log=logs / "full-ft.log")
    swapped = swap_pairs(run_dir / "selection", tmp / "swapped-selection")
    run_logged([str(LF_CLI), "train", str(ROOT / "recipes" / RECIPE_FOLDER / "btune_lora_dpo.yaml"),
               f"model_name_or_path={run_dir / 'pi_ref'}", f"dataset_dir={swapped}", f"output_dir={tmp / 'swapped'}",
               *BTUNE.split()], logs / "swapped.log")
    models = {"zero-shot": (base, None), "a-tune": (run_dir / "pi_ref", None),
              "behaviorlm": (run_dir / "final", None),
              "full-ft": (run_dir / "ablations" / "wo_atune" / "pi_ref", None),
              "swapped": (run_dir / "pi_ref", tmp / "swapped")}
    for name, (model, adapter) in models.items():
        _make(run_dir, base, "eval-model", f"EVAL_NAME={name}", f"EVAL_MODEL={model}", "CALIB_SAMPLES=0",
              *([f"EVAL_ADAPTER={adapter}"] if adapter else []), log=logs / f"eval-{name}.log")
    stats = json.loads((run_dir / "data" / "stats.json").read_text(encoding="utf-8"))
    anchors = {b["name"] for b in stats["behaviors"] if b["is_anchor"]}
    assert anchors == set(rule_log.ANCHORS), anchors   # the tails stay under the anchor threshold
    return {name: accuracy(run_dir / "eval" / name / "test_p2.predictions.jsonl", anchors) for name in models}


@pytest.fixture(scope="module")
def acc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("learning")
    rows = rule_log.events(users=120, per_user=80, tail_share=0.035, seed=0, rule=RULE)
    events = rule_log.write(tmp / "events.csv", rows)
    result = train_chain(tmp, events)
    print("\nprotocol 2 accuracy (anchor, tail, largest answer share):")
    for name, a in result.items():
        print(f"  {name:<11} {a['anchor']:.3f} {a['tail']:.3f} {a['top_share']:.3f}")
    return result


def test_atune_learns_the_anchors(acc):
    # measured on training seeds 42 and 7: 0.139 -> 1.000 on both
    assert acc["a-tune"]["anchor"] >= acc["zero-shot"]["anchor"] + 0.4, acc


def test_btune_lifts_the_tail_and_keeps_most_anchors(acc):
    # measured on training seeds 42 and 7: tail +0.333 and anchors -0.056 on both (docs/tuning.md); anchors
    # may fall by at most 0.1
    assert acc["behaviorlm"]["tail"] >= acc["a-tune"]["tail"] + 0.15, acc
    assert acc["behaviorlm"]["anchor"] >= acc["a-tune"]["anchor"] - 0.1, acc
    # a lift that comes from answering one tail everywhere is no lift (each behavior is 1/9 of protocol 2;
    # measured largest shares 0.191 and 0.204, and 1.000 on the shuffled log)
    assert acc["behaviorlm"]["top_share"] <= 0.5, acc


def test_swapped_pairs_do_not_lift_the_tail(acc):
    # the same selection, recipe and steps; only the preference's direction differs
    assert acc["swapped"]["tail"] < acc["a-tune"]["tail"] + 0.15, acc


def test_full_finetuning_learns_from_the_natural_distribution(acc):
    # Tails are 9 % of its training samples and follow the same rule, so it learns them too: above the
    # untuned model on both groups.
    assert acc["full-ft"]["anchor"] >= acc["zero-shot"]["anchor"] + 0.4, acc
