"""Whole-run dataset_dirs: a prepare into a directory holding an earlier run leaves,
whatever the moment of a kill, either the old complete run or the new complete run, and never a file of
the earlier run beside the new one.

A kill is a forked child that runs prepare and calls os._exit at a chosen point (no cleanup handler runs,
as with SIGKILL); the parent then inspects the directory and runs the next prepare.
"""
import fcntl
import hashlib
import json
import os
from pathlib import Path

import pytest

import data_prep.prepare as prepare_module
from data_prep.config import PrepareConfig
from data_prep.errors import PrepareError
from data_prep.prepare import prepare
from data_prep.synthetic import generate_events
from data_prep.writing import rundir
from data_prep.writing.outputs import AUX_STEM, BEHAVIOR_STEMS, read_jsonl

CONFIG = {"history_len": 5, "train_cap": 300, "valid_cap": 40, "test_cap": 30, "p2_per_behavior": 3, "eps": 0.1}
# files select writes into the data dir later: they belong to the run they were made from
SELECT_FILES = {"dpo_pairs.jsonl": "{}\n", "selected_sft.jsonl": "{}\n", "selection_report.md": "# old\n"}
KILLED = 137


def quiet(*args, **kwargs):
    pass


def run(out: Path, seed: int) -> dict:
    return prepare(generate_events(20, 4, seed=seed), out, PrepareConfig(seed=seed, **CONFIG), log=quiet)


