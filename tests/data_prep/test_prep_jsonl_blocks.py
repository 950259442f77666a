"""The JSONL reader turns its rows into Arrow text block by block: any block size reads the same table, and a
row's error after the first block still names that row (not the first row's missing columns)."""
import json

import numpy as np
import pytest

from data_prep.errors import PrepareError
from data_prep.reading import readers
from data_prep.reading.events import load_events


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" + ("\n" if i % 4 == 0 else "") for i, r in enumerate(rows)),
                    encoding="utf-8")


ROWS = [{"user_id": f"u{i % 5}", "timestamp": 1_710_000_000 + 3600 * i if i % 3 else f"{1_710_000_000 + 3600 * i}",
         "place": "home" if i % 2 else 7, "behavior": f"b{i % 4}"} for i in range(23)]


def test_any_block_size_reads_the_same_table(tmp_path, monkeypatch):
    path = tmp_path / "ev.jsonl"
    write(path, [*ROWS, {**ROWS[0], "timestamp": "never"}])
    whole = load_events(path)
    monkeypatch.setattr(readers, "JSONL_BLOCK", 3)
    blocked = load_events(path)
    for name in ("user", "time", "place", "behavior"):
        assert np.array_equal(getattr(blocked, name), getattr(whole, name))
    assert (blocked.user_ids, blocked.places, blocked.behaviors) == (whole.user_ids, whole.places, whole.behaviors)
    assert blocked.dropped == whole.dropped and blocked.notes == whole.notes
    # JSONL rows are named by their line: the bad row is line 24 plus the 6 blank lines before it
    assert whole.notes["bad_timestamp_rows"] == [len(ROWS) + 1 + 6] and whole.notes["blank_lines"] == 6


def test_a_missing_key_after_the_first_block_names_its_row(tmp_path, monkeypatch):
    path = tmp_path / "ev.jsonl"
    bad = {k: v for k, v in ROWS[0].items() if k != "place"}
    path.write_text("".join(json.dumps(r) + "\n" for r in [*ROWS[:7], bad]), encoding="utf-8")
    monkeypatch.setattr(readers, "JSONL_BLOCK", 3)
    with pytest.raises(PrepareError, match=rf"^{path}: row 8: missing key 'place'"):
        load_events(path)
