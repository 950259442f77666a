"""Reader options: the ``--columns`` mapping onto the event schema and the ``--label-map`` file."""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from data_prep.errors import PrepareError
from data_prep.table import CANONICAL, SCHEMA_COLUMNS

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



def resolve_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    """Canonical name -> the file's column name, schema names for the fields not mapped."""
    resolved = dict(SCHEMA_COLUMNS)
    for key, value in (columns or {}).items():
        if key not in _COLUMN_ALIASES:
            raise PrepareError(f"columns: unknown key '{key}' (expected one of {', '.join(CANONICAL)})")
        resolved[_COLUMN_ALIASES[key]] = value
    return resolved


def load_label_map(path: str | os.PathLike) -> dict[str, str]:
    """Raw label -> category, from JSON ``{raw: category}`` or a 2-column CSV ``raw,category``.

    The CSV may start with the header ``raw,category``. Labels and categories are stripped;
    a raw label given twice with different categories, or an empty category, is an error.
    """
    path = Path(path)
    text = read_text(path)
    mapping: dict[str, str] = {}

    def add(raw: Any, category: Any, where: str) -> None:
        if not isinstance(raw, str) or not isinstance(category, str) or not category.strip():
            raise PrepareError(f"{path}: {where}: label map entries must be non-empty strings, "
                               f"got {raw!r}: {category!r}")
        raw, category = raw.strip(), category.strip()
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
            add(raw, category, f"key '{raw}'")
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


