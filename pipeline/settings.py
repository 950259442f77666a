"""Every run setting, declared once, as a dataclass field: its Make name, its default, its help and its check.

A stage's options are the fields of its config dataclass that carry a Make name (metadata ``make``):
prepare's (:mod:`data_prep.config`), scoring's, selection's, evaluation's and serving's (`STAGE_CONFIGS` names
the dataclasses, never a field). The variables that belong to no stage (the run layout, the launcher, the
recipes, the sweeps) are the fields of :class:`RunConfig`. `make help`, the table of docs/pipeline.md (`python -m
pipeline.settings` rewrites it) and the options a stage is given (:meth:`Variables.options`) all come from the
fields, so adding an option to a stage is one field with a Make name, and the code that reads it.

`make <target> NAME=value` puts NAME into the environment of the command it runs (GNU make does this for
command-line variables), `python -m pipeline <target> NAME=value` takes it as an argument; both end up in
:class:`Variables`, which checks every value (it builds each config dataclass from them) before anything runs.
"""
from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path

from cli import UsageError, check_positive, field_default, flag_of, shown
from data_prep.config import PrepareConfig, ReaderConfig, ScaleConfig, SourceConfig, SyntheticConfig
from evaluation.config import PredictConfig
from scoring.config import ScoreConfig
from selection.config import SelectConfig
from serving.config import EventFilesConfig, EventLabelsConfig, PredictFilesConfig, PredictionConfig, ServeConfig

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("run layout", "prepare", "tuning", "evaluation", "predict and serve", "sasrec", "demo")
STAGE_CONFIGS = {   # group of make help -> the config dataclasses whose Make-named fields are its variables
    "prepare": (SourceConfig, ReaderConfig, SyntheticConfig, PrepareConfig, ScaleConfig),
    "tuning": (ScoreConfig, SelectConfig),
    "evaluation": (PredictConfig,),
    "predict and serve": (PredictionConfig, EventLabelsConfig, EventFilesConfig, PredictFilesConfig, ServeConfig),
}


class VariableError(UsageError):
    """A bad NAME=value: one line for the user."""


def _words(text: str) -> list[str]:
    """Shell-like words (ARGS and friends are split the way a shell splits them)."""
    return shlex.split(text)


def _positive_int(text: str) -> int:
    try:
        return check_positive(int(text))
    except ValueError:
        raise ValueError("must be a positive integer") from None


def _var(group: str, help: str, default: str = "", check=None):
    """A run-level variable: text, as Make passes it; `check` parses a value (int, shell words) to refuse a bad one
    before anything runs."""
    return field(default=default, metadata={"group": group, "help": help, "check": check})


