"""A model larger than one GPU (the paper's Llama-3.1-70B) is spread over the node's GPUs by accelerate with a
placement computed here; a model that fits one GPU stays on it. Shapes only: no weights, no GPU."""
from __future__ import annotations

import json

import pytest

from scoring.devices import WEIGHT_SHARE, count_parameters, gpu_placement

GB = 10**9
LLAMA31_70B = {  # config.json of meta-llama/Llama-3.1-70B-Instruct (the shape; rope scaling left out)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672,
    "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def test_the_70b_shape_has_70b_parameters(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA31_70B))
    assert count_parameters(tmp_path) == 70_553_706_496


def test_a_model_that_fits_one_gpu_stays_on_it():
    assert gpu_placement(8_030_261_248, 2, [80 * GB] * 8) is None          # the 8B in bf16 on an A100-80GB


@pytest.mark.parametrize("gpus, used", [([80 * GB] * 8, 3), ([40 * GB] * 8, 5)])
def test_the_70b_is_spread_evenly_over_as_few_gpus_as_hold_it(gpus, used):
    need = 70_553_706_496 * 2
    placement = gpu_placement(70_553_706_496, 2, gpus)
    assert sorted(placement) == list(range(used))
    assert sum(placement.values()) >= need
    assert all(placement[i] <= WEIGHT_SHARE * gpus[i] for i in placement)
    with pytest.raises(ValueError, match="do not fit"):                   # one GPU fewer cannot hold it
        gpu_placement(70_553_706_496, 2, gpus[:used - 1])


def test_a_node_too_small_is_one_line():
    with pytest.raises(ValueError, match=r"141 GB of weights do not fit 2 GPU\(s\) of 40 GB at 80% each"):
        gpu_placement(70_553_706_496, 2, [40 * GB] * 2)
