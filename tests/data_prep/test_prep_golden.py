"""Pinned outputs: clean inputs and a fixed seed give the same bytes as the code before the data_prep split.

The digests were recorded with commit 70ea0c9 (data_prep before it was split into modules by job); the
demo's metric numbers rest on these bytes. A change that moves them on purpose must say so and re-record
them (run this file with GOLDEN_PRINT=1 to print the new table).
"""
import hashlib
import os

import pytest

from data_prep.config import PrepareConfig
from data_prep.prepare import prepare
from data_prep.reading.events import load_events
from data_prep.synthetic import generate_events, write_events

GOLDEN = {
    "syn": {
        "anchor.jsonl": "3f120629d24ac46d", "anchor.meta.jsonl": "6aa15f0c9e739d8d",
        "aux.jsonl": "6dc65981c499a366",
        "tail_medium.jsonl": "9e4836cabbf7468f", "tail_medium.meta.jsonl": "088797da88fa96a2",
        "test_p1.jsonl": "0417c3448ccc2bcd", "test_p1.meta.jsonl": "8494353cfec57c19",
        "test_p2.jsonl": "a11b006e90d81e95", "test_p2.meta.jsonl": "0fc2a5d04a20037d",
        "train_all.jsonl": "5386e36e7f1644c1", "train_all.meta.jsonl": "f5e8a7f23da234bf",
        "valid.jsonl": "b78347c9b5b6df96", "valid.meta.jsonl": "86b941dc2c62779c",
    },
    "jsonl": {
        "anchor.jsonl": "19ab0cd26d43f6e7", "anchor.meta.jsonl": "212351e5e5b6b7e2",
        "aux.jsonl": "2d58ab360604d445",
        "tail_medium.jsonl": "776a6fa6aaa1d5f6", "tail_medium.meta.jsonl": "6936c35905f5cde1",
        "test_p1.jsonl": "06b4415afd9bd98f", "test_p1.meta.jsonl": "9610152647cdc37b",
        "test_p2.jsonl": "533802e330313768", "test_p2.meta.jsonl": "f1da67236fa0f124",
        "train_all.jsonl": "0637442496eecf8e", "train_all.meta.jsonl": "1f343c2295e7d0ca",
        "valid.jsonl": "710e0a123c5b5c8b", "valid.meta.jsonl": "42f45d2f3027d21c",
    },
}
CONFIG = {"train_cap": 200_000, "valid_cap": 50_000, "test_cap": 200, "p2_per_behavior": 20, "history_len": 10}


def quiet(*args, **kwargs):
    pass


def digests(directory):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in sorted(directory.iterdir())
            if f.name not in ("stats.json", "dataset_info.json")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    prepare(generate_events(30, 8, seed=7), root / "syn", PrepareConfig(**CONFIG), log=quiet)
    write_events(root / "ev.jsonl", 25, 8, seed=5)   # epoch seconds, read as UTC instants under --tz
    prepare(load_events(root / "ev.jsonl", tz="Asia/Shanghai"), root / "jsonl",
            PrepareConfig(**CONFIG, seed=1, eps=0.2), log=quiet)
    return root


@pytest.mark.parametrize("run", sorted(GOLDEN))
def test_outputs_are_byte_identical_to_the_pinned_run(runs, run):
    found = digests(runs / run)
    if os.environ.get("GOLDEN_PRINT"):
        print(run, found)
    assert found == GOLDEN[run]
