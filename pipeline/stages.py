"""The stages of Algorithm 1 and the evaluation, each with its inputs, parameters and outputs.

prepare -> A-tune (train, merge = pi_ref, Algorithm 1 lines 3-8) -> score (lines 10-14) -> select (lines
15-29) -> B-tune (DPO from pi_ref, line 30) -> export-final -> eval / report. Each function returns a
:class:`~pipeline.graph.Stage`; `targets.py` chains them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli import UsageError
from data_prep.config import PrepareConfig, ReaderConfig, ScaleConfig, SourceConfig, SyntheticConfig
from data_prep.errors import PrepareError
from data_prep.reading.sources import is_uri, list_inputs
from evaluation.baselines import KINDS as BASELINES
from evaluation.baselines import SYNTHETIC_KINDS
from evaluation.config import PredictConfig
from scoring.config import ScoreConfig
from selection.config import SelectConfig

from . import launch, precision
from .graph import Stage
from .layout import Layout, stamp_of
from .settings import VariableError, Variables


def _abs(value: str) -> str:
    return str(Path(value).expanduser().resolve())


def _input_files(spec: str, fmt: str | None) -> list[Path]:
    """The local files INPUT names (one file, a directory, a glob), whose content decides whether prepare
    reruns. An object-store URI is not read here: its objects are not hashed, so a changed lake under the same
    URI needs `make clean-run` or a new RUN."""
    if is_uri(spec):
        return []
    try:
        return [Path(f.name) for f in list_inputs(spec, fmt)]
    except PrepareError as err:
        raise VariableError(f"INPUT: {err}") from None


def _source(variables: Variables) -> tuple[list[str], list[Path], list[type]]:
    """(prepare's source flags, the files whose content they read, the configs whose options apply to it): the
    SourceConfig field given (INPUT before FOURSQUARE), else the synthetic log."""
    if variables["INPUT"]:
        spec = variables["INPUT"] if is_uri(variables["INPUT"]) else _abs(variables["INPUT"])
        return ["--input", spec], _input_files(spec, variables["FORMAT"] or None), [ReaderConfig]
    if variables["FOURSQUARE"]:
        return ["--foursquare", _abs(variables["FOURSQUARE"])], [Path(_abs(variables["FOURSQUARE"]))], []
    return ["--synthetic"], [], [SyntheticConfig]


def prepare(variables: Variables, layout: Layout) -> Stage:
    source, files, configs = _source(variables)
    configs.append(PrepareConfig)
    args = ["--out", str(layout.data), *source, *(word for config in configs for word in variables.options(config))]
    files += [path for config in configs for path in variables.files(config)]
    # where prepare runs never changes its files: not a stage parameter
    args += [*variables.options(ScaleConfig), *variables.words("PREPARE_ARGS")]
    cmd = launch.python_module("data_prep", "prepare", *args)
    params = {"PREPARE_ARGS": variables["PREPARE_ARGS"]} if variables["PREPARE_ARGS"] else {}
    for config in (SourceConfig, ReaderConfig, SyntheticConfig, PrepareConfig):
        params.update(variables.params(config))
    return Stage("prepare", stamp_of(layout.data), lambda: launch.run(cmd), cmd, inputs=files, params=params,
                 outputs=layout.prepared()[:2])


def model_stamp_inputs(path: str) -> tuple[list[Path], dict]:
    """A local model folder is an input (hashed by content); a hub id is a parameter."""
    return ([Path(path)], {}) if Path(path).exists() else ([], {"model": path})


def base_model(variables: Variables, recipe: launch.Recipe) -> str:
    return _abs(variables["BASE_MODEL"]) if variables["BASE_MODEL"] else recipe.model_path()


def _non_empty_datasets(recipe: launch.Recipe, data: Path, overrides: list[str]) -> list[str]:
    """`dataset=` override without the datasets whose file prepare left empty (LLaMA-Factory stops on an empty
    dataset); [] when all are non-empty."""
    names = recipe.datasets()
    for word in overrides:
        if word.startswith("dataset="):
            names = [n for n in word.split("=", 1)[1].split(",") if n]
    info = json.loads((data / "dataset_info.json").read_text(encoding="utf-8"))
    keep = [n for n in names if n not in info or (data / info[n]["file_name"]).stat().st_size > 0]
    if keep == names:
        return []
    if not keep:
        raise UsageError(f"every dataset of {recipe.path.name} is empty in {data}: {', '.join(names)}")
    print(f"note: {', '.join(sorted(set(names) - set(keep)))} is empty in {data}: training on {','.join(keep)}")
    return [f"dataset={','.join(keep)}"]


def _train(variables: Variables, recipe: launch.Recipe, model: str, data: Path, out: Path, stage_args: list[str],
           extra_inputs: list[Path], name: str) -> Stage:
    model_inputs, model_params = model_stamp_inputs(model)
    overrides = [f"model_name_or_path={model}", f"dataset_dir={data}", f"output_dir={out}",
                 *precision.train_overrides(variables, recipe.values), *stage_args]
    # Locations are not parameters (a moved run stays up to date): the model and data are inputs by content.
    located = ("dataset_dir=", "output_dir=", *(("model_name_or_path=",) if model_inputs else ()))
    # Launcher settings (NPROC, NNODES, DEEPSPEED) are not parameters either: node 0 runs `make select` without
    # the training's NNODES, and that must not retrain. Changing the ranks changes the global batch: say so.
    params = {"overrides": [o for o in overrides if not o.startswith(located)], "ARGS": variables.words("ARGS"),
              **model_params}

    cmd, env = launch.lf_train_command(variables, recipe, overrides), launch.launcher_env(variables, recipe)

    def run():
        fix = _non_empty_datasets(recipe, data, overrides + variables.words("ARGS"))
        if recipe.deepspeed(variables) is not None:
            launch.check_build_locks(variables)
        launch.run(cmd + fix, env)

    inputs = [recipe.path, *model_inputs, *extra_inputs]
    return Stage(name, stamp_of(out), run, cmd, env, inputs=inputs, params=params,
                 outputs=[out / "adapter_config.json"], clean=[out])


def atune_train(variables: Variables, layout: Layout) -> Stage:
    recipe = launch.Recipe(variables, variables["ATUNE_RECIPE"])
    return _train(variables, recipe, base_model(variables, recipe), layout.data, layout.atune,
                  variables.words("ATUNE_ARGS"), layout.prepared(), f"a-tune: train ({recipe.path.stem})")


def _merge(variables: Variables, model: str, adapter: Path, out: Path, name: str) -> Stage:
    recipe = launch.Recipe(variables, "merge_lora")
    model_inputs, model_params = model_stamp_inputs(model)

    cmd = launch.lf_export_command(recipe, [f"model_name_or_path={model}", f"adapter_name_or_path={adapter}",
                                            f"export_dir={out}"])

    def run():
        shutil.rmtree(out, ignore_errors=True)
        launch.run(cmd)

    return Stage(name, stamp_of(out), run, cmd, inputs=[recipe.path, *model_inputs, adapter], params=model_params,
                 outputs=[out / "config.json"], clean=[out])


def merge(variables: Variables, layout: Layout) -> Stage:
    """pi_ref = base + A-tune adapter (Algorithm 1 line 7); the best checkpoint is what output_dir holds."""
    model = base_model(variables, launch.Recipe(variables, variables["ATUNE_RECIPE"]))
    return _merge(variables, model, layout.atune, layout.pi_ref, "a-tune: merge")


def template(variables: Variables) -> str:
    return str(launch.Recipe(variables, "atune_lora_sft").get("template"))


def cutoff_len(variables: Variables) -> int:
    """The tokens every sample must fit: the smaller cutoff_len of the A-tune and B-tune recipes."""
    recipes = (variables["ATUNE_RECIPE"], variables["BTUNE_RECIPE"])
    values = [launch.Recipe(variables, name).get("cutoff_len") for name in recipes]
    return min(int(v) for v in values if v)


def token_check(variables: Variables, layout: Layout) -> Stage:
    """Every prepared sample, with its longest candidate, fits the recipes' cutoff_len under the
    recipe's tokenizer and chat template; otherwise stop before anything trains (SKIP_TOKEN_CHECK=1 skips).
    The lengths go into token_check/token_lengths.json; no later stage reads them, so switching the check on
    retrains nothing."""
    model = base_model(variables, launch.Recipe(variables, variables["ATUNE_RECIPE"]))
    out = layout.token_check / "token_lengths.json"
    tpl, cutoff = template(variables), str(cutoff_len(variables))
    cmd = launch.python_module("scoring", "token-lengths", "--dataset-dir", str(layout.data), "--model", model,
                               "--template", tpl, "--cutoff-len", cutoff, "--out", str(out))
    model_inputs, model_params = model_stamp_inputs(model)
    tokenizer = [p for p in Path(model).glob("tokenizer*")] + [Path(model) / "config.json"] if model_inputs else []
    return Stage("token check", stamp_of(layout.token_check), lambda: launch.run(cmd), cmd,
                 inputs=[*tokenizer, *layout.prepared()],
                 params={"template": tpl, "cutoff_len": cutoff, **model_params}, outputs=[out],
                 clean=[layout.token_check])


def _dtype_param(variables: Variables) -> dict:
    """bf16 scoring is a parameter (switching CPU_BF16 reruns the stage); fp32 and a GPU's own dtype add none, so
    the runs made before bf16 existed stay up to date."""
    return {"dtype": precision.BF16} if precision.cpu_dtype(variables) == precision.BF16 else {}


def score(variables: Variables, layout: Layout) -> Stage:
    nproc = variables.int("SCORE_NPROC") if variables["SCORE_NPROC"] else variables.int("NPROC")
    tpl = template(variables)
    args = ["--model", str(layout.pi_ref), "--template", tpl, "--dataset-dir", str(layout.data),
            *variables.options(ScoreConfig), "--cutoff-len", str(cutoff_len(variables)), "--out", str(layout.scores)]
    cmd = launch.python_module("scoring", "score", *args, *precision.scorer_args(variables), nproc=nproc)
    return Stage("score", stamp_of(layout.scores), lambda: launch.run(cmd), cmd,
                 inputs=[layout.pi_ref, *layout.prepared()],
                 params={"POOL": variables["POOL"], "template": tpl, **_dtype_param(variables)},
                 outputs=[layout.scores / "manifest.json"], clean=[layout.scores])


def select(variables: Variables, layout: Layout) -> Stage:
    options = variables.options(SelectConfig)
    cmd = launch.python_module("selection", "select", "--scores", str(layout.scores), "--dataset-dir", str(layout.data),
                               *options, "--out", str(layout.selection))
    return Stage("select", stamp_of(layout.selection), lambda: launch.run(cmd), cmd,
                 inputs=[layout.scores, *layout.prepared()], params={"args": options}, outputs=layout.selected()[:3],
                 clean=[layout.selection])


def btune_train(variables: Variables, layout: Layout) -> Stage:
    """LoRA-DPO on the pairs (Algorithm 1 line 31, Eq. 4). DPO starts from the merged pi_ref, so the frozen
    reference (adapter disabled) is exactly pi_ref. Its dataset_dir is select's folder, whose dataset_info.json
    registers the pairs and the selected SFT set."""
    recipe = launch.Recipe(variables, variables["BTUNE_RECIPE"])
    inputs = layout.selected()[:3]
    return _train(variables, recipe, str(layout.pi_ref), layout.selection, layout.btune,
                  variables.words("BTUNE_ARGS"), inputs, f"b-tune: train ({recipe.path.stem})")


def export_final(variables: Variables, layout: Layout) -> Stage:
    return _merge(variables, str(layout.pi_ref), layout.btune, layout.final, "export-final")


# ---- evaluation -----------------------------------------------------------------------------------------
TEST_SPLITS = ("test_p1", "test_p2")


def eval_out(layout: Layout, name: str, generate: bool) -> Path:
    return layout.eval_dir / (f"{name}-generate" if generate else name)


def eval_model(variables: Variables, layout: Layout, name: str, model: str, adapter: Path | None = None) -> Stage:
    generate = variables.flag("EVAL_GENERATE")
    out = eval_out(layout, name, generate)
    nproc = variables.int("EVAL_NPROC") if variables["EVAL_NPROC"] else variables.int("NPROC")
    args = ["--model", model, *(["--adapter", str(adapter)] if adapter else []), "--template", template(variables),
            "--dataset-dir", str(layout.data), "--dataset", *TEST_SPLITS, "--out", str(out), "--cutoff-len",
            str(cutoff_len(variables)), *(["--generate"] if generate else []), *variables.options(PredictConfig),
            *precision.scorer_args(variables), *variables.words("EVAL_ARGS")]
    calibrated = not generate and variables.int("CALIB_SAMPLES") > 0
    cmd = launch.python_module("evaluation", "predict", *args, nproc=1 if generate else nproc)
    model_inputs, model_params = model_stamp_inputs(model)
    data = [layout.data / "stats.json",
            *(layout.data / f"{t}{e}" for t in TEST_SPLITS for e in (".jsonl", ".meta.jsonl"))]
    params = {"template": template(variables), "generate": generate, "EVAL_ARGS": variables.words("EVAL_ARGS"),
              **model_params, **_dtype_param(variables),
              "calib_samples": variables["CALIB_SAMPLES"] if calibrated else "0"}
    # the temperature's validation subset: valid.jsonl is read only when calibrated
    data += [layout.data / f"valid{e}" for e in (".jsonl", ".meta.jsonl")] if calibrated else []
    return Stage(f"eval {out.name}", stamp_of(out), lambda: launch.run(cmd), cmd,
                 inputs=[*model_inputs, *([adapter] if adapter else []), *data], params=params,
                 outputs=[out / f"{t}.predictions.jsonl" for t in TEST_SPLITS]
                 + ([out / "temperature.json"] if calibrated else []), clean=[out])


def _synthetic_data(variables: Variables, layout: Layout) -> bool:
    """Whether the run's data come from the embedded synthetic log: its stats.json says so once prepared (a run
    prepared with INPUT and evaluated without it is not synthetic); before that, the variables."""
    try:
        return json.loads((layout.data / "stats.json").read_text(encoding="utf-8"))["source"]["kind"] == "synthetic"
    except (OSError, ValueError, KeyError, TypeError):
        return _source(variables)[0] == ["--synthetic"]


def baselines(variables: Variables, layout: Layout) -> list[Stage]:
    """The reference predictors; the oracle only where the data come from the embedded synthetic log."""
    stages = []
    for kind in (*BASELINES, *(SYNTHETIC_KINDS if _synthetic_data(variables, layout) else ())):
        out = layout.eval_dir / kind
        cmd = launch.python_module("evaluation", "baseline", "--dataset-dir", str(layout.data), "--kind", kind,
                                   "--dataset", *TEST_SPLITS, "--out", str(out))
        stages.append(Stage(f"eval {kind}", stamp_of(out), lambda cmd=cmd: launch.run(cmd), cmd,
                            inputs=layout.prepared(), outputs=[out / f"{t}.predictions.jsonl" for t in TEST_SPLITS]))
    return stages


# Report rows: these first, in this order (each followed by its generation variant), then the rest alphabetically.
EVAL_ORDER = [n + g for n in ("zero-shot", "full-ft", "a-tune", "behaviorlm", "sasrec", *BASELINES, *SYNTHETIC_KINDS)
              for g in ("", "-generate")]


def finished_predictions(run_dirs: list[Path], exists=Path.exists, also=()) -> dict[str, list[Path]]:
    """name -> prediction folders (one per run dir) holding both test splits, in report order; `also`: names a
    dry run counts before their files exist, beside EVAL_ORDER's."""
    found: dict[str, list[Path]] = {}
    for run_dir in run_dirs:
        names = {p.parent.name for p in (run_dir / "eval").glob("*/test_p1.predictions.jsonl")}
        names |= {n for n in (*EVAL_ORDER, *also) if exists(run_dir / "eval" / n / "test_p1.predictions.jsonl")}
        for name in sorted(names):
            folder = run_dir / "eval" / name
            if all(exists(folder / f"{t}.predictions.jsonl") for t in TEST_SPLITS):
                found.setdefault(name, []).append(folder)
    order = [n for n in EVAL_ORDER if n in found] + sorted(n for n in found if n not in EVAL_ORDER)
    return {n: found[n] for n in order}


def report(variables: Variables, layout: Layout, run_dirs: list[Path], out: Path, exists=Path.exists, also=()) -> Stage:
    preds = finished_predictions(run_dirs, exists, also)
    if not preds:
        raise UsageError(f"no finished predictions under {', '.join(str(run_dir / 'eval') for run_dir in run_dirs)}: "
                         "run make eval first")
    args = ["--dataset-dir", str(layout.data)]
    for name, folders in preds.items():
        args += ["--pred", f"{name}={','.join(str(f) for f in folders)}"]
    args += ["--out", str(out), *(["--paper-table", variables["PAPER_TABLE"]] if variables["PAPER_TABLE"] else [])]
    cmd = launch.python_module("evaluation", "report", *args)

    def run():
        launch.run(cmd)
        print((out / "report.md").read_text(encoding="utf-8"))

    files = [f / f"{t}.predictions.jsonl" for folders in preds.values() for f in folders for t in TEST_SPLITS]
    return Stage(f"report {out.name}", stamp_of(out), run, cmd, inputs=[layout.data / "stats.json", *files],
                 params={"args": args}, outputs=[out / "report.md", out / "metrics.json"])
