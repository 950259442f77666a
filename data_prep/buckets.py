"""The per-file and per-bucket steps of the out-of-core prepare (driver: :mod:`data_prep.outofcore`).

Each step is a plain function of paths and small arguments, so an engine (data_prep.engine) runs it in this
process or as a Ray task; what it returns is small (vocabularies, per-user counts, label counts). Events are
partitioned by a hash of the user id, so a user's events always lie in one bucket: de-duplication, the tie
rule and every window are bucket-local, and a bucket's arrays use the global dictionary codes (sorted names),
so they equal the rows of the in-memory table.
"""
from __future__ import annotations

import contextlib
import heapq
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_prep import encode, samples, sources, ties
from data_prep.render import Renderer
from data_prep.table import EventTable

EVENTS_FILE = "events.npz"


def bucket_dir(work: Path, bucket: int) -> Path:
    return Path(work) / f"bucket-{bucket:05d}"


def bucket_of(user_ids: list[str], n_buckets: int) -> np.ndarray:
    """The bucket of each user id: crc32 of its UTF-8 bytes, modulo the bucket count (stable everywhere)."""
    return np.fromiter((zlib.crc32(u.encode()) % n_buckets for u in user_ids), dtype=np.int32,
                       count=len(user_ids))


def partition_file(item: sources.InputFile, index: int, reader: dict, work: str, n_buckets: int) -> dict:
    """Read one input file (one-file rules) and write its events, as text, into one piece per bucket.
    Returns its dropped counts, notes and vocabularies."""
    table = sources.load_file(item, **reader)
    order = np.argsort(bucket_of(table.user_ids, n_buckets)[table.user], kind="stable")
    split = np.searchsorted(bucket_of(table.user_ids, n_buckets)[table.user][order], np.arange(n_buckets + 1))
    names = {k: pa.array(v, pa.string()) for k, v in
             (("user", table.user_ids), ("place", table.places), ("behavior", table.behaviors))}
    for bucket in range(n_buckets):
        rows = order[split[bucket]:split[bucket + 1]]
        if rows.size == 0:
            continue
        piece = pa.table({"user": names["user"].take(table.user[rows]), "time": table.time[rows],
                          "place": names["place"].take(table.place[rows]),
                          "behavior": names["behavior"].take(table.behavior[rows])})
        out = bucket_dir(Path(work), bucket)
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(piece, out / f"part-{index:06d}.parquet")
    return {"dropped": table.dropped, "notes": table.notes, "user_ids": table.user_ids,
            "places": table.places, "behaviors": table.behaviors}


def _codes(column: pa.ChunkedArray, vocab: np.ndarray) -> np.ndarray:
    encoded = column.combine_chunks().dictionary_encode()
    lut = np.searchsorted(vocab, np.asarray(encoded.dictionary.to_pylist(), dtype=object)).astype(np.int32)
    return lut[encoded.indices.to_numpy(zero_copy_only=False)]


def load_bucket(work: str, bucket: int, vocab: dict) -> EventTable | None:
    """The bucket's events as scan_bucket left them (sorted, de-duplicated, instants in the seeded order),
    with the global vocabularies; None for an empty bucket."""
    folder = bucket_dir(Path(work), bucket)
    if (folder / EVENTS_FILE).exists():
        with np.load(folder / EVENTS_FILE) as arrays:
            return EventTable(user=arrays["user"], user_ids=vocab["user_ids"], time=arrays["time"],
                              place=arrays["place"], places=vocab["places"], behavior=arrays["behavior"],
                              behaviors=vocab["behaviors"])
    return None


