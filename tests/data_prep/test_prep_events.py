"""data_prep.reading.events: readers, schema, column/label mapping, bad input, sort, dedup (the timezone rule:
test_prep_timezone.py)."""
import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from event_files import HEADER, ROWS, rows_of, wall, write_csv, write_jsonl

from data_prep.encoding import encode
from data_prep.reading.events import (
    PrepareError,
    events_from_arrays,
    load_events,
    load_label_map,
    parse_columns_option,
)

# ----------------------------------------------------------------------------- readers

def test_csv_reader_gives_sorted_canonical_table(tmp_path):
    table = load_events(write_csv(tmp_path / "e.csv", HEADER, ROWS))
    assert rows_of(table) == [
        ("u1", wall("2024-03-04 07:30:00"), "home", "Eating"),
        ("u1", wall("2024-03-04 08:00:00"), "home", "Watching videos"),
        ("u2", wall("2024-03-04 08:15:00"), "commuting", "Public transport"),
        ("u2", wall("2024-03-04 09:00:00"), "workplace", "Checking email"),
    ]
    assert table.behaviors == sorted(table.behaviors) and table.user_ids == ["u1", "u2"]
    assert table.user.dtype == np.int32 and table.place.dtype == np.int32 and table.behavior.dtype == np.int32
    assert table.time.dtype == np.int64
    assert table.notes["rows_read"] == 4 and table.dropped == {}
    assert list(table.user_offsets()) == [0, 2, 4]


def test_all_readers_agree(tmp_path):
    csv_table = load_events(write_csv(tmp_path / "e.csv", HEADER, ROWS))
    tsv_table = load_events(write_csv(tmp_path / "e.tsv", HEADER, ROWS, delimiter="\t"))
    jsonl_table = load_events(write_jsonl(tmp_path / "e.jsonl", [dict(zip(HEADER, r)) for r in ROWS]))
    pq.write_table(pa.table({k: [r[i] for r in ROWS] for i, k in enumerate(HEADER)}), tmp_path / "e.parquet")
    parquet_table = load_events(tmp_path / "e.parquet")
    for other in (tsv_table, jsonl_table, parquet_table):
        assert rows_of(other) == rows_of(csv_table)


def test_format_option_overrides_extension_and_unknown_extension_is_an_error(tmp_path):
    path = write_csv(tmp_path / "events.log", HEADER, ROWS)
    assert len(load_events(path, fmt="csv")) == 4
    with pytest.raises(PrepareError, match=r"events\.log.*extension"):
        load_events(path)
    with pytest.raises(PrepareError, match="unknown format 'xml'"):
        load_events(path, fmt="xml")


def test_jsonl_mixed_types_and_blank_lines(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"user_id": 7, "timestamp": 1709280000, "place": "home", "behavior": "Gaming"}\n'
                    "\n"
                    '{"user_id": "7", "timestamp": "1709283600", "place": "home", "behavior": "Taxi"}\n',
                    encoding="utf-8")
    table = load_events(path)
    assert rows_of(table) == [("7", 1709280000, "home", "Gaming"), ("7", wall("2024-03-01 09:00:00"), "home", "Taxi")]
    assert table.notes["blank_lines"] == 1


def test_parquet_multiple_row_groups_share_codes(tmp_path):
    n = 1000
    rng = np.random.default_rng(0)
    users = [f"user{i % 7}" for i in range(n)]
    behaviors = [f"b{int(x)}" for x in rng.integers(0, 5, n)]
    times = 1_700_000_000 + np.arange(n, dtype=np.int64) * 60
    pq.write_table(pa.table({"user_id": users, "timestamp": times, "place": ["home"] * n, "behavior": behaviors}),
                   tmp_path / "e.parquet", row_group_size=100)
    table = load_events(tmp_path / "e.parquet")
    assert len(table) == n and table.user_ids == sorted(set(users))
    expected = sorted(zip(users, times.tolist(), ["home"] * n, behaviors))
    assert rows_of(table) == expected


