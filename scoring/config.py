"""The one declaration of every scoring default (paper 3.3 and 4.1): ``python -m scoring score`` takes its argparse
defaults and help from ``ScoreConfig``, and the Python entry points their defaults; the helpers that turn a config
dataclass into options (``add_config_arguments``) serve ``selection.config`` too."""

from __future__ import annotations

import argparse
import operator
from dataclasses import MISSING, dataclass, field, fields


def check_positive(value, what: str = "value") -> int:
    """`value` as an int if it is a positive integer (numpy integers too), else ValueError naming `what`."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return number


def check_pool_size(value):
    """Scoring pool per behavior: a positive integer, or None / "all" for every sample."""
    if value is None or value == "all":
        return None
    return check_positive(value, "pool size per behavior")


def arg_type(check, parse=int):
    """An argparse type that parses, then validates with `check` (its message shown as is)."""

    def convert(text: str):
        try:
            return check(parse(text))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = check.__name__
    return convert


def _parse_pool(text: str):
    return None if text == "all" else int(text)


@dataclass(frozen=True)
class ScoreConfig:
    """pi_ref scoring of the pool (Algorithm 1 lines 12-14)."""

    dataset: str = field(default="train_all", metadata={"help": "name in dataset_info.json or its file stem"})
    pool_per_behavior: int | None = field(
        default=None,
        metadata={"type": arg_type(check_pool_size, _parse_pool), "metavar": "M|all", "shown": "all",
                  "help": "score a seeded random subset of at most M samples per behavior"},
    )
    seed: int = field(default=42, metadata={"help": "seed of the pool subset"})
    batch_size: int = field(default=8, metadata={"type": arg_type(check_positive), "help": "prompts per forward"})
    shard_size: int = field(default=256, metadata={"type": arg_type(check_positive), "help": "rows per Parquet part"})
    cutoff_len: int | None = field(
        default=None,
        metadata={"type": arg_type(check_positive), "metavar": "N", "shown": "no check",
                  "help": "the recipe's cutoff_len: refuse (before any forward) samples whose prompt + longest "
                          "candidate is longer, since training saw them truncated"},
    )

    def __post_init__(self):
        check_pool_size(self.pool_per_behavior)
        if self.cutoff_len is not None:
            check_positive(self.cutoff_len, "cutoff_len")
        check_positive(self.batch_size, "batch_size")
        check_positive(self.shard_size, "shard_size")


def default(config_cls, name: str):
    """The declared default of one field (for function signatures that mirror a config)."""
    (f,) = [f for f in fields(config_cls) if f.name == name]
    return f.default


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    """One ``--field-name`` option per dataclass field, default and help taken from the field."""
    for f in fields(config_cls):
        if f.default is MISSING:
            raise TypeError(f"{config_cls.__name__}.{f.name} needs a default to become an option")
        meta = f.metadata
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"default": f.default, "dest": f.name}
        kwargs["type"] = meta.get("type", type(f.default) if f.default is not None else str)
        for key in ("choices", "metavar"):
            if key in meta:
                kwargs[key] = meta[key]
        kwargs["help"] = f"{meta.get('help', '')} (default {meta.get('shown', f.default)})".strip()
        parser.add_argument(flag, **kwargs)


def config_from_args(config_cls, args: argparse.Namespace):
    return config_cls(**{f.name: getattr(args, f.name) for f in fields(config_cls)})