def scan_bucket(work: str, bucket: int, vocab: dict, seed: int, history_len: int) -> dict | None:
    """Sort, de-duplicate and order the bucket's events (kept on disk for the later steps) and return the
    per-user aggregates the global steps need: user codes, event counts, the first target's offset, tied
    targets per user, the largest instant and the samples lost to ties."""
    folder = bucket_dir(Path(work), bucket)
    pieces = sorted(folder.glob("part-*.parquet")) if folder.exists() else []
    if not pieces:
        return None
    data = pa.concat_tables([pq.read_table(p) for p in pieces])
    arrays = [_codes(data.column("user"), np.asarray(vocab["user_ids"], dtype=object)),
              data.column("time").to_numpy(),
              _codes(data.column("place"), np.asarray(vocab["places"], dtype=object)),
              _codes(data.column("behavior"), np.asarray(vocab["behaviors"], dtype=object))]
    del data
    u, time, p, b, n_dup, _ = encode.sort_and_dedup(arrays, len(vocab["user_ids"]), len(vocab["places"]),
                                                    len(vocab["behaviors"]))
    table = EventTable(user=u, user_ids=vocab["user_ids"], time=time, place=p, places=vocab["places"],
                       behavior=b, behaviors=vocab["behaviors"])
    table = ties.order_instants(table, seed)
    np.savez(folder / EVENTS_FILE, user=table.user, time=table.time, place=table.place, behavior=table.behavior)
    for piece in pieces:
        piece.unlink()
    runs = samples.user_runs(table.user)
    tied = ties.tied_positions(table.user, table.time)
    ends = runs.starts + runs.counts
    naive_first = runs.starts + history_len
    first_target = np.minimum(ties.next_instant(tied, naive_first), ends)
    return {"bucket": bucket, "events": len(table), "duplicates": n_dup, "codes": runs.codes,
            "counts": runs.counts, "first": first_target - runs.starts,
            "tied": np.searchsorted(tied, ends) - np.searchsorted(tied, first_target),
            "largest": ties.largest_instant(tied),
            "lost": int(np.clip(first_target - naive_first, 0, None).sum())}


def bucket_labels(work: str, bucket: int, vocab: dict, train_users: np.ndarray, test_users: np.ndarray,
                  first: dict) -> dict:
    """Label counts over the training users' samples (all of them, before the cap) and the labels of every
    test user's samples (users in ascending code, samples in time order)."""
    table = load_bucket(work, bucket, vocab)
    runs = samples.user_runs(table.user)
    out = {}
    for name, users in (("train", train_users), ("test", test_users)):
        k = np.searchsorted(runs.codes, users)
        starts = runs.starts[k] + first[name]
        counts = runs.starts[k] + runs.counts[k] - starts
        idx = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        out[name] = table.behavior[idx].astype(np.int32)
    return {"train_counts": np.bincount(out["train"], minlength=len(vocab["behaviors"])),
            "test_labels": out["test"]}


def render_bucket(work: str, bucket: int, vocab: dict, info, config, jobs: dict) -> None:
    """Render the bucket's selected samples of each split into render-<split>.tsv, one line a sample in
    output position order: position, label, prompt characters, record line, meta line (tab separated; JSON
    lines hold no raw tab or newline). jobs: split -> (user codes, event offsets in the user, template ids,
    output positions), ascending positions."""
    table = load_bucket(work, bucket, vocab)
    runs = samples.user_runs(table.user)
    empty = np.empty(0, np.int64)
    sets = samples.SampleSets(empty, empty, empty, empty, empty, {}, {}, runs=runs,
                              tied=ties.tied_positions(table.user, table.time))
    renderer = Renderer(table, info, sets, config)
    for split, (codes, offsets, tids, positions) in jobs.items():
        targets = runs.starts[np.searchsorted(runs.codes, codes)] + offsets
        at = iter(positions.tolist())
        with open(bucket_dir(Path(work), bucket) / f"render-{split}.tsv", "wb") as f:
            for records, metas, labels, chars in renderer.chunks(targets, tids):
                f.write("".join([f"{next(at)}\t{label}\t{c}\t{r[:-1]}\t{m}" for r, m, label, c in
                                 zip(records, metas, labels.tolist(), chars.tolist())]).encode())


def merged_chunks(work: str, buckets: list[int], split: str, size: int = 20_000):
    """The rendered lines of every bucket merged by output position, as write_chunks' chunks."""
    paths = [bucket_dir(Path(work), b) / f"render-{split}.tsv" for b in buckets]
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open(p, "rb")) for p in paths if p.exists()]
        batch: list[bytes] = []
        for line in heapq.merge(*files, key=lambda line: int(line[:line.index(b"\t")])):
            batch.append(line)
            if len(batch) == size:
                yield _chunk(batch)
                batch = []
        if batch:
            yield _chunk(batch)


def _chunk(lines: list[bytes]):
    parts = [line.decode().split("\t") for line in lines]
    return ([p[3] + "\n" for p in parts], [p[4] for p in parts], np.array([int(p[1]) for p in parts], np.int64),
            np.array([int(p[2]) for p in parts], np.int64))
