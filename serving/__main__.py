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
import time
from pathlib import Path

from cli import Command, add_config, config_from_args, run
from cli import build_parser as command_parser
from serving.config import (
    EventFilesConfig,
    EventLabelsConfig,
    PredictFilesConfig,
    PredictionConfig,
    ServeConfig,
    ServedModelConfig,
    TemplateEvalConfig,
)
from serving.run import ServingError, load_run


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True, help="runs/<RUN>: data/stats.json and final/ (or pi_ref/ + btune/)")
    p.add_argument("--dataset-dir", help="prepared dataset dir (default: <run-dir>/data)")
    p.add_argument("--model", help="model dir instead of the run's final/ (base model when --adapter is given)")
    p.add_argument("--adapter", help="PEFT adapter dir on top of --model")
    p.add_argument("--template", required=True, help="the recipe's LLaMA-Factory chat template (smollm2, llama3, qwen)")
    add_config(p, ServedModelConfig)
    p.add_argument("--device", help="e.g. cpu, cuda:0 (default: cuda when available)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--no-temperature", action="store_true",
                   help="serve the raw probabilities (T = 1) instead of dividing the log-probabilities by the "
                        "T of <run-dir>/eval/behaviorlm/temperature.json for the instruction template")


def _add_prediction_args(p: argparse.ArgumentParser) -> None:
    add_config(p, PredictionConfig)
    add_config(p, EventLabelsConfig)


def _add_predict_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    _add_prediction_args(p)
    p.add_argument("--events", required=True, help="recent events: user_id, timestamp, place, behavior")
    p.add_argument("--next", required=True, help="per user the event to predict: user_id, timestamp, place")
    p.add_argument("--out", required=True, help="predictions JSONL (written atomically)")
    p.add_argument("--format", choices=("csv", "tsv", "jsonl", "parquet"), help="input format (default: by suffix)")
    add_config(p, EventFilesConfig)
    add_config(p, PredictFilesConfig)
    p.add_argument("--parts", help="folder of the parts, shared by every rank and node (default: <out>.parts)")


def _add_serve_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    _add_prediction_args(p)
    add_config(p, ServeConfig)


def _add_template_eval_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    add_config(p, TemplateEvalConfig)
    p.add_argument("--out", help="write <out>.json and <out>.md")


def _time_format(files: EventFilesConfig, run) -> str | None:
    """predict's --time-format, else the one prepare read the run's events with ('none': no format)."""
    from data_prep.config import parse_time_format

    if files.time_format is not None:
        return parse_time_format(files.time_format)
    if run.source.get("kind") != "events":
        return None
    return (run.stats.get("config") or {}).get("time_format")


def _read_defaults(labels: EventLabelsConfig, files: EventFilesConfig | None,
                   run) -> tuple[str | None, dict | None, dict | None]:
    """tz, column map and label map: the options given, else what prepare read the run's events with."""
    from data_prep.config import parse_columns_option
    from data_prep.reading.labels import load_label_map

    source = run.source if run.source.get("kind") == "events" else {}
    tz = labels.tz or source.get("tz")
    columns_text = (files.columns if files else None) or source.get("columns")
    columns = parse_columns_option(columns_text) if columns_text else None
    label_map_path = labels.label_map or (source.get("label_map") if source.get("label_map")
                                          and Path(source["label_map"]).is_file() else None)
    label_map = load_label_map(label_map_path) if label_map_path else None
    return tz, columns, label_map


def _predictor(args, run):
    from serving.predictor import Predictor

    return Predictor(run, config_from_args(ServedModelConfig, args), device=args.device, dtype=args.dtype)


def _predict(args, run) -> int:
    from serving.parts import predict_parts
    from serving.predict_files import ReadOptions

    model, prediction = config_from_args(ServedModelConfig, args), config_from_args(PredictionConfig, args)
    labels, files = config_from_args(EventLabelsConfig, args), config_from_args(EventFilesConfig, args)
    tz, columns, label_map = _read_defaults(labels, files, run)
    opts = ReadOptions(fmt=args.format, columns=columns, label_map=label_map, tz=tz,
                       time_format=_time_format(files, run), allow_bad_timestamps=files.allow_bad_timestamps)
    # --events may be several files, as prepare's INPUT (serving.spool lists them, or names what is missing)
    if not Path(args.next).is_file():
        raise ServingError(f"--next {args.next}: no such file")
    counts = predict_parts(run, lambda: _predictor(args, run), args.events, args.next, args.out, opts, prediction,
                           config_from_args(PredictFilesConfig, args), args.parts, model.cutoff_len)
    if counts is None:   # a rank other than 0: its parts are written, rank 0 merges
        return 0
    print(f"wrote {args.out}: {counts['users']} users, {counts['predicted']} predicted, {counts['errors']} with an "
          f"error, {counts['short_history']} from a history shorter than L={run.history_len}")
    return 0


def _serve(args, run) -> int:
    from serving.app import AppConfig, create_app
    from serving.server import serve

    prediction, server = config_from_args(PredictionConfig, args), config_from_args(ServeConfig, args)
    tz, _, label_map = _read_defaults(config_from_args(EventLabelsConfig, args), None, run)
    print(f"loading {run.model_name} of {run.run_dir} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    predictor = _predictor(args, run)
    settings = AppConfig(prediction, server, model_load_s=time.perf_counter() - started,
                         api_key=os.environ.get("API_KEY") or None, tz=tz, label_map=label_map)
    return serve(create_app(predictor, settings), server)


def _template_eval(args, run) -> int:
    from data_prep.writing.outputs import write_json
    from serving.template_eval import markdown, run_template_eval

    measured = config_from_args(TemplateEvalConfig, args)
    result = run_template_eval(_predictor(args, run), args.dataset_dir or run.run_dir / "data", measured.dataset,
                               measured.limit)
    text = markdown(result)
    if args.out:
        write_json(f"{args.out}.json", result)
        Path(f"{args.out}.md").write_text(text, encoding="utf-8")
    print(text, end="")
    print(json.dumps({"scoring_s_per_prompt": round(result["scoring_s_per_prompt"], 4)}))
    return 0


def temperature_line(run) -> str:
    """The T of each prompt mode, and the file they came from (T = 1 for a mode the file has none for)."""
    from serving.prompting import MODES

    ts = ", ".join(f"{mode} {run.temperature(mode):g}" for mode in MODES)
    missing = [mode for mode in MODES if mode not in run.temperatures]
    source = f" ({run.temperature_from}" + (f"; no T for {', '.join(missing)}: 1" if missing else "") + ")"
    return f"temperature per instruction template: {ts}" + (source if run.temperature_from else "")


def _with_run(handler):
    """The command on the run's model, data and temperature (loaded first, from --run-dir)."""

    def load_then_handle(args) -> int:
        loaded = load_run(args.run_dir, args.template, args.model, args.adapter, args.dataset_dir,
                          temperature=not args.no_temperature)
        print(temperature_line(loaded), file=sys.stderr)
        return handler(args, loaded)

    return load_then_handle


COMMANDS = {
    "predict": Command("events file -> one JSONL line of next-behavior probabilities per user", _add_predict_args,
                       _with_run(_predict)),
    "serve": Command("HTTP JSON service: /v1/predict, /v1/predict/batch, /v1/behaviors, /healthz, /metrics",
                     _add_serve_args,
                     _with_run(_serve)),
    "template-eval": Command("fixed template vs mean over the three, on protocol 2", _add_template_eval_args,
                             _with_run(_template_eval)),
}


def build_parser() -> argparse.ArgumentParser:
    return command_parser("python -m serving", __doc__.splitlines()[0], COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
