"""CLI: ``python -m evaluation {predict,baseline,report,ablation-table,sweep-table,figure,behavior-map} ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .files import TEST_SPLITS
from .temperature import DEFAULT_CALIB_SAMPLES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="LLM predictions on a test split (candidate-constrained by default)")
    p.add_argument("--model", required=True, help="model directory (base model when --adapter is given)")
    p.add_argument("--adapter", help="LoRA adapter directory on top of --model")
    p.add_argument("--template", required=True, help="LLaMA-Factory template name used in training")
    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--dataset", required=True, nargs="+", choices=TEST_SPLITS,
                   help="one or more test splits (one process: the libraries are imported once)")
    p.add_argument("--out", required=True, help="directory for <dataset>.predictions.jsonl (resumable)")
    p.add_argument("--generate", action="store_true", help="free greedy generation parsed to a candidate")
    p.add_argument("--max-new-tokens", type=int, default=16, help="with --generate")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--shard-size", type=int, default=256, help="samples per resumable part file")
    p.add_argument("--device", help="e.g. cpu, cuda:0 (default: cuda:LOCAL_RANK; an error, not a CPU fallback, "
                                    "when several ranks or a >1B model expect a GPU and none is usable)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--cutoff-len", type=int, help="the recipe's cutoff_len: refuse samples whose prompt + longest "
                                                  "candidate is longer (they were trained on a truncated prompt)")
    p.add_argument("--calib-samples", type=int, default=DEFAULT_CALIB_SAMPLES,
                   help="validation samples (a seeded subset) to fit the temperature on, written as "
                        "<out>/temperature.json; 0: none (default %(default)s; not with --generate)")
    p.add_argument("--calib-seed", type=int, default=0, help="seed of the validation subset")

    b = sub.add_parser("baseline", help="non-LLM reference predictions")
    b.add_argument("--dataset-dir", required=True)
    b.add_argument("--kind", required=True, choices=("most-frequent", "markov"))
    b.add_argument("--dataset", required=True, nargs="+", choices=TEST_SPLITS)
    b.add_argument("--out", required=True)

    r = sub.add_parser("report", help="report.md, metrics.json and figures for several models")
    r.add_argument("--dataset-dir", required=True)
    r.add_argument("--pred", action="append", required=True, metavar="NAME=DIR[,DIR...]",
                   help="a model's predictions directory; repeat NAME (or list DIRs) for seeds")
    r.add_argument("--out", required=True)
    r.add_argument("--paper-table", choices=("behavior", "app", "foursquare"),
                   help="show the paper's Table 3 / Table 8 rows beside ours")

    a = sub.add_parser("ablation-table", help="Table-4-style relative drops against full BehaviorLM")
    a.add_argument("--full", required=True, metavar="NAME=METRICS_JSON[#MODEL]")
    a.add_argument("--variant", action="append", required=True, metavar="NAME=METRICS_JSON[#MODEL]")
    a.add_argument("--out", required=True, help="Markdown file")
    a.add_argument("--paper-table", choices=("behavior", "app"), help="show the paper's Table 4 drops")

    s = sub.add_parser("sweep-table", help="metrics across values of one parameter (Tables 5, 6)")
    s.add_argument("--param", required=True, help='column title, e.g. "aux ratio"')
    s.add_argument("--point", action="append", required=True, metavar="VALUE=METRICS_JSON[#MODEL]")
    s.add_argument("--out", required=True, help="Markdown file")
    s.add_argument("--paper-table", choices=("aux-ratio", "threshold"), help="show the paper's Table 5 / 6")

    f = sub.add_parser("figure", help="a figure over several models: compare_runs (Fig. 3a), sweep_f (Fig. 3b), "
                                      "tuning_data (Fig. 5), sweep_aux (Table 7)")
    f.add_argument("kind", choices=("compare_runs", "sweep_f", "tuning_data", "sweep_aux"))
    f.add_argument("--point", action="append", required=True, metavar="LABEL=METRICS_JSON[#MODEL]",
                   help="compare_runs: RUN/METHOD=...; sweep_f: F=...; the others: the bar's label")
    f.add_argument("--out", required=True, help="directory for <kind>.png, .md, .json")

    m = sub.add_parser("behavior-map", help="Fig. 1b: behavior names in the model's embedding, anchors and tails")
    m.add_argument("--model", required=True, help="model directory (the base model)")
    m.add_argument("--dataset-dir", required=True, help="prepared dataset_dir (its stats.json)")
    m.add_argument("--out", required=True, help="directory for behavior_map.png, .md, .json")
    m.add_argument("--device", help="e.g. cpu, cuda:0")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "predict":
            from scoring.scorer import ScorerCache

            from .predict import predict_constrained, predict_generate

            kwargs = {"adapter": args.adapter, "batch_size": args.batch_size, "shard_size": args.shard_size,
                      "device": args.device, "dtype": args.dtype, "cutoff_len": args.cutoff_len}
            cache = ScorerCache()  # the model is loaded once for every split scored here
            for dataset in args.dataset:
                if args.generate:
                    path = predict_generate(args.model, args.template, args.dataset_dir, dataset, args.out,
                                            max_new_tokens=args.max_new_tokens, **kwargs)
                else:
                    path = predict_constrained(args.model, args.template, args.dataset_dir, dataset, args.out,
                                               cache=cache, **kwargs)
                if path is not None:
                    print(path)
            if args.calib_samples > 0 and not args.generate:
                from .predict import fit_constrained_temperature

                path = fit_constrained_temperature(args.model, args.template, args.dataset_dir, args.out,
                                                   args.calib_samples, args.calib_seed, cache=cache, **kwargs)
                if path is not None:
                    print(path)
        elif args.command == "baseline":
            from .baselines import run_baseline

            for dataset in args.dataset:
                print(run_baseline(args.dataset_dir, args.kind, dataset, args.out))
        elif args.command == "report":
            from .report import build_report, parse_named

            build_report(args.dataset_dir, parse_named(args.pred), args.out, args.paper_table)
            print(f"{args.out}/report.md")
        elif args.command == "ablation-table":
            from .ablations import write_ablation_table

            print(write_ablation_table(args.full, args.variant, args.out, args.paper_table), end="")
        elif args.command == "sweep-table":
            from .ablations import write_sweep_table

            print(write_sweep_table(args.param, args.point, args.out, args.paper_table), end="")
        elif args.command == "figure":
            from .paper_figures import write

            print(write(args.kind, args.point, args.out)[1].read_text(encoding="utf-8"), end="")
        elif args.command == "behavior-map":
            from data_prep.prepared import load_stats

            from .behavior_map import run

            print(run(args.model, load_stats(args.dataset_dir), Path(args.out), args.device)[0])
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
