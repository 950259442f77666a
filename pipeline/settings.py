"""Every run setting, declared once: its Make name, its default and what it means.

`make <target> NAME=value` puts NAME into the environment of the command it runs (GNU make does this for
command-line variables), `python -m pipeline <target> NAME=value` takes it as an argument; both end up in
:class:`Settings`. A default that belongs to a stage's own settings (prepare's caps and thresholds,
selection's F and lambda, evaluation's batch size, serving's TOP_K and PORT) is not repeated here: it is the
default of a field of that stage's settings dataclass (`DEFAULT_FROM`), the one declaration that the stage's
command line reads too. The stages pass a variable as the option of the field it sets (`STAGE_OPTIONS`): the
flag comes from the field, and the value is checked by building the dataclass before anything runs.
`make help` prints the table with the resolved defaults.
"""
from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from cli import UsageError, field_default, flag_of
from data_prep.config import PrepareConfig, ScaleConfig, SyntheticConfig
from data_prep.reading.time_rules import BAD_SHARE
from evaluation.config import PredictConfig
from scoring.config import ScoreConfig
from selection.config import SelectConfig
from serving.config import PredictFilesConfig, PredictionConfig, ServeConfig

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Var:
    name: str
    default: str | None        # None: empty (unset), or the stage settings field's default named in DEFAULT_FROM
    doc: str
    group: str


def _v(group: str, rows: list[tuple[str, str | None, str]]) -> list[Var]:
    return [Var(name, default, doc, group) for name, default, doc in rows]