@dataclass(frozen=True)
class RunConfig:
    """The variables that belong to no stage: where a run lives, what trains it and how it is launched."""
    RUN: str = _var("run layout", "run name: everything goes under runs/<RUN>/", "default")
    RUN_DIR: str = _var("run layout", "run directory (default runs/<RUN>); put it on a shared filesystem for "
                                      "several nodes")
    DATA_DIR: str = _var("run layout", "prepared dataset_dir (default <RUN_DIR>/data)")
    PREPARE_ARGS: str = _var("prepare", "extra flags for python -m data_prep prepare", check=_words)
    SKIP_TOKEN_CHECK: str = _var("prepare", "1: do not refuse prepared samples longer than the recipes' cutoff_len")
    MODEL: str = _var("tuning", "recipe folder recipes/<MODEL>/", "smollm2-135m-instruct")
    RECIPES: str = _var("tuning", "folder holding the recipe folders", str(ROOT / "recipes"))
    BASE_MODEL: str = _var("tuning", "base weights (default: the recipe's model_name_or_path)")
    NPROC: str = _var("tuning", "processes (GPUs) per node", "1", int)
    NNODES: str = _var("tuning", "nodes", "1", int)
    NODE_RANK: str = _var("tuning", "this node's rank", "0", int)
    MASTER_ADDR: str = _var("tuning", "rank-0 node address (several nodes)")
    MASTER_PORT: str = _var("tuning", "rank-0 node port (several nodes)", check=int)
    DEEPSPEED: str = _var("tuning", "z2 | z3 | none (default: the recipe's deepspeed key)")
    CPU_BF16: str = _var("tuning", "without a GPU: 1 trains, scores and evaluates in bf16, 0 in fp32 (default: bf16 "
                                   "when the CPU has avx512_bf16 or amx_bf16); a stage parameter")
    ARGS: str = _var("tuning", "key=value overrides for every llamafactory-cli train call", check=_words)
    ATUNE_ARGS: str = _var("tuning", "key=value overrides for A-tune only", check=_words)
    BTUNE_ARGS: str = _var("tuning", "key=value overrides for B-tune only", check=_words)
    ATUNE_RECIPE: str = _var("tuning", "A-tune recipe file (ablations change it)", "atune_lora_sft")
    BTUNE_RECIPE: str = _var("tuning", "B-tune recipe file (ablations change it)", "btune_lora_dpo")
    BTUNE_ROUNDS: str = _var("tuning", "B-tune rounds: round r > 1 scores the pool again with round r-1's merged "
                                       "model, selects its pairs and trains DPO on it (on-policy); 1 = Algorithm 1",
                             "1", _positive_int)
    SCORE_NPROC: str = _var("tuning", "scoring ranks (default NPROC)", check=int)
    EVAL_NAME: str = _var("evaluation", "eval-model: name of the evaluated model")
    EVAL_MODEL: str = _var("evaluation", "eval-model: model directory")
    EVAL_ADAPTER: str = _var("evaluation", "eval-model: adapter directory on top of EVAL_MODEL")
    EVAL_GENERATE: str = _var("evaluation", "1: free generation parsed to a candidate instead of constrained "
                                            "scoring")
    EVAL_NPROC: str = _var("evaluation", "evaluation ranks (default NPROC)", check=int)
    EVAL_ARGS: str = _var("evaluation", "extra flags for python -m evaluation predict (e.g. --device cuda:0)",
                          check=_words)
    PAPER_TABLE: str = _var("evaluation", "behavior | app | foursquare: the paper's rows beside ours")
    EPS_SWEEP: str = _var("evaluation", "sweep-eps values (Table 5)", "0 0.025 0.05 0.1 0.2", _words)
    ANCHOR_SWEEP: str = _var("evaluation", "sweep-anchor values (Table 6)", "0.005 0.01 0.02", _words)
    F_SWEEP: str = _var("evaluation", "sweep-f: B-tune samples per behavior, each at most POOL (Fig. 3b)",
                        "1 2 5 10 20 50", _words)
    AUX_SWEEP: str = _var("evaluation", "sweep-aux: auxiliary conversation files, one run each at the same EPS "
                                        "(Table 7)", check=_words)
    RUNS: str = _var("evaluation", "compare-runs: run names (beside RUN_DIR) or run directories, e.g. run-1.5b "
                                   "run-8b (Fig. 3a)", check=_words)
    SEEDS: str = _var("evaluation", "repeats: seeds", "1 2 3 4 5", _words)
    EVENTS: str = _var("predict and serve", "predict: recent events of the users (prepare's schema; COLUMNS, "
                                            "LABEL_MAP, TIMEZONE, TIME_FORMAT apply)")
    NEXT: str = _var("predict and serve", "predict: one row per user with the context to predict: user_id, "
                                          "timestamp, place")
    OUT: str = _var("predict and serve", "predict: output JSONL (default <RUN_DIR>/predictions.jsonl)")
    PREDICT_NPROC: str = _var("predict and serve", "predict: ranks per node (torchrun; default NPROC; NNODES nodes "
                                                   "as for training)", check=int)
    SERVE_ARGS: str = _var("predict and serve", "extra flags for python -m serving predict|serve (e.g. "
                                                "--instruction-template mean)", check=_words)
    SIZES: str = _var("sasrec", "sample-efficiency: training windows per SASRec run (Fig. 4)",
                      "1000 10000 100000 200000", _words)
    SASREC_ARGS: str = _var("sasrec", "extra flags and KEY=VALUE config overrides for python -m sasrec (e.g. "
                                      "max_epochs=10)", check=_words)
    SMOLLM2_DIR: str = _var("demo", "SmolLM2-135M converted from the wheel",
                            str(ROOT / ".cache" / "smollm2-135m-instruct"))
    DEMO_PROFILE: str = _var("demo", "the demo's variables",
                             str(ROOT / "recipes" / "smollm2-135m-instruct" / "demo.env"))
    DEMO_ARGS: str = _var("demo", "NAME=value overrides of the demo profile", check=_words)

    def __post_init__(self):
        for f in fields(self):
            value, check = getattr(self, f.name), f.metadata["check"]
            if value and check:
                try:
                    check(value)
                except ValueError as err:
                    raise VariableError(f"{f.name}={value!r}: {err}") from None


