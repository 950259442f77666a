"""CLI: python -m serving {predict,serve,template-eval} ... (see --help of each).

predict: recent events of many users -> one JSONL line of next-behavior probabilities per user.
serve: the same predictions over HTTP (FastAPI + uvicorn), concurrent requests scored in shared batches.
template-eval: fixed instruction template vs the mean over the three, on protocol 2 of a prepared run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from serving.prompting import DEFAULT_MODE, MODES
from serving.run import ServingError, load_run
from serving.upstream import PrepareError


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True, help="runs/<RUN>: data/stats.json and final/ (or pi_ref/ + btune/)")
    p.add_argument("--data-dir", help="prepared dataset dir (default: <run-dir>/data)")
    p.add_argument("--model", help="model dir instead of the run's final/ (base model when --adapter is given)")
    p.add_argument("--adapter", help="PEFT adapter dir on top of --model")
    p.add_argument("--template", required=True, help="the recipe's LLaMA-Factory chat template (smollm2, llama3, qwen)")
    p.add_argument("--cutoff-len", type=_positive_int, help="refuse prompts longer than this (the recipe's cutoff_len)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="prompts per forward pass")
    p.add_argument("--device", help="e.g. cpu, cuda:0 (default: cuda when available)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--no-temperature", action="store_true",
                   help="serve the raw probabilities (T = 1) instead of dividing the log-probabilities by the "
                        "T of <run-dir>/eval/behaviorlm/temperature.json")


def _add_prediction_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--instruction-template", choices=MODES, default=DEFAULT_MODE,
                   help="a fixed Appendix D template (0-2) or the mean of candidate log-probs over the three")
    p.add_argument("--top-k", type=_positive_int, default=5, help="behaviors per prediction, best first")
    p.add_argument("--label-map", help="raw label -> behavior (default: the one prepare used, if it exists)")
    p.add_argument("--tz", help="time zone for Z / epoch timestamps (default: the one prepare used)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="events file -> one JSONL line of next-behavior probabilities per user")
    _add_model_args(p)
    _add_prediction_args(p)
    p.add_argument("--events", required=True, help="recent events: user_id, timestamp, place, behavior")
    p.add_argument("--next", required=True, help="per user the event to predict: user_id, timestamp, place")
    p.add_argument("--out", required=True, help="predictions JSONL (written atomically)")
    p.add_argument("--format", choices=("csv", "tsv", "jsonl", "parquet"), help="input format (default: by suffix)")
    p.add_argument("--columns", help="column mapping as for prepare, e.g. user=uid,time=ts,place=loc,behavior=act")
    p.add_argument("--time-format", help="strptime format of the timestamps of --events and --next, as for prepare "
                                         "(default: the one prepare used; 'none': ISO-8601 or epoch seconds)")
    p.add_argument("--buckets", type=_positive_int, default=64,
                   help="users are split by a hash of user_id into this many resumable parts (PREDICT_BUCKETS)")
    p.add_argument("--parts", help="folder of the parts, shared by every rank and node (default: <out>.parts)")

    s = sub.add_parser("serve", help="HTTP JSON service: /v1/predict, /v1/predict/batch, /v1/behaviors, /healthz")
    _add_model_args(s)
    _add_prediction_args(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on stdout)")
    s.add_argument("--max-batch", type=_positive_int, default=32,
                   help="prompts gathered into one scorer call (1 = no request batching)")
    s.add_argument("--max-wait-ms", type=float, default=5.0, help="how long the first request waits for others")
    s.add_argument("--max-body-bytes", type=_positive_int, default=1 << 20, help="larger bodies get 413")
    s.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))

    t = sub.add_parser("template-eval", help="fixed template vs mean over the three, on protocol 2")
    _add_model_args(t)
    t.add_argument("--dataset", default="test_p2", help="prepared split to measure on")
    t.add_argument("--limit", type=_positive_int, help="only the first N samples")
    t.add_argument("--out", help="write <out>.json and <out>.md")
    return parser


def _time_format(args, run) -> str | None:
    """predict's --time-format, else the one prepare read the run's events with ('none': no format)."""
    from serving.upstream import parse_time_format

    if args.time_format is not None:
        return parse_time_format(args.time_format)
    if run.source.get("kind") != "events":
        return None
    return (run.stats.get("config") or {}).get("time_format")


def _read_defaults(args, run) -> tuple[str | None, dict | None, dict | None]:
    """tz, column map and label map: the flags, else what prepare read the run's events with."""
    from serving.upstream import load_label_map, parse_columns_option

    source = run.source if run.source.get("kind") == "events" else {}
    tz = args.tz or source.get("tz")
    columns_text = getattr(args, "columns", None) or source.get("columns")
    columns = parse_columns_option(columns_text) if columns_text else None
    label_map_path = args.label_map or (source.get("label_map") if source.get("label_map")
                                        and Path(source["label_map"]).is_file() else None)
    label_map = load_label_map(label_map_path) if label_map_path else None
    return tz, columns, label_map


