"""The per-file and per-bucket steps of the out-of-core prepare (driver: :mod:`data_prep.engines.outofcore`).

Each step is a plain function of paths and small arguments, so an engine (data_prep.engines.executors) runs it in this
process or as a Ray task; what it returns is small (vocabularies, per-user counts, label counts). Events are
partitioned by a hash of the user id, so a user's events always lie in one bucket: de-duplication, the tie
rule and every window are bucket-local, and a bucket's arrays use the global dictionary codes (sorted names),
so they equal the rows of the in-memory table.
"""
from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.encoding import encode, ties
from data_prep.encoding.table import EventTable
from data_prep.engines import stream
from data_prep.engines.stream import bucket_of
from data_prep.reading import sources
from data_prep.rendering.render import RENDER_CHUNK, Renderer
from data_prep.sampling import samples

EVENT_COLUMNS = ("user", "time", "place", "behavior")   # events-<column>.npy in a bucket folder
PIECE_SUFFIX = ".pkl"
_BLOCK = struct.Struct("<5q")   # a render block: samples, then text and compressed bytes of records, metas


def bucket_dir(work: Path, bucket: int) -> Path:
    return Path(work) / f"bucket-{bucket:05d}"


def partition_file(item: sources.InputFile, index: int, reader: dict, work: str, n_buckets: int) -> dict:
    """Read one input file (one-file rules, batch by batch: data_prep.engines.stream) and write its events into one
    piece per bucket: the piece's users (sorted) with their event counts, and per event the time and the
    smallest int codes into the piece's own places and behaviors. Returns its dropped counts, notes and
    vocabularies."""
    with sources.local_copy(item.name) as path:
        try:
            facts, tables = stream.read_by_buckets(path, item.fmt, item.name, Path(work) / f"read-{index:06d}",
                                                   n_buckets, **reader)
        except stream.WholeFile:
            facts = None
        if facts is not None:
            names = {"user_ids": set(), "places": set(), "behaviors": set()}
            events = 0
            for table in tables:
                _write_pieces(table, index, work, n_buckets)
                for key, found in names.items():
                    found.update(getattr(table, key))
                events += len(table)
            dropped, notes = facts.notes(item.name, item.fmt, facts.filled, facts.duplicates, events)
            return {"dropped": dropped, "notes": notes, **{k: sorted(v) for k, v in names.items()}}
    table = sources.load_file(item, **reader)
    _write_pieces(table, index, work, n_buckets)
    return {"dropped": table.dropped, "notes": table.notes, "user_ids": table.user_ids,
            "places": table.places, "behaviors": table.behaviors}


def _write_pieces(table: EventTable, index: int, work: str, n_buckets: int) -> None:
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
        piece = {"counts": n, "time": table.time[rows], "place": _small(place_lut[place], int(used.sum())),
                 "behavior": _small(table.behavior[rows], len(table.behaviors)),
                 "user_ids": [table.user_ids[u] for u in users.tolist()],
                 "places": [table.places[p] for p in np.flatnonzero(used).tolist()],
                 "behaviors": list(table.behaviors), "input_order": _piece_orders(table.input_order, rows)}
        out = bucket_dir(Path(work), bucket)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"part-{index:06d}{PIECE_SUFFIX}", "wb") as f:
            pickle.dump(piece, f, protocol=5)


def _piece_orders(input_order: tuple | None, rows: np.ndarray) -> tuple | None:
    """The table's input orders of its tied rows that are among `rows` (ascending), as positions in `rows`."""
    if input_order is None:
        return None
    tied, orders = input_order
    at = np.minimum(np.searchsorted(rows, tied), rows.size - 1)
    mine = rows[at] == tied
    return at[mine].astype(np.int64), orders[mine]


def _small(codes: np.ndarray, n: int) -> np.ndarray:
    """Codes into n names in the smallest unsigned type that holds them (less to write and read)."""
    return codes.astype(np.uint8 if n <= 1 << 8 else np.uint16 if n <= 1 << 16 else np.int32)


