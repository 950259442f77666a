"""`python -m data_prep prepare`: the command line of :func:`data_prep.prepare.prepare`.

Argument parsing only. The options, their defaults and their help come from the fields of
:mod:`data_prep.config`'s ``SourceConfig`` (the event log: one of its options, or ``--synthetic``),
``ReaderConfig``, ``SyntheticConfig``, ``PrepareConfig`` and ``ScaleConfig`` (the one declaration of each default,
made options by :func:`cli.add_config`); the source is read here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli import Command, add_config, config_from_args, run
from cli import build_parser as command_parser
from data_prep.config import (
    PrepareConfig,
    ReaderConfig,
    ScaleConfig,
    SourceConfig,
    SyntheticConfig,
    SyntheticLogConfig,
)
from data_prep.engines.outofcore import prepare_input
from data_prep.errors import PrepareError
from data_prep.prepare import prepare
from data_prep.reading import events, sources
from data_prep.synthetic import generate_events, write_events

__all__ = ["COMMANDS", "PrepareConfig", "build_parser", "main", "prepare", "prepare_config"]


def prepare_config(args: argparse.Namespace) -> PrepareConfig:
    return config_from_args(PrepareConfig, args)


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="dataset_dir to write (e.g. runs/<RUN>/data)")
    src = p.add_mutually_exclusive_group(required=True)
    add_config(src, SourceConfig)
    src.add_argument("--synthetic", action="store_true", help="the embedded synthetic default")
    add_config(p, ReaderConfig)
    add_config(p, SyntheticConfig)
    add_config(p, PrepareConfig)
    add_config(p, ScaleConfig)


def _reader(args) -> tuple[dict, dict]:
    """The --input reader options (load_events' keywords) and the stats.json source."""
    config_from_args(ReaderConfig, args)   # checks the column map: prepare needs four different columns
    columns = events.parse_columns_option(args.columns) if args.columns else None
    label_map = events.load_label_map(args.label_map) if args.label_map else None
    return ({"columns": columns, "label_map": label_map, "tz": args.tz, "time_format": args.time_format,
             "allow_bad_timestamps": args.allow_bad_timestamps},
            {"kind": "events", "path": args.input, "format": args.format, "columns": args.columns,
             "label_map": args.label_map, "tz": args.tz})


def _load(args) -> tuple[object, dict]:
    if args.input:
        reader, source = _reader(args)
        return sources.load_input(args.input, fmt=args.format, **reader), source
    if args.time_format is not None:
        raise PrepareError("--time-format reads the timestamps of an --input file; the Foursquare and synthetic "
                           "sources have their own")
    if args.foursquare:
        label_map = events.load_label_map(args.label_map) if args.label_map else None
        source = {"kind": "foursquare", "path": args.foursquare}
        if args.label_map:
            source["label_map"] = args.label_map
        return events.load_foursquare(args.foursquare, label_map=label_map), source
    synthetic = config_from_args(SyntheticConfig, args)
    behaviors = synthetic.behavior_list
    table = generate_events(n_users=synthetic.users, n_days=synthetic.days, seed=args.seed, behaviors=behaviors)
    return table, {"kind": "synthetic", "users": synthetic.users, "days": synthetic.days, "seed": args.seed,
                   "behaviors": behaviors}


def _summary(stats: dict, out_dir: Path) -> str:
    s = stats["samples"]
    return (f"prepared {out_dir}: {stats['events']['events']} events, {stats['events']['users']} users, "
            f"{stats['events']['behaviors']} behaviors ({len(stats['anchors'])} anchors); samples: "
            + ", ".join(f"{k}={v}" for k, v in s.items()))


def prepare_command(args: argparse.Namespace) -> int:
    config, scale = prepare_config(args), config_from_args(ScaleConfig, args)
    for settings in (SyntheticConfig, ReaderConfig):   # checked before anything is read
        config_from_args(settings, args)
    if scale.n_buckets and not args.input:
        raise PrepareError("--buckets and --engine ray read an --input log; the Foursquare and synthetic "
                           "sources are prepared in memory")
    if scale.n_buckets:
        reader, source = _reader(args)
        stats = prepare_input(args.input, args.out, config, fmt=args.format, reader=reader,
                              n_buckets=scale.n_buckets, engine=scale.engine, source=source)
    else:
        print("loading events ...", file=sys.stderr)
        table, source = _load(args)
        stats = prepare(table, args.out, config, source=source)
    print(_summary(stats, Path(args.out)))
    return 0


def add_synthetic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output file: .parquet, .csv or .jsonl")
    add_config(parser, SyntheticLogConfig)


def synthetic_command(args: argparse.Namespace) -> int:
    cfg = config_from_args(SyntheticLogConfig, args)
    rows = write_events(args.out, cfg.users, cfg.days, cfg.seed, cfg.behavior_list, cfg.chunk_users,
                        start=cfg.start, events_per_day=cfg.events_per_day, progress=True)
    print(f"{rows} events -> {args.out}")
    return 0


COMMANDS = {"prepare": Command("event log -> LLaMA-Factory dataset_dir (docs/data-preparation.md)",
                               add_prepare_arguments, prepare_command),
            "synthetic": Command("write the embedded synthetic event log to a file (the log prepare --synthetic "
                                 "reads, at any size)", add_synthetic_arguments, synthetic_command)}


def build_parser() -> argparse.ArgumentParser:
    return command_parser("python -m data_prep", "BehaviorLM data preparation: event log -> LLaMA-Factory datasets",
                          COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), COMMANDS, argv)
