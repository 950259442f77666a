"""The values of the reader options that :class:`data_prep.config.ReaderConfig` declares: the ``--columns``
mapping onto the event schema and the ``--label-map`` file (serving reads its events with them too)."""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from data_prep.encoding.table import CANONICAL, SCHEMA_COLUMNS
from data_prep.errors import PrepareError
from data_prep.reading.labels import clean_label, refuse_surrogates

_COLUMN_ALIASES = {"user": "user", "user_id": "user", "time": "time", "timestamp": "time",
                   "place": "place", "behavior": "behavior", "behaviour": "behavior", "label": "behavior"}


def parse_columns_option(text: str) -> dict[str, str]:
    """``"user=uid,time=ts,place=loc,behavior=act"`` -> ``{"user": "uid", ...}`` (any subset of keys)."""
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise PrepareError(f"--columns: '{item}' is not of the form key=column")
        if key not in _COLUMN_ALIASES:
            raise PrepareError(f"--columns: unknown key '{key}' (expected one of {', '.join(CANONICAL)})")
        canonical = _COLUMN_ALIASES[key]
        if canonical in mapping:
            raise PrepareError(f"--columns: '{canonical}' is given twice")
        mapping[canonical] = value
    if not mapping:
        raise PrepareError("--columns: empty mapping")
    return mapping



def resolve_columns(columns: Mapping[str, str] | None, distinct: bool = False) -> dict[str, str]:
    """Canonical name -> the file's column name, schema names for the fields not mapped.

    Two fields reading one column is an error when it would put the label into the prompt (place and
    behavior, ``--columns place=behavior``) or parse one column as both a time and text; with
    ``distinct`` (the prepare command line) any shared column is. (Reading the user column as the behavior
    is allowed to library callers: serving reads next-event files, which have no behavior, that way.)
    """
    resolved = dict(SCHEMA_COLUMNS)
    for key, value in (columns or {}).items():
        if key not in _COLUMN_ALIASES:
            raise PrepareError(f"columns: unknown key '{key}' (expected one of {', '.join(CANONICAL)})")
        resolved[_COLUMN_ALIASES[key]] = value
    by_column: dict[str, list[str]] = {}
    for field_name, column in resolved.items():
        by_column.setdefault(column, []).append(field_name)
    for column, names in by_column.items():
        if len(names) > 1 and (distinct or "time" in names or {"place", "behavior"} <= set(names)):
            raise PrepareError(f"--columns: {' and '.join(names)} would both read column '{column}'; every "
                               f"field needs its own column (map the other one too, e.g. --columns {names[0]}=...)")
    return resolved


def load_label_map(path: str | os.PathLike) -> dict[str, str]:
    """Raw label -> category, from JSON ``{raw: category}`` or a 2-column CSV ``raw,category``.

    The CSV may start with the header ``raw,category``. Labels and categories are cleaned like the labels
    of the log (stripped, Unicode NFC, line breaks as spaces: :func:`data_prep.reading.labels.clean_label`), so
    NFC and NFD spellings of a raw label are one key; a raw label given twice with different categories,
    an empty category, or a lone surrogate (JSON ``"\\ud83d"``) is an error naming the line.
    """
    path = Path(path)
    text = read_text(path)
    mapping: dict[str, str] = {}

    def add(raw: Any, category: Any, where: str) -> None:
        if not isinstance(raw, str) or not isinstance(category, str) or not category.strip():
            raise PrepareError(f"{path}: {where}: label map entries must be non-empty strings, "
                               f"got {raw!r}: {category!r}")
        refuse_surrogates(raw + category, f"{path}: {where}: a label map entry")
        raw, category = clean_label(raw)[0], clean_label(category)[0]
        if mapping.get(raw, category) != category:
            raise PrepareError(f"{path}: {where}: label '{raw}' maps to both '{mapping[raw]}' and '{category}'")
        mapping[raw] = category

    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PrepareError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise PrepareError(f"{path}: a JSON label map must be an object {{raw: category}}")
        for raw, category in obj.items():
            add(raw, category, f"line {_json_key_line(text, raw)} (key {raw!a})")
    else:
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        for line_no, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if line_no == 1 and [c.strip().lower() for c in row] == ["raw", "category"]:
                continue
            if len(row) != 2:
                raise PrepareError(f"{path}: row {line_no}: expected 2 columns raw,category, got {len(row)}")
            add(row[0], row[1], f"row {line_no}")
    if not mapping:
        raise PrepareError(f"{path}: the label map is empty")
    return mapping

def _json_key_line(text: str, key: str) -> int:
    """The line of a JSON object's key (the first place its JSON spelling occurs; 1 if not found)."""
    for spelling in (json.dumps(key), json.dumps(key, ensure_ascii=False)):
        at = text.find(spelling)
        if at >= 0:
            return text.count("\n", 0, at) + 1
    return 1


def read_text(path: Path) -> str:
    if not path.is_file():
        raise PrepareError(f"{path}: no such file")
    data = path.read_bytes()
    if not data.strip():
        raise PrepareError(f"{path}: file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PrepareError(f"{path}: line {line}: not valid UTF-8 (byte offset {exc.start})") from None


