"""Stages and the runner that decides, from stamps, which of them run.

A :class:`Stage` declares its inputs (files or model folders, hashed by content), its parameters and its
outputs, and how to make the outputs. The runner runs a stage when the key recorded in its stamp differs
from the current one, or an output is missing; otherwise it prints one "up to date" line. With
`dry_run`, nothing runs: each stage that would run is listed with the input or parameter that changed, and
the stages after it are listed because of it.

Interrupted work: `<stamp>.running` records the key of a started run. A rerun with the same key (or an
output deleted from a finished run) keeps what is there (LLaMA-Factory resumes from output_dir/checkpoint-*,
scoring and evaluation from their part files); a rerun with another key first removes it, so nothing made
with other settings is resumed.
"""
from __future__ import annotations

import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import stamps


@dataclass
class Stage:
    name: str                                   # shown in the log, e.g. "a-tune: train"
    stamp: Path
    run: Callable[[], None]
    command: list[str] | None = None            # what run() calls, shown by --dry-run
    env: dict[str, str] | None = None           # launcher variables of the command (shown by --dry-run)
    inputs: list[Path] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    clean: list[Path] = field(default_factory=list)   # partial results removed before a run with a new key


class StageFailed(RuntimeError):
    pass


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


class Runner:
    def __init__(self, cache_path: Path, dry_run: bool = False, log=print):
        self.cache = stamps.DigestCache.load(cache_path)
        self.dry_run = dry_run
        self.log = log
        self.pending: set[str] = set()      # dry run: outputs of stages that would run

    def exists(self, path: Path) -> bool:
        """Whether a file is there, or (dry run) would be written by a stage listed before."""
        return path.exists() or (self.dry_run and str(path) in self.pending)

    def _stale_inputs(self, stage: Stage) -> list[str]:
        hits = []
        for item in stage.inputs:
            for out in self.pending:
                if str(item) == out or str(item).startswith(out + "/") or out.startswith(str(item) + "/"):
                    hits.append(out)
        return hits

    def status(self, stage: Stage) -> tuple[str, list[str]]:
        """(key, reasons to run: empty when up to date)."""
        digests = self.cache.digests(stage.inputs)
        key = stamps.stage_key(stage.params, digests)
        stamp = stamps.read_stamp(stage.stamp)
        missing = [p for p in stage.outputs if not p.exists()]
        if stamp is not None and stamp.get("key") == key and not missing:
            return key, []
        return key, stamps.what_changed(stamp, stage.params, digests, missing)

    def run(self, stage: Stage) -> bool:
        """Runs the stage if it is stale; returns whether it ran (or would run, in a dry run)."""
        if self.dry_run and str(stage.stamp) in self.pending:
            return True  # listed above (a stage two targets share)
        upstream = self._stale_inputs(stage) if self.dry_run else []
        key, reasons = self.status(stage)
        if upstream and not reasons:
            reasons = [f"an input is rewritten first ({Path(upstream[0]).name})"]
        if not reasons:
            self.log(f"up to date: {stage.name}")
            return False
        if self.dry_run:
            self.log(f"would run: {stage.name} ({'; '.join(reasons)})")
            if stage.command:
                env = "".join(f"{k}={v} " for k, v in (stage.env or {}).items())
                self.log("  $ " + env + shlex.join(str(c) for c in stage.command))
            self.pending.update(str(p) for p in [*stage.outputs, stage.stamp])
            return True
        self.log(f"==> {stage.name} ({'; '.join(reasons[:3])})")
        running = stage.stamp.with_name(stage.stamp.name + ".running")
        old = stamps.read_stamp(stage.stamp) or {}
        started = running.read_text().strip() if running.is_file() else old.get("key")
        if started is not None and started != key:
            for path in stage.clean:  # partial results of other settings: never resumed
                _remove(path)
        stage.stamp.parent.mkdir(parents=True, exist_ok=True)
        running.write_text(key + "\n")
        _remove(stage.stamp)
        begin = time.perf_counter()
        stage.run()
        missing = [p for p in stage.outputs if not p.exists()]
        if missing:
            raise StageFailed(f"{stage.name}: finished without writing {missing[0]}")
        stamps.write_stamp(stage.stamp, key, stage.params, self.cache.digests(stage.inputs), stage.outputs)
        running.unlink(missing_ok=True)
        self.cache.save()
        self.log(f"<== {stage.name}: {time.perf_counter() - begin:.1f} s")
        return True
