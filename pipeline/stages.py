"""The stages of Algorithm 1 and the evaluation, each with its inputs, parameters and outputs.

prepare -> A-tune (train, merge = pi_ref, Algorithm 1 lines 3-8) -> score (lines 10-14) -> select (lines
15-29) -> B-tune (DPO from pi_ref, line 30) -> export-final -> eval / report. Each function returns a
:class:`~pipeline.graph.Stage`; `targets.py` chains them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from data_prep.errors import PrepareError
from data_prep.reading.sources import is_uri, list_inputs
from evaluation.baselines import KINDS as BASELINES

from . import launch, precision
from .graph import Stage
from .layout import Layout, stamp_of
from .settings import STAGE_OPTIONS, Settings, SettingsError, option_flag

# --input's reader options that are not prepare settings (values are passed only when set); TIME_FORMAT is one
READER_FLAGS = {"FORMAT": "--format", "COLUMNS": "--columns", "TIMEZONE": "--tz"}
PREPARE_VARIABLES = ["INPUT", "FOURSQUARE", *READER_FLAGS, *STAGE_OPTIONS["prepare-input"][1],
                     *STAGE_OPTIONS["synthetic"][1], *STAGE_OPTIONS["prepare"][1], "PREPARE_ARGS"]   # its parameters


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
        raise SettingsError(f"INPUT: {err}") from None


def _source_args(s: Settings) -> tuple[list[str], list[Path]]:
    """(prepare's source flags, the files whose content they read)."""
    if s["INPUT"]:
        spec = s["INPUT"] if is_uri(s["INPUT"]) else _abs(s["INPUT"])
        args, files = ["--input", spec], _input_files(spec, s["FORMAT"] or None)
        args += [x for name, flag in READER_FLAGS.items() if s[name] for x in (flag, s[name])]
        args += s.options("prepare-input")
        if s["LABEL_MAP"]:
            args += ["--label-map", _abs(s["LABEL_MAP"])]
            files.append(Path(_abs(s["LABEL_MAP"])))
        return args, files
    if s["FOURSQUARE"]:
        return ["--foursquare", _abs(s["FOURSQUARE"])], [Path(_abs(s["FOURSQUARE"]))]
    return ["--synthetic", *s.options("synthetic")], []


def prepare(s: Settings, lay: Layout) -> Stage:
    source, files = _source_args(s)
    args = ["--out", str(lay.data), *source]
    args += s.options("prepare")
    if s["AUX"]:
        args += [option_flag("prepare-aux", "AUX"), _abs(s["AUX"])]
        files.append(Path(_abs(s["AUX"])))
    # where prepare runs never changes its files: not a stage parameter
    args += s.options("scale")
    args += s.words("PREPARE_ARGS")
    cmd = launch.python_module("data_prep", "prepare", *args)
    params = {name: s[name] for name in PREPARE_VARIABLES if s[name]}
    return Stage("prepare", stamp_of(lay.data), lambda: launch.run(cmd), cmd, inputs=files, params=params,
                 outputs=lay.prepared()[:2])


def model_stamp_inputs(path: str) -> tuple[list[Path], dict]:
    """A local model folder is an input (hashed by content); a hub id is a parameter."""
    return ([Path(path)], {}) if Path(path).exists() else ([], {"model": path})


def base_model(s: Settings, recipe: launch.Recipe) -> str:
    return _abs(s["BASE_MODEL"]) if s["BASE_MODEL"] else recipe.model_path()


def _non_empty_datasets(recipe: launch.Recipe, data: Path, overrides: list[str]) -> list[str]:
    """`dataset=` override without the datasets whose file is empty (EPS=0 leaves aux.jsonl empty, and
    LLaMA-Factory stops on an empty dataset); [] when all are non-empty."""
    names = recipe.datasets()
    for word in overrides:
        if word.startswith("dataset="):
            names = [n for n in word.split("=", 1)[1].split(",") if n]
    info = json.loads((data / "dataset_info.json").read_text(encoding="utf-8"))
    keep = [n for n in names if n not in info or (data / info[n]["file_name"]).stat().st_size > 0]
    if keep == names:
        return []
    if not keep:
        raise SystemExit(f"error: every dataset of {recipe.path.name} is empty in {data}: {', '.join(names)}")
    print(f"note: {', '.join(sorted(set(names) - set(keep)))} is empty in {data}: training on {','.join(keep)}")
    return [f"dataset={','.join(keep)}"]


def _train(s: Settings, recipe: launch.Recipe, model: str, data: Path, out: Path, stage_args: list[str],
           extra_inputs: list[Path], name: str) -> Stage:
    model_inputs, model_params = model_stamp_inputs(model)
    overrides = [f"model_name_or_path={model}", f"dataset_dir={data}", f"output_dir={out}",
                 *precision.train_overrides(s, recipe.values), *stage_args]
    # Locations are not parameters (a moved run stays up to date): the model and data are inputs by content.
    located = ("dataset_dir=", "output_dir=", *(("model_name_or_path=",) if model_inputs else ()))
    # Launcher settings (NPROC, NNODES, DEEPSPEED) are not parameters either: node 0 runs `make select` without
    # the training's NNODES, and that must not retrain. Changing the ranks changes the global batch: say so.
    params = {"overrides": [o for o in overrides if not o.startswith(located)], "ARGS": s.words("ARGS"),
              **model_params}

    cmd, env = launch.lf_train_command(s, recipe, overrides), launch.launcher_env(s, recipe)

    def run():
        fix = _non_empty_datasets(recipe, data, overrides + s.words("ARGS"))
        launch.run(cmd + fix, env)

    inputs = [recipe.path, *model_inputs, *extra_inputs]
    return Stage(name, stamp_of(out), run, cmd, env, inputs=inputs, params=params,
                 outputs=[out / "adapter_config.json"], clean=[out])


def atune_train(s: Settings, lay: Layout) -> Stage:
    recipe = launch.Recipe(s, s["ATUNE_RECIPE"])
    return _train(s, recipe, base_model(s, recipe), lay.data, lay.atune, s.words("ATUNE_ARGS"), lay.prepared(),
                  f"a-tune: train ({recipe.path.stem})")


def _merge(s: Settings, model: str, adapter: Path, out: Path, name: str) -> Stage:
    recipe = launch.Recipe(s, "merge_lora")
    model_inputs, model_params = model_stamp_inputs(model)

    cmd = launch.lf_export_command(recipe, [f"model_name_or_path={model}", f"adapter_name_or_path={adapter}",
                                            f"export_dir={out}"])

    def run():
        shutil.rmtree(out, ignore_errors=True)
        launch.run(cmd)

    return Stage(name, stamp_of(out), run, cmd, inputs=[recipe.path, *model_inputs, adapter], params=model_params,
                 outputs=[out / "config.json"], clean=[out])


def merge(s: Settings, lay: Layout) -> Stage:
    """pi_ref = base + A-tune adapter (Algorithm 1 line 7); the best checkpoint is what output_dir holds."""
    return _merge(s, base_model(s, launch.Recipe(s, s["ATUNE_RECIPE"])), lay.atune, lay.pi_ref, "a-tune: merge")


def template(s: Settings) -> str:
    return str(launch.Recipe(s, "atune_lora_sft").get("template"))


def cutoff_len(s: Settings) -> int:
    """The tokens every sample must fit: the smaller cutoff_len of the A-tune and B-tune recipes."""
    values = [launch.Recipe(s, name).get("cutoff_len") for name in (s["ATUNE_RECIPE"], s["BTUNE_RECIPE"])]
    return min(int(v) for v in values if v)


def token_check(s: Settings, lay: Layout) -> Stage:
    """Every prepared sample, with its longest candidate, fits the recipes' cutoff_len under the
    recipe's tokenizer and chat template; otherwise stop before anything trains (SKIP_TOKEN_CHECK=1 skips).
    The lengths go into token_check/token_lengths.json; no later stage reads them, so switching the check on
    retrains nothing."""
    model = base_model(s, launch.Recipe(s, s["ATUNE_RECIPE"]))
    out = lay.token_check / "token_lengths.json"
    tpl, cutoff = template(s), str(cutoff_len(s))
    cmd = launch.python_module("scoring", "token-lengths", "--dataset-dir", str(lay.data), "--model", model,
                               "--template", tpl, "--cutoff-len", cutoff, "--out", str(out))
    model_inputs, model_params = model_stamp_inputs(model)
    tokenizer = [p for p in Path(model).glob("tokenizer*")] + [Path(model) / "config.json"] if model_inputs else []
    return Stage("token check", stamp_of(lay.token_check), lambda: launch.run(cmd), cmd,
                 inputs=[*tokenizer, *lay.prepared()], params={"template": tpl, "cutoff_len": cutoff,
                                                               **model_params}, outputs=[out], clean=[lay.token_check])


def _dtype_param(s: Settings) -> dict:
    """bf16 scoring is a parameter (switching CPU_BF16 reruns the stage); fp32 and a GPU's own dtype add none, so
    the runs made before bf16 existed stay up to date."""
    return {"dtype": precision.BF16} if precision.cpu_dtype(s) == precision.BF16 else {}


def score(s: Settings, lay: Layout) -> Stage:
    nproc = s.int("SCORE_NPROC") if s["SCORE_NPROC"] else s.int("NPROC")
    tpl = template(s)
    args = ["--model", str(lay.pi_ref), "--template", tpl, "--dataset-dir", str(lay.data), *s.options("score"),
            "--cutoff-len", str(cutoff_len(s)), "--out", str(lay.scores)]
    cmd = launch.python_module("scoring", "score", *args, *precision.scorer_args(s), nproc=nproc)
    return Stage("score", stamp_of(lay.scores), lambda: launch.run(cmd), cmd,
                 inputs=[lay.pi_ref, *lay.prepared()],
                 params={"POOL": s["POOL"], "template": tpl, **_dtype_param(s)},
                 outputs=[lay.scores / "manifest.json"], clean=[lay.scores])


def select(s: Settings, lay: Layout) -> Stage:
    options = s.options("select")
    cmd = launch.python_module("selection", "select", "--scores", str(lay.scores), "--dataset-dir", str(lay.data),
                               *options, "--out", str(lay.selection))
    return Stage("select", stamp_of(lay.selection), lambda: launch.run(cmd), cmd,
                 inputs=[lay.scores, *lay.prepared()], params={"args": options}, outputs=lay.selected()[:3],
                 clean=[lay.selection])


def btune_train(s: Settings, lay: Layout) -> Stage:
    """LoRA-DPO on the pairs (Algorithm 1 line 31, Eq. 4). DPO starts from the merged pi_ref, so the frozen
    reference (adapter disabled) is exactly pi_ref. Its dataset_dir is select's folder, whose dataset_info.json
    registers the pairs and the selected SFT set."""
    recipe = launch.Recipe(s, s["BTUNE_RECIPE"])
    inputs = lay.selected()[:3]
    return _train(s, recipe, str(lay.pi_ref), lay.selection, lay.btune, s.words("BTUNE_ARGS"), inputs,
                  f"b-tune: train ({recipe.path.stem})")


def export_final(s: Settings, lay: Layout) -> Stage:
    return _merge(s, str(lay.pi_ref), lay.btune, lay.final, "export-final")


# ---- evaluation -----------------------------------------------------------------------------------------
TEST_SPLITS = ("test_p1", "test_p2")


def eval_out(lay: Layout, name: str, generate: bool) -> Path:
    return lay.eval_dir / (f"{name}-generate" if generate else name)


def eval_model(s: Settings, lay: Layout, name: str, model: str, adapter: Path | None = None) -> Stage:
    generate = s.flag("EVAL_GENERATE")
    out = eval_out(lay, name, generate)
    nproc = s.int("EVAL_NPROC") if s["EVAL_NPROC"] else s.int("NPROC")
    args = ["--model", model, *(["--adapter", str(adapter)] if adapter else []), "--template", template(s),
            "--dataset-dir", str(lay.data), "--dataset", *TEST_SPLITS, "--out", str(out), "--cutoff-len",
            str(cutoff_len(s)), *(["--generate"] if generate else []), *s.options("eval"), *precision.scorer_args(s),
            *s.words("EVAL_ARGS")]
    calibrated = not generate and s.int("CALIB_SAMPLES") > 0
    cmd = launch.python_module("evaluation", "predict", *args, nproc=1 if generate else nproc)
    model_inputs, model_params = model_stamp_inputs(model)
    data = [lay.data / "stats.json", *(lay.data / f"{t}{e}" for t in TEST_SPLITS for e in (".jsonl", ".meta.jsonl"))]
    params = {"template": template(s), "generate": generate, "EVAL_ARGS": s.words("EVAL_ARGS"), **model_params,
              **_dtype_param(s),
              "calib_samples": s["CALIB_SAMPLES"] if calibrated else "0"}
    # the temperature's validation subset: valid.jsonl is read only when calibrated
    data += [lay.data / f"valid{e}" for e in (".jsonl", ".meta.jsonl")] if calibrated else []
    return Stage(f"eval {out.name}", stamp_of(out), lambda: launch.run(cmd), cmd,
                 inputs=[*model_inputs, *([adapter] if adapter else []), *data], params=params,
                 outputs=[out / f"{t}.predictions.jsonl" for t in TEST_SPLITS]
                 + ([out / "temperature.json"] if calibrated else []), clean=[out])


def baselines(s: Settings, lay: Layout) -> list[Stage]:
    stages = []
    for kind in BASELINES:
        out = lay.eval_dir / kind
        cmd = launch.python_module("evaluation", "baseline", "--dataset-dir", str(lay.data), "--kind", kind,
                                   "--dataset", *TEST_SPLITS, "--out", str(out))
        stages.append(Stage(f"eval {kind}", stamp_of(out), lambda cmd=cmd: launch.run(cmd), cmd,
                            inputs=lay.prepared(), outputs=[out / f"{t}.predictions.jsonl" for t in TEST_SPLITS]))
    return stages


# Report rows: these first, in this order (each followed by its generation variant), then the rest alphabetically.
EVAL_ORDER = [n + g for n in ("zero-shot", "full-ft", "a-tune", "behaviorlm", "sasrec", *BASELINES)
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


def report(s: Settings, lay: Layout, run_dirs: list[Path], out: Path, exists=Path.exists, also=()) -> Stage:
    preds = finished_predictions(run_dirs, exists, also)
    if not preds:
        raise SystemExit(f"error: no finished predictions under {', '.join(str(r / 'eval') for r in run_dirs)}: "
                         "run make eval first")
    args = ["--dataset-dir", str(lay.data)]
    for name, folders in preds.items():
        args += ["--pred", f"{name}={','.join(str(f) for f in folders)}"]
    args += ["--out", str(out), *(["--paper-table", s["PAPER_TABLE"]] if s["PAPER_TABLE"] else [])]
    cmd = launch.python_module("evaluation", "report", *args)

    def run():
        launch.run(cmd)
        print((out / "report.md").read_text(encoding="utf-8"))

    files = [f / f"{t}.predictions.jsonl" for folders in preds.values() for f in folders for t in TEST_SPLITS]
    return Stage(f"report {out.name}", stamp_of(out), run, cmd, inputs=[lay.data / "stats.json", *files],
                 params={"args": args}, outputs=[out / "report.md", out / "metrics.json"])
