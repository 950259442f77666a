"""A file's time column is read one way for all its rows, in memory, out of core and in predict: a column that
looks compact (YYYYMMDDHH) stops with the TIME_FORMAT to set even when some rows would not parse, never an
epoch fall-back."""
from __future__ import annotations

import pytest

from data_prep import outofcore, stream
from data_prep.config import PrepareConfig
from data_prep.errors import PrepareError
from data_prep.events import load_events
from serving.batch import ReadOptions, read_histories
from serving.queries import FieldError, parse_time_values

HEADER = "user_id,timestamp,place,behavior"
CONFIG = PrepareConfig(train_cap=60, valid_cap=20, test_cap=10, p2_per_behavior=2, history_len=2, eps=0)


def quiet(*args, **kwargs):
    pass


def csv_file(path, times):
    path.write_text(HEADER + "\n" + "".join(f"u{i % 2},{t},home,b{i % 3}\n" for i, t in enumerate(times)))
    return path


def every_reading(path):
    """The error of the in-memory read, the out-of-core prepare (batches of 2 rows) and predict's reader."""
    found = []
    for call in (lambda: load_events(path),
                 lambda: outofcore.prepare_input(path, path.parent / "ooc", CONFIG, n_buckets=2, log=quiet),
                 lambda: read_histories(str(path), ReadOptions())):
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