VARIABLES: list[Var] = [
    *_v("run layout", [
        ("RUN", "default", "run name: everything goes under runs/<RUN>/"),
        ("RUN_DIR", None, "run directory (default runs/<RUN>); put it on a shared filesystem for several nodes"),
        ("DATA_DIR", None, "prepared dataset_dir (default <RUN_DIR>/data)"),
        ("SEED", None, "seed of prepare, selection and the synthetic generator"),
    ]),
    *_v("prepare", [
        ("INPUT", None, "event log: CSV, JSONL or Parquet (user_id, timestamp, place, behavior)"),
        ("FOURSQUARE", None, "Foursquare TSMC2014 check-in file (instead of INPUT)"),
        ("FORMAT", None, "csv | jsonl | parquet (default: by suffix)"),
        ("COLUMNS", None, "column map, e.g. user=uid,time=ts,place=loc,behavior=act"),
        ("LABEL_MAP", None, "JSON or two-column CSV merging raw labels into categories"),
        ("TIMEZONE", None, "IANA zone or +HH:MM for epoch seconds and Z timestamps"),
        ("TIME_FORMAT", None, "strptime format of INPUT's timestamps, e.g. %d/%m/%Y %H:%M (default: ISO-8601 or "
                              "epoch seconds)"),
        ("ALLOW_BAD_TIMESTAMPS", None, "1: drop the rows whose timestamp does not read even when they are more "
                                       f"than {BAD_SHARE * 100:g} % of a file (prepare and predict stop otherwise)"),
        ("ENGINE", None, "local | ray: where prepare runs (ray: RAY_ADDRESS's cluster or a local instance); "
                         "the files are the same"),
        ("BUCKETS", None, "prepare INPUT out of core in N buckets on disk (default 0: in memory); the files are "
                          "the same"),
        ("USERS", None, "synthetic default: users"),
        ("DAYS", None, "synthetic default: days"),
        ("BEHAVIORS", None, "synthetic default: comma-separated subset of behaviors"),
        ("HISTORY_LEN", None, "L, events of history per sample"),
        ("TRAIN_CAP", None, "seeded training samples (train_all)"),
        ("VALID_CAP", None, "seeded validation samples"),
        ("TEST_CAP", None, "protocol 1 samples"),
        ("ANCHOR_CAP", None, "at most this many A-tune samples (budget runs)"),
        ("P2_PER_BEHAVIOR", None, "protocol 2 samples per behavior"),
        ("ANCHOR_THRESHOLD", None, "anchor behaviors: training frequency above this"),
        ("HEAD_THRESHOLD", None, "head behaviors (metrics): training frequency above this"),
        ("EPS", None, "auxiliary conversations per anchor sample (eps)"),
        ("AUX", None, "ShareGPT file of auxiliary conversations (default: the shipped set)"),
        ("AUX_REPEAT", None, "1: repeat auxiliary conversations up to eps x anchor samples when AUX has fewer"),
        ("PREPARE_ARGS", None, "extra flags for python -m data_prep prepare"),
        ("SKIP_TOKEN_CHECK", None, "1: do not refuse prepared samples longer than the recipes' cutoff_len"),
    ]),
    *_v("tuning", [
        ("MODEL", "smollm2-135m-instruct", "recipe folder recipes/<MODEL>/"),
        ("RECIPES", str(ROOT / "recipes"), "folder holding the recipe folders"),
        ("BASE_MODEL", None, "base weights (default: the recipe's model_name_or_path)"),
        ("NPROC", "1", "processes (GPUs) per node"),
        ("NNODES", "1", "nodes"),
        ("NODE_RANK", "0", "this node's rank"),
        ("MASTER_ADDR", None, "rank-0 node address (several nodes)"),
        ("MASTER_PORT", None, "rank-0 node port (several nodes)"),
        ("DEEPSPEED", None, "z2 | z3 | none (default: the recipe's deepspeed key)"),
        ("CPU_BF16", None, "without a GPU: 1 trains, scores and evaluates in bf16, 0 in fp32 (default: bf16 when the "
                           "CPU has avx512_bf16 or amx_bf16); a stage parameter"),
        ("ARGS", None, "key=value overrides for every llamafactory-cli train call"),
        ("ATUNE_ARGS", None, "key=value overrides for A-tune only"),
        ("BTUNE_ARGS", None, "key=value overrides for B-tune only"),
        ("ATUNE_RECIPE", "atune_lora_sft", "A-tune recipe file (ablations change it)"),
        ("BTUNE_RECIPE", "btune_lora_dpo", "B-tune recipe file (ablations change it)"),
        ("SCORE_NPROC", None, "scoring ranks (default NPROC)"),
        ("POOL", None, "pool per behavior scored by pi_ref: M or all"),
        ("F", None, "samples selected per behavior"),
        ("SELECT_MODE", None, "dds | uniform | topf"),
        ("EQ3", None, "text | literal reading of Eq. 3"),
        ("LAMBDA", None, "lambda of Eq. 3"),
    ]),
    *_v("evaluation", [
        ("EVAL_NAME", None, "eval-model: name of the evaluated model"),
        ("EVAL_MODEL", None, "eval-model: model directory"),
        ("EVAL_ADAPTER", None, "eval-model: adapter directory on top of EVAL_MODEL"),
        ("EVAL_GENERATE", None, "1: free generation parsed to a candidate instead of constrained scoring"),
        ("EVAL_BATCH", None, "prompts per scorer batch"),
        ("EVAL_NPROC", None, "evaluation ranks (default NPROC)"),
        ("EVAL_ARGS", None, "extra flags for python -m evaluation predict (e.g. --device cuda:0)"),
        ("CALIB_SAMPLES", None, "validation samples (seeded by SEED) the temperature is fitted on; 0: none"),
        ("PAPER_TABLE", None, "behavior | app | foursquare: the paper's rows beside ours"),
        ("EPS_SWEEP", "0 0.025 0.05 0.1 0.2", "sweep-eps values (Table 5)"),
        ("ANCHOR_SWEEP", "0.005 0.01 0.02", "sweep-anchor values (Table 6)"),
        ("F_SWEEP", "1 2 5 10 20 50", "sweep-f: B-tune samples per behavior, each at most POOL (Fig. 3b)"),
        ("AUX_SWEEP", None, "sweep-aux: auxiliary conversation files, one run each at the same EPS (Table 7)"),
        ("RUNS", None, "compare-runs: run names (beside RUN_DIR) or run directories, e.g. run-1.5b run-8b (Fig. 3a)"),
        ("SEEDS", "1 2 3 4 5", "repeats: seeds"),
    ]),
    *_v("predict and serve", [
        ("EVENTS", None, "predict: recent events of the users (prepare's schema; COLUMNS, LABEL_MAP, TIMEZONE, "
                   "TIME_FORMAT apply)"),
        ("NEXT", None, "predict: one row per user with the context to predict: user_id, timestamp, place"),
        ("OUT", None, "predict: output JSONL (default <RUN_DIR>/predictions.jsonl)"),
        ("TOP_K", None, "behaviors per prediction, best first"),
        ("PREDICT_NPROC", None, "predict: ranks per node (torchrun; default NPROC; NNODES nodes as for training)"),
        ("PREDICT_BUCKETS", None, "predict: users hashed into this many resumable parts (<OUT>.parts/)"),
        ("HOST", None, "serve: address to listen on"),
        ("PORT", None, "serve: port (0 picks a free one)"),
        ("GRACE_S", None, "serve: on SIGTERM, seconds the accepted requests have to finish"),
        ("LOG_FORMAT", None, "serve: text | json (one JSON object per log line)"),
        ("SERVE_ARGS", None, "extra flags for python -m serving predict|serve (e.g. --instruction-template mean)"),
    ]),
    *_v("sasrec", [
        ("SIZES", "1000 10000 100000 200000", "sample-efficiency: training windows per SASRec run (Fig. 4)"),
        ("SASREC_ARGS", None, "extra flags and KEY=VALUE config overrides for python -m sasrec (e.g. max_epochs=10)"),
    ]),
    *_v("demo", [
        ("SMOLLM2_DIR", str(ROOT / ".cache" / "smollm2-135m-instruct"), "SmolLM2-135M converted from the wheel"),
        ("DEMO_PROFILE", str(ROOT / "recipes" / "smollm2-135m-instruct" / "demo.env"), "the demo's variables"),
        ("DEMO_ARGS", None, "NAME=value overrides of the demo profile"),
    ]),
]
BY_NAME = {v.name: v for v in VARIABLES}