@dataclass(frozen=True)
class Var:
    """One variable as make help shows it; `source`: the config field that declares it."""
    name: str
    default: str   # '' when unset
    doc: str
    group: str
    source: tuple[type, str]


def make_fields(config: type) -> list[Field]:
    """The fields of a stage's config dataclass that a pipeline variable sets."""
    return [f for f in fields(config) if f.metadata.get("make")]


def default_text(config: type, f: Field) -> str:
    """A field's default as its variable's text: its ``shown`` form, or '' for None and False (unset)."""
    value = field_default(config, f.name)
    if "shown" in f.metadata:
        return f.metadata["shown"]
    return "" if value is None or value is False else shown(value)


def _variables() -> list[Var]:
    """RunConfig's fields and the Make-named fields of the stages' configs, by group; a name that several
    configs take (SEED) is declared by the first, and its help names the others."""
    found: dict[str, Var] = {}
    for group in GROUPS:
        for f in fields(RunConfig):
            if f.metadata["group"] == group:
                found[f.name] = Var(f.name, f.default, f.metadata["help"], group, (RunConfig, f.name))
        for config in STAGE_CONFIGS.get(group, ()):
            for f in make_fields(config):
                name, first = f.metadata["make"], found.get(f.metadata["make"])
                found[name] = (Var(name, default_text(config, f), f.metadata["help"], group, (config, f.name))
                               if first is None else replace(first, doc=f"{first.doc}; also {config.__name__}."
                                                                         f"{f.name}: {f.metadata['help']}"))
    return list(found.values())


VARIABLES = _variables()
BY_NAME = {v.name: v for v in VARIABLES}


def default_of(name: str) -> str:
    """The default of a variable as text ('' when unset)."""
    return BY_NAME[name].default


def _abs(value: str) -> str:
    return str(Path(value).expanduser().resolve())


def _shell_value(name: str, value: str) -> bool:
    """An environment value that the shell, not the user, set: terminals export COLUMNS as their width (a
    number), while a column map always holds '=' (user=uid,...). Given as NAME=value on the command line, the
    same text is checked as a column map and refused."""
    return name == "COLUMNS" and "=" not in value


