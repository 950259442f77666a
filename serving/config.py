"""The settings of `python -m serving predict|serve|template-eval`, each default declared once, here (the
scorer's batch size is scoring's; the event reader's options are prepare's, :func:`prepare_option`): the command
line (:func:`cli.add_config`), the HTTP app's :class:`serving.app.AppConfig`, the pipeline's TOP_K,
PREDICT_BUCKETS, HOST and PORT defaults, the options `make predict` passes and docs/serving.md take them from these
fields."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from cli import check_positive, field_default, positive_int
from data_prep.config import PrepareConfig, ReaderConfig, parse_columns_option, parse_flag, parse_time_format
from data_prep.reading.time_formats import check_time_format
from data_prep.reading.time_rules import BAD_SHARE
from scoring.config import ScoreConfig, check_cutoff_len, cutoff_len_field
from serving.logs import LOG_FORMATS
from serving.prompting import DEFAULT_MODE, MODES

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True)
class ServedModelConfig:
    """How the run's model scores (every command)."""
    batch_size: int = field(default=field_default(ScoreConfig, "batch_size"),
                            metadata={"type": positive_int, "help": "prompts per forward pass"})
    cutoff_len: int | None = cutoff_len_field()

    def __post_init__(self):
        check_positive(self.batch_size, "batch size")
        check_cutoff_len(self.cutoff_len)


@dataclass(frozen=True)
class PredictionConfig:
    """What a prediction holds (predict and serve)."""
    instruction_template: str = field(default=DEFAULT_MODE, metadata={
        "choices": MODES, "help": "a fixed Appendix D template (0-2) or the mean of candidate log-probs over the "
                                  "three"})
    top_k: int = field(default=5, metadata={"type": positive_int, "make": "TOP_K",
                                                 "help": "behaviors per prediction, best first"})

    def __post_init__(self):
        if self.instruction_template not in MODES:
            raise ValueError(f"instruction template must be one of {', '.join(MODES)}, got "
                             f"{self.instruction_template!r}")
        check_positive(self.top_k, "top_k")


def prepare_option(config: type, name: str, help: str, **metadata):
    """prepare's option `name` of `config` (its flag, type and Make name) as serving reads events with it: unset,
    serving reads them as prepare read the run's (its stats.json), so no default is shown."""
    (declared,) = [f for f in fields(config) if f.name == name]
    return field(default=field_default(config, name),
                 metadata={**declared.metadata, "help": help, "shown": "", **metadata})


@dataclass(frozen=True)
class EventLabelsConfig:
    """How the users' events are read (predict and serve): their labels and time zone."""
    label_map: str | None = prepare_option(ReaderConfig, "label_map", "raw label -> behavior (unset: the one "
                                                                      "prepare used, if it exists)")
    tz: str | None = prepare_option(ReaderConfig, "tz", "time zone for Z / epoch timestamps (unset: the one prepare "
                                                        "used)")


@dataclass(frozen=True)
class EventFilesConfig:
    """`predict`: how the --events and --next files are read, as prepare read its --input."""
    columns: str | None = prepare_option(ReaderConfig, "columns", "column mapping as for prepare, e.g. "
                                                                  "user=uid,time=ts,place=loc,behavior=act (unset: "
                                                                  "the one prepare used)")
    time_format: str | None = prepare_option(
        PrepareConfig, "time_format", "strptime format of the timestamps of --events and --next, as for prepare "
                                      "('none': ISO-8601 or epoch seconds; unset: the one prepare used)", type=str)
    allow_bad_timestamps: bool = prepare_option(
        PrepareConfig, "allow_bad_timestamps", "1: drop the --events rows whose timestamp does not read even when "
                                               f"they are more than {BAD_SHARE * 100:g} percent of a file; 0 (unset): "
                                               "such a file stops predict", metavar="0|1")

    def __post_init__(self):
        if self.columns is not None:
            parse_columns_option(self.columns)
        if self.time_format is not None and parse_time_format(self.time_format) is not None:
            check_time_format(self.time_format)


@dataclass(frozen=True)
class PredictFilesConfig:
    """`predict`: how the users are split into resumable parts."""
    buckets: int = field(default=64, metadata={
        "type": positive_int, "make": "PREDICT_BUCKETS",
        "help": "users are split by a hash of user_id into this many resumable parts"})

    def __post_init__(self):
        check_positive(self.buckets, "buckets")


@dataclass(frozen=True)
class ServeConfig:
    """`serve`: the HTTP listener and its request batching."""
    host: str = field(default="127.0.0.1", metadata={"make": "HOST", "help": "address to listen on"})
    port: int = field(default=8000, metadata={"make": "PORT", "help": "0 picks a free port (printed on stdout)"})
    max_batch: int = field(default=32, metadata={
        "type": positive_int, "help": "prompts gathered into one scorer call (1 = no request batching; a 'mean' "
                                      "request counts 3)"})
    max_wait_ms: float = field(default=5.0, metadata={"help": "how long the first request waits for others"})
    max_body_bytes: int = field(default=1 << 20, metadata={"type": positive_int, "help": "larger bodies get 413"})
    log_level: str = field(default="warning", metadata={
        "choices": LOG_LEVELS, "help": "uvicorn's log level; info adds the access log, a line per request with its "
                                       "request id"})
    log_format: str = field(default="text", metadata={
        "choices": LOG_FORMATS, "make": "LOG_FORMAT", "help": "text, or json: each log line one JSON object"})
    grace_s: float = field(default=30.0, metadata={
        "make": "GRACE_S",
        "help": "on SIGTERM, seconds the accepted requests have to finish before they are cancelled"})
    metrics: bool = field(default=True, metadata={
        "type": parse_flag, "metavar": "1|0", "shown": "1",
        "help": "1: GET /metrics in the Prometheus text format; 0: no /metrics, no request metrics"})

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        check_positive(self.max_batch, "max batch")
        check_positive(self.max_body_bytes, "max body bytes")
        if self.max_wait_ms < 0:
            raise ValueError(f"max wait must be >= 0 ms, got {self.max_wait_ms}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if not (self.grace_s > 0 and math.isfinite(self.grace_s)):
            raise ValueError(f"grace time must be a positive number of seconds, got {self.grace_s}")


@dataclass(frozen=True)
class TemplateEvalConfig:
    """`template-eval`: the split measured."""
    dataset: str = field(default="test_p2", metadata={"help": "prepared split to measure on"})
    limit: int | None = field(default=None, metadata={"type": positive_int, "metavar": "N", "shown": "every sample",
                                                      "help": "only the first N samples"})