# Variables whose default is a stage's settings field: NAME -> (settings dataclass, field).
DEFAULT_FROM = {
    "SEED": (PrepareConfig, "seed"),
    "USERS": (SyntheticConfig, "users"),
    "DAYS": (SyntheticConfig, "days"),
    "HISTORY_LEN": (PrepareConfig, "history_len"),
    "TRAIN_CAP": (PrepareConfig, "train_cap"),
    "VALID_CAP": (PrepareConfig, "valid_cap"),
    "TEST_CAP": (PrepareConfig, "test_cap"),
    "P2_PER_BEHAVIOR": (PrepareConfig, "p2_per_behavior"),
    "ANCHOR_THRESHOLD": (PrepareConfig, "anchor_threshold"),
    "HEAD_THRESHOLD": (PrepareConfig, "head_threshold"),
    "EPS": (PrepareConfig, "eps"),
    "POOL": (ScoreConfig, "pool_per_behavior"),
    "F": (SelectConfig, "F"),
    "SELECT_MODE": (SelectConfig, "mode"),
    "EQ3": (SelectConfig, "eq3"),
    "LAMBDA": (SelectConfig, "lam"),
    "EVAL_BATCH": (PredictConfig, "batch_size"),
    "CALIB_SAMPLES": (PredictConfig, "calib_samples"),
    "TOP_K": (PredictionConfig, "top_k"),
    "PREDICT_BUCKETS": (PredictFilesConfig, "buckets"),
    "HOST": (ServeConfig, "host"),
    "PORT": (ServeConfig, "port"),
    "GRACE_S": (ServeConfig, "grace_s"),
    "LOG_FORMAT": (ServeConfig, "log_format"),
}
# The options a stage's command takes from variables: stage -> (settings dataclass, {NAME: field}), in the order
# they are passed. A variable is passed only when set (a stage default always is).
STAGE_OPTIONS = {
    "prepare": (PrepareConfig, {"HISTORY_LEN": "history_len", "SEED": "seed", "TRAIN_CAP": "train_cap",
                                "VALID_CAP": "valid_cap", "TEST_CAP": "test_cap", "ANCHOR_CAP": "anchor_cap",
                                "P2_PER_BEHAVIOR": "p2_per_behavior", "ANCHOR_THRESHOLD": "anchor_threshold",
                                "HEAD_THRESHOLD": "head_threshold", "EPS": "eps", "AUX_REPEAT": "aux_repeat"}),
    "prepare-input": (PrepareConfig, {"TIME_FORMAT": "time_format", "ALLOW_BAD_TIMESTAMPS": "allow_bad_timestamps"}),
    "prepare-aux": (PrepareConfig, {"AUX": "aux_path"}),
    "synthetic": (SyntheticConfig, {"USERS": "users", "DAYS": "days", "BEHAVIORS": "behaviors"}),
    "scale": (ScaleConfig, {"ENGINE": "engine", "BUCKETS": "buckets"}),
    "score": (ScoreConfig, {"POOL": "pool_per_behavior"}),
    "select": (SelectConfig, {"F": "F", "SELECT_MODE": "mode", "LAMBDA": "lam", "EQ3": "eq3", "SEED": "seed"}),
    "eval": (PredictConfig, {"EVAL_BATCH": "batch_size", "CALIB_SAMPLES": "calib_samples", "SEED": "calib_seed"}),
    "prediction": (PredictionConfig, {"TOP_K": "top_k"}),
    "predict": (PredictFilesConfig, {"PREDICT_BUCKETS": "buckets"}),
    "serve": (ServeConfig, {"HOST": "host", "PORT": "port", "GRACE_S": "grace_s", "LOG_FORMAT": "log_format"}),
}


def _as_text(value: object) -> str:
    return "" if value is None else str(value)


def default_of(name: str) -> str:
    """The resolved default of a variable as text ('' when unset)."""
    if name in DEFAULT_FROM:
        value = field_default(*DEFAULT_FROM[name])
        if name == "POOL" and value is None:
            return "all"
        return _as_text(value)
    return BY_NAME[name].default or ""


