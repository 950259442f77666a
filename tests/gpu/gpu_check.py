"""Device check: the scorer on CUDA, LoRA step times of the 8B shape, merge and reload.

    python tests/gpu/gpu_check.py --out gpu_check.json                      # one GPU: <= 6 min on an H200
    python tests/gpu/gpu_check.py --small --device cpu --out small.json     # CPU, small shapes (run by the tests)

Random-init models built on the device (the values of the weights do not change the speed, nothing is
downloaded); only torch, transformers, peft and accelerate (plus this repository's scoring.kernel /
scoring.models and tests/tiny_models.py, which need nothing else) are imported.

1. scorer: ``scoring.kernel.cached_candidate_logprobs`` (left padding, mixed prompt lengths, prefix tree)
   against the naive full-forward path, on a Llama-3-shaped and a Qwen2-shaped model (full width, fewer
   layers), in bf16 on CUDA (fp32 with --small): bounded difference, no NaN, same argmax.
2. LoRA (rank 16, alpha 32, every linear layer, as the recipes) on the exact Llama-3.1-8B shape in bf16:
   step time and peak memory of 608 tokens x 1 with and without gradient checkpointing, 2048 x 1, an
   evaluation forward of 608 tokens, and a DPO step (Eq. 4, beta 0.1) whose reference is the same model under
   the disabled adapter (--small: 64 and 128 tokens on the small shape).
3. merge: a LoRA adapter with non-zero B merged, saved and reloaded through ``scoring.models`` (straight
   onto the device), and the saved adapter loaded on its base: logits equal to the in-memory PEFT model.
Writes one JSON of figures (``ok`` and ``failures`` included); exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for scoring.*
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for tiny_models

from scoring.kernel import cached_candidate_logprobs, naive_candidate_logprobs

LLAMA3_8B = dict(arch="llama", hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=128256, num_hidden_layers=32, tie_word_embeddings=False,
                 max_position_embeddings=131072, rms_norm_eps=1e-5,
                 rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 8192})
QWEN2_1_5B = dict(arch="qwen2", hidden_size=1536, intermediate_size=8960, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, num_hidden_layers=28, tie_word_embeddings=True,
                  max_position_embeddings=32768, rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
SMALL = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
             num_hidden_layers=2, max_position_embeddings=16384)
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
DPO_BETA = 0.1
H200_BF16_DENSE_FLOPS = 989e12  # NVIDIA's dense bf16 figure, for the utilisation estimate only


def build(shape: dict, dtype, device, layers: int | None = None, seed: int = 0):
    """A random-init causal LM of `shape` built directly on `device` in `dtype`."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    spec = {k: v for k, v in shape.items() if k != "arch"}
    if layers is not None:
        spec["num_hidden_layers"] = layers
    config = (LlamaConfig if shape["arch"] == "llama" else Qwen2Config)(**spec)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device, repeat: int) -> tuple[float, float]:
    """(median seconds of `repeat` calls after one warm-up, peak memory GiB on CUDA, else None)."""
    fn()
    sync(device)
    on_gpu = str(device).startswith("cuda")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None
    return statistics.median(times), peak


# ------------------------------------------------------------------------------------------------ 1. scorer
def scorer_inputs(vocab: int, prompt_lengths, n_candidates: int, seed: int = 0):
    """Random prompts of mixed lengths and candidates of 1-6 tokens, groups sharing their first tokens."""
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(1, vocab, size=n).tolist() for n in prompt_lengths]
    cands, seen = [], set()
    while len(cands) < n_candidates:
        stem = rng.integers(1, vocab, size=rng.integers(1, 3)).tolist()
        for _ in range(rng.integers(1, 4)):
            c = stem + rng.integers(1, vocab, size=rng.integers(0, 5)).tolist()
            if tuple(c) not in seen and len(cands) < n_candidates:
                seen.add(tuple(c))
                cands.append(c)
    return prompts, cands


