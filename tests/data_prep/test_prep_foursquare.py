"""data_prep.reading.foursquare: the TSMC2014 importer (local time, label-free place, encoding, bad rows)."""
import calendar
from datetime import datetime, timedelta

import numpy as np
import pytest

from data_prep.reading.events import PrepareError
from data_prep.reading.foursquare import (
    COLUMNS,
    ELSEWHERE,
    FREQUENT_AREA,
    HOME_AREA,
    area_places,
    load_foursquare,
)

# 1 km cells: 0.01 degrees of latitude are ~1.1 km, so these spots fall in distinct cells.
HOME, OFFICE, GYM, PARK = (40.7000, -74.0000), (40.7500, -73.9800), (40.6500, -73.9500), (40.8000, -73.9000)


def line(user, category, spot, offset_min, utc):
    """One TSMC2014 line; utc is a datetime."""
    stamp = utc.strftime("%a %b %d %H:%M:%S +0000 %Y")
    return "\t".join([str(user), "venue", "cat-id", category, f"{spot[0]:.6f}", f"{spot[1]:.6f}",
                      str(offset_min), stamp])


def write(path, lines, encoding="utf-8"):
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def local_epoch(utc: datetime, offset_min: int) -> int:
    return calendar.timegm((utc + timedelta(minutes=offset_min)).timetuple())


T0 = datetime(2012, 4, 3, 18, 0, 9)


def test_local_time_is_utc_plus_offset_and_behavior_is_the_category(tmp_path):
    new_year = datetime(2011, 12, 31, 20, 30, 0)  # Tokyo (+540) is already in 2012 then
    path = write(tmp_path / "tsmc.txt", [line(470, "Arts & Crafts Store", HOME, -240, T0),
                                         line(9, "Ramen Restaurant", HOME, 540, new_year)])
    table = load_foursquare(path)
    by_user = {table.user_ids[u]: (int(t), table.behaviors[b])
               for u, t, b in zip(table.user, table.time, table.behavior)}
    assert by_user == {"470": (local_epoch(T0, -240), "Arts & Crafts Store"),
                       "9": (local_epoch(new_year, 540), "Ramen Restaurant")}
    assert datetime(1970, 1, 1) + timedelta(seconds=by_user["9"][0]) == datetime(2012, 1, 1, 5, 30)


def test_place_is_a_per_user_spatial_rank_that_never_repeats_the_category(tmp_path):
    visits = [(HOME, "Home (private)")] * 3 + [(OFFICE, "Office")] * 2 + [(GYM, "Gym")] * 2 + [(PARK, "Park")]
    visits.append((HOME, "Coffee Shop"))  # another category in the home cell: same place
    lines = [line(1, cat, spot, -240, T0 + timedelta(hours=i)) for i, (spot, cat) in enumerate(visits)]
    lines.append(line(2, "Office", PARK, -240, T0))  # user 2's only cell is their home area
    table = load_foursquare(write(tmp_path / "tsmc.txt", lines))
    place_of = {}
    for u, p, b in zip(table.user, table.place, table.behavior):
        place_of.setdefault((table.user_ids[u], table.behaviors[b]), set()).add(table.places[p])
    assert place_of[("1", "Home (private)")] == {HOME_AREA} == place_of[("1", "Coffee Shop")]
    assert place_of[("1", "Office")] == {FREQUENT_AREA} == place_of[("1", "Gym")]
    assert place_of[("1", "Park")] == {ELSEWHERE}
    assert place_of[("2", "Office")] == {HOME_AREA}
    for place in table.places:
        assert not any(cat.lower() in place.lower() for cat in table.behaviors)


def test_area_places_ranks_ties_deterministically():
    user = np.array([0, 0, 0, 0])
    lat = np.array([10.0, 10.0, 10.5, 11.0])
    lon = np.array([20.0, 20.0, 20.0, 20.0])
    labels = area_places(user, lat, lon, np.ones(4, bool), frequent_cells=1)
    names = [labels.dictionary[i].as_py() for i in labels.indices.to_pylist()]
    assert names == [HOME_AREA, HOME_AREA, FREQUENT_AREA, ELSEWHERE]  # the tie goes to the lower cell


def test_a_category_named_home_is_imported_places_come_from_coordinates(tmp_path):
    lines = [line(1, "Home", HOME, 0, T0), line(1, "Home (private)", HOME, 0, T0 + timedelta(hours=1)),
             line(1, "Bar", PARK, 0, T0 + timedelta(hours=2))]
    table = load_foursquare(write(tmp_path / "tsmc.txt", lines))
    assert table.behaviors == ["Bar", "Home", "Home (private)"] and set(table.places) <= {HOME_AREA, FREQUENT_AREA}


def test_mixed_utf8_and_latin1_lines_decode_to_one_category(tmp_path):
    utf8 = line(1, "Café", HOME, 0, T0).encode("utf-8")
    latin = line(1, "Café", HOME, 0, T0 + timedelta(hours=1)).encode("latin-1")
    path = tmp_path / "tsmc.txt"
    path.write_bytes(utf8 + b"\n" + latin + b"\n")
    table = load_foursquare(path)
    assert table.behaviors == ["Café"] and len(table) == 2
    assert table.notes["encoding"] == "utf-8 with latin-1 fallback"
    assert table.notes["latin1_lines"] == 1 and table.notes["latin1_line_examples"] == [2]
    assert load_foursquare(write(tmp_path / "clean.txt", [line(1, "Café", HOME, 0, T0)])).notes["encoding"] == "utf-8"


def test_bad_rows_are_dropped_and_counted(tmp_path):
    good = line(1, "Bar", HOME, 0, T0)
    fields = good.split("\t")
    bad_stamp = "\t".join(fields[:7] + ["yesterday"])
    bad_offset = "\t".join(fields[:6] + ["abc", fields[7]])
    bad_lat = "\t".join(fields[:4] + ["95.0", fields[5], fields[6], fields[7]])
    empty_category = "\t".join(fields[:3] + ["", *fields[4:]])
    table = load_foursquare(write(tmp_path / "tsmc.txt", [good, bad_stamp, bad_offset, bad_lat, empty_category]))
    assert len(table) == 1
    assert table.dropped == {"bad_timestamp": 2, "bad_coordinates": 1, "empty_label": 1}
    assert table.notes["bad_timestamp_rows"] == [2, 3]


def test_header_line_is_skipped_and_row_numbers_follow_lines(tmp_path):
    header = "\t".join(COLUMNS)
    bad = "\t".join(line(1, "Bar", HOME, 0, T0).split("\t")[:7] + ["never"])
    table = load_foursquare(write(tmp_path / "tsmc.txt", [header, line(1, "Bar", HOME, 0, T0), bad]))
    assert table.notes["header_skipped"] is True and len(table) == 1
    assert table.notes["bad_timestamp_rows"] == [3]


def test_events_module_reexports_the_importer(tmp_path):
    from data_prep.reading import events

    path = write(tmp_path / "tsmc.txt", [line(1, "Bar", HOME, 0, T0)])
    assert events.load_foursquare(path).behaviors == load_foursquare(path).behaviors == ["Bar"]


def test_structural_errors(tmp_path):
    short = "\t".join(line(1, "Bar", HOME, 0, T0).split("\t")[:6])
    with pytest.raises(PrepareError, match=r"tsmc\.txt: row 2: expected 8 tab-separated fields .* got 6"):
        load_foursquare(write(tmp_path / "tsmc.txt", [line(1, "Bar", HOME, 0, T0), short]))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(PrepareError, match=r"empty\.txt: file is empty"):
        load_foursquare(tmp_path / "empty.txt")