def test_parquet_integer_user_ids_and_timestamp_columns(tmp_path):
    naive = pa.array([datetime(2024, 3, 1, 8, 0), datetime(2024, 3, 1, 9, 0)], pa.timestamp("ms"))
    pq.write_table(pa.table({"user_id": [5, 5], "timestamp": naive, "place": ["home", "home"],
                             "behavior": ["a", "b"]}), tmp_path / "naive.parquet")
    table = load_events(tmp_path / "naive.parquet")
    assert table.user_ids == ["5"]
    assert list(table.time) == [wall("2024-03-01 08:00:00"), wall("2024-03-01 09:00:00")]
    # A zone-aware column is an instant: its own zone by default, `tz` when given.
    instant = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)
    aware = pa.array([instant], pa.timestamp("s", tz="Asia/Tokyo"))
    pq.write_table(pa.table({"user_id": ["u"], "timestamp": aware, "place": ["home"], "behavior": ["a"]}),
                   tmp_path / "aware.parquet")
    assert list(load_events(tmp_path / "aware.parquet").time) == [wall("2024-03-01 09:00:00")]
    assert list(load_events(tmp_path / "aware.parquet", tz="+01:00").time) == [wall("2024-03-01 01:00:00")]


def test_parquet_null_values(tmp_path):
    T = 1_700_000_000
    pq.write_table(pa.table({"user_id": ["u", "u", None, "u"],
                             "timestamp": pa.array([T + 100, None, T + 300, T + 400], pa.int64()),
                             "place": ["home", "home", "home", None], "behavior": ["a", "b", "c", None]}),
                   tmp_path / "e.parquet")
    table = load_events(tmp_path / "e.parquet", allow_bad_timestamps=True)
    assert rows_of(table) == [("u", T + 100, "home", "a")]
    assert table.dropped == {"bad_timestamp": 1, "empty_user": 1, "empty_label": 1}
    assert table.notes["bad_timestamp_examples"] == [{"row": 2, "value": None}]


# ----------------------------------------------------------------------------- column mapping

def test_parse_columns_option():
    assert parse_columns_option("user=uid, time=ts,place=loc,behavior=act") == {
        "user": "uid", "time": "ts", "place": "loc", "behavior": "act"}
    assert parse_columns_option("timestamp=ts") == {"time": "ts"}
    for bad, message in (("user", "key=column"), ("colour=x", "unknown key 'colour'"),
                         ("user=a,user_id=b", "given twice"), ("", "empty")):
        with pytest.raises(PrepareError, match=message):
            parse_columns_option(bad)


def test_column_mapping_reads_renamed_columns(tmp_path):
    path = write_csv(tmp_path / "e.csv", ["uid", "ts", "loc", "act", "extra"], [r + ["x"] for r in ROWS])
    table = load_events(path, columns=parse_columns_option("user=uid,time=ts,place=loc,behavior=act"))
    assert rows_of(table) == rows_of(load_events(write_csv(tmp_path / "ref.csv", HEADER, ROWS)))


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_missing_column_error_names_file_column_and_found_columns(tmp_path, suffix):
    header = ["user_id", "time", "place", "behavior"]  # misnamed timestamp
    path = tmp_path / f"e.{suffix}"
    if suffix == "csv":
        write_csv(path, header, ROWS)
    elif suffix == "jsonl":
        write_jsonl(path, [dict(zip(header, r)) for r in ROWS])
    else:
        pq.write_table(pa.table({k: [r[i] for r in ROWS] for i, k in enumerate(header)}), path)
    with pytest.raises(PrepareError) as err:
        load_events(path)
    message = str(err.value)
    assert str(path) in message and "'timestamp'" in message and "user_id, time, place, behavior" in message
    assert "\n" not in message
    with pytest.raises(PrepareError, match=r"'ts' \(mapped from time\)"):
        load_events(path, columns={"time": "ts"})


# ----------------------------------------------------------------------------- label map

def test_label_map_merges_labels_and_counts_unmapped(tmp_path):
    rows = [["u1", f"2024-03-04 0{h}:00:00", "home", label]
            for h, label in enumerate(["Douyin", "Kuaishou", "Taxi", "Unmapped app"])]
    path = write_csv(tmp_path / "e.csv", HEADER, rows)
    map_path = tmp_path / "map.json"
    map_path.write_text(json.dumps({"Douyin": "Watching videos", "Kuaishou": "Watching videos", "Taxi": "Taxi"}))
    table = load_events(path, label_map=load_label_map(map_path))
    assert table.behaviors == ["Taxi", "Watching videos"]
    assert [table.behaviors[b] for b in table.behavior] == ["Watching videos", "Watching videos", "Taxi"]
    assert table.dropped == {"label_not_in_map": 1}
    with pytest.raises(PrepareError, match=r"e\.csv: row 4: label 'Unmapped app' is not in the label map"):
        load_events(path, label_map=load_label_map(map_path), strict_labels=True)


