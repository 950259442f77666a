"""`python -m serving predict` at any size: users in hash buckets, a resumable part per bucket, torchrun ranks.
Two ranks give the same bytes as one; a rank killed after its first part leaves finished parts that a rerun
(here with a different number of ranks) reuses without predicting them again."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from serving_helpers import ENV, ROOT, build_tiny_run

from pipeline.launch import python_module
from serving.spool import bucket_of

BUCKETS = 6
BUCKET_U17 = 32   # blake2b("u17") % 64


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny run, its users' events as CSV and one next context per user (plus one user with no events)."""
    from data_prep.reading.events import load_events
    from serving.predictor import local_iso

    root = tmp_path_factory.mktemp("parts")
    built = build_tiny_run(root)
    table = load_events(built["events"])
    offsets = table.user_offsets()
    rows, nexts = [], []
    for u, uid in enumerate(table.user_ids):
        lo, hi = int(offsets[u]), int(offsets[u + 1])
        for t, p, b in zip(table.time[lo:hi].tolist(), table.place[lo:hi].tolist(), table.behavior[lo:hi].tolist()):
            rows.append(f"{uid},{local_iso(t)},{table.places[p]},{table.behaviors[b]}\n")
        nexts.append(f"{uid},{local_iso(int(table.time[hi - 1]) + 3600)},home\n")
    nexts.append(f"nobody,{local_iso(int(table.time[0]))},home\n")
    events, nxt = root / "recent.csv", root / "next.csv"
    events.write_text("user_id,timestamp,place,behavior\n" + "".join(rows), encoding="utf-8")
    nxt.write_text("user_id,timestamp,place\n" + "".join(nexts), encoding="utf-8")
    return {"run": built["run"], "events": events, "next": nxt, "users": len(table.user_ids) + 1}


