"""INPUT as many files (data_prep.reading.sources): a hive-partitioned lake of Parquet / CSV / JSONL parts, a glob and a
file:// URI read as the same events as one file, under the same rules and errors."""
import hashlib
import shutil

import numpy as np
import pytest
from prep_lake import write_lake

from data_prep.cli import main
from data_prep.config import PrepareConfig
from data_prep.errors import PrepareError
from data_prep.prepare import prepare
from data_prep.reading import sources
from data_prep.reading.events import load_events

CONFIG = PrepareConfig(train_cap=300, valid_cap=100, test_cap=60, p2_per_behavior=5, history_len=8, eps=0)


def quiet(*args, **kwargs):
    pass


def digests(directory, skip=("stats.json",)):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())
            if f.name not in skip}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return write_lake(tmp_path_factory.mktemp("lake"))


def same_events(a, b):
    assert a.user_ids == b.user_ids and a.places == b.places and a.behaviors == b.behaviors
    for column in ("user", "time", "place", "behavior"):
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column))


def test_a_hive_lake_reads_as_the_same_events_as_one_file(lake):
    single, root = lake
    files = sources.list_inputs(root)
    assert len(files) == 18 and {f.fmt for f in files} == {"parquet", "csv", "jsonl"}
    assert [f.name for f in files] == sorted(f.name for f in files)
    assert not any(f.name.endswith("_SUCCESS") for f in files)
    table = sources.load_input(root)
    same_events(load_events(single), table)
    assert table.notes["files"] == 18 and table.notes["rows_read"] == len(table.user)


def test_a_glob_and_a_file_uri_select_files(lake):
    single, root = lake
    parquet_only = sources.load_input(f"{root}/**/*.parquet")
    assert 0 < len(parquet_only.user) < len(load_events(single).user)
    same_events(sources.load_input(f"file://{root}"), sources.load_input(root))


def test_prepare_from_the_lake_writes_the_files_of_the_single_file(lake, tmp_path):
    single, root = lake
    prepare(load_events(single), tmp_path / "one", CONFIG, log=quiet)
    assert main(["prepare", "--input", str(root), "--out", str(tmp_path / "lake"), "--train-cap", "300",
                 "--valid-cap", "100", "--test-cap", "60", "--p2-per-behavior", "5", "--history-len", "8",
                 "--eps", "0"]) == 0
    assert digests(tmp_path / "one") == digests(tmp_path / "lake")


def test_which_file_holds_an_event_does_not_change_the_output(lake, tmp_path):
    _, root = lake
    _, other = write_lake(tmp_path, order_seed=9)   # same events, dealt to the files in another order
    prepare(sources.load_input(root), tmp_path / "a", CONFIG, log=quiet)
    prepare(sources.load_input(other), tmp_path / "b", CONFIG, log=quiet)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_an_event_in_two_files_is_one_duplicate(lake, tmp_path):
    _, root = lake
    copy = tmp_path / "lake"
    shutil.copytree(root, copy)
    part = sorted(copy.glob("dt=*/part-0.parquet"))[0]
    shutil.copy(part, part.with_name("copy-of-part-0.parquet"))
    table = sources.load_input(copy)
    same_events(sources.load_input(root), table)
    assert table.dropped["duplicate_event"] == len(load_events(part).user)


def test_a_bad_row_names_its_file_and_row(lake, tmp_path):
    _, root = lake
    copy = tmp_path / "lake"
    shutil.copytree(root, copy)
    bad = sorted(copy.glob("dt=*/*.csv"))[1]
    lines = bad.read_text().splitlines()
    lines[3] = lines[3] + ',"extra"'
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(PrepareError, match=rf"^{bad}: row 3: expected 4 fields"):
        sources.load_input(copy)


def test_no_event_files_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PrepareError, match="no event files found"):
        sources.list_inputs(tmp_path)
    with pytest.raises(PrepareError, match="no such file"):
        sources.list_inputs(tmp_path / "missing")
