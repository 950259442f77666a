"""The run layout: where every stage of one run reads and writes (README "Files between stages").

    <RUN_DIR>/data/            prepared dataset_dir (+ dpo_pairs.jsonl, selected_sft.jsonl from select)
    <RUN_DIR>/atune/           A-tune adapter (+ checkpoint-* for resuming)      atune.stamp.json
    <RUN_DIR>/pi_ref/          A-tune merged into the base model                 pi_ref.stamp.json
    <RUN_DIR>/scores/          pi_ref's scores of the pool                       scores.stamp.json
    <RUN_DIR>/select.stamp.json  selection (writes into data/)
    <RUN_DIR>/btune/           B-tune (DPO) adapter on pi_ref                    btune.stamp.json
    <RUN_DIR>/final/           pi_ref + B-tune adapter merged                    final.stamp.json
    <RUN_DIR>/eval/<name>/     predictions of one model                          eval/<name>.stamp.json
    <RUN_DIR>/report/          report.md, metrics.json, charts                   report.stamp.json
    <RUN_DIR>/ablations/<name>/  the same layout for each ablation (data/ holds links to the run's files)

Each stamp sits beside the output it describes, so a stage shared by two targets (an ablation reusing
the run's pi_ref) has one stamp.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from data_prep.outputs import AUX_STEM, BEHAVIOR_STEMS

from .settings import ROOT, Settings

# The files prepare writes (select adds its own files to the same folder later).
PREPARED = ["dataset_info.json", "stats.json", f"{AUX_STEM}.jsonl",
            *[f"{stem}{ext}" for stem in BEHAVIOR_STEMS for ext in (".jsonl", ".meta.jsonl")]]
SELECTED = ["dpo_pairs.jsonl", "selected_sft.jsonl", "selection_report.json", "selection_report.md"]
MODEL_NAMES = ["config.json", "adapter_config.json"]


@dataclass(frozen=True)
class Layout:
    run_dir: Path
    data: Path
    stage_dir: Path
    atune: Path
    pi_ref: Path
    scores: Path

    @classmethod
    def of(cls, settings: Settings) -> Layout:
        run_dir = Path(settings["RUN_DIR"] or ROOT / "runs" / settings["RUN"]).expanduser().resolve()
        data = Path(settings["DATA_DIR"]).expanduser().resolve() if settings["DATA_DIR"] else run_dir / "data"
        return cls(run_dir, data, run_dir, run_dir / "atune", run_dir / "pi_ref", run_dir / "scores")

    @classmethod
    def of_data(cls, data: Path) -> Layout:
        run = data.parent
        return cls(run, data, run, run / "atune", run / "pi_ref", run / "scores")

    def ablation(self, name: str, reuse_tuning: bool) -> Layout:
        """ablations/<name>/ with its own data/ (links), reusing this run's A-tune, pi_ref and scores when the
        ablation changes only B-tuning."""
        stage_dir = self.run_dir / "ablations" / name
        own = replace(self, data=stage_dir / "data", stage_dir=stage_dir)
        if reuse_tuning:
            return own
        return replace(own, atune=stage_dir / "atune", pi_ref=stage_dir / "pi_ref", scores=stage_dir / "scores")

    def sub_run(self, suffix: str) -> Path:
        return self.run_dir.with_name(f"{self.run_dir.name}-{suffix}")

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
        return [self.data / name for name in SELECTED]


def stamp_of(output: Path) -> Path:
    return output.with_name(output.name + ".stamp.json")


def finished(output: Path, exists=Path.exists) -> bool:
    """A stage output counts as there for evaluation when its stamp exists (training is never re-run from
    an evaluation target). `exists` is the runner's (a dry run counts what it would write)."""
    return exists(stamp_of(output))


def link_prepared(src: Path, dst: Path) -> None:
    """dst/ made of links to src's prepared files, so a variant's selection never overwrites the run's."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in PREPARED:
        target, link = src / name, dst / name
        if not target.exists():
            continue
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target)
