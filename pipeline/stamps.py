"""Content digests of a stage's inputs and the stamp that records them.

A stage is up to date when its stamp holds the same key (a hash of its parameters and of the *content* of
its input files) and its outputs exist. Modification times never decide anything: they only let a file's
digest be reused from `<run>/.pipeline/digests.json` while its size, mtime and inode are unchanged, so an
8B model is hashed once, not at every `make`.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.writing.outputs import write_json

CHUNK = 1 << 20
# Files a trainer writes beside the weights that do not change what the model computes.
LOG_FILES = {"README.md", "all_results.json", "train_results.json", "eval_results.json", "trainer_state.json",
             "trainer_log.jsonl", "training_args.bin", "training_loss.png", "training_eval_loss.png",
             "running_log.txt"}


def file_digest(path: Path, cache: dict | None = None) -> str:
    st = path.stat()
    key = str(path.resolve())
    sig = [st.st_size, st.st_mtime_ns, st.st_ino]
    if cache is not None and cache.get(key, {}).get("sig") == sig:
        return cache[key]["digest"]
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    if cache is not None:
        cache[key] = {"sig": sig, "digest": digest}
    return digest


def tree_files(path: Path) -> list[Path]:
    """The files whose content stands for `path`: itself, or for a directory its top-level files minus
    trainer logs (checkpoint-* folders are resume state, not the result)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.name not in LOG_FILES
                      and not p.name.startswith("."))
    return []


@dataclass
class DigestCache:
    path: Path
    entries: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> DigestCache:
        try:
            return cls(path, json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return cls(path)

    def digests(self, inputs: Iterable[Path]) -> dict[str, str]:
        """{name: digest} of every file standing for the inputs; a missing input is recorded as missing.

        Names are `<folder>/<file>`, not absolute paths, so a moved run keeps its keys."""
        out = {}
        for item in inputs:
            files = tree_files(item)
            if not files:
                out[f"{item.parent.name}/{item.name}"] = "missing"
            for f in files:
                out[f"{f.parent.name}/{f.name}"] = file_digest(f, self.entries)
        return out

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.entries)


def stage_key(params: dict, digests: dict[str, str]) -> str:
    blob = json.dumps({"params": params, "inputs": digests}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_stamp(path: Path, key: str, params: dict, digests: dict[str, str], outputs: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"key": key, "params": params, "inputs": digests, "outputs": [str(p) for p in outputs],
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


def what_changed(stamp: dict | None, params: dict, digests: dict[str, str], missing: list[Path]) -> list[str]:
    """Why a stage must run, one short phrase per reason (for the log and --dry-run)."""
    if missing:
        return [f"output {missing[0]} missing" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")]
    if stamp is None:
        return ["never finished"]
    reasons = []
    old_params = stamp.get("params", {})
    for name in sorted(set(params) | set(old_params)):
        if old_params.get(name) != params.get(name):
            reasons.append(f"{name}: {old_params.get(name)!r} -> {params.get(name)!r}")
    old_inputs = stamp.get("inputs", {})
    for name in sorted(set(digests) | set(old_inputs)):
        if old_inputs.get(name) != digests.get(name):
            reasons.append(f"input {name} changed" if name in old_inputs and name in digests
                           else f"input {name} {'added' if name in digests else 'removed'}")
    return reasons or ["stamp from another version"]
