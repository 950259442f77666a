"""A trained run as the serving code sees it: candidate behaviors, history length, system prompt, model paths.

Run layout (docs/data-preparation.md): ``<run>/data/stats.json`` (behaviors in candidate order and the prepare
config, history length L and system prompt included), the merged final model ``<run>/final`` or, before
export, the merged reference ``<run>/pi_ref`` with the DPO adapter ``<run>/btune``. The chat template is not
stored in the run: it comes from the recipe (``recipes/<MODEL>/atune_lora_sft.yaml``, key ``template``)
and is passed in.

Temperature: the run's model (final/, or pi_ref/ + btune/, both the model `make eval` evaluates as
``behaviorlm``; given by --model/--adapter or found in the run dir) is served with the T that
``<run>/eval/behaviorlm/temperature.json`` holds for the prompt mode of each prediction (``modes``:
``evaluation.temperature``). T = 1 for a mode that file has no T for, when the file does not exist, when
--model names another model, or with --no-temperature.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cli import UsageError


class ServingError(UsageError):
    """Bad input or a bad run for predict/serve; the message is one line."""


@dataclass(frozen=True)
class RunInfo:
    run_dir: Path
    stats: dict
    behaviors: list[str]          # candidate names in label_id order (the order training listed them in)
    history_len: int              # L of the prepare config
    system_prompt: str
    model_path: Path
    adapter_path: Path | None
    template: str                 # LLaMA-Factory chat template name, from the recipe
    temperatures: dict[str, float] = field(default_factory=dict)   # prompt mode -> T (a mode not here: T = 1)
    temperature_from: str | None = None   # the temperature.json they came from (None: T = 1)

    def temperature(self, mode: str) -> float:
        """T the log-probabilities of a prompt mode are divided by before the softmax."""
        return self.temperatures.get(mode, 1.0)

    @property
    def run_name(self) -> str:
        return self.run_dir.name

    @property
    def seed(self) -> int:
        """prepare's seed: it orders the events of one instant (data_prep.encoding.ties), here as in training."""
        return int(self.stats["config"]["seed"])

    @property
    def model_name(self) -> str:
        """What produced a prediction: the model dir (and adapter), relative to the run dir when inside it."""
        def short(path: Path) -> str:
            try:
                return str(path.resolve().relative_to(self.run_dir.resolve()))
            except ValueError:
                return str(path)
        return short(self.model_path) + (f"+{short(self.adapter_path)}" if self.adapter_path else "")

    @property
    def source(self) -> dict:
        """How prepare read its events (columns, label map, time zone): the defaults for reading new events."""
        return self.stats.get("source") or {}


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def last_round(run_dir: Path) -> tuple[Path, Path, Path]:
    """(final, base, adapter) of the run's last B-tune round: final/, pi_ref/ and btune/ after one round
    (Algorithm 1); with BTUNE_ROUNDS > 1, the highest round<r>/ holding an adapter: round<r>/final/, the round
    before's final/ (the model round r trained on) and round<r>/btune/."""
    rounds = [int(p.name[len("round"):]) for p in run_dir.glob("round*")
              if p.name[len("round"):].isdigit() and (p / "btune" / "adapter_config.json").is_file()]
    if not rounds:
        return run_dir / "final", run_dir / "pi_ref", run_dir / "btune"
    r = max(rounds)
    before = run_dir if r == 2 else run_dir / f"round{r - 1}"
    return run_dir / f"round{r}" / "final", before / "final", run_dir / f"round{r}" / "btune"


def resolve_model(run_dir: Path, model: str | None, adapter: str | None) -> tuple[Path, Path | None]:
    """--model/--adapter when given, else the last B-tune round's final/, else the model it trained on + its
    btune/ adapter (before export-final)."""
    if model:
        path = Path(model)
        if not _is_model_dir(path):
            raise ServingError(f"--model {model}: not a model directory (no config.json)")
        return path, _adapter(adapter)
    if adapter:
        raise ServingError("--adapter needs --model (the base the adapter was trained on)")
    final, pi_ref, btune = last_round(run_dir)
    if _is_model_dir(final):
        return final, None
    if _is_model_dir(pi_ref) and (btune / "adapter_config.json").is_file():
        return pi_ref, btune
    raise ServingError(f"{run_dir}: no trained model (neither {final.relative_to(run_dir)}/ nor "
                       f"{pi_ref.relative_to(run_dir)}/ + {btune.relative_to(run_dir)}/); run make b-tune "
                       f"export-final, or pass --model")


