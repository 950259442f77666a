"""prepare out of core (data_prep.engines.outofcore): the same bytes as the in-memory prepare, for any bucket count,
any file order and ENGINE=local or ray; a bad file fails with its one-line error and leaves the earlier run."""
import hashlib
import shutil

import pytest
from prep_lake import write_lake

from data_prep.cli import main
from data_prep.config import PrepareConfig
from data_prep.engines import outofcore
from data_prep.errors import PrepareError
from data_prep.prepare import prepare
from data_prep.reading import sources
from data_prep.reading.events import load_events

CONFIG = PrepareConfig(train_cap=300, valid_cap=100, test_cap=60, p2_per_behavior=5, history_len=8, eps=0.2,
                       anchor_cap=40)
ARGS = ["--train-cap", "300", "--valid-cap", "100", "--test-cap", "60", "--p2-per-behavior", "5",
        "--history-len", "8", "--eps", "0.2", "--anchor-cap", "40"]


def quiet(*args, **kwargs):
    pass


def digests(directory):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    single, lake_dir = write_lake(root)
    in_memory = root / "in_memory"
    prepare(sources.load_input(lake_dir), in_memory, CONFIG, log=quiet)
    return single, lake_dir, digests(in_memory)


@pytest.mark.parametrize("n_buckets", [1, 7])
def test_bucketed_prepare_writes_the_in_memory_bytes(lake, tmp_path, n_buckets):
    _, root, expected = lake
    stats = outofcore.prepare_input(root, tmp_path / "run", CONFIG, n_buckets=n_buckets, log=quiet)
    assert digests(tmp_path / "run") == expected            # stats.json included
    assert stats["samples"]["anchor"] == 40 and not (tmp_path / "run" / outofcore.WORK_DIR).exists()


def test_a_balanced_anchor_set_is_the_same_out_of_core(lake, tmp_path):
    _, root, _ = lake
    config = PrepareConfig(**{**CONFIG.__dict__, "anchor_balance": 1.0})
    prepare(sources.load_input(root), tmp_path / "mem", config, log=quiet)
    stats = outofcore.prepare_input(root, tmp_path / "ooc", config, n_buckets=3, log=quiet)
    assert digests(tmp_path / "ooc") == digests(tmp_path / "mem")
    counts = [b["samples"]["anchor"] for b in stats["behaviors"] if b["is_anchor"]]
    assert max(counts) == -(-40 // len(counts)) and min(counts) == 0    # equal shares; the lake's rarest has none
    assert any(w.startswith("anchor-balance: ") for w in stats["warnings"])


def test_one_file_with_ties_and_duplicates_matches_the_in_memory_run(tmp_path):
    lines = []
    for user in range(12):
        for step in range(30):
            t = 1_710_000_000 + (step // 3) * 3600      # three events an hour: instants of 3
            lines.append(f"u{user},{t},p{step % 4},b{(user + step) % 5}")
    lines += lines[:7]                                    # duplicate events
    path = tmp_path / "ev.csv"
    path.write_text("user_id,timestamp,place,behavior\n" + "\n".join(lines) + "\n")
    config = PrepareConfig(train_cap=50, valid_cap=20, test_cap=10, p2_per_behavior=2, history_len=5, eps=0)
    prepare(load_events(path), tmp_path / "mem", config, log=quiet)
    stats = outofcore.prepare_input(path, tmp_path / "ooc", config, n_buckets=3, log=quiet)
    assert stats["ties"]["tied_targets"] > 0 and stats["dropped"]["duplicate_event"] == 7
    assert digests(tmp_path / "ooc") == digests(tmp_path / "mem")


def test_the_command_line_runs_out_of_core_with_buckets(lake, tmp_path):
    _, root, _ = lake
    assert main(["prepare", "--input", str(root), "--out", str(tmp_path / "mem"), *ARGS]) == 0
    assert main(["prepare", "--input", str(root), "--out", str(tmp_path / "ooc"), "--buckets", "4", *ARGS]) == 0
    assert digests(tmp_path / "ooc") == digests(tmp_path / "mem")


def test_a_bad_file_fails_with_its_row_and_keeps_the_earlier_run(lake, tmp_path):
    _, root, expected = lake
    out = tmp_path / "run"
    outofcore.prepare_input(root, out, CONFIG, n_buckets=2, log=quiet)
    copy = tmp_path / "lake"
    shutil.copytree(root, copy)
    bad = sorted(copy.glob("dt=*/*.jsonl"))[0]
    bad.write_text(bad.read_text() + "not json\n")
    with pytest.raises(PrepareError, match=rf"^{bad}: row \d+: not valid JSON"):
        outofcore.prepare_input(copy, out, CONFIG, n_buckets=2, log=quiet)
    assert digests(out) == expected
    assert not [p.name for p in tmp_path.iterdir() if "prepare-new" in p.name or "prepare-old" in p.name]


def test_ray_with_two_cpus_writes_the_local_bytes_from_a_shuffled_lake(lake, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    _, _, expected = lake
    _, shuffled = write_lake(tmp_path, order_seed=5)     # the same events dealt to the files in another order
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_NUM_CPUS", "2")
    out = tmp_path / "ray_run"
    assert main(["prepare", "--input", str(shuffled), "--out", str(out), "--engine", "ray", "--buckets", "3",
                 *ARGS]) == 0
    got = digests(out)
    local = tmp_path / "local_run"
    assert main(["prepare", "--input", str(shuffled), "--out", str(local), "--buckets", "5", *ARGS]) == 0
    assert got == digests(local)
    # the shuffled lake's stats.json notes differ (rows out of order per file); every data file is the same
    assert {k: v for k, v in got.items() if k != "stats.json"} == {
        k: v for k, v in expected.items() if k != "stats.json"}