def _luts(pieces: list[dict], names: str, vocab: list[str]) -> list[np.ndarray]:
    """Per piece, the global code (position in the sorted `vocab`) of each of its `names`; the pieces' names
    are dictionary-encoded together (hashing in Arrow), so each distinct name is looked up once."""
    sizes = np.array([len(p[names]) for p in pieces], np.int64)
    joined = pa.chunked_array([pa.array(p[names], pa.string()) for p in pieces], pa.string())
    encoded = pc.dictionary_encode(joined.combine_chunks())
    distinct = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    lut = np.searchsorted(np.asarray(vocab, dtype=object), distinct).astype(np.int32)
    lut = lut[encoded.indices.to_numpy(zero_copy_only=False)]
    return np.split(lut, np.cumsum(sizes)[:-1])


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
    luts = {k: _luts(pieces, k, vocab[k]) for k in ("user_ids", "places", "behaviors")}
    arrays = [np.concatenate([np.repeat(lut, p["counts"]) for p, lut in zip(pieces, luts["user_ids"])]),
              np.concatenate([p["time"] for p in pieces]),
              np.concatenate([lut[p["place"]] for p, lut in zip(pieces, luts["places"])]),
              np.concatenate([lut[p["behavior"]] for p, lut in zip(pieces, luts["behaviors"])])]
    files = [int(path.name[len("part-"):-len(PIECE_SUFFIX)]) for path in paths]
    if len(pieces) == 1:   # one file's events, sorted and de-duplicated by its reader; global codes keep the order
        (u, time, p, b), n_dup = arrays, 0
        order = pieces[0]["input_order"]
    else:
        u, time, p, b, n_dup, _, (rows, src) = encode.sort_and_dedup(
            arrays, len(vocab["user_ids"]), len(vocab["places"]), len(vocab["behaviors"]), sources=True)
        offsets = np.cumsum([0] + [len(piece["time"]) for piece in pieces[:-1]])
        order = rows, ties.merged_orders(src, offsets, [piece["input_order"] for piece in pieces], files)
    del pieces
    table = EventTable(user=u, user_ids=vocab["user_ids"], time=time, place=p, places=vocab["places"],
                       behavior=b, behaviors=vocab["behaviors"], input_order=order)
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
    """Render the bucket's selected samples of each split: render-<split>.lz4 holds them in blocks (sample
    count, then the record lines and the meta lines, each LZ4-compressed: the text is 10x smaller on disk;
    JSON lines hold no raw newline), render-<split>.npz their labels and prompt lengths, in output position
    order. jobs: split -> (user codes, event offsets in the user, template ids), in ascending output position."""
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
                texts = ["".join(records).encode(), "".join(metas).encode()]
                blocks = [codec.compress(t, asbytes=True) for t in texts]
                f.write(_BLOCK.pack(len(records), len(texts[0]), len(blocks[0]), len(texts[1]), len(blocks[1])))
                f.write(blocks[0])
                f.write(blocks[1])
                labels.append(chunk_labels)
                chars.append(chunk_chars)
        np.savez(folder / f"render-{split}.npz", labels=np.concatenate(labels), chars=np.concatenate(chars))


class _Rendered:
    """A bucket's render file (compressed: a tenth of the text) taken sample by sample: take(n) gives its next
    n samples' record and meta lines, decompressing a block at a time."""

    def __init__(self, path: Path):
        self.data, self.pos = path.read_bytes(), 0
        self.codec = pa.Codec("lz4")
        self.records: list[str] = []
        self.metas: list[str] = []

    def _lines(self, n_text: int, n_block: int) -> list[str]:
        block = self.data[self.pos:self.pos + n_block]
        self.pos += n_block
        text = self.codec.decompress(block, decompressed_size=n_text, asbytes=True)
        return [line.decode() for line in io.BytesIO(text)]   # lines end at b"\n" only

    def take(self, n: int) -> tuple[list[str], list[str]]:
        while len(self.records) < n:
            _, n_rec, b_rec, n_meta, b_meta = _BLOCK.unpack_from(self.data, self.pos)
            self.pos += _BLOCK.size
            self.records += self._lines(n_rec, b_rec)
            self.metas += self._lines(n_meta, b_meta)
        records, metas = self.records[:n], self.metas[:n]
        del self.records[:n], self.metas[:n]
        return records, metas


def merged_chunks(work: str, split: str, source: np.ndarray, size: int = RENDER_CHUNK):
    """The rendered samples of a split in output position order, as write_chunks' chunks; source: the
    bucket of each output position (each bucket's lines are in position order, so no keys are compared)."""
    labels, chars = np.empty(len(source), np.int64), np.empty(len(source), np.int64)
    readers = {}
    for b in np.unique(source).tolist():
        folder = bucket_dir(Path(work), b)
        with np.load(folder / f"render-{split}.npz") as arrays:
            labels[source == b], chars[source == b] = arrays["labels"], arrays["chars"]
        readers[b] = _Rendered(folder / f"render-{split}.lz4")
    for lo in range(0, len(source), size):
        src = source[lo:lo + size]
        records, metas = np.empty(len(src), object), np.empty(len(src), object)
        for b in np.unique(src).tolist():
            at = np.flatnonzero(src == b)
            records[at], metas[at] = readers[b].take(len(at))
        yield records.tolist(), metas.tolist(), labels[lo:lo + size], chars[lo:lo + size]
