"""predict's --events as several files (a hive-partitioned directory of Parquet, CSV and JSONL parts, or a glob):
spooled file by file into user buckets and merged per bucket as prepare merges files, they give the histories
of the same events in one file; a duplicate across files is dropped once, and errors name the file and row."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from prep_lake import write_lake

from data_prep.reading.events import PrepareError
from serving.predict_files import ReadOptions, read_histories
from serving.spool import bucket_of, input_digest, read_spooled_events, spool_inputs

BUCKETS = 5


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("events_lake")
    single, lake_dir = write_lake(root, n_users=30, n_days=4, order_seed=7)
    return single, lake_dir


def spooled_histories(spec, folder) -> tuple[dict, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    spools = spool_inputs(str(spec), ReadOptions(), BUCKETS, set(range(BUCKETS)), folder, "events")
    histories, dropped = {}, {}
    for b, bucket_spools in spools.items():
        part, part_dropped = read_spooled_events(bucket_spools, ReadOptions())
        assert all(bucket_of(u, BUCKETS) == b for u in part)
        histories.update(part)
        for k, v in part_dropped.items():
            dropped[k] = dropped.get(k, 0) + v
    return histories, dropped


def test_a_lake_of_mixed_formats_gives_the_histories_of_one_file(lake, tmp_path):
    single, lake_dir = lake
    whole, whole_dropped = read_histories(str(single), ReadOptions())
    assert len({p.suffix for p in lake_dir.rglob("part-*")}) == 3
    got, dropped = spooled_histories(lake_dir, tmp_path / "a")
    assert got == whole and dropped == whole_dropped
    # a glob over the same files, and prepare's reader of the whole lake, agree
    assert spooled_histories(f"{lake_dir}/dt=*/part-*", tmp_path / "b")[0] == whole
    assert read_histories(str(lake_dir), ReadOptions())[0] == whole


def test_an_event_repeated_in_another_file_is_one_duplicate(lake, tmp_path):
    single, lake_dir = lake
    whole, whole_dropped = read_histories(str(single), ReadOptions())
    copy = tmp_path / "lake"
    copy.mkdir()
    for f in lake_dir.rglob("*"):
        if f.is_file():
            (copy / f.relative_to(lake_dir)).parent.mkdir(parents=True, exist_ok=True)
            (copy / f.relative_to(lake_dir)).write_bytes(f.read_bytes())
    row = pq.read_table(single).slice(0, 1).to_pylist()[0]
    (copy / "dt=extra").mkdir()
    (copy / "dt=extra" / "late.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    got, dropped = spooled_histories(copy, tmp_path / "spool")
    assert got == whole
    assert dropped.get("duplicate_event", 0) == whole_dropped.get("duplicate_event", 0) + 1
    assert input_digest(str(copy), None) != input_digest(str(lake_dir), None)


def test_a_bad_row_names_its_file_and_row(lake, tmp_path):
    _, lake_dir = lake
    bad = sorted(lake_dir.rglob("*.csv"))[0]
    copy = tmp_path / "lake"
    copy.mkdir()
    target = copy / bad.name
    lines = bad.read_text(encoding="utf-8").splitlines()
    user, time, place, _ = lines[1].split(",")
    target.write_text("\n".join([*lines, f'{user},{time},{place},"reading, writing"']) + "\n", encoding="utf-8")
    with pytest.raises(PrepareError, match=rf"^{target}: row {len(lines)}: .*', '"):
        spooled_histories(copy, tmp_path / "spool")
