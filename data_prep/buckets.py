"""The per-file and per-bucket steps of the out-of-core prepare (driver: :mod:`data_prep.outofcore`).

Each step is a plain function of paths and small arguments, so an engine (data_prep.engine) runs it in this
process or as a Ray task; what it returns is small (vocabularies, per-user counts, label counts). Events are
partitioned by a hash of the user id, so a user's events always lie in one bucket: de-duplication, the tie
rule and every window are bucket-local, and a bucket's arrays use the global dictionary codes (sorted names),
so they equal the rows of the in-memory table.
"""
from __future__ import annotations

import io
import itertools
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_prep import encode, samples, sources, ties
from data_prep.render import RENDER_CHUNK, Renderer
from data_prep.table import EventTable

EVENT_COLUMNS = ("user", "time", "place", "behavior")   # events-<column>.npy in a bucket folder
PIECE_SUFFIX = ".pkl"
_BLOCK = struct.Struct("<qq")   # a render block: text bytes, compressed bytes


def bucket_dir(work: Path, bucket: int) -> Path:
    return Path(work) / f"bucket-{bucket:05d}"


def bucket_of(user_ids: list[str], n_buckets: int) -> np.ndarray:
    """The bucket of each user id: crc32 of its UTF-8 bytes, modulo the bucket count (stable everywhere)."""
    return np.fromiter((zlib.crc32(u.encode()) % n_buckets for u in user_ids), dtype=np.int32,
                       count=len(user_ids))


def partition_file(item: sources.InputFile, index: int, reader: dict, work: str, n_buckets: int) -> dict:
    """Read one input file (one-file rules) and write its events into one piece per bucket: int codes into
    the piece's own name lists (the piece's users and places, the file's behaviors) and the times.
    Returns its dropped counts, notes and vocabularies."""
    table = sources.load_file(item, **reader)
    # the table is sorted by user, so each user's rows are one run: deal the users (not the rows) to buckets
    counts = np.bincount(table.user, minlength=len(table.user_ids))
    starts = np.cumsum(counts) - counts
    user_bucket = bucket_of(table.user_ids, n_buckets)
    for bucket in range(n_buckets):
        users = np.flatnonzero((user_bucket == bucket) & (counts > 0))
        if users.size == 0:
            continue
        n = counts[users]
        rows = np.repeat(starts[users] - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        place = table.place[rows]
        used = np.zeros(len(table.places), bool)
        used[place] = True
        place_lut = np.cumsum(used, dtype=np.int64) - 1
        piece = {"user": np.repeat(np.arange(users.size, dtype=np.int32), n), "time": table.time[rows],
                 "place": place_lut[place].astype(np.int32), "behavior": table.behavior[rows].astype(np.int32),
                 "user_ids": [table.user_ids[u] for u in users.tolist()],
                 "places": [table.places[p] for p in np.flatnonzero(used).tolist()],
                 "behaviors": list(table.behaviors)}
        out = bucket_dir(Path(work), bucket)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"part-{index:06d}{PIECE_SUFFIX}", "wb") as f:
            pickle.dump(piece, f, protocol=5)
    return {"dropped": table.dropped, "notes": table.notes, "user_ids": table.user_ids,
            "places": table.places, "behaviors": table.behaviors}


def _global_codes(pieces: list[dict], key: str, names: str, vocab: list[str]) -> np.ndarray:
    """The pieces' `key` codes as codes into the global sorted `vocab`: the pieces' names are
    dictionary-encoded together (hashing in Arrow), so each distinct name is looked up once."""
    sizes = np.array([len(p[names]) for p in pieces], np.int64)
    joined = pa.chunked_array([pa.array(p[names], pa.string()) for p in pieces], pa.string())
    encoded = pc.dictionary_encode(joined.combine_chunks())
    distinct = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    lut = np.searchsorted(np.asarray(vocab, dtype=object), distinct).astype(np.int32)
    lut = lut[encoded.indices.to_numpy(zero_copy_only=False)]
    offsets = np.cumsum(sizes) - sizes
    return np.concatenate([lut[p[key] + off] for p, off in zip(pieces, offsets.tolist())])


def load_bucket(work: str, bucket: int, vocab: dict) -> EventTable | None:
    """The bucket's events as scan_bucket left them (sorted, de-duplicated, instants in the seeded order),
    with the global vocabularies; None for an empty bucket."""
    folder = bucket_dir(Path(work), bucket)
    if not (folder / "events-user.npy").exists():
        return None
    # memory-mapped: the later steps read whole columns once and the sampled windows, nothing is copied
    arrays = {k: np.load(folder / f"events-{k}.npy", mmap_mode="r") for k in EVENT_COLUMNS}
    return EventTable(user=arrays["user"], user_ids=vocab["user_ids"], time=arrays["time"], place=arrays["place"],
                      places=vocab["places"], behavior=arrays["behavior"], behaviors=vocab["behaviors"])