def check_scorer(name: str, shape: dict, args, failures: list) -> dict:
    device, dtype = args.device, (torch.float32 if args.small else torch.bfloat16)
    model = build(shape, dtype, device, layers=2 if args.small else 4)
    lengths = [5, 17, 9, 30] if args.small else [37, 608, 120, 333, 75, 500]
    prompts, cands = scorer_inputs(model.config.vocab_size, lengths, 7 if args.small else 37)
    t0 = time.perf_counter()
    cached, emb = cached_candidate_logprobs(model, prompts, cands, pad_id=0, with_embeddings=True)
    sync(device)
    t_cached = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive = naive_candidate_logprobs(model, prompts, cands)
    t_naive = time.perf_counter() - t0
    # bf16: each path rounds differently; allow 0.05 nats per scored answer token (fp32: 1e-4)
    tol = 1e-4 if dtype == torch.float32 else 0.05 * max(len(c) for c in cands)
    diff = float(np.abs(cached - naive).max())
    result = {"layers": model.config.num_hidden_layers, "hidden": model.config.hidden_size,
              "vocab": model.config.vocab_size, "dtype": str(dtype), "prompt_lengths": lengths,
              "candidates": len(cands), "max_abs_diff": diff, "tolerance": tol,
              "argmax_agreement": float((cached.argmax(1) == naive.argmax(1)).mean()),
              "finite": bool(np.isfinite(cached).all() and np.isfinite(naive).all() and np.isfinite(emb).all()),
              "cached_s": t_cached, "naive_s": t_naive}
    if not result["finite"]:
        failures.append(f"scorer {name}: NaN or inf")
    if not diff <= tol:
        failures.append(f"scorer {name}: cached vs naive differ by {diff:.4g} > {tol:.4g}")
    del model
    return result


# ------------------------------------------------------------------------------------------- 2. LoRA steps
def lora_model(shape: dict, args, layers=None):
    from peft import LoraConfig, get_peft_model

    dtype = torch.float32 if args.small else torch.bfloat16
    model = get_peft_model(build(shape, dtype, args.device, layers=layers), LoraConfig(**LORA))
    model.train()
    return model


def sft_step(model, opt, ids):
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def sequence_logps(model, ids, answer_len: int):
    logits = model(input_ids=ids).logits[:, -answer_len - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, -answer_len:].unsqueeze(-1)).squeeze(-1).sum(-1)


