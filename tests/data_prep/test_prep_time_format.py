"""Timestamps written with a format: TIME_FORMAT for prepare and predict, and the columns that need one
(slash dates, compact YYYYMMDDHH digits) refused with the TIME_FORMAT to set."""
from __future__ import annotations

import argparse
import calendar
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.cli import main as prepare_main
from data_prep.config import PrepareConfig, parse_time_format
from data_prep.reading.events import PrepareError, hour_of, load_events, parse_times, weekday_of
from pipeline.settings import BY_NAME

ROOT = Path(__file__).resolve().parents[2]
HEADER = "user_id,timestamp,place,behavior"
DMY = "%d/%m/%Y %H:%M"


def wall(text: str) -> int:
    return calendar.timegm(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").timetuple())


def csv_file(path: Path, times, users=None) -> Path:
    users = users or ["u"] * len(times)
    lines = [HEADER] + [f"{u},{t},home,b{i % 3}" for i, (u, t) in enumerate(zip(users, times))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def error_of(call) -> str:
    with pytest.raises(PrepareError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- TIME_FORMAT --------------------------------------------------------------------------------------------

def test_a_day_first_export_parses_with_time_format(tmp_path):
    path = csv_file(tmp_path / "eu.csv", ["04/03/2024 07:00", "13/03/2024 18:30", "4/3/2024 9:05"])
    table = load_events(path, time_format=DMY)
    assert sorted(table.time.tolist()) == [wall("2024-03-04 07:00:00"), wall("2024-03-04 09:05:00"),
                                           wall("2024-03-13 18:30:00")]
    first = int(np.argmin(table.time))
    assert weekday_of(table.time)[first] == 0 and hour_of(table.time)[first] == 7   # Monday 07:00
    assert datetime(2024, 3, 4).weekday() == 0
    assert table.notes["time_formats"] == {"time_format": 3} and table.notes["time_format"] == DMY


def test_time_format_keeps_the_timezone_rule():
    # naive values are local as written, under any tz
    assert parse_times(["04/03/2024 07:00"], tz="Asia/Shanghai", time_format=DMY)[0].tolist() == [
        wall("2024-03-04 07:00:00")]
    # %z values name their instant: tz's local time with tz, the written wall time without
    values = ["04/03/2024 07:00 +0100", "04/03/2024 07:00 -0500"]
    fmt = DMY + " %z"
    assert parse_times(values, time_format=fmt)[0].tolist() == [wall("2024-03-04 07:00:00")] * 2
    assert parse_times(values, tz="UTC", time_format=fmt)[0].tolist() == [wall("2024-03-04 06:00:00"),
                                                                          wall("2024-03-04 12:00:00")]
    assert parse_times(values, tz="+08:00", time_format=fmt)[0].tolist() == [wall("2024-03-04 14:00:00"),
                                                                             wall("2024-03-04 20:00:00")]


def test_rows_that_do_not_match_are_dropped_and_most_not_matching_is_an_error(tmp_path):
    times = ["04/03/2024 07:00", "05/03/2024 07:00", "06/03/2024 07:00", "2024-03-07 07:00"]
    table = load_events(csv_file(tmp_path / "few.csv", times), time_format=DMY, allow_bad_timestamps=True)
    assert len(table) == 3 and table.dropped == {"bad_timestamp": 1}
    assert table.notes["bad_timestamp_examples"] == [{"row": 4, "value": "2024-03-07 07:00"}]
    iso = csv_file(tmp_path / "iso.csv", ["2024-03-04 07:00", "2024-03-05 07:00", "", "04/03/2024 07:00"])
    message = error_of(lambda: load_events(iso, time_format=DMY))
    assert message == (f"{iso}: row 1: timestamp '2024-03-04 07:00' does not match TIME_FORMAT '{DMY}'; 2 of the "
                       f"3 timestamps fail so: set TIME_FORMAT to the strptime format they are written in")
    assert "outside 1971-2099" in error_of(lambda: parse_times(["07:00", "08:00"], time_format="%H:%M"))


@pytest.mark.parametrize("fmt, words", [("%Q %H", "'Q' is a bad directive"), ("mixed", "no strptime directive"),
                                        ("%d %Z", "%Z (zone names) is not read")])
def test_a_bad_time_format_is_one_line(fmt, words):
    assert words in error_of(lambda: PrepareConfig(time_format=fmt))
    assert words in error_of(lambda: parse_times(["x"], time_format=fmt))


def test_none_means_no_time_format():
    assert parse_time_format("none") is None and parse_time_format("") is None
    assert parse_time_format(DMY) == DMY


# ---- slash dates without TIME_FORMAT --------------------------------------------------------------------------

def test_ambiguous_slash_dates_stop_with_the_time_format_to_set(tmp_path):
    path = csv_file(tmp_path / "eu.csv", ["04/03/2024 07:00", "05/03/2024 08:00", "12/11/2024 23:00"])
    assert error_of(lambda: load_events(path)) == (
        f"{path}: row 1: timestamp '04/03/2024 07:00' is a slash date whose day and month order cannot be told "
        f"apart; set TIME_FORMAT (e.g. TIME_FORMAT=\"%d/%m/%Y %H:%M\" or \"%m/%d/%Y %H:%M\")")


def test_slash_dates_that_read_both_ways_name_both_orders(tmp_path):
    path = csv_file(tmp_path / "mixed.csv", ["04/03/2024 07:00", "13/03/2024 08:00", "03/14/2024 09:00"])
    message = error_of(lambda: load_events(path))
    assert ("'13/03/2024 08:00' reads only day first, '03/14/2024 09:00' only month first" in message
            and 'TIME_FORMAT="%d/%m/%Y %H:%M" or "%m/%d/%Y %H:%M"' in message)


@pytest.mark.parametrize("times, fmt", [
    (["04/03/2024 07:00", "13/03/2024 08:00"], '"%d/%m/%Y %H:%M"'),
    (["04/03/2024 07:00:10", "03/13/2024 08:00:00"], '"%m/%d/%Y %H:%M:%S"'),
    (["4.3.2024 7:00", "13.3.2024 8:00"], '"%d.%m.%Y %H:%M"'),
    (["3/4/2024 7:00 PM", "3/14/2024 8:00 AM"], '"%m/%d/%Y %I:%M %p"'),
    (["2024/03/04 07:00", "2024/03/13 08:00"], '"%Y/%m/%d %H:%M"'),
])
def test_a_column_that_shows_its_order_names_its_format(tmp_path, times, fmt):
    path = csv_file(tmp_path / "e.csv", times)
    message = error_of(lambda: load_events(path))
    assert message.startswith(f"{path}: row 1: timestamp '{times[0]}' is a ") and message.endswith(
        f"set TIME_FORMAT={fmt}")
    assert len(load_events(path, time_format=json.loads(fmt))) == 2   # the format it names reads the file


def test_the_error_names_the_first_slash_row_and_a_few_among_iso_rows_are_dropped(tmp_path):
    path = csv_file(tmp_path / "e.csv", ["2024-03-01 07:00", "04/03/2024 07:00", "05/03/2024 07:00",
                                         "06/03/2024 07:00"])
    assert error_of(lambda: load_events(path)).startswith(f"{path}: row 2: timestamp '04/03/2024 07:00' is a slash")
    few = csv_file(tmp_path / "few.csv", ["2024-03-01 07:00", "2024-03-01 08:00", "04/03/2024 07:00"])
    assert load_events(few, allow_bad_timestamps=True).dropped == {"bad_timestamp": 1}


def test_other_shapes_name_time_format_and_dates_without_hours_say_so(tmp_path):
    path = csv_file(tmp_path / "e.csv", ["Mar 4 2024 07:00", "Mar 5 2024 08:00", "2024-03-01 07:00"])
    message = error_of(lambda: load_events(path))
    assert "is neither ISO-8601" in message and "2 of the 3 timestamps have its shape; set TIME_FORMAT" in message
    dates = csv_file(tmp_path / "d.csv", ["04/03/2024", "05/03/2024"])
    assert "is a date without a time of day" in error_of(lambda: load_events(dates))
    words = csv_file(tmp_path / "w.csv", ["never", "never", "2024-03-01 07:00"])   # no digits: bad values only
    assert load_events(words, allow_bad_timestamps=True).dropped == {"bad_timestamp": 2}


# ---- compact digits YYYYMMDDHH ----------------------------------------------------------------------------

def test_compact_hours_stop_in_every_format_and_parse_with_time_format(tmp_path):
    values = [2024030107, 2024030118, 2024030209]
    csv = csv_file(tmp_path / "e.csv", values)
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text("".join(json.dumps({"user_id": "u", "timestamp": v, "place": "home", "behavior": f"b{i}"})
                             + "\n" for i, v in enumerate(values)))
    parquet = tmp_path / "e.parquet"
    pq.write_table(pa.table({"user_id": ["u"] * 3, "timestamp": pa.array(values, pa.int64()),
                             "place": ["home"] * 3, "behavior": ["b0", "b1", "b2"]}), parquet)
    expected = [wall("2024-03-01 07:00:00"), wall("2024-03-01 18:00:00"), wall("2024-03-02 09:00:00")]
    for path in (csv, jsonl, parquet):
        assert error_of(lambda p=path: load_events(p)) == (
            f"{path}: row 1: timestamp 2024030107 is a compact date and time YYYYMMDDHH (2024-03-01 07:00), as is "
            f"every timestamp of the column (3), not epoch seconds; set TIME_FORMAT=\"%Y%m%d%H\"")
        table = load_events(path, time_format="%Y%m%d%H")
        assert sorted(table.time.tolist()) == expected and list(hour_of(np.sort(table.time))) == [7, 18, 9]


@pytest.mark.parametrize("values, fmt", [([202403010700, 202403011730], "%Y%m%d%H%M"),
                                         ([20240301070000, 20240301173005], "%Y%m%d%H%M%S"),
                                         ([2024030107.0, 2024123123.0], "%Y%m%d%H")])
def test_longer_compact_digits_and_whole_floats(values, fmt):
    assert error_of(lambda: parse_times(values, detect=True)).endswith(f'set TIME_FORMAT="{fmt}"')
    assert parse_times(values, time_format=fmt)[1].all()


def test_epoch_seconds_are_never_taken_for_compact_digits():
    now = [1709280000, 1709283600, 1709287237]            # 2024: reads as the year 1709
    local, ok, notes = parse_times(now, detect=True)
    assert local.tolist() == now and ok.all() and notes["time_formats"] == {"epoch": 3}
    assert parse_times([str(v) for v in now], detect=True)[0].tolist() == now
    # epoch seconds of 2033 start with a year-like 20..: their last digits (seconds 00-99) are not an hour
    later = [2000000000 + k * 3_607 for k in range(50)]
    assert parse_times(later, detect=True)[0].tolist() == later
    # one value that is no valid YYYYMMDDHH (hour 24) does not make the column epoch seconds
    with pytest.raises(PrepareError, match=r"row 1: .*compact.*would not parse with it: row 2 \(2024030124\)"):
        parse_times([2024030107, 2024030124], detect=True)
    # sentinels before 1971 do not hide a compact column
    with pytest.raises(PrepareError, match=r"row 2: timestamp 2024030107 is a compact"):
        parse_times([0, 2024030107, 2024030108], detect=True)
    # serve's JSON (parse_times without detect) reads numbers as epoch seconds, as before
    assert parse_times([2024030107])[1].all()


def test_compact_dates_without_hours_keep_their_error():
    with pytest.raises(PrepareError, match="looks like a compact date YYYYMMDD"):
        parse_times([20240301, 20240302], detect=True)


# ---- prepare: the command line records it --------------------------------------------------------------------

def _log(path: Path, fmt) -> Path:
    rng = np.random.default_rng(3)
    t0 = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
    lines = [HEADER]
    for u in range(30):
        for t in np.sort(rng.choice(20 * 24, 12, replace=False)):
            stamp = datetime.fromtimestamp(t0 + int(t) * 3600, tz=UTC).strftime(fmt)
            lines.append(f"u{u},{stamp},home,{rng.choice(['eat', 'work', 'sleep'])}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_prepare_reads_with_time_format_and_records_it(tmp_path, capsys):
    common = ["--history-len", "5", "--test-cap", "20", "--p2-per-behavior", "3", "--eps", "0"]
    eu = _log(tmp_path / "eu.csv", DMY)
    assert prepare_main(["prepare", "--input", str(eu), "--out", str(tmp_path / "no"), *common]) == 2
    assert "set TIME_FORMAT" in capsys.readouterr().err
    assert prepare_main(["prepare", "--input", str(eu), "--out", str(tmp_path / "eu"), "--time-format", DMY,
                         *common]) == 0
    iso = _log(tmp_path / "iso.csv", "%Y-%m-%d %H:%M")
    assert prepare_main(["prepare", "--input", str(iso), "--out", str(tmp_path / "iso"), *common]) == 0
    stats = json.loads((tmp_path / "eu" / "stats.json").read_text())
    assert stats["config"]["time_format"] == DMY
    assert json.loads((tmp_path / "iso" / "stats.json").read_text())["config"]["time_format"] is None
    for name in ("train_all.jsonl", "test_p1.jsonl"):   # the same events: the same samples
        assert (tmp_path / "eu" / name).read_bytes() == (tmp_path / "iso" / name).read_bytes()
    assert prepare_main(["prepare", "--synthetic", "--out", str(tmp_path / "s"), "--time-format", DMY]) == 2
    assert "--time-format reads the timestamps of an --input file" in capsys.readouterr().err


# ---- predict -------------------------------------------------------------------------------------------------

def test_predict_reads_events_and_next_with_time_format(tmp_path):
    from serving.predict_files import ReadOptions, read_histories, read_next

    events = csv_file(tmp_path / "events.csv", ["04/03/2024 07:00", "13/03/2024 08:00"])
    nxt = tmp_path / "next.csv"
    nxt.write_text("user_id,timestamp,place\nu,14/03/2024 09:30,home\n", encoding="utf-8")
    opts = ReadOptions(time_format=DMY)
    histories, _ = read_histories(str(events), opts)
    assert [e.time for e in histories["u"]] == [wall("2024-03-04 07:00:00"), wall("2024-03-13 08:00:00")]
    contexts, _ = read_next(str(nxt), opts)
    assert contexts == {"u": (wall("2024-03-14 09:30:00"), "home")}
    with pytest.raises(PrepareError, match="set TIME_FORMAT"):
        read_histories(str(events), ReadOptions())


def test_predict_defaults_to_the_time_format_prepare_used():
    from serving.__main__ import _time_format

    run = argparse.Namespace(source={"kind": "events"}, stats={"config": {"time_format": DMY}})
    assert _time_format(argparse.Namespace(time_format=None), run) == DMY
    assert _time_format(argparse.Namespace(time_format="%Y%m%d%H"), run) == "%Y%m%d%H"
    assert _time_format(argparse.Namespace(time_format="none"), run) is None
    synthetic = argparse.Namespace(source={"kind": "synthetic"}, stats={"config": {"time_format": None}})
    assert _time_format(argparse.Namespace(time_format=None), synthetic) is None


# ---- the pipeline ---------------------------------------------------------------------------------------------

def test_the_pipeline_passes_time_format_to_prepare_and_reruns_it_when_it_changes(tmp_path):
    from pipeline import stages
    from pipeline.graph import Runner
    from pipeline.layout import Layout
    from pipeline.settings import Variables
    from pipeline.stamps import write_stamp

    log = csv_file(tmp_path / "eu.csv", ["04/03/2024 07:00"])
    s = Variables({"RUN_DIR": str(tmp_path / "run"), "INPUT": str(log), "TIME_FORMAT": DMY})
    lay = Layout.of(s)
    stage = stages.prepare(s, lay)
    at = stage.command.index("--time-format")
    assert stage.command[at + 1] == DMY and stage.params["TIME_FORMAT"] == DMY
    runner = Runner(tmp_path / "cache.json", log=lambda *a: None)
    for out in stage.outputs:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")
    key, _ = runner.status(stage)
    write_stamp(stage.stamp, key, stage.params, runner.cache.digests(stage.inputs), stage.outputs)
    assert runner.status(stages.prepare(s, lay))[1] == []                     # same format: up to date
    _, reasons = runner.status(stages.prepare(s.with_(TIME_FORMAT="%m/%d/%Y %H:%M"), lay))
    assert reasons == [f"TIME_FORMAT: '{DMY}' -> '%m/%d/%Y %H:%M'"]
    assert "--time-format" not in stages.prepare(Variables({"RUN_DIR": str(tmp_path / "run")}), lay).command


def test_make_predict_passes_time_format(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "stats.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if k not in BY_NAME}   # a terminal's COLUMNS is not ours
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--dry-run", "MODEL=tiny", f"RUN_DIR={run}", "predict",
                           "EVENTS=e.csv", "NEXT=n.csv", f"TIME_FORMAT={DMY}"], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if "-m serving predict" in x]
    assert f" --time-format {DMY} " in f"{line} "
