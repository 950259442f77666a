"""The run layout: where every stage of one run reads and writes (docs/data-preparation.md "Files between stages").

Each stage writes only under its own outputs and reads the others' as inputs; `data/` never changes after
prepare, so an ablation or a seed repeat reads the run's `data/` directly.

    <RUN_DIR>/data/            prepared dataset_dir                              data.stamp.json
    <RUN_DIR>/token_check/     token_lengths.json (the token check)              token_check.stamp.json
    <RUN_DIR>/atune/           A-tune adapter (+ checkpoint-* for resuming)      atune.stamp.json
    <RUN_DIR>/pi_ref/          A-tune merged into the base model                 pi_ref.stamp.json
    <RUN_DIR>/scores/          pi_ref's scores of the pool                       scores.stamp.json
    <RUN_DIR>/selection/       dpo_pairs.jsonl, selected_sft.jsonl, selection_report.*, and the
                               dataset_info.json registering the two (B-tune's dataset_dir)
                                                                                 selection.stamp.json
    <RUN_DIR>/btune/           B-tune (DPO) adapter on pi_ref                    btune.stamp.json
    <RUN_DIR>/final/           pi_ref + B-tune adapter merged                    final.stamp.json
    <RUN_DIR>/round<r>/        B-tune round r > 1 (BTUNE_ROUNDS): scores/, selection/, btune/, final/ as
                               above, on round r-1's final/ instead of pi_ref/   round<r>/*.stamp.json
    <RUN_DIR>/eval/<name>/     predictions of one model                          eval/<name>.stamp.json
    <RUN_DIR>/report/          report.md, metrics.json, charts                   report.stamp.json
    <RUN_DIR>/ablations/<name>/  the same layout for each ablation, without data/ and token_check/ (it reads
                               the run's)

Each stamp sits beside the output it describes, so a stage shared by two targets (an ablation reusing
the run's pi_ref) has one stamp.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from data_prep.writing.outputs import AUX_STEM, BEHAVIOR_STEMS

from .settings import ROOT, Variables

# The files prepare writes; nothing else writes into data/.
PREPARED = ["dataset_info.json", "stats.json", f"{AUX_STEM}.jsonl",
            *[f"{stem}{ext}" for stem in BEHAVIOR_STEMS for ext in (".jsonl", ".meta.jsonl")]]
# The files select writes into its own folder (dataset_info.json registers the first two).
SELECTED = ["dpo_pairs.jsonl", "selected_sft.jsonl", "dataset_info.json", "selection_report.json",
            "selection_report.md"]


@dataclass(frozen=True)
class Layout:
    run_dir: Path
    data: Path
    stage_dir: Path
    atune: Path
    pi_ref: Path
    scores: Path
    shared_data: bool = False   # data/ is the run's whose own chain checked its token lengths (variants)

    @classmethod
    def of(cls, settings: Variables) -> Layout:
        run_dir = Path(settings["RUN_DIR"] or ROOT / "runs" / settings["RUN"]).expanduser().resolve()
        data = Path(settings["DATA_DIR"]).expanduser().resolve() if settings["DATA_DIR"] else run_dir / "data"
        return cls(run_dir, data, run_dir, run_dir / "atune", run_dir / "pi_ref", run_dir / "scores")

    def ablation(self, name: str, reuse_tuning: bool) -> Layout:
        """ablations/<name>/ reading this run's data/, reusing this run's A-tune, pi_ref and scores when the
        ablation changes only B-tuning."""
        stage_dir = self.run_dir / "ablations" / name
        own = replace(self, stage_dir=stage_dir, shared_data=True)
        if reuse_tuning:
            return own
        return replace(own, atune=stage_dir / "atune", pi_ref=stage_dir / "pi_ref", scores=stage_dir / "scores")

    def btune_rounds(self, rounds: int) -> list[Layout]:
        """The layout of each B-tune round. Round 1 is Algorithm 1's (pi_ref, scores/, selection/, btune/, final/);
        round r > 1 lives in round<r>/ and takes round r-1's final/ (its merged model) as the model it scores the
        pool with, builds its pairs on and trains DPO from, so its reference is round r-1's policy."""
        layouts = [self]
        for r in range(2, rounds + 1):
            stage_dir = self.stage_dir / f"round{r}"
            layouts.append(replace(self, stage_dir=stage_dir, pi_ref=layouts[-1].final, scores=stage_dir / "scores"))
        return layouts

    def sub_run(self, suffix: str) -> Path:
        return self.run_dir.with_name(f"{self.run_dir.name}-{suffix}")

    @property
    def token_check(self) -> Path:
        return self.run_dir / "token_check"

    @property
    def selection(self) -> Path:
        return self.stage_dir / "selection"

    @property
    def btune(self) -> Path:
        return self.stage_dir / "btune"

    @property
    def final(self) -> Path:
        return self.stage_dir / "final"

    @property
    def eval_dir(self) -> Path:
        return self.run_dir / "eval"

    @property
    def report_dir(self) -> Path:
        return self.run_dir / "report"

    @property
    def cache(self) -> Path:
        return self.run_dir / ".pipeline" / "digests.json"

    def prepared(self) -> list[Path]:
        return [self.data / name for name in PREPARED]

    def selected(self) -> list[Path]:
        return [self.selection / name for name in SELECTED]


def stamp_of(output: Path) -> Path:
    return output.with_name(output.name + ".stamp.json")


def finished(output: Path, exists=Path.exists) -> bool:
    """A stage output counts as there for evaluation when its stamp exists (training is never re-run from
    an evaluation target). `exists` is the runner's (a dry run counts what it would write)."""
    return exists(stamp_of(output))


def older_layout(layout: Layout) -> str | None:
    """One line when the run directory was made by the older layout, in which select wrote into data/, the
    token check into data/stats.json and each ablation had a data/ of links; None otherwise."""
    data = layout.data
    if any((data / name).exists() for name in ("dpo_pairs.jsonl", "selected_sft.jsonl", "token_check.stamp.json")):
        return f"{data} was made by an older layout (select wrote into data/): rerun make prepare"
    try:
        stats = json.loads((data / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stats = None
    if isinstance(stats, dict) and "token_lengths" in stats:
        return (f"{data} was made by an older layout (the token check wrote into stats.json): "
                "rerun make prepare")
    own = layout.run_dir / "data"
    if own != data and own.is_dir() and any(p.is_symlink() for p in own.iterdir()):
        return (f"{own} was made by an older layout (seed repeats linked the run's data/): remove {own}")
    linked = sorted((layout.run_dir / "ablations").glob("*/data"))
    if linked:
        return (f"{linked[0]} was made by an older layout (ablations linked the run's data/): remove "
                f"{layout.run_dir / 'ablations'} (or {linked[0]}) and rerun the ablations")
    return None
