"""Importer for the public Foursquare check-in dataset in its original TSMC2014 layout.

Layout: tab separated, no header, one check-in a line with 8 columns
``userId, venueId, venueCategoryId, venueCategory, latitude, longitude, timezoneOffset, utcTimestamp``
(offset in minutes, timestamp like ``Tue Apr 03 18:00:09 +0000 2012``). A first line that starts
with ``userId`` is taken for a header added by hand and skipped (noted).

Mapping to the event schema:

* ``user_id`` = userId; ``behavior`` = venueCategory (stripped).
* ``timestamp`` = local wall time = utcTimestamp + timezoneOffset minutes (the events module's
  "local time written as a UTC epoch" convention).
* ``place``: Foursquare has no home/work field, and the venue or its category would give the label
  away, so the place is a coarse, label-free *spatial* context. The map is cut into cells of about
  ``cell_km`` x ``cell_km`` (latitude bands of cell_km / 111.32 degrees; longitude steps widened by
  1/cos(latitude) so cells stay square). Per user, cells are ranked by the number of that user's
  check-ins (ties: lower cell id first). The place is ``"home area"`` for the user's most visited
  cell, ``"frequent area"`` for the next ``frequent_cells`` cells and ``"elsewhere"`` otherwise.
  The ranking uses all of the user's valid check-ins (like a home label, it describes the user, not
  one moment). The three names are fixed and computed from coordinates only, so they carry no label
  information even when a category shares a word with them (a category named "Home" or "Home
  (private)" is imported like any other).
* ``label_map``: as for :func:`data_prep.reading.events.load_events` (``--label-map``), e.g. to merge
  categories or rename one that contains ", ".

Encoding: the files in the wild mix UTF-8 with latin-1 bytes (e.g. "Caf\\xe9"). The file is decoded
as UTF-8; if that fails, each line that is not valid UTF-8 is decoded as latin-1 instead, and
``notes["encoding"]`` says so and counts those lines (``notes["latin1_lines"]``, first line
numbers in ``notes["latin1_line_examples"]``).

Bad input: a line without 8 fields -> :class:`~data_prep.errors.PrepareError` naming the row
(= line). Dropped and counted: ``bad_timestamp`` (unparseable utcTimestamp, or timezoneOffset not an
integer within +-14 h), ``bad_coordinates`` (latitude/longitude missing or out of range), then the
events module's reasons (``empty_user``, ``empty_label``, ``duplicate_event``).
"""
from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.encoding.encode import events_from_arrays
from data_prep.encoding.table import EventTable
from data_prep.errors import MAX_EXAMPLES, PrepareError
from data_prep.reading.timestamps import days_from_civil, days_in_month

COLUMNS = ("userId", "venueId", "venueCategoryId", "venueCategory", "latitude", "longitude",
           "timezoneOffset", "utcTimestamp")
HOME_AREA, FREQUENT_AREA, ELSEWHERE = "home area", "frequent area", "elsewhere"
KM_PER_DEGREE_LATITUDE = 111.32
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_UTC_TIMESTAMP = (r"^\s*[A-Za-z]{3} (?P<mon>[A-Za-z]{3}) +(?P<d>\d{1,2}) (?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2}) "
                  r"(?P<zs>[+-])(?P<z>\d{4}) (?P<y>\d{4})\s*$")
_INTEGER = r"^\s*[+-]?\d+\s*$"
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


