"""Text rules for behavior labels, places and user ids (the bad-input rules of :mod:`data_prep.reading.events`).

Labels and places end up inside prompts, so they must read as one line of plain text, and the behavior names
must split back into the candidate list the prompt shows. Every function here works on one distinct value
(a dictionary entry), never on every row.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from data_prep.errors import PrepareError

MAX_LABEL_CHARS = 200            # a behavior or place name, not a free-text field
CANDIDATE_SEPARATOR = ", "      # data_prep.rendering.prompts.format_candidates joins the behavior names with it
FLOAT_EXACT_INTEGERS = 2 ** 53   # a float64 holds every integer below this, and loses digits above it
_SURROGATE = re.compile("[\ud800-\udfff]")
_BREAKS = "\x00-\x1f\x7f-\x9f\u2028\u2029"   # control characters (newlines, tabs, ...) and line/paragraph separators
_BREAK_RUN = re.compile(f"[ {_BREAKS}]*[{_BREAKS}][ {_BREAKS}]*")
_FLOAT_TEXT = re.compile(r"^[+-]?\d+(\.\d+)?[eE]\+?\d+$")


def number_text(value: float) -> str | None:
    """A number read where text is expected (ids, labels, JSON times): NaN and infinities are missing (None),
    a float holding a whole number below 2**53 is written as that integer (12345.0 -> "12345", as Arrow
    writes it), any other float in Python's shortest round-trip form."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer() and abs(value) < FLOAT_EXACT_INTEGERS:
            return str(int(value))
        return repr(value)
    return str(value)


def refuse_surrogates(text: str, where: str) -> None:
    """A lone surrogate (a cut emoji such as ``"\\ud83d"`` in JSON) cannot be written as UTF-8: one-line error."""
    found = _SURROGATE.search(text)
    if found:
        raise PrepareError(f"{where} holds a lone surrogate {found.group()!a} (half of a cut emoji?), which "
                           f"is not Unicode text: {text[:60]!a}")


def clean_label(value) -> tuple[str, tuple[str, ...]]:
    """A label or place as prompt text, and which fixes it needed: stripped; Unicode NFC ("nfc": the same
    text written with combining characters, as macOS writes file names, becomes one label); every run of
    control characters / line or paragraph separators with the spaces around it becomes one space
    ("line_breaks")."""
    text = value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())
    fixes = []
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
        fixes.append("nfc")
    if _BREAK_RUN.search(text):
        text = _BREAK_RUN.sub(" ", text).strip()
        fixes.append("line_breaks")
    return text, tuple(fixes)


def label_problem(name: str, what: str) -> str | None:
    """Why a behavior or place name cannot go into a prompt, or None."""
    if len(name) > MAX_LABEL_CHARS:
        return (f"{what} {name[:40]!a}... is {len(name)} characters long, more than {MAX_LABEL_CHARS} "
                f"(a free-text column mapped as the {what}?)")
    if what == "behavior" and CANDIDATE_SEPARATOR in name:
        return (f"behavior '{name}' contains '{CANDIDATE_SEPARATOR}', which separates the candidates in the "
                f"prompt; rename it with --label-map")
    return None


def float_id_problem(user_id: str) -> str | None:
    """A user id that is an integer written as a float past 2**53 has lost digits, so different users may
    have merged into one (pandas writes integer ids with gaps as floats): refuse it."""
    if _FLOAT_TEXT.match(user_id) and abs(float(user_id)) >= FLOAT_EXACT_INTEGERS:
        return (f"user id '{user_id}' is an integer stored as a floating-point number beyond 2**53, which loses "
                f"digits and merges different users; export the ids as integers or text")
    return None


def load_label_map(path: str | os.PathLike) -> dict[str, str]:
    """Raw label -> category, from JSON ``{raw: category}`` or a 2-column CSV ``raw,category``.

    The CSV may start with the header ``raw,category``. Labels and categories are cleaned like the labels
    of the log (stripped, Unicode NFC, line breaks as spaces: :func:`clean_label`), so
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
