"""The one declaration of every scoring default (paper 3.3 and 4.1): ``python -m scoring score`` takes its options,
defaults and help from ``ScoreConfig`` (:func:`cli.add_config`), and the Python entry points their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from cli import check_positive, checked
from data_prep.config import PrepareConfig


def check_pool_size(value):
    """Scoring pool per behavior: a positive integer, or None / "all" for every sample."""
    if value is None or value == "all":
        return None
    return check_positive(value, "pool size per behavior")


def cutoff_len_field():
    """The recipe's cutoff_len, a setting of every command that scores prepared prompts (score, evaluation's
    predict, serving): declared here once, checked by :func:`check_cutoff_len`."""
    return field(default=None, metadata={
        "type": checked(check_positive), "metavar": "N", "shown": "no check",
        "help": "the recipe's cutoff_len: refuse (before any forward) samples whose prompt + longest candidate is "
                "longer, since training saw them truncated"})


def check_cutoff_len(value) -> None:
    if value is not None:
        check_positive(value, "cutoff_len")


def _parse_pool(text: str):
    return None if text == "all" else int(text)


@dataclass(frozen=True)
class ScoreConfig:
    """pi_ref scoring of the pool (Algorithm 1 lines 12-14)."""

    dataset: str = field(default="train_all", metadata={"help": "name in dataset_info.json or its file stem"})
    pool_per_behavior: int | None = field(
        default=None,
        metadata={"type": checked(check_pool_size, _parse_pool), "metavar": "M|all", "shown": "all", "make": "POOL",
                  "help": "score a seeded random subset of at most M samples per behavior"},
    )
    seed: int = field(default=PrepareConfig.seed, metadata={"help": "seed of the pool subset"})
    batch_size: int = field(default=8, metadata={"type": checked(check_positive), "help": "prompts per forward"})
    shard_size: int = field(default=256, metadata={"type": checked(check_positive), "help": "rows per Parquet part"})
    cutoff_len: int | None = cutoff_len_field()

    def __post_init__(self):
        check_pool_size(self.pool_per_behavior)
        check_cutoff_len(self.cutoff_len)
        check_positive(self.batch_size, "batch_size")
        check_positive(self.shard_size, "shard_size")