def digests(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


def assert_complete(directory: Path) -> None:
    """stats.json is there and every data file has exactly the samples it counts."""
    stats = json.loads((directory / "stats.json").read_text())
    for stem in BEHAVIOR_STEMS:
        assert len(read_jsonl(directory / f"{stem}.jsonl")) == stats["samples"][stem], stem
        assert len(read_jsonl(directory / f"{stem}.meta.jsonl")) == stats["samples"][stem], stem
    assert len(read_jsonl(directory / f"{AUX_STEM}.jsonl")) == stats["samples"][AUX_STEM]


def leftovers(parent: Path) -> list[str]:
    """Hidden build / backup directories of prepare next to the data dir (the lock file is not one)."""
    return sorted(p.name for p in parent.iterdir() if ".prepare-" in p.name)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Digests of the old run (seed 1) plus select's files, and of the new run (seed 2) alone."""
    root = tmp_path_factory.mktemp("refs")
    run(root / "old", 1)
    for name, text in SELECT_FILES.items():
        (root / "old" / name).write_text(text)
    run(root / "new", 2)
    old, new = digests(root / "old"), digests(root / "new")
    assert old.keys() - new.keys() == SELECT_FILES.keys() and old["stats.json"] != new["stats.json"]
    return {"old": old, "new": new}


@pytest.fixture
def old_run(tmp_path):
    out = tmp_path / "run" / "data"
    run(out, 1)
    for name, text in SELECT_FILES.items():
        (out / name).write_text(text)
    (out.parent / "atune").mkdir()                # a run dir's other stages are never touched
    (out.parent / "data.stamp.json").write_text("{}")
    return out


def _die_after(func, when=lambda *a, **k: True):
    def wrapped(*args, **kwargs):
        result = func(*args, **kwargs)
        if when(*args, **kwargs):
            os._exit(KILLED)
        return result
    return wrapped


def _die_on_rename(number: int):
    """os for rundir whose `number`-th rename completes and then kills the process."""
    calls = []

    class KillingOs:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def rename(src, dst):
            os.rename(src, dst)
            calls.append(dst)
            if len(calls) == number:
                os._exit(KILLED)
    return KillingOs()


KILL_POINTS = {
    # while writing: the train split is complete, valid is being written
    "writing": lambda mp: mp.setattr(prepare_module, "write_split", _die_after(
        prepare_module.write_split, lambda *a, desc, **k: desc == "train")),
    # the new run is complete in its build directory, the swap has not begun
    "before-swap": lambda mp: mp.setattr(rundir, "swap_in", lambda new, out: os._exit(KILLED)),
    # atomic exchange done, the old run (now in the build directory) not yet removed
    "exchanged": lambda mp: mp.setattr(rundir, "_exchange", _die_after(rundir._exchange)),
    # fallback: old run moved to its backup, new run not yet in place
    "fallback-1": lambda mp: (mp.setattr(rundir, "_exchange", lambda a, b: False),
                              mp.setattr(rundir, "os", _die_on_rename(1))),
    # fallback: new run in place, the backup of the old one not yet removed
    "fallback-2": lambda mp: (mp.setattr(rundir, "_exchange", lambda a, b: False),
                              mp.setattr(rundir, "os", _die_on_rename(2))),
}
EXPECTED = {"writing": "old", "before-swap": "old", "exchanged": "new", "fallback-1": None, "fallback-2": "new"}


def killed_prepare(out: Path, point: str) -> int:
    """Run the new prepare (seed 2) in a forked child that dies at `point`; returns its exit status."""
    pid = os.fork()
    if pid == 0:    # child: never return into pytest
        try:
            with pytest.MonkeyPatch.context() as mp:
                KILL_POINTS[point](mp)
                run(out, 2)
            os._exit(0)
        except BaseException:   # any way out of the child but the kill point is a failure
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_a_kill_at_any_point_leaves_the_old_or_the_new_complete_run(old_run, refs, point):
    assert killed_prepare(old_run, point) == KILLED
    expected = EXPECTED[point]
    if expected is None:
        # between the fallback's two renames there is no data dir; the next start puts the old run back
        assert not old_run.exists()
        rundir.recover(old_run)
        expected = "old"
    assert digests(old_run) == refs[expected]
    assert_complete(old_run)
    assert (old_run.parent / "atune").is_dir() and (old_run.parent / "data.stamp.json").is_file()
    # the next prepare removes what the killed one left and writes the new run alone
    run(old_run, 2)
    assert digests(old_run) == refs["new"]
    assert leftovers(old_run.parent) == []


def test_a_failing_prepare_leaves_the_earlier_run_and_no_temp_files(old_run, refs, monkeypatch):
    def failing(renderer, targets, template_ids, out_dir, routes, desc, caps=None):
        if desc == "valid":
            raise RuntimeError("disk full")
        return write_split(renderer, targets, template_ids, out_dir, routes, desc=desc, caps=caps)

    write_split = prepare_module.write_split
    monkeypatch.setattr(prepare_module, "write_split", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        run(old_run, 2)
    assert digests(old_run) == refs["old"]
    assert leftovers(old_run.parent) == []


def test_a_clean_rerun_removes_select_files_and_hidden_temp_files_of_killed_runs(old_run, refs):
    (old_run / ".train_all.jsonl.x1y2.tmp").write_text("half a file of a killed run")
    stale_build = old_run.parent / ".data.prepare-new-abc123"
    stale_build.mkdir()
    (stale_build / "train_all.jsonl").write_text("{}\n")
    run(old_run, 2)
    assert digests(old_run) == refs["new"]                      # no dpo_pairs.jsonl, no .tmp file
    assert leftovers(old_run.parent) == []


def test_a_directory_prepare_did_not_write_is_refused(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(PrepareError, match="refusing to replace it"):
        run(precious, 1)
    assert (precious / "notes.txt").read_text() == "mine" and leftovers(tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    run(empty, 1)
    assert_complete(empty)


def test_a_symlinked_out_stays_a_link_to_the_new_run(tmp_path, refs):
    target = tmp_path / "big-disk" / "data"
    run(target, 1)
    link = tmp_path / "run-data"
    link.symlink_to(target)
    run(link, 2)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert digests(target) == refs["new"]


def test_a_concurrent_prepare_is_refused(old_run, refs):
    with open(old_run.parent / ".data.prepare.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(PrepareError, match="another prepare is writing"):
            run(old_run, 2)
    assert digests(old_run) == refs["old"]


def test_a_mount_point_is_refused_before_any_work(old_run, refs, monkeypatch):
    monkeypatch.setattr(rundir.os.path, "ismount", lambda path: Path(path) == old_run)
    with pytest.raises(PrepareError, match="is a mount point; give a directory inside it"):
        run(old_run, 2)
    assert digests(old_run) == refs["old"] and leftovers(old_run.parent) == []
