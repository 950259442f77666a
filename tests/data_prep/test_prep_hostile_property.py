"""Property test over randomly corrupted event rows: whatever the rows hold, loading either returns
a table or raises PrepareError (never another exception), and the accounting is exact:
rows read = events kept + events dropped by reason."""
import json
import math

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from data_prep.reading.events import PrepareError, load_events

T = 1_709_280_000
GOOD_LABELS = st.sampled_from(["Music", "Gaming", "Café", "Reading news"])
# droppable or fixable values (empty, null, NFD, line breaks, numbers) and a few fatal ones (", ", 300 chars)
ODD_LABELS = st.one_of(st.sampled_from(["", "  ", "Cafe\u0301", "a\nb", "Line\u2028Break", "x" * 300,
                                        "Arts, Crafts"]), st.text(max_size=12), st.integers(-5, 5), st.just(None))
LABELS = st.one_of(GOOD_LABELS, GOOD_LABELS, GOOD_LABELS, ODD_LABELS)
USERS = st.one_of(st.sampled_from(["u1", "u2", "u3", "7"]), st.sampled_from(["u1", "u2"]),
                  st.sampled_from(["", " ", None, math.nan, 3.0, math.inf]), st.floats(allow_nan=True))
GOOD_EPOCHS = st.integers(T, T + 10**6)
EPOCHS = st.one_of(GOOD_EPOCHS, GOOD_EPOCHS, GOOD_EPOCHS,
                   st.one_of(st.integers(-10**12, 10**13), st.sampled_from([0, 20240301, "", "soon"]),
                             st.floats(allow_nan=True)))
GOOD_ISO = st.builds(lambda d, h: f"2024-03-{d:02d} {h:02d}:00:00", st.integers(1, 28), st.integers(0, 23))
ISO = st.one_of(GOOD_ISO, GOOD_ISO, GOOD_ISO,
                st.builds(lambda d, h: f"2024-03-{d:02d} {h:02d}:00:00", st.integers(0, 32), st.integers(0, 25)),
                st.sampled_from(["", "yesterday", "3000-01-01 00:00", "1900-01-01 00:00", None]))
ROW_KEYS = ("user_id", "timestamp", "place", "behavior")


def rows_strategy(times):
    return st.lists(st.fixed_dictionaries({"user_id": USERS, "timestamp": times, "place": LABELS,
                                           "behavior": LABELS}), min_size=1, max_size=25)


def csv_text(rows, corrupt):
    lines = ["user_id,timestamp,place,behavior"]
    for row in rows:
        cells = ["" if row[k] is None else str(row[k]).replace('"', '""') for k in ROW_KEYS]
        lines.append(",".join(f'"{c}"' for c in cells))
    for at, junk in corrupt:  # raw damage: stray quotes, delimiters, short rows, bad bytes
        if len(lines) > 1:
            i = 1 + at % (len(lines) - 1)
            lines[i] = lines[i][: len(lines[i]) // 2] + junk
    return "\n".join(lines) + "\n"


def jsonl_text(rows, corrupt):
    lines = [json.dumps({k: row[k] for k in ROW_KEYS}) for row in rows]
    for at, junk in corrupt:
        i = at % len(lines)
        lines[i] = lines[i][: len(lines[i]) // 2] + junk
    return "\n".join(lines) + "\n"


CORRUPT = st.lists(st.tuples(st.integers(0, 100), st.sampled_from(['"', ",", ",x,y", "\\ud83d", "}", "\udcff"])),
                   max_size=1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.one_of(rows_strategy(EPOCHS), rows_strategy(ISO)), corrupt=CORRUPT, as_jsonl=st.booleans(),
       tz=st.sampled_from([None, "Asia/Shanghai", "+05:30"]))
def test_corrupted_rows_never_crash_and_every_row_is_accounted_for(tmp_path, rows, corrupt, as_jsonl, tz):
    path = tmp_path / ("e.jsonl" if as_jsonl else "e.csv")
    text = (jsonl_text if as_jsonl else csv_text)(rows, corrupt)
    path.write_bytes(text.encode("utf-8", errors="surrogateescape" if not as_jsonl else "surrogatepass"))
    try:
        table = load_events(path, tz=tz)
    except PrepareError as err:
        assert "\n" not in str(err) and str(err).startswith(str(path))
        event("refused: " + str(err)[len(str(path)) + 2:].split(": ", 1)[-1][:30])
        return
    event("loaded" + (" with drops" if table.dropped else ""))
    assert table.notes["rows_read"] == len(table) + sum(table.dropped.values())
    assert all(count > 0 for count in table.dropped.values())
    json.dumps(table.notes, allow_nan=False)
    assert all(name and len(name) <= 200 and "\n" not in name and ", " not in name for name in table.behaviors)
