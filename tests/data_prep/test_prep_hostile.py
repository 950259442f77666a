"""Hostile inputs: each input kind of the corpus below either stops with a one-line error
naming the file, the row and the problem, or loads with the bad rows dropped and counted by reason.

The corpus is generated here (no binary fixtures): CORPUS maps a case name to (builder, expected outcome).
A builder writes its input under a temporary directory and returns (loader, path, options).
"""
import json
import math
import re
import unicodedata
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.encoding.table import drop_warning
from data_prep.reading.events import PrepareError, load_events, load_foursquare, load_label_map
from data_prep.reading.labels import MAX_LABEL_CHARS

HEADER = "user_id,timestamp,place,behavior"
T = 1_709_280_000  # 2024-03-01 08:00:00 UTC


def csv_file(tmp, rows, name="e.csv", final_newline=True, **options):
    path = tmp / name
    path.write_text("\n".join([HEADER, *rows]) + ("\n" if final_newline else ""), encoding="utf-8")
    return load_events, path, options


def jsonl_text(tmp, text, name="e.jsonl", **options):
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return load_events, path, options


def jsonl_file(tmp, records, **options):
    return jsonl_text(tmp, "".join(json.dumps(r) + "\n" for r in records), **options)


def parquet_file(tmp, columns, **options):
    path = tmp / "e.parquet"
    pq.write_table(pa.table(columns), path)
    return load_events, path, options


def events(n, **fields):
    """n JSONL records a minute apart; fields override per record (lists) or for all (scalars)."""
    base = {"user_id": "u1", "timestamp": T, "place": "home", "behavior": "Music"}
    out = []
    for i in range(n):
        record = {**base, "timestamp": T + 60 * i}
        for key, value in fields.items():
            record[key] = value[i] if isinstance(value, list) else value
        out.append(record)
    return out


def big_quoted_csv(tmp):
    """A valid CSV over the reader's 16 MiB block with a quoted newline in every row."""
    rows = (f'u{i % 100},{T + i},"home\nsweet",b{i % 7}' for i in range(560_000))
    path = tmp / "big.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert path.stat().st_size > 16 * 2**20
    return load_events, path, {}


def foursquare_home(tmp):
    lines = [f"1\tv\tc\t{category}\t40.700000\t-74.000000\t-240\tTue Apr 03 1{h}:00:09 +0000 2012"
             for h, category in enumerate(["Home", "Home (private)", "Bar", "Home"])]
    path = tmp / "tsmc.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_foursquare, path, {}


def label_map_with_surrogate(tmp):
    path = tmp / "map.json"
    path.write_text('{\n  "Bar": "Nightlife",\n  "Cafe": "Food \\ud83d"\n}\n', encoding="utf-8")
    return (lambda p: load_label_map(p)), path, {}


def timestamp_us(years):
    return pa.array([int((datetime(y, 3, 1, 8) - datetime(1970, 1, 1)).total_seconds()) * 10**6 for y in years],
                    pa.timestamp("us"))


def error(pattern):
    return ("error", pattern)


def drops(counts, **checks):
    return ("drops", counts, checks)


