"""CLI: ``python -m evaluation {predict,baseline,report,ablation-table,sweep-table,figure,behavior-map} ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli import Command, add_config, config_from_args, run
from cli import build_parser as command_parser

from .baselines import KINDS, SYNTHETIC_KINDS
from .config import PredictConfig
from .files import TEST_SPLITS
from .paper_tables import SWEEP_TABLES, TABLE3, TABLE4


def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory (base model when --adapter is given)")
    p.add_argument("--adapter", help="LoRA adapter directory on top of --model")
    p.add_argument("--template", required=True, help="LLaMA-Factory template name used in training")
    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--dataset", required=True, nargs="+", choices=TEST_SPLITS,
                   help="one or more test splits (one process: the libraries are imported once)")
    p.add_argument("--out", required=True, help="directory for <dataset>.predictions.jsonl (resumable)")
    p.add_argument("--generate", action="store_true", help="free greedy generation parsed to a candidate")
    p.add_argument("--device", help="e.g. cpu, cuda:0 (default: cuda:LOCAL_RANK; an error, not a CPU fallback, "
                                    "when several ranks or a >1B model expect a GPU and none is usable)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default bf16 on GPU, fp32 on CPU")
    add_config(p, PredictConfig)


def _predict(args: argparse.Namespace) -> None:
    from scoring.scorer import ScorerCache

    from .predict import fit_constrained_temperature, predict_constrained, predict_generate

    cfg = config_from_args(PredictConfig, args)
    kwargs = {"adapter": args.adapter, "batch_size": cfg.batch_size, "shard_size": cfg.shard_size,
              "device": args.device, "dtype": args.dtype, "cutoff_len": cfg.cutoff_len}
    cache = ScorerCache()  # the model is loaded once for every split scored here
    for dataset in args.dataset:
        if args.generate:
            path = predict_generate(args.model, args.template, args.dataset_dir, dataset, args.out,
                                    max_new_tokens=cfg.max_new_tokens, **kwargs)
        else:
            path = predict_constrained(args.model, args.template, args.dataset_dir, dataset, args.out, cache=cache,
                                       **kwargs)
        if path is not None:
            print(path)
    if cfg.calib_samples > 0 and not args.generate:
        calib = {k: v for k, v in kwargs.items() if k != "shard_size"}   # one in-memory batch, on rank 0
        path = fit_constrained_temperature(args.model, args.template, args.dataset_dir, args.out, cfg.calib_samples,
                                           cfg.calib_seed, cache=cache, **calib)
        if path is not None:
            print(path)


def _add_baseline(b: argparse.ArgumentParser) -> None:
    b.add_argument("--dataset-dir", required=True)
    b.add_argument("--kind", required=True, choices=KINDS + SYNTHETIC_KINDS)
    b.add_argument("--dataset", required=True, nargs="+", choices=TEST_SPLITS)
    b.add_argument("--out", required=True)


def _baseline(args: argparse.Namespace) -> None:
    from .baselines import run_baseline

    for dataset in args.dataset:
        print(run_baseline(args.dataset_dir, args.kind, dataset, args.out))


def _add_report(r: argparse.ArgumentParser) -> None:
    r.add_argument("--dataset-dir", required=True)
    r.add_argument("--pred", action="append", required=True, metavar="NAME=DIR[,DIR...]",
                   help="a model's predictions directory; repeat NAME (or list DIRs) for seeds")
    r.add_argument("--out", required=True)
    r.add_argument("--paper-table", choices=tuple(TABLE3),
                   help="show the paper's Table 3 / Table 8 rows beside ours")


def _report(args: argparse.Namespace) -> None:
    from .report import build_report, parse_named

    report = build_report(args.dataset_dir, parse_named(args.pred), args.out, args.paper_table)
    for line in report["warnings"]:
        print(line, file=sys.stderr)
    print(f"{args.out}/report.md")


def _add_ablation_table(a: argparse.ArgumentParser) -> None:
    a.add_argument("--full", required=True, metavar="NAME=METRICS_JSON[#MODEL]")
    a.add_argument("--variant", action="append", required=True, metavar="NAME=METRICS_JSON[#MODEL]")
    a.add_argument("--out", required=True, help="Markdown file")
    a.add_argument("--paper-table", choices=tuple(TABLE4), help="show the paper's Table 4 drops")


def _ablation_table(args: argparse.Namespace) -> None:
    from .ablations import write_ablation_table

    print(write_ablation_table(args.full, args.variant, args.out, args.paper_table), end="")


def _add_sweep_table(s: argparse.ArgumentParser) -> None:
    s.add_argument("--param", required=True, help='column title, e.g. "aux ratio"')
    s.add_argument("--point", action="append", required=True, metavar="VALUE=METRICS_JSON[#MODEL]")
    s.add_argument("--out", required=True, help="Markdown file")
    s.add_argument("--paper-table", choices=tuple(SWEEP_TABLES), help="show the paper's Table 5 / 6")


def _sweep_table(args: argparse.Namespace) -> None:
    from .ablations import write_sweep_table

    print(write_sweep_table(args.param, args.point, args.out, args.paper_table), end="")


def _add_figure(f: argparse.ArgumentParser) -> None:
    f.add_argument("kind", choices=("compare_runs", "sweep_f", "tuning_data", "sweep_aux"))
    f.add_argument("--point", action="append", required=True, metavar="LABEL=METRICS_JSON[#MODEL]",
                   help="compare_runs: RUN/METHOD=...; sweep_f: F=...; the others: the bar's label")
    f.add_argument("--out", required=True, help="directory for <kind>.png, .md, .json")


def _figure(args: argparse.Namespace) -> None:
    from .comparison_figures import write

    print(write(args.kind, args.point, args.out)[1].read_text(encoding="utf-8"), end="")


def _add_behavior_map(m: argparse.ArgumentParser) -> None:
    m.add_argument("--model", required=True, help="model directory (the base model)")
    m.add_argument("--dataset-dir", required=True, help="prepared dataset_dir (its stats.json)")
    m.add_argument("--out", required=True, help="directory for behavior_map.png, .md, .json")
    m.add_argument("--device", help="e.g. cpu, cuda:0")


def _behavior_map(args: argparse.Namespace) -> None:
    from data_prep.prepared import load_stats

    from .behavior_map import run as behavior_map

    print(behavior_map(args.model, load_stats(args.dataset_dir), Path(args.out), args.device)[0])


COMMANDS = {
    "predict": Command("LLM predictions on a test split (candidate-constrained by default)", _add_predict, _predict),
    "baseline": Command("non-LLM reference predictions", _add_baseline, _baseline),
    "report": Command("report.md, metrics.json and figures for several models", _add_report, _report),
    "ablation-table": Command("Table-4-style relative drops against full BehaviorLM", _add_ablation_table,
                              _ablation_table),
    "sweep-table": Command("metrics across values of one parameter (Tables 5, 6)", _add_sweep_table, _sweep_table),
    "figure": Command("a figure over several models: compare_runs (Fig. 3a), sweep_f (Fig. 3b), tuning_data "
                      "(Fig. 5), sweep_aux (Table 7)", _add_figure, _figure),
    "behavior-map": Command("Fig. 1b: behavior names in the model's embedding, anchors and tails", _add_behavior_map,
                            _behavior_map),
}


def build_parser() -> argparse.ArgumentParser:
    return command_parser("python -m evaluation", __doc__, COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
