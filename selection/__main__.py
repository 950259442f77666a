"""CLI: python -m selection select ... (see its --help); the pool it selects from is scored by
``python -m scoring score``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from cli import Command, add_config, config_from_args, run
from cli import build_parser as command_parser

from .config import SelectConfig


def _add_select(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True)
    p.add_argument("--dataset-dir", required=True)
    add_config(p, SelectConfig)
    p.add_argument("--out", required=True,
                   help="select's folder: pairs, SFT set, their dataset_info.json, report (not --dataset-dir)")


def _select(args: argparse.Namespace) -> None:
    from .select import run_selection

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(SelectConfig, args)
    report = run_selection(args.scores, args.dataset_dir, cfg, out_dir=args.out)
    print(json.dumps({k: report[k] for k in ("pool_size", "pi_ref_accuracy", "pairs")}))


COMMANDS = {
    "select": Command("difficulty + per-behavior selection -> dpo_pairs.jsonl, selected_sft.jsonl", _add_select,
                      _select),
}


def build_parser() -> argparse.ArgumentParser:
    return command_parser("python -m selection", __doc__, COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