def _predictor(args, run):
    from serving.predictor import Predictor

    return Predictor(run, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                     cutoff_len=args.cutoff_len)


def _predict(args, run) -> int:
    from serving.batch import ReadOptions
    from serving.parts import predict_parts

    tz, columns, label_map = _read_defaults(args, run)
    opts = ReadOptions(fmt=args.format, columns=columns, label_map=label_map, tz=tz,
                       time_format=_time_format(args, run))
    for flag, path in (("--events", args.events), ("--next", args.next)):
        if not Path(path).is_file():
            raise ServingError(f"{flag} {path}: no such file")
    counts = predict_parts(run, lambda: _predictor(args, run), args.events, args.next, args.out, opts, args.top_k,
                           args.instruction_template, args.buckets, args.parts, args.cutoff_len)
    if counts is None:   # a rank other than 0: its parts are written, rank 0 merges
        return 0
    print(f"wrote {args.out}: {counts['users']} users, {counts['predicted']} predicted, {counts['errors']} with an "
          f"error, {counts['short_history']} from a history shorter than L={run.history_len}")
    return 0


def _serve(args, run) -> int:
    from serving.app import Settings, create_app
    from serving.server import serve

    tz, _, label_map = _read_defaults(args, run)
    settings = Settings(top_k=args.top_k, mode=args.instruction_template, max_batch=args.max_batch,
                        max_wait_ms=args.max_wait_ms, max_body_bytes=args.max_body_bytes,
                        api_key=os.environ.get("API_KEY") or None, tz=tz, label_map=label_map)
    print(f"loading {run.model_name} of {run.run_dir} ...", file=sys.stderr, flush=True)
    app = create_app(_predictor(args, run), settings)
    return serve(app, args.host, args.port, args.log_level)


def _template_eval(args, run) -> int:
    from serving.template_eval import markdown, run_template_eval
    from serving.upstream import write_json

    result = run_template_eval(_predictor(args, run), args.data_dir or run.run_dir / "data", args.dataset,
                               args.limit)
    text = markdown(result)
    if args.out:
        write_json(f"{args.out}.json", result)
        Path(f"{args.out}.md").write_text(text, encoding="utf-8")
    print(text, end="")
    print(json.dumps({"scoring_s_per_prompt": round(result["scoring_s_per_prompt"], 4)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run = load_run(args.run_dir, args.template, args.model, args.adapter, args.data_dir,
                       temperature=not args.no_temperature)
        print(f"temperature {run.temperature:g}" + (f" ({run.temperature_from})" if run.temperature_from else ""),
              file=sys.stderr)
        handler = {"predict": _predict, "serve": _serve, "template-eval": _template_eval}[args.command]
        return handler(args, run)
    except (ServingError, PrepareError, FileNotFoundError, ValueError, RuntimeError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
