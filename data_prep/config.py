"""The settings of one `prepare` run and their defaults: the single declaration of each default.

`python -m data_prep prepare` builds its options from these fields (flag, parser, help and default all come
from here), and the Makefile's documented defaults are these values. The defaults are the paper's: history
L = 20 (4.1.1), 200 000 / 50 000 / 50 000 train / valid / test samples (4.1.1), 500 protocol-2 samples per
behavior (4.1.2), anchors above 1 % of the training samples (2.2), head above 5 % (4.1.2), eps = 5 %
auxiliary conversations (3.2, Table 5), seed 42.

Scarce test samples: protocol 1 (TEST_CAP) and protocol 2 (P2_PER_BEHAVIOR x behaviors) draw from
the same N test-user samples. When N < TEST_CAP + P2_PER_BEHAVIOR x behaviors, protocol 1 gives way to
protocol 2 but keeps at least half: test_p1 = min(TEST_CAP, max(N - P2_PER_BEHAVIOR x behaviors, ceil(N/2)))
(data_prep.sampling.samples.protocol1_size), so protocol 2 is never empty; with ample data the caps act as given.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cli import check_positive
from data_prep.encoding.table import CANONICAL, SCHEMA_COLUMNS
from data_prep.errors import PrepareError
from data_prep.reading.time_formats import check_time_format
from data_prep.reading.time_rules import BAD_SHARE
from data_prep.rendering import prompts
from data_prep.synthetic.generator import (
    DEFAULT_CHUNK_USERS,
    DEFAULT_DAYS,
    DEFAULT_EVENTS_PER_DAY,
    DEFAULT_START,
    DEFAULT_USERS,
    check_sizes,
)

FORMATS = ("csv", "jsonl", "parquet")
RAY_BUCKETS = 16   # the buckets of a Ray run that names none: tasks enough to spread over a small cluster

_COLUMN_ALIASES = {"user": "user", "user_id": "user", "time": "time", "timestamp": "time",
                   "place": "place", "behavior": "behavior", "behaviour": "behavior", "label": "behavior"}


def parse_columns_option(text: str) -> dict[str, str]:
    """``"user=uid,time=ts,place=loc,behavior=act"`` -> ``{"user": "uid", ...}`` (any subset of keys)."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise PrepareError(f"--columns: '{item}' is not of the form key=column")
        if key not in _COLUMN_ALIASES:
            raise PrepareError(f"--columns: unknown key '{key}' (expected one of {', '.join(CANONICAL)})")
        canonical = _COLUMN_ALIASES[key]
        if canonical in mapping:
            raise PrepareError(f"--columns: '{canonical}' is given twice")
        mapping[canonical] = value
    if not mapping:
        raise PrepareError("--columns: empty mapping")
    return mapping


def resolve_columns(columns: Mapping[str, str] | None, distinct: bool = False) -> dict[str, str]:
    """Canonical name -> the file's column name, schema names for the fields not mapped.

    Two fields reading one column is an error when it would put the label into the prompt (place and
    behavior, ``--columns place=behavior``) or parse one column as both a time and text; with
    ``distinct`` (the prepare command line) any shared column is. (Reading the user column as the behavior
    is allowed to library callers: serving reads next-event files, which have no behavior, that way.)
    """
    resolved = dict(SCHEMA_COLUMNS)
    for key, value in (columns or {}).items():
        if key not in _COLUMN_ALIASES:
            raise PrepareError(f"columns: unknown key '{key}' (expected one of {', '.join(CANONICAL)})")
        resolved[_COLUMN_ALIASES[key]] = value
    by_column: dict[str, list[str]] = {}
    for field_name, column in resolved.items():
        by_column.setdefault(column, []).append(field_name)
    for column, names in by_column.items():
        if len(names) > 1 and (distinct or "time" in names or {"place", "behavior"} <= set(names)):
            raise PrepareError(f"--columns: {' and '.join(names)} would both read column '{column}'; every "
                               f"field needs its own column (map the other one too, e.g. --columns {names[0]}=...)")
    return resolved


