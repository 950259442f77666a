"""The prepared windows as integer tensors: L history events (behavior, weekday, hour, place) + the next context.

``<split>.meta.jsonl`` carries the L history *behaviors* and the next event's context, but not the history
events' own weekday, hour and place; those are only in the rendered prompt (``<split>.jsonl``
``instruction``), where every history element is written ``(Weekday, hour, place, behavior)`` oldest first
(paper 3.1.1 item 3, Appendix D). So the contexts are read back from the instruction: the element pattern is
anchored on the known behavior names, each window's parsed behaviors must equal its meta ``history`` (else a
one-line error names the file and line), and a place that itself contains ", " still parses. A meta field
``history_context`` (``[[weekday, hour, place], ...]``, one per history event), when present, is used instead
and the instruction is not read.

Encoding: behaviors by stats.json ``label_id``; weekday 0 = Monday; hour 0-23; places by a vocabulary built
from the training split (id 0 = a place never seen in training).
"""

from __future__ import annotations

import json
import os
import re
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.prepared import iter_split

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
UNKNOWN_PLACE = "<unknown place>"


@dataclass
class Windows:
    """N windows of L events. ``weekday``/``hour``/``place`` have L + 1 columns: the history, then the next event."""

    behavior: np.ndarray  # [N, L] int64 label ids, oldest first
    weekday: np.ndarray   # [N, L + 1]
    hour: np.ndarray      # [N, L + 1]
    place: np.ndarray     # [N, L + 1] place ids (0 = unknown)
    label: np.ndarray     # [N] label id of the next behavior
    meta: list[dict] | None  # the meta lines (test splits, for the predictions file); None to save memory

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, index: np.ndarray) -> Windows:
        index = np.asarray(index, dtype=np.int64)
        meta = None if self.meta is None else [self.meta[i] for i in index.tolist()]
        return Windows(self.behavior[index], self.weekday[index], self.hour[index], self.place[index],
                       self.label[index], meta)


def event_pattern(behaviors: list[str]) -> re.Pattern:
    """``(Weekday, hour, place, behavior)`` with the behavior one of the known names (longest first, so that
    a name that is a prefix of another never wins); the place is the shortest text before it."""
    names = "|".join(re.escape(b) for b in sorted(behaviors, key=len, reverse=True))
    days = "|".join(WEEKDAYS)
    return re.compile(rf"\(({days}), (\d{{1,2}}), (.*?), ({names})\)")


def parse_history_contexts(instruction: str, history: list[str], pattern: re.Pattern) -> list[tuple[str, int, str]]:
    """[(weekday, hour, place)] of the L history events of one rendered instruction (see the module doc)."""
    found = pattern.findall(instruction)[: len(history)]
    if [f[3] for f in found] != list(history):
        raise ValueError(f"history elements of the instruction ({len(found)} parsed) do not match the meta history")
    return [(day, int(hour), place) for day, hour, place, _ in found]


def weekday_id(value) -> int:
    if isinstance(value, int) and 0 <= value < 7:
        return value
    if value in WEEKDAYS:
        return WEEKDAYS.index(value)
    raise ValueError(f"weekday {value!r} is neither 0-6 nor an English day name")


def hour_id(value) -> int:
    hour = int(value)
    if not 0 <= hour < 24:
        raise ValueError(f"hour {value!r} is outside 0-23")
    return hour


def iter_events(dataset_dir: Path, split: str, behaviors: list[str]):
    """(meta, [(weekday, hour, place)] * L) per window of a split, streaming both files side by side."""
    pattern = event_pattern(behaviors)
    meta_path = dataset_dir / f"{split}.meta.jsonl"
    for line_no, meta, record in iter_split(dataset_dir, split):
        if "history_context" in meta:
            yield meta, [tuple(c) for c in meta["history_context"]]
            continue
        if record is None:
            raise ValueError(f"{dataset_dir / split}.jsonl: fewer lines than its meta file")
        try:
            yield meta, parse_history_contexts(json.loads(record)["instruction"], meta["history"], pattern)
        except (ValueError, KeyError) as err:
            raise ValueError(f"{meta_path}:{line_no}: {err}") from None


def read_split(dataset_dir: str | os.PathLike, split: str, behaviors: list[str],
               places: dict[str, int] | None = None, keep_meta: bool = False) -> tuple[Windows, dict[str, int]]:
    """Encode a split; ``places`` None builds the vocabulary from this split (the training split).
    ``keep_meta`` keeps the meta lines (a test split's predictions file needs them; 200k training ones would
    cost hundreds of MB)."""
    dataset_dir = Path(dataset_dir)
    label_id = {name: i for i, name in enumerate(behaviors)}
    grow = places is None
    places = {UNKNOWN_PLACE: 0} if places is None else places
    # flat int32 buffers, not per-window Python lists: 200k windows stay at tens of MB
    cols = {k: array("i") for k in ("behavior", "weekday", "hour", "place", "label")}
    metas, lengths = [], set()
    for meta, contexts in tqdm(iter_events(dataset_dir, split, behaviors), desc=f"read {split}", unit="window"):
        if meta["label"] not in label_id:
            raise ValueError(f"{dataset_dir / split}.meta.jsonl: label {meta['label']!r} is not in stats.json")
        events = [*contexts, tuple(meta["next_context"])]
        if grow:
            for _, _, place in events:
                places.setdefault(place, len(places))
        lengths.add(len(meta["history"]))
        cols["behavior"].extend(label_id[b] for b in meta["history"])
        cols["weekday"].extend(weekday_id(d) for d, _, _ in events)
        cols["hour"].extend(hour_id(h) for _, h, _ in events)
        cols["place"].extend(places.get(p, 0) for _, _, p in events)
        cols["label"].append(label_id[meta["label"]])
        if keep_meta:
            metas.append(meta)
    if not cols["label"]:
        raise ValueError(f"{dataset_dir / split}.meta.jsonl has no windows")
    if len(lengths) != 1:
        raise ValueError(f"{dataset_dir / split}: windows of different lengths {sorted(lengths)}")
    n = len(cols["label"])
    columns = [np.frombuffer(cols[k], dtype=np.int32).astype(np.int64).reshape(n, -1)
               for k in ("behavior", "weekday", "hour", "place")]
    columns.append(np.frombuffer(cols["label"], dtype=np.int32).astype(np.int64))
    return Windows(*columns, metas if keep_meta else None), places
