"""Benchmark of A-tune training throughput and the token budget; a script, never a test.

1. Token lengths (prompt + answer, chat template included) of every file of a prepared data dir, through
   LLaMA-Factory's own template code with the given tokenizer: min / median / p99 / max (--lengths-only stops).
2. CPU: the SmolLM2-135M A-tune recipe through the stock `llamafactory-cli train` for a few optimizer steps, as
   shipped (gradient checkpointing on: the naive baseline) and with checkpointing off; tokens/s, samples/s,
   peak RSS, and the utilisation against a plain fp32 matmul measured in the same run.
3. GPU (when torch.cuda.is_available(), or --lora-device): a random-init model of the exact Llama-3.1-8B shape
   built on the device in bf16 (weight values do not change the speed; nothing is downloaded), LoRA as in the
   8B recipe, trainable weights in fp32 under bf16 autocast as LLaMA-Factory trains them: step time with and
   without checkpointing (Liger when installed), at the cutoff and packed lengths, and an evaluation forward.
4. Projection of the paper's A-tune on 8 x A100 (about 194k anchor samples + 5 % aux, 8 epochs, global batch
   8, a validation pass per epoch; mean token counts from the data dir) for the recipe as shipped and with each
   knob. FLOPs (PaLM convention): forward 2N + 4 L h s per token, N = matmul weights; LoRA training 2x forward
   (the frozen weights need input gradients, no weight gradients), plus one forward when checkpointing.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_train.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
A100_BF16 = 312e12  # A100 (40 or 80 GB) dense bf16 peak, FLOP/s
PEAKS = {"A100": 312e12, "H100": 989e12, "H200": 989e12, "H800": 989e12, "L40S": 362e12, "A10": 125e12}
LLAMA31_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "vocab_size": 128256, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
              "max_position_embeddings": 131072, "tie_word_embeddings": False}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 4096, "tie_word_embeddings": False}
SHIPPED, NO_CKPT = "mean x 1, checkpointing on (as shipped)", "mean x 1, checkpointing off"
EVAL, LIGER = "eval forward mean x 4", "mean x 1, checkpointing off, Liger"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # lora_target: all
FILES = ("anchor", "aux", "valid", "train_all", "test_p1")


# ---- 1. token lengths through LLaMA-Factory's template ----
def _messages(row: dict) -> tuple[list[dict], str]:
    """Alpaca rows as LLaMA-Factory's converter joins them (instruction + "\\n" + input); ShareGPT aux rows."""
    if "conversations" in row:
        turns, system = row["conversations"], ""
        if turns and turns[0]["from"] == "system":
            system, turns = turns[0]["value"], turns[1:]
        roles = {"human": "user", "gpt": "assistant"}
        return [{"role": roles[t["from"]], "content": t["value"]} for t in turns], system
    query = "\n".join(x for x in (row.get("instruction"), row.get("input")) if x)
    messages = [{"role": "user", "content": query}, {"role": "assistant", "content": row["output"]}]
    return messages, row.get("system") or ""