def parse_cap(text: str) -> int | None:
    """A sample cap on the command line: an integer, or ``none`` for no cap (all eligible samples)."""
    if text.strip().lower() in ("none", "all", ""):
        return None
    return int(text)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``0.8,0.1,0.1`` -> (0.8, 0.1, 0.1); the three user-split ratios (train, valid, test)."""
    parts = tuple(float(part) for part in text.split(","))
    if len(parts) != 3:
        raise ValueError(f"expected three comma-separated numbers, got {text!r}")
    return parts


def parse_flag(text: str) -> bool:
    """``1``/``0`` (also true/false, yes/no) on the command line."""
    value = text.strip().lower()
    if value not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"expected 1 or 0, got {text!r}")
    return value in ("1", "true", "yes")


def parse_time_format(text: str) -> str | None:
    """A strptime format on the command line (checked by ``PrepareConfig``), or ``none`` / empty for no format."""
    return None if text.strip().lower() in ("none", "") else text


def _option(default, help: str, parse=None, flag: str | None = None, shown: str | None = None,
            make: str | None = None, file: bool = False):
    """A config field that is also a `prepare` command-line option (flag: --name-with-dashes by default; the
    option is made by :func:`cli.add_config`); `make`: the pipeline's variable that sets it (`file`: a file
    the stage reads, hashed by content)."""
    meta = {"help": help, "type": parse or type(default), "flag": flag}
    extra = {"shown": shown, "make": make, "file": file or None}
    return field(default=default, metadata={**meta, **{key: value for key, value in extra.items() if value}})


@dataclass(frozen=True)
class PrepareConfig:
    history_len: int = _option(20, "events of history per sample (L, paper 4.1.1)", make="HISTORY_LEN")
    seed: int = _option(42, "seed of every random step (user split, caps, templates, aux; also the synthetic log)",
                        make="SEED")
    split_ratios: tuple[float, float, float] = _option(
        (0.8, 0.1, 0.1), "train,valid,test shares of users (paper 4.1.1)", parse_ratios)
    train_cap: int | None = _option(200_000, "training samples at most ('none': no cap)", parse_cap, make="TRAIN_CAP")
    valid_cap: int | None = _option(50_000, "validation samples at most ('none': no cap)", parse_cap, make="VALID_CAP")
    test_cap: int | None = _option(
        50_000, "protocol 1 size ('none': no cap); protocol 2 draws from the rest of the test users' samples: "
                "when they cannot fill both, protocol 1 gives way down to half of them (stats.json "
                "protocols.rule)", parse_cap, make="TEST_CAP")
    anchor_cap: int | None = _option(
        None, "at most this many anchor samples (the A-tune set; budget runs); the auxiliary set is eps x this",
        parse_cap, make="ANCHOR_CAP")
    anchor_balance: float = _option(
        0.0, "with ANCHOR_CAP, each anchor's share of the A-tune set is proportional to its training share to the "
             "power 1 - this: 0 keeps the training distribution (paper 3.2), 0.5 the square root, 1 equal shares",
        make="ANCHOR_BALANCE")
    p2_per_behavior: int = _option(500, "protocol 2 samples per behavior (paper 4.1.2)", make="P2_PER_BEHAVIOR")
    anchor_threshold: float = _option(0.01, "anchor = training share above this (paper 2.2)", make="ANCHOR_THRESHOLD")
    head_threshold: float = _option(0.05, "head group = training share above this (paper 4.1.2)",
                                    make="HEAD_THRESHOLD")
    tail_threshold: float = _option(0.01, "tail group = training share below this (paper 4.1.2)")
    aux_path: str | None = _option(
        None, "JSON/JSONL of general conversations: ShareGPT, OpenAI messages or Alpaca (none: the shipped set)",
        str, flag="--aux", make="AUX", file=True)
    eps: float = _option(0.05, "auxiliary conversations per anchor sample (paper 3.2, Table 5)", make="EPS")
    aux_max_length_ratio: float = _option(
        1.5, "drop conversations longer than this x the median behavior prompt (characters)")
    aux_repeat: bool = _option(
        False, "1: draw auxiliary conversations with replacement up to eps x |anchor samples| when the set is "
               "smaller (counted as repeats in stats.json aux)", parse_flag, make="AUX_REPEAT")
    system_prompt: str = _option(prompts.SYSTEM_PROMPT, "system prompt of every sample (paper 3.1.1)",
                                 shown="the shipped prompt")
    time_format: str | None = _option(
        None, "strptime format of the --input file's timestamps, as pandas' format= (docs/data-preparation.md: "
              "TIME_FORMAT); none: ISO-8601 or epoch seconds", parse_time_format, make="TIME_FORMAT")
    allow_bad_timestamps: bool = _option(
        False, "1: drop the rows whose timestamp does not read even when they are more than "
               f"{BAD_SHARE * 100:g} percent of a file's rows (counted as bad_timestamp); 0: such a file stops "
               "prepare", parse_flag, make="ALLOW_BAD_TIMESTAMPS")

    def __post_init__(self):
        if self.history_len < 1:
            raise PrepareError(f"history-len must be >= 1, got {self.history_len}")
        for name in ("train_cap", "valid_cap", "test_cap", "anchor_cap"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PrepareError(f"{name.replace('_', '-')} must be >= 1 (or 'none' for no cap), got {value}")
        if self.p2_per_behavior < 0:
            raise PrepareError(f"p2-per-behavior must be >= 0, got {self.p2_per_behavior}")
        if len(self.split_ratios) != 3 or min(self.split_ratios) <= 0:
            raise PrepareError(f"split ratios must be three positive numbers, got {self.split_ratios}")
        if not 0 <= self.tail_threshold <= self.head_threshold <= 1:
            raise PrepareError(f"need 0 <= tail threshold ({self.tail_threshold}) <= head threshold "
                               f"({self.head_threshold}) <= 1")
        if not 0 <= self.anchor_threshold < 1:
            raise PrepareError(f"anchor threshold must be in [0, 1), got {self.anchor_threshold}")
        if not 0 <= self.anchor_balance <= 1:
            raise PrepareError(f"anchor-balance must be in [0, 1], got {self.anchor_balance}")
        if self.anchor_balance and self.anchor_cap is None:
            raise PrepareError("anchor-balance needs anchor-cap (the size of the rebalanced A-tune set)")
        if self.eps < 0:
            raise PrepareError(f"eps must be >= 0, got {self.eps}")
        if self.aux_max_length_ratio <= 0:
            raise PrepareError(f"aux max length ratio must be > 0, got {self.aux_max_length_ratio}")
        if self.time_format is not None:
            check_time_format(self.time_format)


@dataclass(frozen=True)
class SourceConfig:
    """The event log `prepare` reads: --input, --foursquare, or (neither) the synthetic log (``--synthetic``)."""
    input: str | None = field(default=None, metadata={
        "make": "INPUT", "shown": "", "help": "event log (user_id, timestamp, place, behavior): a CSV, JSONL or "
                                             "Parquet file, or a directory (hive partitions too), glob or "
                                             "object-store URI of them"})
    foursquare: str | None = field(default=None, metadata={
        "make": "FOURSQUARE", "shown": "",
        "help": "Foursquare TSMC2014 check-in file (tab separated, original layout), instead of an event log"})


@dataclass(frozen=True)
class ReaderConfig:
    """How an event file is read: the --input log's format, columns and time zone; the label map for --foursquare
    too."""
    format: str | None = field(default=None, metadata={
        "choices": FORMATS, "make": "FORMAT", "help": "input format (none: by suffix)"})
    columns: str | None = _option(None, "column mapping, e.g. user=uid,time=ts,place=loc,behavior=label", str,
                                  make="COLUMNS")
    tz: str | None = _option(None, "convert timestamps that name their instant (Z, offsets, epoch seconds) to this "
                                   "zone's local time, e.g. Asia/Shanghai or +08:00 (naive times are already local)",
                             str, make="TIMEZONE")
    label_map: str | None = _option(None, "JSON or CSV file merging (or renaming) raw labels into categories", str,
                                    make="LABEL_MAP", file=True)

    def __post_init__(self):
        if self.format is not None and self.format not in FORMATS:
            raise PrepareError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.columns is not None:
            resolve_columns(parse_columns_option(self.columns), distinct=True)   # prepare needs four columns


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded synthetic event log (``prepare --synthetic``); its seed is PrepareConfig's."""
    users: int = _option(DEFAULT_USERS, "synthetic: number of users", make="USERS")
    days: int = _option(DEFAULT_DAYS, "synthetic: number of days", make="DAYS")
    behaviors: str | None = _option(None, "synthetic: comma-separated subset of behaviors (demo profile)", str,
                                    make="BEHAVIORS")

    def __post_init__(self):
        check_sizes(self.users, self.days, DEFAULT_EVENTS_PER_DAY)

    @property
    def behavior_list(self) -> list[str] | None:
        return [b.strip() for b in self.behaviors.split(",") if b.strip()] if self.behaviors else None