def load_foursquare(path: str | os.PathLike, *, cell_km: float = 1.0, frequent_cells: int = 2,
                    label_map: Mapping[str, str] | None = None) -> EventTable:
    """Read a TSMC2014 check-in file into a canonical EventTable (see the module docstring)."""
    source = str(path)
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"{source}: no such file")
    raw = path.read_bytes()
    if not raw.strip():
        raise PrepareError(f"{source}: file is empty")
    text, notes = _decode(raw)
    notes["source"] = source
    notes["format"] = "foursquare-tsmc2014"
    first_line = text[:text.find("\n")] if "\n" in text else text
    header = first_line.lstrip("\ufeff").startswith("userId")
    if header:
        notes["header_skipped"] = True
    table = _parse_table(text, source, skip_rows=int(header))
    del text
    n = table.num_rows
    notes["rows_read"] = n
    if n == 0:
        raise PrepareError(f"{source}: no check-ins")
    row_offset = 1 + int(header)  # row n of the table is line n + header

    local, time_ok = _local_times(table.column("utcTimestamp"), table.column("timezoneOffset"))
    lat, lat_ok = _numbers(table.column("latitude"))
    lon, lon_ok = _numbers(table.column("longitude"))
    coords_ok = lat_ok & lon_ok & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    bad_time = ~time_ok
    if bad_time.any():
        examples = np.flatnonzero(bad_time)[:MAX_EXAMPLES]
        notes["bad_timestamp_rows"] = [int(i) + row_offset for i in examples]
        notes["bad_timestamp_examples"] = [{"row": int(i) + row_offset,
                                            "value": table.column("utcTimestamp")[int(i)].as_py()}
                                           for i in examples]

    users = table.column("userId")
    categories = pc.utf8_trim_whitespace(table.column("venueCategory"))
    valid = time_ok & coords_ok
    places = area_places(pc.dictionary_encode(users).combine_chunks().indices.to_numpy(zero_copy_only=False),
                         lat, lon, valid, cell_km=cell_km, frequent_cells=frequent_cells)
    notes["place_rule"] = f"spatial cells of ~{cell_km:g} km ranked per user: home area, " \
                          f"{frequent_cells} frequent areas, elsewhere"
    return events_from_arrays(users, local, places, categories, label_map=label_map,
                              reject={"bad_timestamp": bad_time, "bad_coordinates": ~coords_ok},
                              notes=notes, source=source, row_numbers=np.arange(n) + row_offset)


def _decode(raw: bytes) -> tuple[str, dict]:
    try:
        return raw.decode("utf-8"), {"encoding": "utf-8"}
    except UnicodeDecodeError:
        pass
    lines, fallback = [], []
    for line_no, line in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("latin-1"))
            fallback.append(line_no)
    notes = {"encoding": "utf-8 with latin-1 fallback", "latin1_lines": len(fallback),
             "latin1_line_examples": fallback[:MAX_EXAMPLES]}
    return "\n".join(lines), notes