def _predict(inputs, out: Path, nproc: int = 1, env: dict | None = None, *extra: str) -> subprocess.CompletedProcess:
    args = ["predict", "--run-dir", str(inputs["run"]), "--template", "smollm2", "--device", "cpu", "--events",
            str(inputs["events"]), "--next", str(inputs["next"]), "--out", str(out), "--buckets", str(BUCKETS),
            "--top-k", "3", *extra]
    env = {**ENV, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(python_module("serving", *args, nproc=nproc), check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def one_rank(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "pred.jsonl"
    proc = _predict(inputs, out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_one_rank_writes_every_user_sorted_once(inputs, one_rank):
    lines = [json.loads(x) for x in one_rank.read_text(encoding="utf-8").splitlines()]
    ids = [x["user_id"] for x in lines]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == inputs["users"]
    assert "no events" in next(x for x in lines if x["user_id"] == "nobody")["error"]
    assert sum("top" in x for x in lines) == inputs["users"] - 1
    # every bucket holds exactly its users
    for b in range(BUCKETS):
        part = one_rank.parent / "pred.jsonl.parts" / f"part-{b:05d}.jsonl"
        assert all(bucket_of(json.loads(x)["user_id"], BUCKETS) == b for x in part.read_text().splitlines())


def test_two_ranks_equal_one_rank_byte_for_byte(inputs, one_rank, tmp_path):
    out = tmp_path / "pred.jsonl"
    proc = _predict(inputs, out, nproc=2)
    assert proc.returncode == 0, proc.stderr
    assert "rank 1/2: 3 parts predicted now, 0 reused" in proc.stderr
    assert out.read_bytes() == one_rank.read_bytes()


def test_a_killed_rank_resumes_from_its_finished_parts(inputs, one_rank, tmp_path):
    out = tmp_path / "pred.jsonl"
    killed = _predict(inputs, out, nproc=2, env={"PREDICT_EXIT_AFTER_PARTS": "1"})
    assert killed.returncode != 0 and not out.exists()
    parts = tmp_path / "pred.jsonl.parts"
    done = {p: p.stat().st_mtime_ns for p in sorted(parts.glob("part-*.json"))}
    assert 1 <= len(done) < BUCKETS    # rank 1's first part at least; never the whole run
    resumed = _predict(inputs, out, nproc=1)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{BUCKETS - len(done)} parts predicted now, {len(done)} reused" in resumed.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())   # not predicted again
    assert out.read_bytes() == one_rank.read_bytes()
    # other prediction options are another run: no part is reused
    again = _predict(inputs, out, 1, None, "--instruction-template", "0")
    assert again.returncode == 0 and f"{BUCKETS} parts predicted now, 0 reused" in again.stderr
    assert out.read_bytes() != one_rank.read_bytes()


def test_events_as_a_hive_partitioned_directory_give_the_one_file_bytes(inputs, one_rank, tmp_path):
    """--events as a directory of CSV and JSONL parts (the same events dealt by row): the one-file output."""
    header, *rows = inputs["events"].read_text(encoding="utf-8").splitlines()
    lake = tmp_path / "events"
    (lake / "dt=a").mkdir(parents=True)
    (lake / "dt=b").mkdir()
    (lake / "dt=a" / "part-0.csv").write_text("\n".join([header, *rows[0::2]]) + "\n", encoding="utf-8")
    (lake / "dt=b" / "part-1.jsonl").write_text("".join(
        json.dumps(dict(zip(header.split(","), row.split(",")))) + "\n" for row in rows[1::2]), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    proc = _predict({**inputs, "events": lake}, out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == one_rank.read_bytes()


def test_bucket_of_is_stable_and_spreads_users():
    assert bucket_of("u17", 64) == BUCKET_U17   # fixed: a rerun in another process or year finds its parts
    hits = {bucket_of(f"user{i}", 8) for i in range(200)}
    assert hits == set(range(8))


def test_make_predict_launches_torchrun_over_nodes(tmp_path):
    """PREDICT_NPROC ranks per node; NNODES > 1 passes the rendezvous flags as for training (dry run)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stats.json").write_text("{}")
    base = [sys.executable, "-m", "pipeline", "--dry-run", "MODEL=tiny", f"RUN_DIR={tmp_path}", "predict",
            "EVENTS=e.jsonl", "NEXT=n.csv", "PREDICT_BUCKETS=16"]

    def command(*extra: str) -> str:
        proc = subprocess.run([*base, *extra], check=False, cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (line,) = [x for x in proc.stdout.splitlines() if "serving predict" in x]
        return line

    one = command()
    assert "torchrun" not in one and "--buckets 16" in one
    multi = command("PREDICT_NPROC=8", "NNODES=2", "NODE_RANK=1", "MASTER_ADDR=node0")
    assert ("torchrun --nnodes 2 --node_rank 1 --master_addr node0 --master_port 29500 --nproc_per_node 8"
            in multi) and "--standalone" not in multi
    assert "--standalone --nproc_per_node 4" in command("PREDICT_NPROC=4")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_bucket_spools_read_as_the_whole_file(inputs, tmp_path, fmt):
    """Every format spooled into buckets and read back by prepare's reader gives the whole file's histories."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from serving.predict_files import ReadOptions, read_histories
    from serving.spool import spool

    table = pcsv.read_csv(inputs["events"], convert_options=pcsv.ConvertOptions(
        column_types={"user_id": "string", "timestamp": "string"}))
    path = tmp_path / f"events.{fmt}"
    if fmt == "csv":   # with a byte-order mark, and a user id that needs stripping
        path.write_bytes(b"\xef\xbb\xbf" + inputs["events"].read_bytes().replace(b"\nu", b"\n u", 1))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n\n" for r in table.to_pylist()), encoding="utf-8")
    else:
        pq.write_table(table, path, row_group_size=100)
    whole, dropped = read_histories(str(path), ReadOptions())
    spools, spool_fmt = spool(str(path), ReadOptions(), 4, {0, 1, 2, 3}, tmp_path, "ev")
    assert sorted(spools) == [0, 1, 2, 3] and spool_fmt == ("jsonl" if fmt == "jsonl" else "parquet")
    merged = {}
    for b, sp in spools.items():
        part, _ = read_histories(str(sp.path), ReadOptions(fmt=spool_fmt))
        assert all(bucket_of(u, 4) == b for u in part)
        merged.update(part)
    assert merged == whole and len(whole) == inputs["users"] - 1