def scan_bucket(work: str, bucket: int, vocab: dict, seed: int, history_len: int) -> dict | None:
    """Sort, de-duplicate and order the bucket's events (kept on disk for the later steps) and return the
    per-user aggregates the global steps need: user codes, event counts, the first target's offset, tied
    targets per user, the largest instant and the samples lost to ties."""
    folder = bucket_dir(Path(work), bucket)
    paths = sorted(folder.glob("part-*" + PIECE_SUFFIX)) if folder.exists() else []
    if not paths:
        return None
    pieces = []
    for path in paths:
        with open(path, "rb") as f:
            pieces.append(pickle.load(f))
    arrays = [_global_codes(pieces, "user", "user_ids", vocab["user_ids"]),
              np.concatenate([p["time"] for p in pieces]),
              _global_codes(pieces, "place", "places", vocab["places"]),
              _global_codes(pieces, "behavior", "behaviors", vocab["behaviors"])]
    if len(pieces) == 1:   # one file's events, sorted and de-duplicated by its reader; global codes keep the order
        (u, time, p, b), n_dup = arrays, 0
    else:
        u, time, p, b, n_dup, _ = encode.sort_and_dedup(arrays, len(vocab["user_ids"]), len(vocab["places"]),
                                                        len(vocab["behaviors"]))
    del pieces
    table = EventTable(user=u, user_ids=vocab["user_ids"], time=time, place=p, places=vocab["places"],
                       behavior=b, behaviors=vocab["behaviors"])
    table = ties.order_instants(table, seed)
    for k in EVENT_COLUMNS:
        np.save(folder / f"events-{k}.npy", getattr(table, k))
    for path in paths:
        path.unlink()
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
    """Render the bucket's selected samples of each split: render-<split>.lz4 holds each sample's record line
    and meta line (JSON lines hold no raw newline) in LZ4 blocks (the text is 10x smaller on disk),
    render-<split>.npz their labels and prompt lengths, in output position order. jobs: split -> (user
    codes, event offsets in the user, template ids), in ascending output position."""
    table = load_bucket(work, bucket, vocab)
    runs = samples.user_runs(table.user)
    empty = np.empty(0, np.int64)
    sets = samples.SampleSets(empty, empty, empty, empty, empty, {}, {}, runs=runs,
                              tied=ties.tied_positions(table.user, table.time))
    renderer = Renderer(table, info, sets, config)
    folder = bucket_dir(Path(work), bucket)
    codec = pa.Codec("lz4")
    for split, (codes, offsets, tids) in jobs.items():
        targets = runs.starts[np.searchsorted(runs.codes, codes)] + offsets
        labels, chars = [empty], [empty]
        with open(folder / f"render-{split}.lz4", "wb") as f:
            for records, metas, chunk_labels, chunk_chars in renderer.chunks(targets, tids):
                text = "".join([line for pair in zip(records, metas) for line in pair]).encode()
                block = codec.compress(text, asbytes=True)
                f.write(_BLOCK.pack(len(text), len(block)))
                f.write(block)
                labels.append(chunk_labels)
                chars.append(chunk_chars)
        np.savez(folder / f"render-{split}.npz", labels=np.concatenate(labels), chars=np.concatenate(chars))


def _rendered_lines(path: Path):
    """The lines of a render file, in order."""
    codec = pa.Codec("lz4")
    with open(path, "rb") as f:
        while header := f.read(_BLOCK.size):
            n_text, n_block = _BLOCK.unpack(header)
            text = codec.decompress(f.read(n_block), decompressed_size=n_text, asbytes=True)
            yield from [line.decode() for line in io.BytesIO(text)]   # lines end at b"\n" only


def merged_chunks(work: str, split: str, source: np.ndarray, size: int = RENDER_CHUNK):
    """The rendered samples of a split in output position order, as write_chunks' chunks; source: the
    bucket of each output position (each bucket's lines are in position order, so no keys are compared)."""
    labels, chars = np.empty(len(source), np.int64), np.empty(len(source), np.int64)
    lines = {}
    for b in np.unique(source).tolist():
        folder = bucket_dir(Path(work), b)
        with np.load(folder / f"render-{split}.npz") as arrays:
            labels[source == b], chars[source == b] = arrays["labels"], arrays["chars"]
        lines[b] = _rendered_lines(folder / f"render-{split}.lz4")
    for lo in range(0, len(source), size):
        src = source[lo:lo + size]
        records: list = [None] * len(src)
        metas: list = [None] * len(src)
        for b in np.unique(src).tolist():
            at = np.flatnonzero(src == b).tolist()
            got = list(itertools.islice(lines[b], 2 * len(at)))
            for i, record, meta in zip(at, got[0::2], got[1::2]):
                records[i], metas[i] = record, meta
        yield records, metas, labels[lo:lo + size], chars[lo:lo + size]