CORPUS = {
    # --- Parquet timestamps far outside 1970-2100 (sentinels): dropped, and stats.json stays valid JSON
    "parquet_ts_1900_and_3000": (
        lambda tmp: parquet_file(tmp, {"user_id": ["u"] * 4, "timestamp": timestamp_us([2024, 1900, 3000, 2024]),
                                       "place": ["home"] * 4, "behavior": ["a", "a", "a", "b"]},
                              allow_bad_timestamps=True),
        drops({"bad_timestamp": 2}, bad_rows=[2, 3])),
    # --- lone surrogates (a cut emoji) in JSONL values and in a label map
    "jsonl_lone_surrogate": (
        lambda tmp: jsonl_text(tmp, json.dumps(events(1)[0]) + "\n"
                               + '{"user_id": "u1", "timestamp": 1709280060, "place": "home", '
                                 '"behavior": "A \\ud83d"}\n'),
        error(r"e\.jsonl: row 2: field 'behavior' holds a lone surrogate '\\ud83d'")),
    "label_map_lone_surrogate": (
        label_map_with_surrogate, error(r"map\.json: line 3 \(key 'Cafe'\): .*lone surrogate")),
    # --- ids: NaN is a missing user, never a user "nan"; big integer ids stored as floats are refused
    "parquet_nan_user": (
        lambda tmp: parquet_file(tmp, {"user_id": pa.array([1.0, math.nan, 2.0, 1.0]),
                                       "timestamp": pa.array([T, T + 60, T + 120, T + 180]),
                                       "place": ["home"] * 4, "behavior": ["a"] * 4}),
        drops({"empty_user": 1}, users=["1", "2"])),
    "jsonl_nan_user": (
        lambda tmp: jsonl_file(tmp, events(4, user_id=[7, math.nan, 7.0, "8"])),
        drops({"empty_user": 1}, users=["7", "8"])),
    "parquet_big_float_ids": (
        lambda tmp: parquet_file(tmp, {"user_id": pa.array([1.0, 1234567890123456789.0, 1234567890123456788.0]),
                                       "timestamp": pa.array([T, T + 60, T + 120]),
                                       "place": ["home"] * 3, "behavior": ["a"] * 3}),
        error(r"e\.parquet: row 2: user id '1\.2345678901234568e\+18' .*beyond 2\*\*53")),
    "csv_big_float_ids_as_text": (
        lambda tmp: csv_file(tmp, [f"1.2345678901234568e+18,{T},home,a", f"7,{T},home,a"]),
        error(r"e\.csv: row 1: user id .*beyond 2\*\*53")),
    # --- numbers that are not epoch seconds
    "csv_compact_dates": (
        lambda tmp: csv_file(tmp, [f"u,{d},home,a" for d in (20240301, 20240302, 20240303)]),
        error(r"e\.csv: row 1: timestamp 20240301 looks like a compact date YYYYMMDD")),
    "csv_spreadsheet_serials": (
        lambda tmp: csv_file(tmp, [f"u,{d},home,a" for d in (45352.35, 45352.5, 45353.1)]),
        error(r"e\.csv: row 1: timestamp 45352\.35 looks like a spreadsheet serial date")),
    "csv_epoch_zero_sentinel": (
        lambda tmp: csv_file(tmp, [f"u,{t},home,a" for t in (T, 0, T + 60, T + 120)], allow_bad_timestamps=True),
        drops({"bad_timestamp": 1}, bad_rows=[2])),
    # --- more than 5 % of the rows with a bad timestamp: a wrong format, not a few bad rows
    "csv_bad_timestamps_over_five_percent": (
        lambda tmp: csv_file(tmp, [f"u,{t},home,a" for t in (T, 0, T + 60, T + 120)]),
        error(r"e\.csv: 1 of 4 rows \(25\.0%\) have a timestamp that does not read as ISO-8601 or epoch seconds")),
    "csv_bad_timestamps_at_five_percent": (
        lambda tmp: csv_file(tmp, [f"u,{T + 60 * k if k else 0},home,a" for k in range(20)]),
        drops({"bad_timestamp": 1}, bad_rows=[1])),
    # --- time zones: naive next to zoned is refused at the first row of the smaller kind
    "csv_offsets_mixed_with_naive": (
        lambda tmp: csv_file(tmp, ["u,2024-03-01T08:00:00+08:00,home,a", "u,2024-03-01T09:00:00+08:00,home,a",
                                   "u,2024-03-01 10:00:00,home,a"]),
        error(r"e\.csv: row 3: timestamp '2024-03-01 10:00:00' has no time zone, while 2 other rows")),
    "jsonl_naive_mixed_with_epoch": (
        lambda tmp: jsonl_file(tmp, events(3, timestamp=["2024-03-01 08:00", T, T + 60])),
        error(r"e\.jsonl: row 1: timestamp '2024-03-01 08:00' has no time zone")),
    # --- labels
    "label_with_candidate_separator": (
        lambda tmp: csv_file(tmp, [f"u,{T},home,Music", f'u,{T + 60},home,"Arts, Crafts"']),
        error(r"e\.csv: row 2: behavior 'Arts, Crafts' contains ', '")),
    "label_nfc_and_nfd": (
        lambda tmp: jsonl_file(tmp, events(3, behavior=[unicodedata.normalize("NFC", "Café"),
                                                        unicodedata.normalize("NFD", "Café"), "Bar"])),
        drops({}, behaviors=["Bar", unicodedata.normalize("NFC", "Café")], text_fixed={"behavior_nfc": 1})),
    "label_line_separators": (
        lambda tmp: jsonl_file(tmp, events(3, behavior=["Music\u2028Live", "Music \r\n Live", "Music Live"],
                                           place=["home\x85garden", "home", "home"])),
        drops({}, behaviors=["Music Live"], places=["home", "home garden"],
              text_fixed={"behavior_line_breaks": 2, "place_line_breaks": 1})),
    "label_absurdly_long": (
        lambda tmp: csv_file(tmp, [f"u,{T},home,Music", f"u,{T + 60},home,{'x' * 10_000}"]),
        error(rf"e\.csv: row 2: behavior 'x+'\.\.\. is 10000 characters long, more than {MAX_LABEL_CHARS}")),
    # --- column mapping
    "columns_place_is_behavior": (
        lambda tmp: (*csv_file(tmp, [f"u,{T},home,Music"])[:2], {"columns": {"place": "behavior"}}),
        error(r"--columns: place and behavior would both read column 'behavior'")),
    # --- CSV structure
    "csv_over_16_mib_with_quoted_newlines": (big_quoted_csv, drops({}, n_events=560_000, places=["home sweet"])),
    "csv_header_only_without_final_newline": (
        lambda tmp: csv_file(tmp, [], final_newline=False), error(r"e\.csv: no events \(the file has no data rows\)")),
    "csv_wrong_field_count": (
        lambda tmp: csv_file(tmp, [f"u,{T},home,a", f"u,{T + 60},home,a,extra"]),
        error(r"e\.csv: row 2: expected 4 fields \(as in the header\), got 5 \(line 3\)")),
    "csv_missing_field_after_quoted_newline": (
        lambda tmp: csv_file(tmp, [f'u,{T},"home\nsweet",a', f"u,{T + 60},home"]),
        error(r"e\.csv: row 2: expected 4 fields \(as in the header\), got 3 \(line 4\)")),
    # --- Foursquare: a category named like a place is not a leak (places come from coordinates)
    "foursquare_category_home": (foursquare_home, drops({}, behaviors=["Bar", "Home", "Home (private)"])),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_input(tmp_path, case):
    build, expected = CORPUS[case]
    loader, path, options = build(tmp_path)
    if expected[0] == "error":
        with pytest.raises(PrepareError) as caught:
            loader(path, **options)
        message = str(caught.value)
        assert "\n" not in message and message.startswith((str(path), "--columns"))
        assert re.search(expected[1], message), message
        message.encode("utf-8")  # printable: no lone surrogate leaks into the message itself
        return
    _, counts, checks = expected
    table = loader(path, **options)
    assert table.dropped == counts
    # exact accounting, and notes that stats.json can hold (strict JSON: no datetimes, no NaN)
    assert table.notes["rows_read"] == len(table) + sum(table.dropped.values())
    json.dumps(table.notes, allow_nan=False)
    expected_checks = {"users": table.user_ids, "behaviors": table.behaviors, "places": table.places,
                       "n_events": len(table), "text_fixed": table.notes.get("text_fixed"),
                       "bad_rows": table.notes.get("bad_timestamp_rows")}
    for key, value in checks.items():
        assert expected_checks[key] == value, key


def test_z_and_plus_zero_are_the_same_instant_in_csv_and_jsonl(tmp_path):
    """A pandas UTC frame written to CSV (+00:00) and to JSONL (Z) gives the same local times under --tz."""
    csv_path = tmp_path / "e.csv"
    csv_path.write_text(f"{HEADER}\nu,2024-03-01 08:00:00+00:00,home,a\nu,2024-03-01 23:30:00+00:00,home,b\n")
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in events(
        2, timestamp=["2024-03-01T08:00:00.000Z", "2024-03-01T23:30:00.000Z"], behavior=["a", "b"],
        user_id="u")))
    for tz in (None, "Asia/Shanghai", "America/New_York"):
        from_csv, from_jsonl = load_events(csv_path, tz=tz), load_events(jsonl, tz=tz)
        assert list(from_csv.time) == list(from_jsonl.time)
    shanghai = load_events(csv_path, tz="Asia/Shanghai").time
    assert list(np.diff(shanghai)) == [15 * 3600 + 1800] and shanghai[0] % 86400 == 16 * 3600


def test_many_drops_give_one_warning_line(tmp_path):
    _, path, _ = csv_file(tmp_path, [f"u,{T + 60 * i},home,{'a' if i % 10 else ''}" for i in range(40)])
    table = load_events(path)
    assert table.dropped == {"empty_label": 4}
    line = drop_warning(table)
    assert line == "4 of 40 input rows (10.0%) were dropped: empty_label 4 (stats.json 'dropped')"
    _, path, _ = csv_file(tmp_path, [f"u,{T + 60 * i},home,{'a' if i else ''}" for i in range(100)], "few.csv")
    assert drop_warning(load_events(path)) is None   # 1 % is below the warning share