def _adapter(adapter: str | None) -> Path | None:
    if adapter is None:
        return None
    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise ServingError(f"--adapter {adapter}: not a PEFT adapter directory (no adapter_config.json)")
    return path


SERVED_EVAL = "behaviorlm"   # the eval name of the run's own model (pipeline: eval_all)


def is_own_model(run_dir: Path, model_path: Path, adapter_path: Path | None) -> bool:
    """Whether the model is the one `make eval` evaluates as behaviorlm: the last round's final/, or the model
    it trained on + its btune/."""
    final, base, btune = last_round(run_dir)

    def same(a: Path | None, b: Path | None) -> bool:
        return (a is None) == (b is None) and (a is None or a.resolve() == b.resolve())
    return any(same(model_path, m) and same(adapter_path, a)
               for m, a in ((final, None), (base, btune)))


def served_temperatures(run_dir: Path, own_model: bool, enabled: bool = True) -> tuple[dict[str, float], str | None]:
    """(prompt mode -> T, file) for the served model: the T per mode of eval/behaviorlm/temperature.json for the
    run's own model, else ({}, None): T = 1."""
    from evaluation.temperature import FILENAME, MODES, load_temperature

    if not (enabled and own_model):
        return {}, None
    folder = run_dir / "eval" / SERVED_EVAL
    try:
        ts = {mode: load_temperature(folder, mode) for mode in MODES}
    except ValueError as err:
        raise ServingError(str(err)) from None
    if not (folder / FILENAME).is_file():
        return {}, None
    return {mode: t for mode, t in ts.items() if t is not None}, str(folder / FILENAME)


def load_run(run_dir: str | Path, template: str, model: str | None = None, adapter: str | None = None,
             data_dir: str | Path | None = None, temperature: bool = True) -> RunInfo:
    """Read a run dir; errors are one line naming the missing piece. temperature=False serves T = 1."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ServingError(f"--run-dir {run_dir}: no such directory")
    if not template:
        raise ServingError("--template is required (the recipe's `template` key, e.g. smollm2, llama3, qwen)")
    stats_path = Path(data_dir) / "stats.json" if data_dir else run_dir / "data" / "stats.json"
    if not stats_path.is_file():
        raise ServingError(f"{stats_path}: not found (run make prepare for this run first)")
    try:
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
        behaviors = [b["name"] for b in sorted(stats["behaviors"], key=lambda b: b["label_id"])]
        config = stats["config"]
        history_len, system_prompt = int(config["history_len"]), str(config["system_prompt"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ServingError(f"{stats_path}: not a prepare stats.json ({type(err).__name__}: {err})") from None
    if len(behaviors) < 2:
        raise ServingError(f"{stats_path}: needs at least two behaviors, found {len(behaviors)}")
    model_path, adapter_path = resolve_model(run_dir, model, adapter)
    ts, t_from = served_temperatures(run_dir, is_own_model(run_dir, model_path, adapter_path), temperature)
    return RunInfo(run_dir, stats, behaviors, history_len, system_prompt, model_path, adapter_path, template, ts,
                   t_from)


def template_from_recipe(recipe: str | Path) -> str:
    """The `template` key of a recipe YAML (what the Make layer passes as --template)."""
    import yaml

    try:
        value = (yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {}).get("template")
    except (OSError, yaml.YAMLError) as err:
        raise ServingError(f"{recipe}: cannot read the recipe ({err})") from None
    if not value:
        raise ServingError(f"{recipe}: no `template` key")
    return str(value)


__all__ = ["RunInfo", "ServingError", "load_run", "resolve_model", "template_from_recipe"]
