"""tests/gpu/gpu_check.py (the device check) at small shapes on CPU, so its code cannot rot."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_run_writes_figures(gpu_check, tmp_path):
    out = tmp_path / "figures.json"
    assert gpu_check.main(["--small", "--device", "cpu", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())  # strict JSON: no NaN
    assert figures["ok"] and figures["failures"] == [] and figures["small"] and figures["device"] == "cpu"
    for arch in ("llama3", "qwen2"):
        s = figures["scorer"][arch]
        assert s["finite"] and s["max_abs_diff"] <= s["tolerance"] <= 1e-4 and s["argmax_agreement"] == 1.0
        assert len(set(s["prompt_lengths"])) > 1  # left padding exercised
    lora = figures["lora_8b_shape"]
    assert 0 < lora["trainable"] < lora["parameters"]  # only the adapter trains
    for name in ("sft_64_checkpointing", "sft_64", "sft_128", "eval_forward_64", "dpo_64"):
        assert lora[name]["step_s"] > 0 and math.isfinite(lora[name]["tokens_per_s"])
    for loaded in ("merged", "adapter"):
        assert figures["merge"][loaded]["max_abs_logit_diff"] <= 1e-3
        assert figures["merge"][loaded]["devices"] == ["cpu"]


def test_a_wrong_scorer_is_reported(gpu_check, monkeypatch):
    real = gpu_check.cached_candidate_logprobs

    def off_by_a_bit(*args, **kwargs):
        logprob, emb = real(*args, **kwargs)
        return logprob + np.float32(1e-2), emb

    monkeypatch.setattr(gpu_check, "cached_candidate_logprobs", off_by_a_bit)
    failures = []

    class Args:
        small, device = True, "cpu"

    gpu_check.check_scorer("llama3", {**gpu_check.LLAMA3_8B, **gpu_check.SMALL}, Args, failures)
    assert failures and "cached vs naive differ" in failures[0]
