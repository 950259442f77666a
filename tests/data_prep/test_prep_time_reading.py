"""A file's time column is read one way for all its rows, in memory, out of core and in predict: a column that
looks compact (YYYYMMDDHH) stops with the TIME_FORMAT to set even when some rows would not parse, never an
epoch fall-back."""
from __future__ import annotations

import pytest

from data_prep.config import PrepareConfig
from data_prep.engines import outofcore, stream
from data_prep.errors import PrepareError
from data_prep.reading.events import load_events
from serving.predict_files import ReadOptions, read_histories
from serving.queries import FieldError, parse_time_values

HEADER = "user_id,timestamp,place,behavior"
CONFIG = PrepareConfig(train_cap=60, valid_cap=20, test_cap=10, p2_per_behavior=2, history_len=2, eps=0)


def quiet(*args, **kwargs):
    pass


def csv_file(path, times):
    path.write_text(HEADER + "\n" + "".join(f"u{i % 2},{t},home,b{i % 3}\n" for i, t in enumerate(times)))
    return path


def every_reading(path):
    """The error of the in-memory read, the out-of-core prepare, predict's one-pass reader and its spooled
    buckets (make predict)."""
    found = []
    for call in (lambda: load_events(path),
                 lambda: outofcore.prepare_input(path, path.parent / "ooc", CONFIG, n_buckets=2, log=quiet),
                 lambda: read_histories(str(path), ReadOptions()),
                 lambda: predict_spool(path, path.parent / f"spool{len(found)}")):
        with pytest.raises(PrepareError) as info:
            call()
        found.append(str(info.value))
    return found


@pytest.mark.parametrize("times, unparsed", [
    ([2024030107, 2024030108, 2024023108, 2024030323, 2024030400], "row 3 (2024023108)"),   # 31 February
    ([2024030107, 2024030224, 2024030309], "row 2 (2024030224)"),                            # hour 24
    ([2024030107, 1709280000, 2024030309], "row 2 (1709280000)"),                            # one real epoch
])
def test_a_compact_column_with_rows_that_do_not_parse_stops_naming_them(tmp_path, monkeypatch, times, unparsed):
    monkeypatch.setattr(stream, "STREAM_ROWS", 2)
    monkeypatch.setattr(stream, "CSV_BLOCK_BYTES", 40)
    path = csv_file(tmp_path / "e.csv", times)
    for message in every_reading(path):
        assert message.startswith(f"{path}: row 1: timestamp 2024030107 is a compact date and time YYYYMMDDHH "
                                  f"(2024-03-01 07:00)"), message
        assert 'set TIME_FORMAT="%Y%m%d%H"' in message and f"would not parse with it: {unparsed}" in message


@pytest.mark.parametrize("value", [2024030107, "2024030107", 202403010730])
@pytest.mark.parametrize("field", ["events[0].timestamp", "next.timestamp"])
def test_serving_refuses_a_compact_value_naming_the_field_and_format(value, field):
    with pytest.raises(FieldError) as info:
        parse_time_values(["2024-03-01T06:00:00", value][::-1] if field.startswith("events") else [value],
                          [field, "events[1].timestamp"], None)
    assert info.value.field == field
    assert "%Y%m%d%H" in info.value.message and "ISO-8601" in info.value.message


# ---- more than 5 % of a file's rows with a bad timestamp stop the run ------------------------------------------

def day_first_file(path, n=420):
    """Day-first slash dates, days 1-17 of March 2024: read month-first, the days above 12 do not parse."""
    times = [f"{1 + i % 17:02d}/03/2024 {i % 24:02d}:{i % 60:02d}" for i in range(n)]
    path.write_text(HEADER + "\n" + "".join(f"u{i % 7},{t},home,b{i % 3}\n" for i, t in enumerate(times)))
    return path, sum(1 + i % 17 > 12 for i in range(n))


def predict_spool(path, folder, **opts):
    from serving.spool import read_spooled_events, spool_inputs

    folder.mkdir(exist_ok=True)
    read = ReadOptions(**opts)
    spools = spool_inputs(str(path), read, 8, set(range(8)), folder, "events")
    return [read_spooled_events(sp, read) for sp in spools.values()]


def test_a_wrong_time_format_dropping_28_percent_stops_prepare_and_predict(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "STREAM_ROWS", 50)
    monkeypatch.setattr(stream, "CSV_BLOCK_BYTES", 1000)
    path, bad = day_first_file(tmp_path / "eu.csv")
    month_first = "%m/%d/%Y %H:%M"
    messages = []
    for call in (lambda: load_events(path, time_format=month_first),
                 lambda: outofcore.prepare_input(path, tmp_path / "ooc", CONFIG, n_buckets=3, log=quiet,
                                                 reader={"time_format": month_first}),
                 lambda: predict_spool(path, tmp_path / "spool", time_format=month_first)):
        with pytest.raises(PrepareError) as info:
            call()
        messages.append(str(info.value))
    assert len(set(messages)) == 1 and "\n" not in messages[0]
    message = messages[0]
    assert message.startswith(f"{path}: {bad} of 420 rows ({bad / 420:.1%}) have a timestamp that does not read "
                              f"with TIME_FORMAT '{month_first}'")
    assert message.count("row ") == 3 and "row 13 ('13/03/2024 12:12')" in message
    assert 'likely format: TIME_FORMAT="%d/%m/%Y %H:%M"' in message and "ALLOW_BAD_TIMESTAMPS=1" in message
    # opted in: the rows are dropped and counted, in memory and out of core alike
    table = load_events(path, time_format=month_first, allow_bad_timestamps=True)
    assert table.dropped == {"bad_timestamp": bad} and len(table) == 420 - bad
    assert predict_spool(path, tmp_path / "spool2", time_format=month_first, allow_bad_timestamps=True)


