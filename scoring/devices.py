"""Which device a rank uses: torchrun / accelerate environment, CUDA device choice, and no silent CPU fallback.

torch 2.11.0 as pinned is a CUDA 13 build; on an older NVIDIA driver ``torch.cuda.is_available()`` is False
and an 8B model would quietly load in fp32 on CPU on every rank.  So when a GPU is expected (several ranks,
``--device cuda``, or a model above ~1B parameters) and none is usable, ``select_device`` stops with one
message naming torch's CUDA version and the fix.  ``--device cpu`` runs on CPU on purpose.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Above this many parameters a CPU run is almost surely a broken CUDA setup, not a choice (~4 GB in fp32).
GPU_EXPECTED_PARAMS = 1_000_000_000
CUDA12_FIX = "pip install torch==2.11.0 --index-url https://download.pytorch.org/whl/cu126"


class NoGPUError(RuntimeError):
    """A GPU was expected and torch cannot use one."""


def dist_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun / accelerate launch environment variables."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(device: str | None = None) -> str:
    """`device` if given, else cuda:LOCAL_RANK when CUDA is available, else cpu (no fallback check: see
    select_device)."""
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{local_rank()}"
    return "cpu"


def count_parameters(model_path: str | os.PathLike) -> int | None:
    """Parameters of the model described by `model_path`/config.json, built on the meta device (no weights
    read, no memory); None when the config cannot be instantiated."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (Path(model_path) / "config.json").is_file():
        return None
    try:
        config = AutoConfig.from_pretrained(model_path)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError, OSError, json.JSONDecodeError):
        return None
    return sum(p.numel() for p in model.parameters())


def gpu_expected(device: str | None, model_path: str | os.PathLike | None) -> str | None:
    """Why a GPU is expected here (for the error message), or None.  An explicit non-CUDA device never is."""
    if device:
        return f"--device {device}" if device.startswith("cuda") else None
    _, world = dist_env()
    if world > 1:
        return f"WORLD_SIZE={world} ranks"
    n = count_parameters(model_path) if model_path is not None else None
    if n is not None and n > GPU_EXPECTED_PARAMS:
        return f"the model has {n / 1e9:.1f}B parameters"
    return None


def no_gpu_message(reason: str) -> str:
    import torch

    build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
    return (
        f"a GPU is expected ({reason}) but torch {torch.__version__} ({build}) cannot use one: "
        "torch.cuda.is_available() is False, usually because the NVIDIA driver is older than this CUDA build "
        "needs (check nvidia-smi) or no GPU is visible (CUDA_VISIBLE_DEVICES); install the same torch built for "
        f"CUDA 12.x drivers: {CUDA12_FIX} (or pass --device cpu to run on CPU on purpose)"
    )


def select_device(device: str | None = None, model_path: str | os.PathLike | None = None) -> str:
    """The device this rank runs on: `device` if given, else cuda:LOCAL_RANK, else cpu -- but never a silent
    CPU fallback: raises NoGPUError when gpu_expected() and CUDA is unusable.  Sets the current CUDA device, so
    every later allocation of this rank lands on its own GPU."""
    import torch

    if not torch.cuda.is_available():
        reason = gpu_expected(device, model_path)
        if reason:
            raise NoGPUError(no_gpu_message(reason))
        return device or "cpu"
    device = device or f"cuda:{local_rank()}"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    return device


# Share of a GPU's memory the weights may take when a model is spread over several: the rest holds the
# activations of one scoring batch, the KV of the shared prefix and CUDA's own buffers.
WEIGHT_SHARE = 0.8


def gpu_placement(n_params: int, bytes_per_param: int, gpu_bytes: list[int]) -> dict[int, int] | None:
    """Where a model's weights go on one node: None when they fit the first GPU (one device, the fast path),
    else accelerate's ``max_memory`` ({gpu index: bytes}) spreading them evenly over as few GPUs as hold them,
    each at most WEIGHT_SHARE of its memory. ValueError (one line) when the node cannot hold them."""
    need = n_params * bytes_per_param
    if not gpu_bytes:
        raise ValueError("no GPU to place the model on")
    if need <= WEIGHT_SHARE * gpu_bytes[0]:
        return None
    for k in range(2, len(gpu_bytes) + 1):
        share = -(-need // k)
        if all(share <= WEIGHT_SHARE * b for b in gpu_bytes[:k]):
            # a little above the even share, so accelerate's layer granularity never spills to the CPU
            return {i: int(min(WEIGHT_SHARE * b, share * 1.1)) for i, b in enumerate(gpu_bytes[:k])}
    raise ValueError(f"{need / 1e9:.0f} GB of weights do not fit {len(gpu_bytes)} GPU(s) of "
                     f"{min(gpu_bytes) / 1e9:.0f} GB at {WEIGHT_SHARE:.0%} each")


def visible_gpu_bytes() -> list[int]:
    import torch

    return [torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())]

