"""CLI: ``python -m sasrec {train,sample-efficiency} ...``."""

from __future__ import annotations

import argparse
import sys


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-dir", required=True, help="the prepared dataset_dir (runs/<RUN>/data)")
    p.add_argument("--config", help="SASRec YAML (default: recipes/sasrec/sasrec.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config key (either section), e.g. --set max_epochs=10")
    p.add_argument("--device", default="cpu", help="cpu (default, deterministic) or e.g. cuda:0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sasrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on train_all, epoch chosen on valid, predict test_p1 and test_p2")
    _common(t)
    t.add_argument("--out", required=True, help="predictions directory (runs/<RUN>/eval/sasrec)")
    s = sub.add_parser("sample-efficiency", help="SASRec on seeded training subsets -> plot and table (Fig. 4)")
    _common(s)
    s.add_argument("--sizes", type=int, nargs="+", required=True, help="training windows per run")
    s.add_argument("--out", required=True, help="report directory (runs/<RUN>/report)")
    s.add_argument("--llm", action="append", default=[], metavar="NAME=METRICS_JSON#MODEL[@SAMPLES]",
                   help="an LLM row of a report's metrics.json, drawn at SAMPLES training samples "
                        "(default: the dataset's train_all size)")
    s.add_argument("--skip-missing-llm", action="store_true",
                   help="leave out an --llm row whose metrics.json or model does not exist (make passes both "
                        "behaviorlm and a-tune whether trained or not)")
    s.add_argument("--work-dir", help="per-size predictions (default: <out>/sample_efficiency)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            from .train import run_train

            for path in run_train(args.dataset_dir, args.out, args.config, args.overrides, args.device):
                print(path)
        else:
            from .efficiency import run_sample_efficiency

            for path in run_sample_efficiency(args.dataset_dir, args.sizes, args.out, args.llm, args.config,
                                              args.overrides, args.device, args.work_dir,
                                              args.skip_missing_llm):
                print(path)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