def test_bad_rows_without_time_format_stop_above_five_percent_only(tmp_path):
    from data_prep.reading.time_rules import BAD_SHARE

    iso = [f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:00" for i in range(100)]
    at_most = round(BAD_SHARE * len(iso))
    assert at_most == 5
    for n_bad, stops in ((at_most, False), (at_most + 1, True)):
        times = ["never"] * n_bad + iso[n_bad:]
        path = csv_file(tmp_path / f"iso{n_bad}.csv", times)
        if stops:
            with pytest.raises(PrepareError, match=r"6 of 100 rows \(6\.0%\) have a timestamp that does not read as "
                                                   r"ISO-8601 or epoch seconds.*likely format: unknown"):
                load_events(path)
        else:
            assert load_events(path).dropped == {"bad_timestamp": n_bad}


def test_predict_counts_bad_timestamps_per_file_not_per_bucket(tmp_path):
    # 4 % of the file, all of them one user's: that user's bucket alone is far above 5 %
    times = [f"2024-03-01T{i % 24:02d}:{i % 60:02d}" for i in range(100)]
    rows = [f"u{i % 20},{t},home,b{i % 3}" for i, t in enumerate(times)]
    rows[:4] = ["u0,never,home,b0"] * 4
    path = tmp_path / "e.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    read = predict_spool(path, tmp_path / "spool")
    assert sum(dropped.get("bad_timestamp", 0) for _, dropped in read) == 4


def test_allow_bad_timestamps_is_a_prepare_setting_and_a_predict_option():
    from pipeline.settings import Variables

    flags = Variables({"ALLOW_BAD_TIMESTAMPS": "1"}).options(PrepareConfig)
    assert flags[-2:] == ["--allow-bad-timestamps", "1"]
    assert PrepareConfig().allow_bad_timestamps is False
    from serving.__main__ import build_parser

    text = build_parser().format_help() + "".join(
        a.format_help() for a in build_parser()._subparsers._group_actions[0].choices.values())
    assert "--allow-bad-timestamps" in text


# ---- history events after the time of the run plus a day --------------------------------------------------------

RUN_TIME = 1_710_028_800   # the clock of these tests: 2024-03-10 00:00 UTC


@pytest.fixture
def clock(monkeypatch):
    from data_prep.reading import time_rules

    monkeypatch.setattr(time_rules, "clock", lambda: RUN_TIME)
    return time_rules


def history_file(path, last):
    times = [f"2024-03-0{1 + i // 10}T{6 + i % 10:02d}:00" for i in range(80)] + [last]
    path.write_text(HEADER + "\n" + "".join(f"u{i % 10},{t},home,b{i % 3}\n" for i, t in enumerate(times)))
    return path


def test_a_history_event_after_the_run_plus_a_day_stops_every_reader(tmp_path, clock):
    ok = history_file(tmp_path / "ok.csv", "2024-03-10T23:00")        # within a day of the run
    assert len(load_events(ok)) == 81
    late = history_file(tmp_path / "late.csv", "2024-03-11T01:00")
    for message in every_reading(late):
        assert message.startswith(f"{late}: row 81: timestamp '2024-03-11T01:00' is after the time of this run "
                                  f"plus a day (2024-03-11 00:00)"), message


def test_the_event_to_predict_may_lie_in_the_future(tmp_path, clock):
    from serving.predict_files import read_next
    from serving.queries import BehaviorNames, events_from_raw

    nxt = tmp_path / "next.csv"
    nxt.write_text("user_id,timestamp,place\nu1,2024-04-01T09:00:00,home\n")
    contexts, errors = read_next(str(nxt), ReadOptions())
    assert not errors and contexts["u1"][1] == "home"
    assert parse_time_values(["2024-04-01T09:00:00"], ["next.timestamp"], None)
    names = BehaviorNames(["b0"])
    with pytest.raises(FieldError) as info:
        events_from_raw([{"timestamp": "2024-03-01T07:00", "place": "home", "behavior": "b0"},
                         {"timestamp": "2024-03-12T07:00", "place": "home", "behavior": "b0"}], names, None)
    assert info.value.field == "events[1].timestamp" and "plus a day" in info.value.message


def test_a_file_that_passes_gives_the_same_run_on_any_later_day(tmp_path, clock, monkeypatch):
    import hashlib

    from data_prep.prepare import prepare

    path = history_file(tmp_path / "e.csv", "2024-03-10T23:00")
    found = []
    for day in (0, 400):
        monkeypatch.setattr(clock, "clock", lambda d=day: RUN_TIME + d * 86_400)
        out = tmp_path / f"run{day}"
        prepare(load_events(path), out, CONFIG, log=quiet)
        found.append({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in out.iterdir()})
    assert found[0] == found[1] and "stats.json" in found[0]
