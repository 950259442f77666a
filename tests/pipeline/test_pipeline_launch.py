"""This project's own commands run inside the pipeline's process when one rank on a machine without a GPU runs
them: the same command, the same files, the same exit code as a process of its own."""
import os

import pytest
from baseline_logs import write_dataset

from pipeline import launch


def test_which_commands_run_in_process(monkeypatch):
    monkeypatch.setattr(launch, "gpu_visible", lambda: False)
    cmd = launch.python_module("evaluation", "report", "--out", "x")
    assert launch.in_process_module(cmd) == "evaluation"
    assert launch.in_process_module(launch.python_module("scoring", "score")) == "scoring"
    assert launch.in_process_module(launch.python_module("selection", "select")) == "selection"
    assert launch.in_process_module(cmd, {"NPROC_PER_NODE": "1"}) is None  # its own environment: a process
    assert launch.in_process_module(launch.python_module("evaluation", "predict", nproc=2)) is None  # torchrun
    assert launch.in_process_module(launch.python_module("data_prep", "prepare")) is None
    assert launch.in_process_module([str(launch.BIN / "llamafactory-cli"), "export", "recipe.yaml"]) is None
    monkeypatch.setattr(launch, "gpu_visible", lambda: True)  # a GPU's memory stays free for the next process
    assert launch.in_process_module(cmd) is None


def test_in_process_writes_what_a_process_writes(tmp_path, monkeypatch):
    data = write_dataset(tmp_path)
    written = {}
    for gpu in (False, True):  # False: in this process; True: a process of its own
        monkeypatch.setattr(launch, "gpu_visible", lambda gpu=gpu: gpu)
        out = tmp_path / f"markov-{gpu}"
        launch.run(launch.python_module("evaluation", "baseline", "--dataset-dir", str(data), "--kind", "markov",
                                        "--dataset", "test_p1", "test_p2", "--out", str(out)))
        written[gpu] = sorted((p.name, p.read_bytes()) for p in out.glob("*.predictions.jsonl"))
    assert len(written[False]) == 2 and written[False] == written[True]


@pytest.mark.parametrize("args", [["--kind", "markov", "--dataset", "test_p1"],  # no such dataset dir
                                  ["--kind", "nonsense", "--dataset", "test_p1"]])  # argparse refuses
def test_in_process_failure_stops_with_its_exit_code(tmp_path, monkeypatch, capsys, args):
    monkeypatch.setattr(launch, "gpu_visible", lambda: False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        launch.run(launch.python_module("evaluation", "baseline", "--dataset-dir", str(tmp_path / "none"), *args,
                                        "--out", str(tmp_path / "out")))
    assert stop.value.code == 2
    assert os.getcwd() == str(tmp_path)  # the working directory is given back
    assert "error:" in capsys.readouterr().err


def test_a_stale_extension_build_lock_stops_a_deepspeed_run_in_one_line(tmp_path, monkeypatch, capsys):
    """A killed DeepSpeed run leaves torch's JIT build lock behind, and every later run waits on it forever with no
    message: the pipeline names the file before it launches; a lock a live build holds open is left alone."""
    from cli import UsageError
    from pipeline.settings import Variables

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    launch.check_build_locks(Variables())  # no lock: nothing to say
    lock = tmp_path / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir()
    lock.touch()
    assert launch.extension_build_locks() == [lock]
    with pytest.raises(UsageError, match=r"deepspeed_shm_comm/lock is a stale lock .* \(rm .*lock\)$") as refused:
        launch.check_build_locks(Variables())
    assert "\n" not in str(refused.value)
    launch.check_build_locks(Variables({"NNODES": "2", "MASTER_ADDR": "10.0.0.1"}))  # another node may hold it
    assert capsys.readouterr().err.startswith(f"warning: {lock} is a stale lock")
    fd = os.open(lock, os.O_RDONLY)  # as the build that made it holds it until it removes it
    try:
        assert launch.held_open(lock)
        launch.check_build_locks(Variables())
    finally:
        os.close(fd)
    assert not launch.held_open(lock)