@dataclass(frozen=True)
class SyntheticLogConfig(SyntheticConfig):
    """`python -m data_prep synthetic`: the log written to a file, the same log as ``prepare --synthetic`` reads
    at the same seed."""
    seed: int = _option(PrepareConfig.seed, "seed of the log")
    events_per_day: float = _option(DEFAULT_EVENTS_PER_DAY, "events per user and day")
    start: str = _option(DEFAULT_START, "first day (ISO date)")
    chunk_users: int = _option(DEFAULT_CHUNK_USERS, "users generated and written at once")

    def __post_init__(self):
        check_sizes(self.users, self.days, self.events_per_day)
        check_positive(self.chunk_users, "chunk users")


@dataclass(frozen=True)
class ScaleConfig:
    """Where and how `prepare` runs. Never changes a written byte, so it is not part of stats.json's config."""
    engine: str = _option("local", "local: this machine; ray: Ray tasks on RAY_ADDRESS's cluster, or a local "
                                   "instance when it is unset (always out of core)", make="ENGINE")
    buckets: int = _option(0, "0: in memory; N: out of core, events partitioned by user into N buckets on disk "
                              f"(peak memory ~ one bucket); with --engine ray, 0 means {RAY_BUCKETS}", make="BUCKETS")

    def __post_init__(self):
        if self.engine not in ("local", "ray"):
            raise PrepareError(f"engine must be local or ray, got '{self.engine}'")
        if self.buckets < 0:
            raise PrepareError(f"buckets must be >= 0, got {self.buckets}")

    @property
    def n_buckets(self) -> int:
        """Buckets of the out-of-core path (0: the in-memory path)."""
        return self.buckets or (RAY_BUCKETS if self.engine == "ray" else 0)