def token_lengths(data_dir: Path, tokenizer_dir: Path, template_name: str, limit: int) -> dict[str, np.ndarray]:
    """Tokens per sample as LLaMA-Factory's SFT processor counts them before any cutoff (all turns + eos)."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=template_name))
    out = {}
    for name in FILES:
        path = data_dir / f"{name}.jsonl"
        if not path.is_file():
            continue
        lengths = []
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= limit:
                    break
                messages, system = _messages(json.loads(line))
                pairs = template.encode_multiturn(tokenizer, messages, system)
                lengths.append(sum(len(a) + len(b) for a, b in pairs) + int(template.efficient_eos))
        out[name] = np.asarray(lengths)
    return out


def print_lengths(lengths: dict[str, np.ndarray], label: str) -> None:
    print(f"token lengths ({label}): file, n, min / median / p99 / max")
    for name, x in lengths.items():
        print(f"  {name:10s} {len(x):7d}  {x.min()} / {int(np.median(x))} / {int(np.percentile(x, 99))} / {x.max()}")


# ---- shared FLOP arithmetic ----
def matmul_params(cfg: dict) -> int:
    """N: the weights that take part in matmuls (all linear layers and the LM head; not the embedding lookup)."""
    h, heads, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    attn = h * h * 2 + 2 * h * (h // heads) * kv
    return cfg["num_hidden_layers"] * (attn + 3 * h * cfg["intermediate_size"]) + h * cfg["vocab_size"]


def forward_flops_per_token(cfg: dict, seq: int) -> float:
    return 2.0 * matmul_params(cfg) + 4.0 * cfg["num_hidden_layers"] * cfg["hidden_size"] * seq


def gemm_flops(device: str, dtype, seconds: float = 2.0) -> float:
    """Achievable FLOP/s of one plain matmul (the naive reference for utilisation on a device without a spec)."""
    import torch

    n = 2048 if device == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    _sync(device)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        calls += 1
        _sync(device)
    return 2.0 * n ** 3 * calls / (time.perf_counter() - start)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- 2. CPU: the stock CLI ----
def cli_run(recipe: Path, model_dir: Path, data_dir: Path, samples: int, extra: list[str], out: Path) -> dict:
    """`llamafactory-cli train <recipe>` on the first `samples` anchor rows, one epoch, nothing evaluated or saved.
    Peak memory is the child's max RSS (os.wait4), so each configuration is its own process."""
    args = [f"model_name_or_path={model_dir}", f"dataset_dir={data_dir}", f"output_dir={out}",
            "dataset=behavior_anchor", f"max_samples={samples}", "num_train_epochs=1", "eval_dataset=null",
            "eval_strategy='no'", "save_strategy='no'", "load_best_model_at_end=false", "plot_loss=false",
            "logging_steps=1", "overwrite_output_dir=true", *extra]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT), DISABLE_VERSION_CHECK="1")
    cli = Path(PY).with_name("llamafactory-cli")
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen([str(cli), "train", str(recipe), *args], cwd=ROOT, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        tail = out.with_suffix(".log").read_text().splitlines()[-15:]
        sys.exit("\n".join(tail) + f"\nllamafactory-cli train failed ({' '.join(extra) or 'as shipped'})")
    result = json.loads((out / "train_results.json").read_text())
    return {"runtime_s": result["train_runtime"], "peak_rss_gb": usage.ru_maxrss / 2 ** 20,
            "cpu_s": usage.ru_utime + usage.ru_stime}  # CPU seconds: steadier than wall time on a shared machine


def cpu_section(args, lengths: dict[str, np.ndarray]) -> dict:
    import transformers

    recipe = ROOT / "recipes/smollm2-135m-instruct/atune_lora_sft.yaml"
    rec = yaml.safe_load(recipe.read_text())
    cfg = transformers.AutoConfig.from_pretrained(args.model_dir).to_dict()
    batch = rec["per_device_train_batch_size"] * rec["gradient_accumulation_steps"]
    samples = args.cpu_steps * batch
    tokens = int(lengths["anchor"][:samples].sum())  # max_samples takes the first rows, before shuffling
    peak = gemm_flops("cpu", __import__("torch").float32)
    print(f"\nCPU: {recipe.relative_to(ROOT)} on {args.model_dir.name}, {args.cpu_steps} optimizer steps x {batch} "
          f"samples ({tokens} tokens); plain fp32 matmul here: {peak / 1e9:.1f} GFLOP/s")
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("as shipped (checkpointing on)", []),
                            ("checkpointing off", ["disable_gradient_checkpointing=true"])):
            r = cli_run(recipe, args.model_dir, args.data_dir, samples, extra, Path(tmp) / str(len(figures)))
            recompute = 1.0 if not extra else 0.0
            seq = float(np.mean(lengths["anchor"][:samples]))
            useful = 2 * forward_flops_per_token(cfg, seq) * tokens
            r.update(tokens_per_s=tokens / r["runtime_s"], samples_per_s=samples / r["runtime_s"],
                     utilisation=useful / r["runtime_s"] / peak, recompute=recompute)
            figures[name] = r
            print(f"  {name:30s} {r['runtime_s']:7.1f} s ({r['cpu_s']:.0f} CPU s)  {r['tokens_per_s']:7.0f} tokens/s  "
                  f"{r['samples_per_s']:5.2f} samples/s  peak RSS {r['peak_rss_gb']:.2f} GB  "
                  f"{100 * r['utilisation']:.1f} % of the matmul rate (useful FLOPs)")
    base, off = figures["as shipped (checkpointing on)"], figures["checkpointing off"]
    print(f"  checkpointing off: {base['runtime_s'] / off['runtime_s']:.2f}x faster in wall time, "
          f"{base['cpu_s'] / off['cpu_s']:.2f}x in CPU time, "
          f"{off['peak_rss_gb'] - base['peak_rss_gb']:+.2f} GB peak RSS")
    print("  Liger kernels: not measured on CPU (liger-kernel 0.8.5 installs beside the pins, but its Triton "
          "kernels need a GPU driver: RuntimeError '0 active drivers')")
    return figures


