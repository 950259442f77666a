"""Event files written by hand for the tests of data_prep.reading.events, and the readable rows of an EventTable."""
import calendar
import json
from datetime import datetime


def wall(text: str) -> int:
    """Local wall time 'YYYY-mm-dd HH:MM:SS' as the EventTable encodes it (as if UTC)."""
    return calendar.timegm(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").timetuple())


def write_csv(path, header, rows, delimiter=","):
    lines = [delimiter.join(header)] + [delimiter.join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def rows_of(table):
    """The table as readable tuples (user, time, place, behavior), in table order."""
    return [(table.user_ids[u], int(t), table.places[p], table.behaviors[b])
            for u, t, p, b in zip(table.user, table.time, table.place, table.behavior)]


HEADER = ["user_id", "timestamp", "place", "behavior"]


ROWS = [  # deliberately unsorted, users out of order, two users
    ["u2", "2024-03-04 09:00:00", "workplace", "Checking email"],
    ["u1", "2024-03-04 08:00:00", "home", "Watching videos"],
    ["u1", "2024-03-04 07:30:00", "home", "Eating"],
    ["u2", "2024-03-04 08:15:00", "commuting", "Public transport"],
]
