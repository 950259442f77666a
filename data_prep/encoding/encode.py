"""Encoding into the canonical :class:`~data_prep.encoding.table.EventTable`: dictionary codes, label map,
drop accounting, sort and de-duplication (the rules are in :mod:`data_prep.reading.events`).

Text columns are handled as Arrow dictionaries, so the Python work is per distinct value, never per row.
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.encoding.table import UNKNOWN_PLACE, EventTable
from data_prep.errors import PrepareError, fmt_counts, one_line
from data_prep.reading import labels


def events_from_arrays(user, time, place, behavior, *, label_map: Mapping[str, str] | None = None,
                       strict_labels: bool = False, reject: Mapping[str, np.ndarray] | None = None,
                       dropped: dict[str, int] | None = None, notes: dict | None = None,
                       source: str = "<arrays>", row_numbers: np.ndarray | None = None) -> EventTable:
    """The shared finishing step: encode, validate, map labels, sort by (user, time) and de-duplicate.

    ``user``/``place``/``behavior``: sequences of str (None = empty), numpy arrays, or pyarrow
    (Chunked)Arrays, dictionary-encoded ones included (the cheap way to pass codes:
    ``pa.DictionaryArray.from_arrays(codes, names)``). ``time``: local-epoch int64 seconds.
    ``reject``: reason -> bool mask of rows the caller rejects (e.g. ``{"bad_timestamp": ~ok}``); they
    are dropped and counted under that reason (after ``empty_user``, in the mapping's order), and their
    ``time`` may hold anything. ``dropped``/``notes``: counts and notes to start from.
    ``row_numbers``: the row number each row has in the source (default: position + 1), for errors.
    """
    columns = {"user": user, "time": time, "place": place, "behavior": behavior}
    del user, time, place, behavior
    return finish_columns(columns, label_map=label_map, strict_labels=strict_labels, reject=reject,
                          dropped=dropped, notes=notes, source=source, row_numbers=row_numbers)


def finish_columns(columns: dict, *, label_map, strict_labels, reject, dropped, notes, source,
                   row_numbers) -> EventTable:
    """events_from_arrays on a dict it may empty: each input column is released as soon as it is
    encoded, so peak memory stays near 30 bytes an event."""
    rows = encode_rows(columns, label_map=label_map, strict_labels=strict_labels, reject=reject, dropped=dropped,
                       notes=notes, source=source, row_numbers=row_numbers)
    return finish_rows(rows, source)


def finish_rows(rows: EventTable, source: str) -> EventTable:
    """Sorted, de-duplicated encoded rows; none kept is an error listing the drops."""
    if rows.user.size == 0:
        raise PrepareError(f"{source}: no events left after dropping rows ({fmt_counts(rows.dropped)})")
    return sort_rows(rows)


def sort_rows(rows: EventTable) -> EventTable:
    """Sort and de-duplicate encoded rows (an empty place loses a tie, then becomes UNKNOWN_PLACE)."""
    dropped, notes, places = rows.dropped, rows.notes, rows.places
    filled_code = len(places)
    arrays = [rows.user, rows.time, rows.place, rows.behavior]
    rows.user = rows.time = rows.place = rows.behavior = None
    u, time, p, b, n_dup, sort_notes, order = sort_and_dedup(arrays, len(rows.user_ids), len(places) + 1,
                                                             len(rows.behaviors), sources=True)
    if n_dup:
        dropped["duplicate_event"] = dropped.get("duplicate_event", 0) + n_dup
    notes.update(sort_notes)
    places, p = _fill_unknown_place(places, p, filled_code, notes)
    places, p = _compact(places, p)
    notes["events"] = int(u.size)
    return EventTable(user=u, user_ids=rows.user_ids, time=time, place=p, places=places,
                      behavior=b, behaviors=rows.behaviors, dropped=dropped, notes=notes, input_order=order)


def encode_rows(columns: dict, *, label_map, strict_labels, reject, dropped, notes, source,
                row_numbers) -> EventTable:
    """Codes, label map and drop accounting of a dict of columns it empties (no rows kept: empty arrays)."""
    dropped = dict(dropped or {})
    notes = dict(notes or {})
    time = np.asarray(columns.pop("time"))
    if time.dtype.kind == "M":
        time = time.astype("datetime64[s]").astype(np.int64)
    time = time.astype(np.int64, copy=False)
    n = time.shape[0]
    notes.setdefault("rows_read", n)
    notes.setdefault("source", source)

    at = _RowFinder(n, source, row_numbers)
    user_chunks, user_values = _dictionary(columns.pop("user"), n, source, "user")
    user_values = [_clean(v) for v in user_values]
    at.refuse(user_chunks, [labels.float_id_problem(v) for v in user_values])
    user_ids, lut = _lookup(user_values)
    u = _gather(user_chunks, lut, n)
    del user_chunks

    place_chunks, place_values = _dictionary(columns.pop("place"), n, source, "place")
    place_values = _clean_labels(place_chunks, place_values, "place", at, notes)
    at.refuse(place_chunks, [labels.label_problem(v, "place") for v in place_values])
    places, lut = _lookup(place_values)  # empty places are code -1 for now
    p = _gather(place_chunks, lut, n)
    del place_chunks

    behavior_chunks, behavior_values = _dictionary(columns.pop("behavior"), n, source, "behavior")
    raw_labels = _clean_labels(behavior_chunks, behavior_values, "behavior", at, notes)
    if label_map is not None:
        cleaned_map = {labels.clean_label(k)[0]: labels.clean_label(v)[0] for k, v in label_map.items()}
        mapped = [cleaned_map.get(v, _NOT_IN_MAP) if v else "" for v in raw_labels]
    else:
        mapped = raw_labels
    at.refuse(behavior_chunks, [labels.label_problem(v, "behavior") if isinstance(v, str) else None
                                for v in mapped])
    behaviors, lut = _lookup(mapped)
    b = _gather(behavior_chunks, lut, n)
    if label_map is not None and strict_labels:
        outside = np.flatnonzero(b == _CODE_NOT_IN_MAP)
        if outside.size:
            first = int(outside[0])
            row = int(row_numbers[first]) if row_numbers is not None else first + 1
            raise PrepareError(f"{source}: row {row}: label '{_clean(behavior_chunks[first].as_py())}' is not "
                               f"in the label map ({outside.size} rows have labels outside it)")
    del behavior_chunks

    # Each dropped row is counted once, under the first reason that applies.
    ok = np.ones(n, bool)
    reasons = [("empty_user", u == _CODE_EMPTY)]
    reasons += [(reason, np.asarray(mask, bool)) for reason, mask in (reject or {}).items()]
    reasons += [("empty_label", b == _CODE_EMPTY), ("label_not_in_map", b == _CODE_NOT_IN_MAP)]
    for reason, bad in reasons:
        if bad.shape != (n,):
            raise PrepareError(f"{source}: reject mask '{reason}' has shape {bad.shape}, expected ({n},)")
        count = int(np.count_nonzero(bad & ok))
        if count:
            dropped[reason] = dropped.get(reason, 0) + count
            ok &= ~bad
    del reasons, bad
    if not ok.all():
        u, time, p, b = u[ok], time[ok], p[ok], b[ok]
    del ok
    user_ids, u = _compact(user_ids, u)
    behaviors, b = _compact(behaviors, b)
    p[p == _CODE_EMPTY] = len(places)  # empty places get their own code until de-duplication is done
    return EventTable(u, user_ids, time, p, places, b, behaviors, dropped, notes)


class _RowFinder:
    """Finds the source row of a dictionary entry, for one-line errors (only on the error path)."""

    def __init__(self, n: int, source: str, row_numbers: np.ndarray | None):
        self.n, self.source, self.row_numbers = n, source, row_numbers

    def rows(self, chunks: pa.ChunkedArray, entries: list[int]) -> np.ndarray:
        """Bool mask of the rows whose dictionary entry is one of ``entries``."""
        flags = np.zeros(len(chunks.chunk(0).dictionary) + 1 if chunks.num_chunks else 1, bool)
        flags[entries] = True
        return _gather(chunks, flags, self.n)

    def refuse(self, chunks: pa.ChunkedArray, problems: list[str | None]) -> None:
        """Error on the first row whose entry has a problem (problems: one per dictionary entry)."""
        bad = [i for i, problem in enumerate(problems) if problem]
        if not bad:
            return
        rows = self.rows(chunks, bad)
        first = int(np.flatnonzero(rows)[0])
        row = int(self.row_numbers[first]) if self.row_numbers is not None else first + 1
        entry_of_row = _gather(chunks, np.arange(len(problems) + 1, dtype=np.int64), self.n)
        entry = int(entry_of_row[first])
        raise PrepareError(f"{self.source}: row {row}: {problems[entry]}")


def _clean_labels(chunks: pa.ChunkedArray, values: list, what: str, at: _RowFinder, notes: dict) -> list[str]:
    """labels.clean_label on every dictionary entry; the rows each fix touched are counted in
    notes["text_fixed"] ("<what>_nfc", "<what>_line_breaks")."""
    cleaned, fixes = [], []
    for value in values:
        text, fixed = labels.clean_label(value)
        cleaned.append(text)
        fixes.append(fixed)
    for fix in ("nfc", "line_breaks"):
        entries = [i for i, fixed in enumerate(fixes) if fix in fixed]
        if entries:
            count = int(np.count_nonzero(at.rows(chunks, entries)))
            notes.setdefault("text_fixed", {})[f"{what}_{fix}"] = count
    return cleaned


def _fill_unknown_place(places: list[str], p: np.ndarray, filled_code: int, notes: dict):
    """Rows whose place was empty (code ``filled_code``) become UNKNOWN_PLACE, counted in notes."""
    filled = p == filled_code
    count = int(np.count_nonzero(filled))
    if not count:
        return places, p
    notes.setdefault("filled", {})["empty_place"] = count
    if UNKNOWN_PLACE in places:
        p[filled] = places.index(UNKNOWN_PLACE)
        return places, p
    at = bisect.bisect_left(places, UNKNOWN_PLACE)
    p[p >= at] += 1  # also moves filled_code out of the way; reset just below
    p[filled] = at
    return places[:at] + [UNKNOWN_PLACE] + places[at:], p


_CODE_EMPTY, _CODE_NOT_IN_MAP = -1, -2
_NOT_IN_MAP = object()


def _clean(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())


def _lookup(names: list) -> tuple[list[str], np.ndarray]:
    """Dictionary entries -> (sorted distinct names, lut). lut maps entry index -> code; the extra
    last slot answers index -1 (null) with _CODE_EMPTY."""
    distinct = sorted({v for v in names if isinstance(v, str) and v})
    code = {v: i for i, v in enumerate(distinct)}
    lut = np.fromiter((code[v] if isinstance(v, str) and v else (_CODE_NOT_IN_MAP if v is _NOT_IN_MAP else _CODE_EMPTY)
                       for v in names), dtype=np.int32, count=len(names))
    return distinct, np.append(lut, np.int32(_CODE_EMPTY))


def _compact(names: list[str], codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Drop names no kept row uses, keeping sorted order."""
    used = np.bincount(codes, minlength=len(names)) > 0
    if used.all():
        return names, codes
    remap = np.cumsum(used, dtype=np.int32) - 1
    return [name for name, u in zip(names, used) if u], remap[codes]


def _dictionary(values, n: int, source: str, what: str) -> tuple[pa.ChunkedArray, list]:
    """Any text column -> (dictionary ChunkedArray whose chunks share one dictionary, its values)."""
    if isinstance(values, pa.ChunkedArray):
        chunks = values
    elif isinstance(values, pa.Array):
        chunks = pa.chunked_array([values])
    else:
        array = np.asarray(values)
        if array.dtype.kind in "iub":
            array = array.astype(str)
        try:
            # floats go through Arrow, which turns NaN into a missing value (see string_dictionary)
            chunks = pa.chunked_array([pa.array(array) if array.dtype.kind == "f" else pa.array(
                array.tolist() if array.dtype.kind == "O" else array, type=pa.string())])
        except (UnicodeEncodeError, pa.ArrowException) as exc:
            raise PrepareError(f"{source}: column '{what}' holds values that are not text or numbers, or text "
                               f"that is not valid Unicode ({one_line(exc)[:120]})") from None
    if len(chunks) != n:
        raise PrepareError(f"{source}: column '{what}' has {len(chunks)} rows, expected {n}")
    chunks = string_dictionary(chunks, source, what)
    if chunks.num_chunks > 1:
        chunks = pa.table({"c": chunks}).unify_dictionaries().column("c")
    if chunks.num_chunks == 0:
        return chunks, []
    return chunks, chunks.chunk(0).dictionary.to_pylist()


def _gather(chunks: pa.ChunkedArray, lut: np.ndarray, n: int) -> np.ndarray:
    """lut[dictionary index] for every row, chunk by chunk (index -1 = null picks lut's last slot)."""
    out = np.empty(n, lut.dtype)
    pos = 0
    for chunk in chunks.chunks:
        indices = chunk.indices
        if indices.null_count:
            indices = pc.fill_null(indices, -1)
        end = pos + len(indices)
        take_blocked(lut, indices.to_numpy(zero_copy_only=False), out[pos:end])
        pos = end
    return out


def take_blocked(lut: np.ndarray, indices: np.ndarray, out: np.ndarray, block: int = 1 << 22) -> None:
    """out[:] = lut[indices] in blocks: np.take would first copy all indices to int64."""
    for start in range(0, indices.size, block):
        out[start:start + block] = lut[indices[start:start + block]]


def sort_and_dedup(arrays: list[np.ndarray], n_users: int, n_places: int, n_behaviors: int, sources: bool = False):
    """Sort rows by (user, time, behavior, place) and drop repeated (user, time, behavior) rows,
    keeping the one with the smallest place code. ``arrays`` is [user, time, place, behavior] and is
    emptied. Returns (u, time, p, b, duplicates, notes), and with ``sources`` also (rows, input rows): every
    output row of an instant with several events and the input row it came from (the first of equal rows).

    Speed and memory: the four columns are packed into one int64 key, sorted by value (numpy's SIMD
    sort, ~10x faster than an argsort) and unpacked, so no permutation array is ever built. Which
    duplicate survives therefore depends on the place, never on the file's row order. ``sources`` keeps the
    input's keys beside the sorted ones while it runs (8 bytes more an event) to look up the tied rows in them."""
    u, time = arrays[0], arrays[1]
    n = u.size
    tmin = int(time.min())
    span = int(time.max()) - tmin + 1
    nb, npl = max(n_behaviors, 1), max(n_places, 1)
    if n_users * span * nb * npl >= 2 ** 62:  # enormous time spans: the packed key would overflow
        found = sort_and_dedup_lexsort(*arrays)
        return found if sources else found[:-1]
    key = u.astype(np.int64)
    del u, time
    key *= span
    key += arrays[1]
    key -= tmin
    arrays[:2] = [None, None]
    out_of_order = int(np.count_nonzero(key[1:] < key[:-1]))
    key *= nb
    key += arrays[3]
    arrays[3] = None
    key *= npl
    key += arrays[2]
    arrays.clear()
    unsorted = bool(np.count_nonzero(key[1:] < key[:-1]))
    inkey = None
    if sources:   # the input's keys, kept only to find where the rows of tied instants came from
        inkey, key = key, (np.sort(key) if unsorted else key.copy())
    elif unsorted:
        key.sort()
    p = np.remainder(key, npl, out=np.empty(n, np.int32), casting="unsafe")
    key //= npl
    unique = np.empty(n, bool)
    unique[0] = True
    np.not_equal(key[1:], key[:-1], out=unique[1:])
    n_dup = int(n - np.count_nonzero(unique))
    if n_dup:
        key, p = key[unique], p[unique]
    del unique
    order = _tied_sources(key, p, nb, npl, inkey) if sources else None
    del inkey
    b = np.remainder(key, nb, out=np.empty(key.size, np.int32), casting="unsafe")
    key //= nb
    time = key % span
    time += tmin
    key //= span
    u = key.astype(np.int32)
    found = u, time, p, b, n_dup, {"input_sorted": out_of_order == 0, "out_of_order_rows": out_of_order}
    return (*found, order) if sources else found


def _tied_sources(key: np.ndarray, p: np.ndarray, nb: int, npl: int, inkey: np.ndarray):
    """(rows, input rows) of the rows of tied instants: ``key`` the sorted, unique (user, time, behavior) keys,
    ``inkey`` the input's (user, time, behavior, place) keys in input order; the first equal input row wins."""
    instant = key // nb
    same = np.flatnonzero(instant[1:] == instant[:-1])
    rows = np.union1d(same, same + 1).astype(np.int64)
    if not rows.size:
        return rows, rows
    full = key[rows] * npl + p[rows]           # ascending, as key is
    at = np.minimum(np.searchsorted(full, inkey), full.size - 1)
    hits = np.flatnonzero(full[at] == inkey)
    src = np.empty(rows.size, np.int64)
    src[at[hits][::-1]] = hits[::-1]           # assigned last: the first input row of each key
    return rows, src


def sort_and_dedup_lexsort(u, time, p, b):
    back = (u[1:] < u[:-1]) | ((u[1:] == u[:-1]) & (time[1:] < time[:-1]))
    out_of_order = int(np.count_nonzero(back))
    order = np.lexsort((p, b, time, u))
    u, time, p, b = u[order], time[order], p[order], b[order]
    unique = np.empty(u.size, bool)
    unique[0] = True
    unique[1:] = (u[1:] != u[:-1]) | (time[1:] != time[:-1]) | (b[1:] != b[:-1])
    n_dup = int(u.size - np.count_nonzero(unique))
    if n_dup:
        u, time, p, b, order = u[unique], time[unique], p[unique], b[unique], order[unique]
    same = np.flatnonzero((u[1:] == u[:-1]) & (time[1:] == time[:-1]))
    rows = np.union1d(same, same + 1).astype(np.int64)
    return (u, time, p, b, n_dup, {"input_sorted": out_of_order == 0, "out_of_order_rows": out_of_order},
            (rows, order[rows].astype(np.int64)))



def string_dictionary(values, source: str, what: str):
    """A text column (Array or ChunkedArray) as a dictionary of strings; one-line error if not UTF-8 text."""
    typ = values.type
    try:
        if pa.types.is_floating(typ):   # NaN is a missing value, not a user "nan"; 12345.0 is written "12345"
            values = pc.if_else(pc.is_nan(values), pa.scalar(None, typ), values)
        if not pa.types.is_dictionary(typ):
            if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
                values = values.cast(pa.string())
            return pc.dictionary_encode(values)
        if not (pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type)):
            values = values.cast(pa.dictionary(typ.index_type, pa.string()))
    except pa.ArrowException as exc:
        raise PrepareError(f"{source}: column '{what}' ({typ}) cannot be read as UTF-8 text "
                           f"({one_line(exc)})") from None
    return values

