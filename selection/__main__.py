"""CLI: python -m selection select ... (see its --help); score, token-lengths and convert-gguf are
``python -m scoring``'s commands, also accepted here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

from scoring.config import add_config_arguments, config_from_args

from .config import SelectConfig

SCORING_COMMANDS = ("score", "token-lengths", "convert-gguf")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m selection", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("select", help="difficulty + per-behavior selection -> dpo_pairs.jsonl, selected_sft.jsonl")
    p.add_argument("--scores", required=True)
    p.add_argument("--dataset-dir", required=True)
    add_config_arguments(p, SelectConfig)
    p.add_argument("--out", "--out-dir", dest="out", required=True,
                   help="select's folder: pairs, SFT set, their dataset_info.json, report (not --dataset-dir)")
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SCORING_COMMANDS:
        from scoring.__main__ import main as scoring_main

        return scoring_main(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "select":
            from .select import run_selection

            cfg = config_from_args(SelectConfig, args)
            report = run_selection(args.scores, args.dataset_dir, **asdict(cfg), out_dir=args.out)
            print(json.dumps({k: report[k] for k in ("pool_size", "pi_ref_accuracy", "pairs")}))
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
