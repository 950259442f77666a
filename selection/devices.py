"""Which device a rank uses: torchrun / accelerate environment, CUDA device choice."""

from __future__ import annotations

import os


def dist_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun / accelerate launch environment variables."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(device: str | None = None) -> str:
    """`device` if given, else cuda:LOCAL_RANK when CUDA is available, else cpu."""
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{local_rank()}"
    return "cpu"