# ---- 3. GPU: the 8B shape, LoRA as in the recipe ----
def build_lora_model(shape: dict, lora: dict, device: str, liger: bool):
    """Random-init Llama built directly on the device in bf16 (no fp32 copy, no host copy), LoRA on every linear
    layer, trainable weights upcast to fp32 as LLaMA-Factory does for LoRA."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    if liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama()  # patches the classes, as LLaMA-Factory does before loading
    config = LlamaConfig(**shape, attn_implementation="sdpa")
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=lora["lora_rank"], lora_alpha=lora["lora_alpha"],
                                             lora_dropout=lora["lora_dropout"], target_modules=LORA_TARGETS))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return model


def time_steps(model, device: str, seq: int, batch: int, train: bool, steps: int) -> dict:
    """Mean seconds per step after two warm-up steps; answer-only labels (the last 8 tokens) as in SFT."""
    import torch

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(model.config.vocab_size, (batch, seq), generator=gen).to(device)
    labels = ids.clone()
    labels[:, :-8] = -100
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4) if train else None
    model.train(train)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 2):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16), torch.set_grad_enabled(train):
            loss = model(input_ids=ids, labels=labels).loss
        if train:
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else float("nan")
    return {"step_s": float(np.mean(times[2:])), "peak_gb": peak, "nan": bool(torch.isnan(loss).item())}


def lora_section(args, seq: int) -> dict:
    """Step figures of the 8B shape (or the tiny one, for a CPU self-check of this code) in one process."""
    import torch

    device = args.lora_device
    shape = LLAMA31_8B if args.lora_shape == "llama3.1-8b" else TINY
    lora = yaml.safe_load((ROOT / "recipes/llama3.1-8b-instruct/atune_lora_sft.yaml").read_text())
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    nominal = next((v for k, v in PEAKS.items() if k in name), None)
    peak = nominal or gemm_flops(device, torch.bfloat16 if device != "cpu" else torch.float32)
    print(f"\n{args.lora_shape} shape on {name}: LoRA r={lora['lora_rank']} on {len(LORA_TARGETS)} projections; peak "
          f"{peak / 1e12:.3g} TFLOP/s ({'spec' if nominal else 'measured matmul'}); {seq} tokens = the data's mean")
    cases = [(SHIPPED, seq, 1, True, True, False), (NO_CKPT, seq, 1, True, False, False),
             ("cutoff 2048 x 1, checkpointing off", 2048, 1, True, False, False),
             ("packed 4096 x 1, checkpointing on", 4096, 1, True, True, False),
             (EVAL, seq, 4, False, False, False)]
    if args.liger:
        cases.append((LIGER, seq, 1, True, False, True))
    model, figures = None, {}
    for label, s, b, train, ckpt, liger in cases:
        shown = label.replace("mean", str(s))
        if model is None or liger:
            del model
            model = build_lora_model(shape, lora, device, liger)
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
            model.enable_input_require_grads()
        else:
            model.gradient_checkpointing_disable()
        try:
            r = time_steps(model, device, s, b, train, args.lora_steps)
        except torch.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            print(f"  {shown:42s} out of memory")
            continue
        useful = (2 if train else 1) * forward_flops_per_token(shape, s) * s * b
        r.update(mfu=useful / r["step_s"] / peak, tokens_per_s=s * b / r["step_s"], train=train, ckpt=ckpt)
        figures[label] = r
        print(f"  {shown:42s} {1e3 * r['step_s']:8.1f} ms  {r['tokens_per_s']:8.0f} tokens/s  peak "
              f"{r['peak_gb']:5.1f} GiB  MFU {100 * r['mfu']:5.1f} %{'  NaN loss!' if r['nan'] else ''}")
    return figures


# ---- 4. projection ----
def project(args, lengths: dict[str, np.ndarray], measured: dict | None) -> None:
    cfg = LLAMA31_8B
    anchor_len = args.mean_tokens or float(np.mean(lengths["anchor"]))
    aux_len = float(np.mean(lengths.get("aux", lengths["anchor"])))
    valid_len = float(np.mean(lengths.get("valid", lengths["anchor"])))
    aux = round(args.eps * args.paper_anchor)
    f_tok = forward_flops_per_token(cfg, round(anchor_len))
    train_flops = 2 * f_tok * (args.paper_anchor * anchor_len + aux * aux_len) * args.epochs
    cluster = args.gpus * A100_BF16
    if measured and NO_CKPT in measured:
        mfu = measured[NO_CKPT]["mfu"]
        mfu_ckpt = measured.get(SHIPPED, {}).get("mfu", mfu * 2 / 3)
        mfu_eval = measured.get(EVAL, {}).get("mfu", mfu)
        mfu_liger = measured.get(LIGER, {}).get("mfu")
        source = "measured on this GPU (the same MFU assumed on A100)"
    else:
        mfu, mfu_eval, mfu_liger = args.assume_mfu, args.assume_mfu, None
        mfu_ckpt = mfu * 2 / 3  # the recompute forward: 3 forwards' time for 2 forwards' useful work
        source = (f"ASSUMED, no GPU measured: {100 * mfu:.0f} % MFU without checkpointing (--assume-mfu), "
                  f"{100 * mfu_ckpt:.0f} % with it (one recomputed forward in three); eval at the same MFU. Why "
                  f"40 %: large bf16 GEMMs reach ~70-80 % of an A100's peak, and at batch 1 x ~500 tokens LoRA's "
                  f"rank-16 side matmuls, dropout, norms, attention and the optimizer step roughly halve that; "
                  f"a judgement, not a measurement: run this on a GPU to replace it")

    def hours(m_train: float, valid: int, m_eval: float | None = None) -> float:
        eval_flops = f_tok * valid * valid_len * args.epochs
        return (train_flops / (m_train * cluster) + eval_flops / ((m_eval or mfu_eval) * cluster)) / 3600

    print(f"\nProjection: paper A-tune on {args.gpus} x A100 ({A100_BF16 / 1e12:.0f} TFLOP/s bf16): "
          f"{args.paper_anchor} anchor + {aux} aux samples x {args.epochs} epochs, batch 1 x {args.gpus}, "
          f"mean tokens anchor {anchor_len:.0f} / aux {aux_len:.0f} / valid {valid_len:.0f} ({args.token_source})")
    print(f"  utilisation: {source}")
    floor = (train_flops + f_tok * 5000 * valid_len * args.epochs) / cluster / 3600
    print(f"  compute floor at 100 % MFU (training FLOPs {train_flops:.2e} + 5k validation): {floor:.2f} h")
    rows = [("gradient checkpointing on, 50k validation", mfu_ckpt, 50000),
            ("knob: checkpointing off", mfu, 50000),
            ("knob: 5k validation subset", mfu_ckpt, 5000),
            ("recipe now (checkpointing off + 5k validation)", mfu, 5000)]
    if mfu_liger:
        rows.append(("recipe now + Liger kernels", mfu_liger, 5000))
    for label, m, valid in rows:
        print(f"  {label:62s} {hours(m, valid):6.2f} h")
    print("  recipe now at other MFUs: " + ", ".join(f"{100 * m:.0f} % {hours(m, 5000, m):.2f} h"
                                                     for m in (0.3, 0.5, 0.6)) + " (eval at the same MFU)")
    print(f"  goal <= 3 h needs MFU >= {100 * train_flops / (3 * 3600 * cluster):.0f} % at these token counts")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", type=Path, default=ROOT / ".cache/smollm2-135m-instruct")
    p.add_argument("--dataset-dir", dest="data_dir", type=Path,
                   help="prepared dataset dir (default: a synthetic one, L = 20)")
    p.add_argument("--template", default="smollm2")
    p.add_argument("--length-limit", type=int, default=5000, help="rows counted per file (~300 rows/s per core)")
    p.add_argument("--lengths-only", action="store_true")
    p.add_argument("--cpu-steps", type=int, default=2, help="optimizer steps of the CPU runs (x global batch 8)")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--lora-device", default="cuda" if _cuda() else None, help="run section 3 here (default: cuda)")
    p.add_argument("--lora-shape", choices=["llama3.1-8b", "tiny"], default="llama3.1-8b")
    p.add_argument("--lora-steps", type=int, default=5)
    p.add_argument("--liger", action="store_true", default=_has("liger_kernel"))
    p.add_argument("--assume-mfu", type=float, default=0.40)
    p.add_argument("--paper-anchor", type=int, default=194000)
    p.add_argument("--mean-tokens", type=float, help="projection: tokens per anchor sample instead of the data's")
    p.add_argument("--eps", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--gpus", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_dir is None:
            args.data_dir = Path(tmp) / "data"
            subprocess.run([PY, "-m", "data_prep", "prepare", "--synthetic", "--users", "300", "--days", "30",
                            "--out", str(args.data_dir)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        lengths = token_lengths(args.data_dir, args.model_dir, args.template, args.length_limit)
        args.token_source = f"{args.model_dir.name} tokenizer on {args.data_dir.name}"
        print_lengths(lengths, args.token_source)
        if args.lengths_only:
            return
        if not args.skip_cpu:
            cpu_section(args, lengths)
        measured = None
        if args.lora_device and not (args.lora_device == "cpu" and args.lora_shape == "llama3.1-8b"):
            measured = lora_section(args, round(float(np.mean(lengths["anchor"]))))
            measured = measured if args.lora_shape == "llama3.1-8b" else None
        project(args, lengths, measured)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
