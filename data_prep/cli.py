"""`python -m data_prep prepare`: the command line of :func:`data_prep.prepare.prepare`.

Argument parsing only. The run's settings, their defaults and their help come from the fields of
:class:`data_prep.config.PrepareConfig`, :class:`~data_prep.config.SyntheticConfig` and
:class:`~data_prep.config.ScaleConfig` (the one declaration of each default, made options by
:func:`cli.add_settings`); the event source options (``--input`` and its reader options, ``--foursquare``,
``--synthetic``) are read here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli import Command, add_settings, run, settings_from_args
from cli import build_parser as command_parser
from data_prep.config import PrepareConfig, ScaleConfig, SyntheticConfig
from data_prep.engines.outofcore import prepare_input
from data_prep.errors import PrepareError
from data_prep.options import resolve_columns
from data_prep.prepare import prepare
from data_prep.reading import events, sources
from data_prep.synthetic import generate_events
from data_prep.synthetic.files import add_arguments as add_synthetic_arguments
from data_prep.synthetic.files import write_command

__all__ = ["COMMANDS", "PrepareConfig", "build_parser", "config_from_args", "main", "prepare"]


def config_from_args(args: argparse.Namespace, settings=PrepareConfig):
    return settings_from_args(settings, args)


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="dataset_dir to write (e.g. runs/<RUN>/data)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="event log: a CSV, JSONL or Parquet file, or a directory (hive partitions "
                                    "too), glob or object-store URI of them")
    src.add_argument("--foursquare", help="Foursquare TSMC2014 file (tab separated, original layout)")
    src.add_argument("--synthetic", action="store_true", help="the embedded synthetic default")
    p.add_argument("--format", choices=("csv", "jsonl", "parquet"), help="input format (default: by suffix)")
    p.add_argument("--columns", help="column mapping, e.g. user=uid,time=ts,place=loc,behavior=label")
    p.add_argument("--label-map", help="JSON or CSV file merging (or renaming) raw labels into categories "
                                       "(--input and --foursquare)")
    p.add_argument("--tz", help="convert timestamps that name their instant (Z, offsets, epoch seconds) to this "
                                "zone's local time, e.g. Asia/Shanghai or +08:00 (naive times are already local)")
    add_settings(p, SyntheticConfig)
    add_settings(p, PrepareConfig)
    add_settings(p, ScaleConfig)


def _reader(args) -> tuple[dict, dict]:
    """The --input reader options (load_events' keywords) and the stats.json source."""
    columns = events.parse_columns_option(args.columns) if args.columns else None
    resolve_columns(columns, distinct=True)   # prepare needs four different columns
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
    behaviors = [b.strip() for b in args.behaviors.split(",") if b.strip()] if args.behaviors else None
    table = generate_events(n_users=args.users, n_days=args.days, seed=args.seed, behaviors=behaviors)
    return table, {"kind": "synthetic", "users": args.users, "days": args.days, "seed": args.seed,
                   "behaviors": behaviors}


def _summary(stats: dict, out_dir: Path) -> str:
    s = stats["samples"]
    return (f"prepared {out_dir}: {stats['events']['events']} events, {stats['events']['users']} users, "
            f"{stats['events']['behaviors']} behaviors ({len(stats['anchors'])} anchors); samples: "
            + ", ".join(f"{k}={v}" for k, v in s.items()))


def prepare_command(args: argparse.Namespace) -> int:
    config, scale = config_from_args(args), config_from_args(args, ScaleConfig)
    config.validate()
    scale.validate()
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


COMMANDS = {"prepare": Command("event log -> LLaMA-Factory dataset_dir (docs/data-preparation.md)",
                               add_prepare_arguments, prepare_command),
            "synthetic": Command("write the embedded synthetic event log to a file (the log prepare --synthetic "
                                 "reads, at any size)", add_synthetic_arguments, write_command)}


def build_parser() -> argparse.ArgumentParser:
    return command_parser("python -m data_prep", "BehaviorLM data preparation: event log -> LLaMA-Factory datasets",
                          COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), COMMANDS, argv)
