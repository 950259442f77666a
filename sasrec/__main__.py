"""CLI: ``python -m sasrec {train,sample-efficiency} ...``.

The model and training settings are the defaults of :class:`sasrec.train.TrainConfig` and
:class:`sasrec.model.ModelConfig`, then a profile YAML's (``--config``), then ``KEY=VALUE`` words (a key of either
section).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from cli import Command, add_config, config_from_args, positive_int, run
from cli import build_parser as command_parser


@dataclass(frozen=True)
class DeviceConfig:
    """Where SASRec runs (not a config key: it never changes which epoch is chosen on the CPU)."""
    device: str = field(default="cpu", metadata={"help": "cpu (deterministic) or e.g. cuda:0"})


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-dir", required=True, help="the prepared dataset_dir (runs/<RUN>/data)")
    p.add_argument("--config", help="a profile YAML over the defaults, e.g. recipes/sasrec/gpt2_small.yaml")
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                   help="override a config key (either section), e.g. max_epochs=10 hidden_size=64")
    add_config(p, DeviceConfig)


def _add_train(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--out", required=True, help="predictions directory (runs/<RUN>/eval/sasrec)")


def _add_sample_efficiency(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--sizes", type=positive_int, nargs="+", required=True, help="training windows per run")
    p.add_argument("--out", required=True, help="report directory (runs/<RUN>/report)")
    p.add_argument("--llm", action="append", default=[], metavar="NAME=METRICS_JSON#MODEL[@SAMPLES]",
                   help="an LLM row of a report's metrics.json, drawn at SAMPLES training samples "
                        "(default: the dataset's train_all size)")
    p.add_argument("--skip-missing-llm", action="store_true",
                   help="leave out an --llm row whose metrics.json or model does not exist (make passes both "
                        "behaviorlm and a-tune whether trained or not)")
    p.add_argument("--work-dir", help="per-size predictions (default: <out>/sample_efficiency)")


def _train(args: argparse.Namespace) -> int:
    from .train import run_train

    device = config_from_args(DeviceConfig, args).device
    for path in run_train(args.dataset_dir, args.out, args.config, args.assignments, device):
        print(path)
    return 0


def _sample_efficiency(args: argparse.Namespace) -> int:
    from .efficiency import run_sample_efficiency

    device = config_from_args(DeviceConfig, args).device
    for path in run_sample_efficiency(args.dataset_dir, args.sizes, args.out, args.llm, args.config,
                                      args.assignments, device, args.work_dir, args.skip_missing_llm):
        print(path)
    return 0


COMMANDS = {
    "train": Command("train on train_all, epoch chosen on valid, predict test_p1 and test_p2", _add_train, _train),
    "sample-efficiency": Command("SASRec on seeded training subsets -> plot and table (Fig. 4)",
                                 _add_sample_efficiency, _sample_efficiency),
}


def build_parser() -> argparse.ArgumentParser:
    return command_parser("python -m sasrec", __doc__.splitlines()[0], COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
