"""The out-of-core prepare reads each file batch by batch (data_prep.engines.stream): with batches far smaller than
the file it writes the bytes, notes and errors of the one-file read, and never holds more than one batch."""
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.config import PrepareConfig
from data_prep.engines import buckets, outofcore, stream
from data_prep.errors import PrepareError
from data_prep.prepare import prepare
from data_prep.reading import sources
from data_prep.reading.events import load_events

CONFIG = PrepareConfig(train_cap=60, valid_cap=20, test_cap=10, p2_per_behavior=2, history_len=5, eps=0)
BATCH = 16


def quiet(*args, **kwargs):
    pass


def digests(directory):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


@pytest.fixture
def batches(monkeypatch):
    """Small batches; the row count of every batch read is recorded."""
    seen = []
    monkeypatch.setattr(stream, "STREAM_ROWS", BATCH)
    monkeypatch.setattr(stream, "CSV_BLOCK_BYTES", 512)
    monkeypatch.setattr(stream, "on_batch", seen.append)
    return seen


def rows():
    """Users interleaved (every batch splits users), out of order, duplicates across batches (one with an
    empty place, which must lose to a named one), an NFD label and a bad timestamp near the end."""
    out = []
    for step in range(30):
        for user in range(10):
            t = 1_710_000_000 + step * 3600 - (user % 3) * 7
            out.append([f"u{user}", str(t), f"p{(user + step) % 4}", f"b{(user * step) % 5}"])
    out[3][3], out[7][2] = "Cafe\u0301", ""
    out += [[u, t, "", b] for u, t, _, b in out[5:40:3]]          # duplicates with an empty place, late
    out.insert(20, [out[30][0], out[30][1], "zoo", out[30][3]])     # a duplicate named after the first one
    out.insert(len(out) - 3, ["u4", "not a time", "p1", "b1"])
    return out


def write(path, table):
    fmt = path.suffix
    if fmt == ".csv":
        path.write_text("user_id,timestamp,place,behavior\n" + "".join(",".join(r) + "\n" for r in table))
    elif fmt == ".jsonl":
        keys = ("user_id", "timestamp", "place", "behavior")
        path.write_text("".join(json.dumps(dict(zip(keys, r))) + "\n" for r in table) + "\n")
    else:
        columns = list(zip(*table))
        pq.write_table(pa.table({"user_id": columns[0], "timestamp": columns[1], "place": columns[2],
                                 "behavior": columns[3]}), path, row_group_size=100)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_small_batches_write_the_one_read_files(tmp_path, batches, suffix):
    path = write(tmp_path / f"ev{suffix}", rows())
    table = load_events(path)
    part = buckets.partition_file(sources.InputFile(str(path), suffix[1:]), 0, {}, str(tmp_path / "w"), 3)
    assert len(batches) > 4 and max(batches) <= BATCH if suffix != ".csv" else len(batches) > 4
    assert sum(batches) == table.notes["rows_read"]
    assert part["dropped"] == table.dropped and list(part["dropped"]) == list(table.dropped)
    assert json.dumps(part["notes"]) == json.dumps(table.notes)     # values and key order
    assert table.dropped["duplicate_event"] > 0 and table.notes["filled"] and table.notes["text_fixed"]
    assert not table.notes["input_sorted"] and table.notes["bad_timestamp_rows"]
    assert (part["user_ids"], part["places"], part["behaviors"]) == (table.user_ids, table.places,
                                                                      table.behaviors)
    prepare(table, tmp_path / "mem", CONFIG, log=quiet)
    outofcore.prepare_input(path, tmp_path / "ooc", CONFIG, n_buckets=3, log=quiet)
    assert digests(tmp_path / "ooc") == digests(tmp_path / "mem")


def error_of(call):
    with pytest.raises(PrepareError) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize("case", ["late_label", "mixed_kinds", "milliseconds_overall"])
def test_small_batches_raise_the_one_read_errors(tmp_path, batches, suffix, case):
    table = rows()
    if case == "late_label":
        table[-2][3] = "a, b"                                          # a label error after many batches
    elif case == "mixed_kinds":        # naive times in the first five batches (JSONL, Parquet), epoch later
        for r in table[:BATCH * 5]:
            if r[1].isdigit():
                r[1] = f"2024-03-0{1 + int(r[1]) % 9} 08:{int(r[1]) % 60:02d}:00"
    else:                                                              # milliseconds in the later batches
        for r in table[len(table) // 3:]:
            if r[1].isdigit():
                r[1] += "000"
    path = write(tmp_path / f"ev{suffix}", table)
    expected = error_of(lambda: load_events(path))
    assert error_of(lambda: outofcore.prepare_input(path, tmp_path / "ooc", CONFIG, n_buckets=3, log=quiet)) \
        == expected
    assert batches   # the batches were read before the file was read whole


def test_memory_holds_one_batch_of_a_large_file(tmp_path, batches):
    many = [[f"u{i % 97}", str(1_710_000_000 + i * 61), f"p{i % 7}", f"b{i % 5}"] for i in range(20 * BATCH * 10)]
    path = write(tmp_path / "big.parquet", many)
    outofcore.prepare_input(path, tmp_path / "ooc", CONFIG, n_buckets=4, log=quiet)
    assert sum(batches) == len(many) and max(batches) == BATCH   # row groups of 100: 16 * 6 + 4 each