class Variables(Mapping[str, str]):
    """Text values of every variable: explicit ones (argv NAME=value, then the environment) over defaults, each
    checked when made (the configs are built from them), before any target runs.

    Values stay text, as Make passes them; `int`, `words` and `flag` convert at the point of use."""

    def __init__(self, explicit: Mapping[str, str] | None = None):
        self.explicit = dict(explicit or {})
        unknown = sorted(set(self.explicit) - set(BY_NAME))
        if unknown:
            raise VariableError(f"unknown variable(s): {', '.join(unknown)} (make help lists them)")
        RunConfig(**{f.name: self[f.name] for f in fields(RunConfig)})
        for configs in STAGE_CONFIGS.values():
            for config in configs:
                self._check(config)

    @classmethod
    def from_sources(cls, argv_assignments: list[str], environ: Mapping[str, str] | None = None) -> Variables:
        environ = os.environ if environ is None else environ
        explicit = {n: environ[n] for n in BY_NAME if n in environ and not _shell_value(n, environ[n])}
        for item in argv_assignments:
            name, sep, value = item.partition("=")
            if not sep or not name.isidentifier():
                raise VariableError(f"expected NAME=value, got {item!r}")
            explicit[name] = value
        return cls(explicit)

    def with_(self, **overrides: str) -> Variables:
        """A copy with some variables set (sweeps, repeats, ablations, the demo)."""
        return Variables({**self.explicit, **{k: str(v) for k, v in overrides.items()}})

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
        return int(self[name])   # RunConfig checked it

    def words(self, name: str) -> list[str]:
        return _words(self[name])   # RunConfig checked it

    def flag(self, name: str) -> bool:
        return self[name] not in ("", "0", "false", "no")

    def _given(self, config: type) -> list[tuple[Field, str]]:
        return [(f, self[f.metadata["make"]]) for f in make_fields(config) if self[f.metadata["make"]] != ""]

    def _check(self, config: type) -> None:
        """Builds `config` from the variables that set its fields, so a bad value stops with its variable's name."""
        values = {}
        for f, text in self._given(config):
            default = field_default(config, f.name)
            parse = f.metadata.get("type") or (str if default is None else type(default))
            try:
                values[f.name] = parse(text)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
                raise VariableError(f"{f.metadata['make']}={text!r}: {err}") from None
        try:
            config(**values)
        except ValueError as err:   # named by the variables given (a default alone is never wrong)
            names = [f.metadata["make"] for f, _ in self._given(config)]
            raise VariableError(f"{', '.join([n for n in names if n in self.explicit] or names)}: {err}") from None

    def options(self, config: type) -> list[str]:
        """[flag, value, ...] of the fields of `config` that a variable with a value sets (a default counts), in
        field order; a file's path made absolute."""
        return [word for f, text in self._given(config)
                for word in (flag_of(f), _abs(text) if f.metadata.get("file") else text)]

    def files(self, config: type) -> list[Path]:
        """The files that the fields of `config` name (hashed by content: inputs of the stage, not parameters)."""
        return [Path(_abs(text)) for f, text in self._given(config) if f.metadata.get("file")]

    def params(self, config: type) -> dict[str, str]:
        """NAME -> value of the variables with a value that set a field of `config`, files left out."""
        return {f.metadata["make"]: text for f, text in self._given(config) if not f.metadata.get("file")}


def help_text() -> str:
    lines, group = [], None
    for var in VARIABLES:
        if var.group != group:
            group = var.group
            lines.append(f"\n{group}:")
        lines.append(f"  {var.name:<20} {var.doc}" + (f" [default: {var.default}]" if var.default else ""))
    return "\n".join(lines).lstrip("\n")


def markdown_table() -> str:
    """`make help` as a Markdown table (docs/pipeline.md holds it); the repository's folder is written <repo>."""
    rows = ["| variable | default | what | declared in |", "| --- | --- | --- | --- |"]
    for var in VARIABLES:
        default = var.default.replace(str(ROOT), "<repo>")
        config, name = var.source
        doc = var.doc.replace("|", "\\|").replace("<", "&lt;")   # a table cell: no column break, no HTML tag
        rows.append(f"| `{var.name}` | {f'`{default}`' if default else ''} | {doc} | `{config.__name__}.{name}` |")
    return "\n".join(rows)


DOCS = ROOT / "docs" / "pipeline.md"
TABLE_START = "<!-- settings table: pipeline.settings.markdown_table() -->\n"
TABLE_END = "<!-- end of settings table -->"


def docs_with_table(text: str) -> str:
    """docs/pipeline.md's text with its variables table made from the code."""
    head, rest = text.split(TABLE_START, 1)
    return f"{head}{TABLE_START}{markdown_table()}\n{TABLE_END}{rest.split(TABLE_END, 1)[1]}"


if __name__ == "__main__":   # python -m pipeline.settings: rewrites the table of docs/pipeline.md
    DOCS.write_text(docs_with_table(DOCS.read_text(encoding="utf-8")), encoding="utf-8")