def _shell_value(name: str, value: str) -> bool:
    """An environment value that the shell, not the user, set: terminals export COLUMNS as their width (a
    number), while a column map always holds '=' (user=uid,...). Given as NAME=value on the command line, the
    same text reaches prepare and is refused there."""
    return name == "COLUMNS" and "=" not in value


class SettingsError(UsageError):
    """A bad NAME=value: one line for the user."""


class Settings(Mapping[str, str]):
    """Text values of every variable: explicit ones (argv NAME=value, then the environment) over defaults.

    Values stay text, as Make passes them; `int`, `float`, `words` and `flag` convert at the point of use."""

    def __init__(self, explicit: Mapping[str, str] | None = None):
        self.explicit = dict(explicit or {})
        unknown = sorted(set(self.explicit) - set(BY_NAME))
        if unknown:
            raise SettingsError(f"unknown variable(s): {', '.join(unknown)} (make help lists them)")

    @classmethod
    def from_sources(cls, argv_assignments: list[str], environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        explicit = {n: environ[n] for n in BY_NAME if n in environ and not _shell_value(n, environ[n])}
        for item in argv_assignments:
            name, sep, value = item.partition("=")
            if not sep or not name.isidentifier():
                raise SettingsError(f"expected NAME=value, got {item!r}")
            explicit[name] = value
        return cls(explicit)

    def with_(self, **overrides: str) -> Settings:
        """A copy with some variables set (sweeps, repeats, ablations, the demo)."""
        return Settings({**self.explicit, **{k: str(v) for k, v in overrides.items()}})

    def __getitem__(self, name: str) -> str:
        if name not in BY_NAME:
            raise KeyError(name)
        if name in self.explicit:
            return self.explicit[name]
        return default_of(name)

    def __iter__(self):
        return iter(BY_NAME)

    def __len__(self) -> int:
        return len(BY_NAME)

    def is_set(self, name: str) -> bool:
        return self[name] != ""

    def int(self, name: str) -> int:
        try:
            return int(self[name])
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {self[name]!r}") from None

    def words(self, name: str) -> list[str]:
        """Shell-like words (ARGS and friends are split the way the old Make recipes' shell split them)."""
        try:
            return shlex.split(self[name])
        except ValueError as err:
            raise SettingsError(f"{name}: {err}: {self[name]!r}") from None

    def flag(self, name: str) -> bool:
        return self[name] not in ("", "0", "false", "no")

    def options(self, stage: str) -> list[str]:
        """[flag, value, ...] of the variables that set an option of `stage` (STAGE_OPTIONS), for those with a
        value, each value as given. The stage's settings dataclass is built from them first, so a bad value stops
        here with its variable's name, before anything runs."""
        settings, names = STAGE_OPTIONS[stage]
        by_field = {f.name: f for f in fields(settings)}
        given = {name: self[name] for name in names if self[name] != ""}
        values = {}
        for name, text in given.items():
            f = by_field[names[name]]
            default = field_default(settings, f.name)
            parse = f.metadata.get("type") or (str if default is None else type(default))
            try:
                values[f.name] = parse(text)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
                raise SettingsError(f"{name}={text!r}: {err}") from None
        try:
            settings(**values)
        except ValueError as err:
            raise SettingsError(f"{', '.join(given)}: {err}") from None
        return [word for name, text in given.items() for word in (flag_of(by_field[names[name]]), text)]


def option_flag(stage: str, name: str) -> str:
    """The flag of the option that variable `name` sets in `stage`'s command."""
    settings, names = STAGE_OPTIONS[stage]
    (f,) = [f for f in fields(settings) if f.name == names[name]]
    return flag_of(f)


def help_text() -> str:
    lines, group = [], None
    for var in VARIABLES:
        if var.group != group:
            group = var.group
            lines.append(f"\n{group}:")
        default = default_of(var.name)
        lines.append(f"  {var.name:<18} {var.doc}" + (f" [default: {default}]" if default else ""))
    return "\n".join(lines).lstrip("\n")


def markdown_table() -> str:
    """`make help` as a Markdown table (docs/pipeline.md holds it); the repository's folder is written <repo>."""
    rows = ["| variable | default | what | the default's settings field |", "| --- | --- | --- | --- |"]
    for var in VARIABLES:
        default = default_of(var.name).replace(str(ROOT), "<repo>")
        source = DEFAULT_FROM.get(var.name)
        field = f"`{source[0].__name__}.{source[1]}`" if source else ""
        doc = var.doc.replace("|", "\\|").replace("<", "&lt;")   # a table cell: no column break, no HTML tag
        rows.append(f"| `{var.name}` | {f'`{default}`' if default else ''} | {doc} | {field} |")
    return "\n".join(rows)
