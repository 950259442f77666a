"""ENGINE=ray on a local instance with 2 CPUs when a worker process dies: Ray reruns the task and the run's
files are the in-memory run's; a task that dies on every attempt fails prepare with one `error:` line and
leaves the earlier run as it was, with no staged directory behind."""
import hashlib
import os

import pytest
from prep_lake import write_lake

from data_prep.cli import main
from data_prep.config import PrepareConfig
from data_prep.engines import buckets, outofcore
from data_prep.prepare import prepare
from data_prep.reading import sources

pytest.importorskip("ray")

CONFIG = PrepareConfig(train_cap=300, valid_cap=100, test_cap=60, p2_per_behavior=5, history_len=8, eps=0)
ARGS = ["--train-cap", "300", "--valid-cap", "100", "--test-cap", "60", "--p2-per-behavior", "5",
        "--history-len", "8", "--eps", "0"]


def quiet(*args, **kwargs):
    pass


def digests(directory):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


@pytest.fixture
def ray_env(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_NUM_CPUS", "2")


def dying_scan(marker_dir, every_time: bool):
    """scan_bucket whose worker process exits (as a killed one would) on its first attempt, or on every one.
    The first attempt is whichever task creates the marker file."""
    scan = buckets.scan_bucket

    def scan_or_die(work, bucket, *args):
        if every_time:
            os._exit(1)
        try:
            os.close(os.open(os.path.join(marker_dir, "died"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return scan(work, bucket, *args)
        os._exit(1)

    return scan_or_die


def test_a_worker_killed_mid_run_is_retried_and_the_files_are_unchanged(tmp_path, monkeypatch, ray_env):
    _, lake = write_lake(tmp_path)
    prepare(sources.load_input(lake), tmp_path / "in_memory", CONFIG, log=quiet)
    monkeypatch.setattr(buckets, "scan_bucket", dying_scan(str(tmp_path), every_time=False))
    outofcore.prepare_input(lake, tmp_path / "ray", CONFIG, n_buckets=3, engine="ray", log=quiet)
    assert (tmp_path / "died").exists()            # one worker did die
    assert digests(tmp_path / "ray") == digests(tmp_path / "in_memory")


def test_a_task_that_always_dies_fails_with_one_line_and_keeps_the_earlier_run(tmp_path, monkeypatch, capsys,
                                                                              ray_env):
    _, lake = write_lake(tmp_path)
    out = tmp_path / "run"
    assert main(["prepare", "--input", str(lake), "--out", str(out), "--buckets", "3", *ARGS]) == 0
    earlier = digests(out)
    capsys.readouterr()
    monkeypatch.setattr(buckets, "scan_bucket", dying_scan(str(tmp_path), every_time=True))
    assert main(["prepare", "--input", str(lake), "--out", str(out), "--buckets", "3", "--engine", "ray",
                 *ARGS]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: ray: a worker or its result was lost")
    assert digests(out) == earlier
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".run.prepare.lock"]
