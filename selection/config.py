"""The one declaration of every selection default (paper 3.3 and 4.1): ``python -m selection select`` takes its
options, defaults and help from ``SelectConfig`` (:func:`cli.add_config`), and the Python entry points their
defaults (the scoring ones: ``scoring.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cli import check_positive, checked
from scoring.config import ScoreConfig

from .difficulty import DIFFICULTY

MODES = ("dds", "uniform", "topf")  # dds = Algorithm 1; uniform = w/o DDS; topf = w/o KMeans (Table 4)
EQ3_READINGS = tuple(DIFFICULTY)


def parse_share(text: str) -> float | None:
    """A share in [0, 1] from the command line, or None for 'none'."""
    return None if text.strip().lower() == "none" else float(text)


def parse_max_rejected(text: str) -> int | None:
    """MAX_REJECTED from the command line: a positive integer, or None for 'none'."""
    if text.strip().lower() == "none":
        return None
    try:
        return check_positive(int(text), "max-rejected")
    except ValueError:
        raise ValueError(f"max-rejected must be a positive integer or 'none', got {text!r}") from None


def check_F(F) -> int:
    """F, the samples selected per behavior (Algorithm 1 line 20): the one place it is validated."""
    return check_positive(F, "F")


@dataclass(frozen=True)
class SelectConfig:
    """Difficulty (Eq. 2/3) and per-behavior selection (Algorithm 1 lines 19-22)."""

    dataset: str = field(default=ScoreConfig.dataset, metadata={"help": "name in dataset_info.json or its file stem "
                                                                       "(the scored pool's)"})
    F: int = field(default=20, metadata={"type": checked(check_F), "make": "F", "help": "samples per behavior"})
    mode: str = field(
        default="dds",
        metadata={"choices": MODES, "make": "SELECT_MODE",
                  "help": "dds = difficulty-weighted k-means++; uniform = w/o DDS; topf = w/o KMeans"},
    )
    lam: float = field(default=0.5, metadata={"make": "LAMBDA", "help": "lambda of Eq. 3"})
    eq3: str = field(
        default="text",
        metadata={"choices": EQ3_READINGS, "make": "EQ3",
                  "help": "text: D = lam(1-p) + (1-lam)(1-d_conf); literal: Eq. 3 as printed"},
    )
    repeat_share: float | None = field(
        default=None,
        metadata={"type": parse_share, "make": "REPEAT_SHARE",
                  "help": "share of each behavior's F taken from the pool samples whose label repeats the history's "
                          "last behavior, the rest from the others, each part selected by the mode (a part too "
                          "small to fill its share gives way to the other); none: one selection per behavior "
                          "(Algorithm 1)"},
    )
    max_rejected: int | None = field(
        default=None,
        metadata={"type": checked(parse_max_rejected, str), "make": "MAX_REJECTED",
                  "help": "at most this many pairs reject one behavior: past it a pair rejects its most probable "
                          "wrong candidate still under the limit (F keeps each behavior rejected no more often "
                          "than chosen); none: Algorithm 1's rejected answer for every pair"},
    )
    seed: int = field(default=ScoreConfig.seed, metadata={"make": "SEED",
                                                          "help": "seed of k-means++ and of the uniform mode"})

    def __post_init__(self):
        check_F(self.F)
        if self.mode not in MODES:
            raise ValueError(f"unknown selection mode {self.mode!r} (choose from {', '.join(MODES)})")
        if self.eq3 not in EQ3_READINGS:
            raise ValueError(f"unknown Eq. 3 reading {self.eq3!r} (choose from {', '.join(EQ3_READINGS)})")
        if self.repeat_share is not None and not 0.0 <= self.repeat_share <= 1.0:
            raise ValueError(f"repeat-share must be in [0, 1] (or 'none'), got {self.repeat_share}")
        if self.max_rejected is not None:
            check_positive(self.max_rejected, "max-rejected")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