def test_label_map_csv_with_and_without_header(tmp_path):
    (tmp_path / "a.csv").write_text("raw,category\nDouyin,Watching videos\n Kuaishou , Watching videos\n")
    (tmp_path / "b.csv").write_text("Douyin,Watching videos\n\nKuaishou,Watching videos\n")
    expected = {"Douyin": "Watching videos", "Kuaishou": "Watching videos"}
    assert load_label_map(tmp_path / "a.csv") == expected == load_label_map(tmp_path / "b.csv")


@pytest.mark.parametrize("name,content,message", [
    ("c.csv", "a,x\na,y\n", "maps to both"),
    ("c.csv", "a,x,z\n", r"row 1: expected 2 columns"),
    ("c.json", '{"a": ""}', "non-empty strings"),
    ("c.json", "[1, 2]", "must be an object"),
    ("c.json", "{}", "empty"),
    ("c.csv", "", "empty"),
])
def test_label_map_errors(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(PrepareError, match=message):
        load_label_map(tmp_path / name)


# ----------------------------------------------------------------------------- bad input

def test_unparseable_timestamps_are_dropped_counted_and_located(tmp_path):
    rows = [["u", "2024-03-01 08:00:00", "home", "a"], ["u", "yesterday", "home", "a"],
            ["u", "2024-02-30 08:00:00", "home", "a"], ["u", "2024-03-01", "home", "a"],
            ["u", "2024-03-01 24:00:00", "home", "a"], ["u", "", "home", "a"]]
    table = load_events(write_csv(tmp_path / "e.csv", HEADER, rows), allow_bad_timestamps=True)
    assert len(table) == 1 and table.dropped == {"bad_timestamp": 5}
    assert table.notes["bad_timestamp_rows"] == [2, 3, 4, 5, 6]
    assert table.notes["bad_timestamp_examples"][0] == {"row": 2, "value": "yesterday"}


def test_empty_labels_users_and_places(tmp_path):
    rows = [["u", "2024-03-01 08:00:00", "", "a"], ["u", "2024-03-01 09:00:00", "home", " "],
            ["", "2024-03-01 10:00:00", "home", "a"], ["", "bad time", "home", "a"],
            ["u", "2024-03-01 11:00:00", "home", "b"]]
    table = load_events(write_csv(tmp_path / "e.csv", HEADER, rows))
    # a row with several problems is counted once, under the first reason (empty_user first)
    assert table.dropped == {"empty_user": 2, "empty_label": 1}
    assert rows_of(table) == [("u", wall("2024-03-01 08:00:00"), "unknown", "a"),
                              ("u", wall("2024-03-01 11:00:00"), "home", "b")]
    assert table.notes["filled"] == {"empty_place": 1}


def test_empty_place_merges_with_an_existing_unknown_place():
    table = events_from_arrays(["u", "u", "u"], [10, 20, 30], ["", "unknown", "zoo"], ["a", "a", "a"])
    assert table.places == ["unknown", "zoo"] and list(table.place) == [0, 0, 1]
    assert table.notes["filled"] == {"empty_place": 1}


def test_duplicates_are_dropped_and_counted(tmp_path):
    rows = [["u", "2024-03-01 08:00:00", "workplace", "a"],
            ["u", "2024-03-01 08:00:00", "home", "a"],      # same user, time, behavior: duplicate
            ["u", "2024-03-01 08:00:00", "home", "b"],      # same time, other behavior: kept
            ["v", "2024-03-01 08:00:00", "home", "a"]]      # other user: kept
    table = load_events(write_csv(tmp_path / "e.csv", HEADER, rows))
    assert table.dropped == {"duplicate_event": 1}
    assert rows_of(table) == [("u", wall("2024-03-01 08:00:00"), "home", "a"),
                              ("u", wall("2024-03-01 08:00:00"), "home", "b"),
                              ("v", wall("2024-03-01 08:00:00"), "home", "a")]
    # which duplicate survives does not depend on the row order
    assert rows_of(load_events(write_csv(tmp_path / "r.csv", HEADER, rows[::-1]))) == rows_of(table)


def test_unsorted_input_is_sorted_and_noted(tmp_path):
    unsorted = load_events(write_csv(tmp_path / "e.csv", HEADER, ROWS))
    assert unsorted.notes["input_sorted"] is False and unsorted.notes["out_of_order_rows"] == 2
    ordered = [ROWS[2], ROWS[1], ROWS[3], ROWS[0]]
    table = load_events(write_csv(tmp_path / "s.csv", HEADER, ordered))
    assert table.notes["input_sorted"] is True and table.notes["out_of_order_rows"] == 0
    assert rows_of(table) == rows_of(unsorted)


def test_empty_inputs_are_errors(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(PrepareError, match=r"empty\.csv: file is empty"):
        load_events(tmp_path / "empty.csv")
    write_csv(tmp_path / "header.csv", HEADER, [])
    with pytest.raises(PrepareError, match="no data rows"):
        load_events(tmp_path / "header.csv")
    pq.write_table(pa.table({k: pa.array([], pa.string()) for k in HEADER}), tmp_path / "empty.parquet")
    with pytest.raises(PrepareError, match="no data rows"):
        load_events(tmp_path / "empty.parquet")
    write_csv(tmp_path / "bad.csv", HEADER, [["u", "never", "home", "a"]])
    with pytest.raises(PrepareError, match="no events left.*bad_timestamp: 1"):
        load_events(tmp_path / "bad.csv", allow_bad_timestamps=True)
    with pytest.raises(PrepareError, match="no such file"):
        load_events(tmp_path / "missing.csv")


def test_non_utf8_csv_error_names_file_row_and_byte(tmp_path):
    path = tmp_path / "latin.csv"
    good = b"user_id,timestamp,place,behavior\nu,2024-03-01 08:00:00,home,a\n"
    path.write_bytes(good + b"u,2024-03-01 09:00:00,home,Caf\xe9\n")
    with pytest.raises(PrepareError) as err:
        load_events(path)
    offset = len(good) + len(b"u,2024-03-01 09:00:00,home,Caf")
    assert str(err.value) == f"{path}: row 2: not valid UTF-8 (line 3, byte offset {offset})"


def test_non_utf8_jsonl_error(tmp_path):
    path = tmp_path / "e.jsonl"
    data = b'{"user_id": "u", "timestamp": 1, "place": "h", "behavior": "Caf\xe9"}\n'
    path.write_bytes(data)
    offset = data.index(0xE9)
    with pytest.raises(PrepareError, match=rf"e\.jsonl: row 1: not valid UTF-8 \(line 1, byte offset {offset}\)"):
        load_events(path)


def test_malformed_rows_are_errors_with_row_numbers(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"user_id": "u", "timestamp": 1700000000, "place": "h", "behavior": "a"}\n{"user_id": \n')
    with pytest.raises(PrepareError, match=r"e\.jsonl: row 2: not valid JSON"):
        load_events(path)
    path.write_text('{"user_id": "u", "timestamp": 1700000000, "place": "h", "behavior": "a"}\n'
                    '{"user_id": "u", "timestamp": 1700000000, "place": "h"}\n')
    with pytest.raises(PrepareError, match=r"row 2: missing key 'behavior'"):
        load_events(path)
    csv_path = tmp_path / "e.csv"
    csv_path.write_text("user_id,timestamp,place,behavior\nu,1700000000,home,a,extra\n")
    with pytest.raises(PrepareError, match=r"e\.csv: row 1: expected 4 fields \(as in the header\), got 5 \(line 2\)"):
        load_events(csv_path)


# ----------------------------------------------------------------------------- finishing step

def test_events_from_arrays_accepts_codes_and_reject_masks():
    users = pa.DictionaryArray.from_arrays(pa.array([1, 0, 1], pa.int32()), pa.array(["b", "a"]))
    table = events_from_arrays(users, np.array([30, 20, 10]), ["p", "p", "q"], ["x", "y", "z"],
                               reject={"bad_timestamp": np.array([False, False, True])})
    assert rows_of(table) == [("a", 30, "p", "x"), ("b", 20, "p", "y")]
    assert table.dropped == {"bad_timestamp": 1} and table.places == ["p"]  # unused names are removed


def test_packed_sort_matches_lexsort_fallback():
    rng = np.random.default_rng(1)
    n = 5000
    u = rng.integers(0, 30, n).astype(np.int32)
    t = rng.integers(0, 500, n).astype(np.int64) + 1_700_000_000
    p = rng.integers(0, 4, n).astype(np.int32)
    b = rng.integers(0, 6, n).astype(np.int32)
    packed = encode.sort_and_dedup([u.copy(), t.copy(), p.copy(), b.copy()], 30, 4, 6)
    fallback = encode.sort_and_dedup_lexsort(u.copy(), t.copy(), p.copy(), b.copy())
    for a, c in zip(packed[:4], fallback[:4]):
        assert np.array_equal(a, c)
    assert packed[4] == fallback[4] > 0 and packed[5] == fallback[5]
    # every (user, time, behavior) survives exactly once, and the result is sorted
    assert packed[4] == n - len(set(zip(u.tolist(), t.tolist(), b.tolist())))
    key = list(zip(packed[0].tolist(), packed[1].tolist(), packed[3].tolist()))
    assert key == sorted(set(key))