def dpo_step(model, opt, chosen, rejected, answer_len: int):
    """Eq. 4 (sigmoid DPO): the reference pi_ref is the same weights with the LoRA adapter disabled."""
    batch = torch.cat([chosen, rejected])
    policy = sequence_logps(model, batch, answer_len)
    with torch.no_grad(), model.disable_adapter():
        ref = sequence_logps(model, batch, answer_len)
    margin = (policy[0] - ref[0]) - (policy[1] - ref[1])
    (-torch.nn.functional.logsigmoid(DPO_BETA * margin)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def check_lora_steps(args, failures: list) -> dict:
    shape = {**LLAMA3_8B, **SMALL} if args.small else LLAMA3_8B
    model = lora_model(shape, args)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab, dev, rep = shape["vocab_size"], args.device, args.repeat
    short, long = (64, 128) if args.small else (608, 2048)  # the paper's ~600-token samples; a 2048 cutoff
    ids = {n: torch.randint(1, vocab, (1, n), device=dev) for n in (short, long)}
    out = {"shape": {k: v for k, v in shape.items() if k != "rope_parameters"}, "parameters": n_params,
           "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "lora": LORA}

    def record(name, fn, tokens):
        seconds, peak = timed(fn, dev, rep)
        out[name] = {"step_s": seconds, "tokens_per_s": tokens / seconds, "peak_gib": peak}
        if not math.isfinite(seconds) or seconds <= 0:
            failures.append(f"lora {name}: no timing")

    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    record(f"sft_{short}_checkpointing", lambda: sft_step(model, opt, ids[short]), short)
    model.gradient_checkpointing_disable()
    record(f"sft_{short}", lambda: sft_step(model, opt, ids[short]), short)
    record(f"sft_{long}", lambda: sft_step(model, opt, ids[long]), long)

    def eval_forward():
        with torch.inference_mode():
            model(input_ids=ids[short], logits_to_keep=1)

    model.eval()
    record(f"eval_forward_{short}", eval_forward, short)
    model.train()
    answer = 4
    chosen = ids[short].clone()
    rejected = chosen.clone()
    rejected[:, -answer:] = torch.randint(1, vocab, (1, answer), device=dev)
    record(f"dpo_{short}", lambda: dpo_step(model, opt, chosen, rejected, answer), 2 * short)
    # 6N FLOPs per trained token (LoRA skips the frozen weights' gradients, so this over-counts: an upper bound)
    if str(dev).startswith("cuda"):
        out[f"mfu_6n_sft_{short}"] = 6 * n_params * out[f"sft_{short}"]["tokens_per_s"] / H200_BF16_DENSE_FLOPS
    return out


# --------------------------------------------------------------------------------- 3. merge and reload
def check_merge(args, failures: list) -> dict:
    from peft import LoraConfig, get_peft_model
    from tiny_models import train_chatml_tokenizer

    from scoring.models import load_model_and_tokenizer

    shape = {**QWEN2_1_5B, **SMALL} if args.small else QWEN2_1_5B
    dtype = torch.float32  # exact comparison; bf16 merging rounds W + BA
    base = build(shape, dtype, args.device, layers=2)
    tokenizer = train_chatml_tokenizer(["a check of merged weights"], vocab_size=300)
    ids = torch.randint(1, shape["vocab_size"], (2, 64), device=args.device)
    result = {"dtype": str(dtype), "layers": 2}
    with tempfile.TemporaryDirectory() as tmp:
        base.save_pretrained(f"{tmp}/base")
        tokenizer.save_pretrained(f"{tmp}/base")
        model = get_peft_model(base, LoraConfig(**{**LORA, "lora_dropout": 0.0})).eval()
        torch.manual_seed(1)
        for name, p in model.named_parameters():
            if "lora_B" in name:  # B = 0 at init would make the adapter a no-op
                torch.nn.init.normal_(p, std=0.02)
        with torch.no_grad():
            peft_logits = model(input_ids=ids).logits.float()
        model.save_pretrained(f"{tmp}/adapter")
        merged = model.merge_and_unload()
        merged.save_pretrained(f"{tmp}/merged")
        tokenizer.save_pretrained(f"{tmp}/merged")
        del merged, model, base
        for name, adapter, path in (("merged", None, "merged"), ("adapter", "adapter", "base")):
            loaded, _ = load_model_and_tokenizer(f"{tmp}/{path}", f"{tmp}/{adapter}" if adapter else None,
                                                 dtype=dtype, device=args.device)
            devices = {str(p.device) for p in loaded.parameters()}
            with torch.no_grad():
                diff = float((loaded(input_ids=ids).logits.float() - peft_logits).abs().max())
            result[name] = {"max_abs_logit_diff": diff, "devices": sorted(devices)}
            if not diff <= 1e-3:
                failures.append(f"merge {name}: logits differ by {diff:.3g}")
            if devices != {str(torch.device(args.device))}:
                failures.append(f"merge {name}: parameters on {sorted(devices)}, expected {args.device}")
            del loaded
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file of figures")
    parser.add_argument("--small", action="store_true", help="small shapes (CPU inside the tests)")
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else None)
    parser.add_argument("--repeat", type=int, help="timed steps per figure after one warm-up (default 3; 1 small)")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (1 if args.small else 3)
    if args.device is None:
        parser.error("no CUDA device: pass --small --device cpu for the CPU version")
    if str(args.device).startswith("cuda"):
        torch.cuda.set_device(torch.device(args.device))
    t0 = time.perf_counter()
    failures: list[str] = []
    import peft
    import transformers

    figures = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(args.device)
               if str(args.device).startswith("cuda") else "cpu", "small": args.small,
               "torch": torch.__version__, "torch_cuda": torch.version.cuda, "transformers": transformers.__version__,
               "peft": peft.__version__}
    llama, qwen = ({**LLAMA3_8B, **SMALL}, {**QWEN2_1_5B, **SMALL}) if args.small else (LLAMA3_8B, QWEN2_1_5B)
    figures["scorer"] = {"llama3": check_scorer("llama3", llama, args, failures),
                         "qwen2": check_scorer("qwen2", qwen, args, failures)}
    figures["lora_8b_shape"] = check_lora_steps(args, failures)
    if str(args.device).startswith("cuda"):
        torch.cuda.empty_cache()  # the 8B model is gone with check_lora_steps' frame
    figures["merge"] = check_merge(args, failures)
    figures.update(wall_s=time.perf_counter() - t0, failures=failures, ok=not failures)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"ok": not failures, "failures": failures, "wall_s": round(figures["wall_s"], 1)}))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
