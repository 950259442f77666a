"""The CPU number format of training, scoring and evaluation: bf16 where the CPU computes it natively, fp32 elsewhere.

On a CPU with AVX512-BF16 or AMX-BF16 a bf16 matmul runs ~2.7x faster than fp32 and a LoRA step ~1.5x; other
CPUs emulate bf16 and gain nothing. The choice is made here, without importing torch: `/proc/cpuinfo`'s flags,
unless CPU_BF16=0|1 forces it. It only concerns runs without a GPU (on a GPU the recipes and the scorer keep
their own dtypes). The stages take it as a parameter, so switching it reruns what depends on it.
"""
from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from .settings import VariableError, Variables

NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")
BF16, FP32 = "bfloat16", "float32"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags of the first processor ('flags' on x86, 'Features' on ARM); empty when unreadable."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16(flags: set[str]) -> str | None:
    """The flag that makes bf16 native on this CPU, or None."""
    return next((f for f in NATIVE_FLAGS if f in flags), None)


def gpu_visible(dev: Path = Path("/dev"), environ=os.environ) -> bool:
    """Whether a CUDA or ROCm device is visible to the stages' processes (device nodes, CUDA_VISIBLE_DEVICES)."""
    if environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists()


@cache
def _detected() -> tuple[bool, str | None]:
    return gpu_visible(), native_bf16(cpu_flags())


_said: set[str] = set()


def _say(line: str) -> None:
    if line not in _said:
        _said.add(line)
        print(line, flush=True)


def cpu_dtype(variables: Variables) -> str | None:
    """"bfloat16" or "float32" for a CPU run; None when a GPU is visible (the recipes' and scorer's own dtypes).
    Says once per process which one and why."""
    choice = variables["CPU_BF16"]
    if choice not in ("", "0", "1"):
        raise VariableError(f"CPU_BF16 must be 0 or 1, got {choice!r}")
    gpu, flag = _detected()
    if gpu and choice == "":
        return None
    if choice:
        dtype = BF16 if choice == "1" else FP32
        _say(f"precision: {'bf16' if dtype == BF16 else 'fp32'} on the CPU (CPU_BF16={choice})")
        return dtype
    if flag:
        _say(f"precision: bf16 on the CPU ({flag}; CPU_BF16=0 for fp32)")
        return BF16
    _say("precision: fp32 on the CPU (no avx512_bf16 or amx_bf16: bf16 would be emulated; CPU_BF16=1 forces it)")
    return FP32


def train_overrides(variables: Variables, recipe_values: dict) -> list[str]:
    """llamafactory-cli key=value words for bf16 on the CPU: transformers refuses bf16 without a GPU unless use_cpu
    is set. Only for a recipe written for fp32 (no bf16/fp16, no DeepSpeed); [] otherwise."""
    if cpu_dtype(variables) != BF16:
        return []
    if any(recipe_values.get(k) for k in ("bf16", "fp16", "pure_bf16", "deepspeed")):
        return []
    return ["use_cpu=true", "bf16=true"]


def scorer_args(variables: Variables) -> list[str]:
    """--dtype for `python -m scoring score` / `python -m evaluation predict` on the CPU; [] on a GPU."""
    dtype = cpu_dtype(variables)
    return ["--dtype", dtype] if dtype else []
