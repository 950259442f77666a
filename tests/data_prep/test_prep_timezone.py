"""data_prep.reading.events' timezone rule: ISO with an offset, naive ISO and epoch seconds, with and without
--tz; weekday and hour of the local time."""
from datetime import UTC, datetime

import numpy as np
import pytest
from event_files import HEADER, wall, write_csv

from data_prep.reading.events import (
    PrepareError,
    hour_of,
    load_events,
    parse_times,
    weekday_of,
)


def test_iso_with_offset_keeps_the_wall_time_at_that_offset_without_tz():
    local, ok, notes = parse_times(["2024-03-01T08:00:00+08:00", "2024-03-01T08:00:00-0500",
                                    "2024-03-01T08:00:00+00:00"])
    assert ok.all() and set(local) == {wall("2024-03-01 08:00:00")}
    assert notes["time_formats"] == {"iso_offset": 3}


def test_under_tz_an_offset_is_an_instant_converted_like_z():
    local, ok, _ = parse_times(["2024-03-01T08:00:00+08:00", "2024-03-01T08:00:00-0500",
                                "2024-03-01T08:00:00+00:00", "2024-03-01T08:00:00Z"], tz="Asia/Tokyo")
    assert ok.all() and list(local) == [wall("2024-03-01 09:00:00"), wall("2024-03-01 22:00:00"),
                                        wall("2024-03-01 17:00:00"), wall("2024-03-01 17:00:00")]


def test_naive_iso_is_already_local_and_tz_does_not_touch_it():
    local, ok, _ = parse_times(["2024-03-01 08:00", "2024-03-01T08:00:00.750"], tz="Asia/Shanghai")
    assert ok.all() and list(local) == [wall("2024-03-01 08:00:00")] * 2


def test_epoch_seconds_are_utc_unless_tz_is_given():
    instant = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    epoch = int(instant.timestamp())
    assert list(parse_times([epoch])[0]) == [wall("2024-07-01 12:00:00")]
    assert list(parse_times([epoch + 0.9])[0]) == [wall("2024-07-01 12:00:00")]  # fractions floored
    assert list(parse_times([epoch], tz="+08:00")[0]) == [wall("2024-07-01 20:00:00")]
    assert list(parse_times([epoch], tz="-05:30")[0]) == [wall("2024-07-01 06:30:00")]
    # IANA zones follow daylight saving: New York is UTC-4 in July and UTC-5 in January.
    january = int(datetime(2024, 1, 1, 12, 0, tzinfo=UTC).timestamp())
    assert list(parse_times([epoch, january], tz="America/New_York")[0]) == [
        wall("2024-07-01 08:00:00"), wall("2024-01-01 07:00:00")]


def test_iso_z_is_utc_and_follows_tz():
    assert list(parse_times(["2024-03-01T08:00:00Z"])[0]) == [wall("2024-03-01 08:00:00")]
    assert list(parse_times(["2024-03-01T08:00:00Z"], tz="Asia/Shanghai")[0]) == [wall("2024-03-01 16:00:00")]


def test_epoch_strings_in_csv_and_timezone_option(tmp_path):
    epoch = int(datetime(2024, 3, 1, 0, 0, tzinfo=UTC).timestamp())
    path = write_csv(tmp_path / "e.csv", HEADER, [["u", epoch, "home", "a"]])
    assert list(load_events(path).time) == [wall("2024-03-01 00:00:00")]
    assert list(load_events(path, tz="Asia/Shanghai").time) == [wall("2024-03-01 08:00:00")]


def test_bad_timezone_and_millisecond_epochs_are_errors():
    with pytest.raises(PrepareError, match="unknown timezone 'Mars/Olympus'"):
        parse_times([1_700_000_000], tz="Mars/Olympus")
    with pytest.raises(PrepareError, match="milliseconds"):
        parse_times([1_700_000_000_000, 1_700_000_060_000])


def test_weekday_and_hour_use_utc_arithmetic_on_local_time():
    times = np.array([wall("2024-03-04 00:30:00"), wall("2024-03-10 23:59:59")])  # a Monday, a Sunday
    assert list(weekday_of(times)) == [0, 6] and list(hour_of(times)) == [0, 23]
    assert datetime(2024, 3, 4).weekday() == 0