def _parse_table(text: str, source: str, skip_rows: int) -> pa.Table:
    import pyarrow.csv as pcsv

    try:
        return pcsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pcsv.ReadOptions(column_names=list(COLUMNS), skip_rows=skip_rows),
            parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pcsv.ConvertOptions(column_types={name: pa.string() for name in COLUMNS},
                                                strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        for line_no, line in enumerate(text.split("\n"), start=1):
            fields = line.rstrip("\r").split("\t")
            if line_no > skip_rows and line.strip() and len(fields) != len(COLUMNS):
                raise PrepareError(f"{source}: row {line_no}: expected {len(COLUMNS)} tab-separated fields "
                                   f"({', '.join(COLUMNS)}), got {len(fields)}") from None
        raise PrepareError(f"{source}: {' '.join(str(exc).split())}") from None


def _numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    column = column.combine_chunks()
    ok = pc.match_substring_regex(column, _NUMBER).to_numpy(zero_copy_only=False)
    values = pc.cast(pc.if_else(pa.array(ok), pc.utf8_trim_whitespace(column), "nan"), pa.float64())
    return values.to_numpy(zero_copy_only=False), ok


def _local_times(utc_text: pa.ChunkedArray, offset_text: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """utcTimestamp + timezoneOffset minutes -> local-epoch seconds, and which rows parsed."""
    parts = pc.extract_regex(utc_text.combine_chunks(), _UTC_TIMESTAMP)
    ok = parts.is_valid().to_numpy(zero_copy_only=False)
    parts = pc.fill_null(parts, pa.scalar({k: "0" for k in ("mon", "d", "h", "mi", "s", "zs", "z", "y")},
                                          type=parts.type))

    def number(name: str) -> np.ndarray:
        return pc.cast(pc.struct_field(parts, name), pa.int64()).to_numpy(zero_copy_only=False)

    month = pc.index_in(pc.struct_field(parts, "mon"), value_set=pa.array(_MONTHS)).to_numpy(zero_copy_only=False)
    month = np.nan_to_num(month.astype(float), nan=-1).astype(np.int64) + 1  # 1-12, 0 = unknown
    y, d, h, mi, s, z = (number(k) for k in ("y", "d", "h", "mi", "s", "z"))
    ok &= (month >= 1) & (d >= 1) & (h <= 23) & (mi <= 59) & (s <= 59)
    month = np.clip(month, 1, 12)
    ok &= d <= days_in_month(y, month)
    # "+0000" style offset of the timestamp itself (always +0000 in TSMC2014, honoured anyway)
    sign = np.where(pc.equal(pc.struct_field(parts, "zs"), "-").to_numpy(zero_copy_only=False), -1, 1)
    stamp_offset = sign * ((z // 100) * 60 + z % 100)
    utc = days_from_civil(y, month, d) * 86_400 + h * 3_600 + mi * 60 + s - stamp_offset * 60

    offsets = offset_text.combine_chunks()
    offset_ok = pc.match_substring_regex(offsets, _INTEGER).to_numpy(zero_copy_only=False)
    minutes = pc.cast(pc.if_else(pa.array(offset_ok), pc.utf8_trim_whitespace(offsets), "0"),
                      pa.int64()).to_numpy(zero_copy_only=False)
    ok &= offset_ok & (np.abs(minutes) <= 14 * 60)
    local = np.where(ok, utc + minutes * 60, 0)
    return local.astype(np.int64), ok


def area_places(user: np.ndarray, lat: np.ndarray, lon: np.ndarray, valid: np.ndarray, *,
                cell_km: float = 1.0, frequent_cells: int = 2) -> pa.DictionaryArray:
    """Per-user spatial place labels (home area / frequent area / elsewhere), see the module docstring.

    ``user``: int codes; rows with ``valid`` False get "elsewhere" (they are dropped anyway)."""
    dlat = cell_km / KM_PER_DEGREE_LATITUDE
    lat0, lon0 = np.where(valid, lat, 0.0), np.where(valid, lon, 0.0)
    row = np.floor(lat0 / dlat).astype(np.int64)
    band_center = np.radians((row + 0.5) * dlat)
    dlon = dlat / np.maximum(np.cos(band_center), 0.01)
    col = np.floor(lon0 / dlon).astype(np.int64)
    cell = (row + 20_000) * 100_000_000 + (col + 50_000_000)  # unique id per cell, row-major
    _, cell_dense = np.unique(cell, return_inverse=True)
    n_cells = int(cell_dense.max()) + 1 if cell_dense.size else 1
    pair = user.astype(np.int64) * n_cells + cell_dense
    pair = np.where(valid, pair, -1)
    pairs, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
    pair_user, pair_cell = pairs // n_cells, pairs % n_cells
    counts = np.where(pairs < 0, 0, counts)
    order = np.lexsort((pair_cell, -counts, pair_user))  # per user: most visited first
    sorted_user = pair_user[order]
    starts = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, sorted_user.size]))
    rank = np.empty(pairs.size, np.int64)
    rank[order] = np.arange(pairs.size) - first
    label = np.where(rank == 0, 0, np.where(rank <= frequent_cells, 1, 2)).astype(np.int32)
    label[pairs < 0] = 2
    codes = label[inverse.reshape(-1)]
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array([HOME_AREA, FREQUENT_AREA, ELSEWHERE]))
