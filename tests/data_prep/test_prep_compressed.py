"""Compressed exports (events.csv.gz, .bz2, .zst; CSV and JSONL) are read as their plain files: prepare writes
the plain export's files in memory, out of core and on Ray, and predict reads the same events."""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pytest

from data_prep.cli import main
from data_prep.config import PrepareConfig
from data_prep.engines import outofcore
from data_prep.errors import PrepareError
from data_prep.synthetic import write_events
from serving.predict_files import ReadOptions, read_next
from serving.spool import read_spooled_events, spool_inputs

CONFIG = PrepareConfig(train_cap=80, valid_cap=20, test_cap=20, p2_per_behavior=2, history_len=5, eps=0)
ARGS = ["--train-cap", "80", "--valid-cap", "20", "--test-cap", "20", "--p2-per-behavior", "2",
        "--history-len", "5", "--eps", "0"]
CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}


def quiet(*args, **kwargs):
    pass


def compress(plain, suffix):
    path = plain.with_name(plain.name + suffix)
    with pa.output_stream(str(path), compression=CODECS[suffix]) as out:
        out.write(plain.read_bytes())
    return path


def data_files(run):
    """Every written file's digest; stats.json without the input's name."""
    found = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(run.iterdir())
             if f.name != "stats.json"}
    stats = json.loads((run / "stats.json").read_text())
    stats["notes"].pop("source")
    stats.pop("source")
    return found, stats


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    plain = {ext: root / f"events.{ext}" for ext in ("csv", "jsonl")}
    for path in plain.values():
        write_events(path, 12, 6, seed=3)
    expected = {}
    for ext, path in plain.items():
        assert main(["prepare", "--input", str(path), "--out", str(root / f"run-{ext}"), *ARGS]) == 0
        expected[ext] = data_files(root / f"run-{ext}")
    return plain, expected


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_a_compressed_export_gives_the_plain_exports_files(exports, tmp_path, ext, suffix):
    plain, expected = exports
    packed = compress(plain[ext], suffix)
    assert main(["prepare", "--input", str(packed), "--out", str(tmp_path / "mem"), *ARGS]) == 0
    assert data_files(tmp_path / "mem") == expected[ext]
    stats = json.loads((tmp_path / "mem" / "stats.json").read_text())
    assert stats["notes"]["source"] == str(packed)
    outofcore.prepare_input(packed, tmp_path / "ooc", CONFIG, n_buckets=3, log=quiet)
    assert main(["prepare", "--input", str(packed), "--out", str(tmp_path / "ooc"), "--buckets", "3", *ARGS]) == 0
    assert data_files(tmp_path / "ooc") == expected[ext]


def test_a_directory_of_compressed_files_and_ray(exports, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    plain, expected = exports
    lake = tmp_path / "lake"
    lake.mkdir()
    compress(plain["csv"], ".gz").rename(lake / "events.csv.gz")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_NUM_CPUS", "1")
    assert main(["prepare", "--input", str(lake), "--out", str(tmp_path / "ray"), "--engine", "ray",
                 "--buckets", "2", *ARGS]) == 0
    assert data_files(tmp_path / "ray")[0] == expected["csv"][0]


def test_predict_reads_compressed_events_and_next_as_the_plain_files(exports, tmp_path):
    plain, _ = exports
    read = ReadOptions()

    def histories(path, folder):
        folder.mkdir()
        spools = spool_inputs(str(path), read, 4, set(range(4)), folder, "events")
        return {b: read_spooled_events(sp, read) for b, sp in sorted(spools.items())}

    for suffix in CODECS:
        assert histories(compress(plain["jsonl"], suffix), tmp_path / suffix) == histories(plain["jsonl"],
                                                                                            tmp_path / f"p{suffix}")
    nxt = tmp_path / "next.csv"
    nxt.write_text("user_id,timestamp,place\nu1,2024-03-05T09:00:00,home\n")
    assert read_next(str(compress(nxt, ".gz")), read) == read_next(str(nxt), read)


def test_a_corrupt_compressed_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(b"not gzip at all")
    assert main(["prepare", "--input", str(path), "--out", str(tmp_path / "run"), *ARGS]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"error: {path}: cannot read (")
    with pytest.raises(PrepareError, match=rf"^{path}: cannot read \("):
        outofcore.prepare_input(path, tmp_path / "ooc", CONFIG, n_buckets=2, log=quiet)
