"""prepare out of core: the same run as :func:`data_prep.prepare.prepare`, byte for byte, from events that
need not fit in memory, on this machine (``--engine local``) or as Ray tasks (``--engine ray``).

1. read: every input file is read batch by batch under the one-file rules (data_prep.engines.stream) and its events
   are written, by a hash of the user id, into BUCKETS bucket folders (so one user's events are in one
   bucket); the files' vocabularies, dropped counts and notes come back (data_prep.engines.buckets.partition_file).
2. scan: each bucket is coded with the global vocabularies (sorted names, as in memory), sorted,
   de-duplicated and put in the seeded instant order (data_prep.encoding.ties); per-user counts come back.
3. global steps on small aggregates: the seeded user split over the eligible users in id order, the caps'
   sample ranks, protocol 1, training label counts and protocol 2 (the test users' labels), the groups.
4. render: each bucket renders its selected samples in output order; the run's files take each output
   position's lines from the bucket that holds it (the driver knows every position's bucket).

Peak memory is one batch of an input file (a file whose batches cannot decide it is read whole, see
data_prep.engines.stream), one bucket's events, the per-user aggregates, the label of every test-split sample
(protocol 2 draws from them: about 8 bytes each) and one split's rendered samples, LZ4-compressed (about a
tenth of their text). On disk: the bucket pieces (about 11 bytes an event, each removed once its bucket is
scanned), the buckets' events (20 bytes an event, memory-mapped by the later steps) and the rendered
samples, LZ4-compressed. Work files live in the staged run directory (a shared POSIX filesystem when workers
are on other machines) and are removed before the run is swapped in.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from data_prep.config import PrepareConfig
from data_prep.engines import buckets
from data_prep.engines import executors as engines
from data_prep.prepare import EventsSummary, behavior_info, staged_run, template_ids, write_run
from data_prep.reading import sources
from data_prep.rendering.render import write_chunks
from data_prep.sampling import samples

WORK_DIR = ".work"


def prepare_input(spec, out_dir, config: PrepareConfig, *, fmt: str | None = None, reader: dict | None = None,
                  n_buckets: int = 8, engine: str = "local", source: dict | None = None, log=print) -> dict:
    """INPUT (a file, directory, glob or URI) -> the run directory, out of core in n_buckets buckets."""
    files = sources.list_inputs(spec, fmt)
    with engines.start(engine) as eng:
        return staged_run(out_dir, config, lambda build_dir, aux_pool: _build(
            files, Path(build_dir).resolve(), config, aux_pool, reader or {}, n_buckets, eng, source, str(spec)),
            log)


def _build(files, out_dir: Path, config, aux_pool, reader, n_buckets, eng, source, spec) -> dict:
    work = out_dir / WORK_DIR
    try:
        parts = eng.map(buckets.partition_file, [(f, i, reader, str(work), n_buckets)
                                                 for i, f in enumerate(files)], "read")
        vocab = {k: sources.merge_vocab(p[k] for p in parts) for k in ("user_ids", "places", "behaviors")}
        dropped, notes = sources.merge_accounts([SimpleNamespace(**p) for p in parts], spec)
        del parts
        vocab_ref = eng.put(vocab)
        scans = [s for s in eng.map(buckets.scan_bucket, [(str(work), b, vocab_ref, config.seed, config.history_len)
                                                         for b in range(n_buckets)], "scan") if s is not None]
        n_events = sum(s["events"] for s in scans)
        if sum(s["duplicates"] for s in scans):
            dropped["duplicate_event"] = dropped.get("duplicate_event", 0) + sum(s["duplicates"] for s in scans)
        if len(files) > 1:
            notes["events"] = n_events
        users = _users(scans)
        sets, picks = _select(users, work, eng, vocab_ref, config, len(vocab["behaviors"]))
        names = vocab["behaviors"]
        info = behavior_info(names, sets, config)
        origin = _render(picks, users, work, eng, vocab_ref, info, config, [s["bucket"] for s in scans])

        def write(split, targets, tids, routes, caps):
            return write_chunks(buckets.merged_chunks(str(work), split, origin[split]), len(targets), len(names),
                                out_dir, routes, split, caps)

        summary = EventsSummary(names, n_events, len(vocab["user_ids"]), len(vocab["places"]), dropped, notes)
        return write_run(out_dir, config, aux_pool, source, summary, sets, info, write)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _users(scans: list[dict]) -> SimpleNamespace:
    """Per-user aggregates of every bucket, in ascending user code (= sorted user id) order."""
    cat = {k: np.concatenate([s[k] for s in scans]) for k in ("codes", "counts", "first", "tied")}
    cat["bucket"] = np.concatenate([np.full(len(s["codes"]), s["bucket"], np.int32) for s in scans])
    order = np.argsort(cat["codes"], kind="stable")
    users = SimpleNamespace(**{k: v[order] for k, v in cat.items()})
    users.largest = max(s["largest"] for s in scans)
    users.lost = sum(s["lost"] for s in scans)
    return users


def _pool(users, members: np.ndarray) -> SimpleNamespace:
    counts = users.counts[members] - users.first[members]
    return SimpleNamespace(members=members, counts=counts, cum=np.cumsum(counts), n=int(counts.sum()))


def _locate(users, pool, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """User index and event offset in the user of each sample rank (EligibleSamples.event_index)."""
    k = np.searchsorted(pool.cum, ranks, side="right")
    member = pool.members[k]
    return member, users.first[member] + ranks - (pool.cum[k] - pool.counts[k])


def _select(users, work, eng, vocab_ref, config: PrepareConfig, n_behaviors: int):
    """samples.build_sample_sets on the per-user aggregates: the same split, caps and protocols."""
    seed = config.seed
    long_enough = users.first < users.counts
    dropped = {"user_too_short": int(users.counts[~long_enough].sum()),
               "user_too_short_users": int((~long_enough).sum())}
    eligible = np.flatnonzero(long_enough)
    samples.check_enough_users(len(eligible), config.history_len)
    split_of = samples.split_users(len(eligible), seed, tuple(config.split_ratios))
    by_split = {name: eligible[split_of == s] for s, name in enumerate(samples.USER_SPLITS)}
    pools = {name: _pool(users, members) for name, members in by_split.items()}
    labels = _labels(users, by_split, work, eng, vocab_ref)
    n_test = pools["test"].n
    n_p1 = samples.protocol1_size(n_test, config.test_cap, config.p2_per_behavior, n_behaviors)
    samples.check_test_samples(n_test, n_p1, config.p2_per_behavior)
    p1 = samples.sample_ranks(n_test, n_p1, samples.rng_for(seed, "cap_test"))
    unused = np.ones(n_test, dtype=bool)
    unused[p1] = False
    rest = np.flatnonzero(unused)
    p2 = (samples.per_class_sample(labels["test"][rest], config.p2_per_behavior, n_behaviors,
                                   samples.rng_for(seed, "protocol2"))
          if config.p2_per_behavior > 0 else np.empty(0, np.int64))
    ranks = {"train": samples.sample_ranks(pools["train"].n, config.train_cap, samples.rng_for(seed, "cap_train")),
             "valid": samples.sample_ranks(pools["valid"].n, config.valid_cap, samples.rng_for(seed, "cap_valid")),
             "test_p1": p1, "test_p2": rest[p2]}
    picks = {split: _locate(users, pools["test" if split.startswith("test") else split], r)
             for split, r in ranks.items()}
    targets = int(sum(p.n for p in pools.values()))
    tie = samples.tie_stats(targets, int(users.tied[eligible].sum()), users.largest, users.lost)
    lowered = n_p1 < (n_test if config.test_cap is None else min(config.test_cap, n_test))
    sets = samples.SampleSets(
        train=ranks["train"], valid=ranks["valid"], test_p1=ranks["test_p1"], test_p2=ranks["test_p2"],
        train_label_counts=labels["train_counts"], available={n: p.n for n, p in pools.items()},
        users={n: len(m) for n, m in by_split.items()}, dropped=dropped, protocol1_lowered=lowered, ties=tie)
    return sets, picks


def _labels(users, by_split, work, eng, vocab_ref) -> dict:
    """Training label counts (all training samples) and every test sample's label in rank order."""
    present = np.unique(users.bucket)
    calls = []
    for b in present.tolist():
        call = {}
        for name in ("train", "test"):
            members = by_split[name][users.bucket[by_split[name]] == b]
            call[name] = (users.codes[members], users.first[members])
        calls.append((str(work), b, vocab_ref, call["train"][0], call["test"][0],
                      {"train": call["train"][1], "test": call["test"][1]}))
    results = eng.map(buckets.bucket_labels, calls, "labels")
    train_counts = np.sum([r["train_counts"] for r in results], axis=0).astype(np.int64)
    # stitch the test labels (per bucket, users ascending) into global user order
    test = by_split["test"]
    n_samples = users.counts[test] - users.first[test]
    seg_start = np.empty(len(test), np.int64)
    offset = 0
    joined = []
    for b, r in zip(present.tolist(), results):
        mine = np.flatnonzero(users.bucket[test] == b)
        seg_start[mine] = offset + np.concatenate(([0], np.cumsum(n_samples[mine])[:-1]))
        offset += len(r["test_labels"])
        joined.append(r["test_labels"])
    joined = np.concatenate(joined) if joined else np.empty(0, np.int32)
    gather = np.repeat(seg_start - np.cumsum(n_samples) + n_samples, n_samples) + np.arange(n_samples.sum())
    return {"train_counts": train_counts, "test": joined[gather].astype(np.int64)}


def _render(picks, users, work, eng, vocab_ref, info, config, present: list[int]) -> dict[str, np.ndarray]:
    """Each bucket renders its own selected samples of every split, in output order; returns each split's
    bucket of every output position."""
    tids = {split: template_ids(split, len(member), config.seed) for split, (member, _) in picks.items()}
    source = {split: users.bucket[member] for split, (member, _) in picks.items()}
    calls = []
    for b in present:
        jobs = {}
        for split, (member, offsets) in picks.items():
            mine = np.flatnonzero(source[split] == b)
            jobs[split] = (users.codes[member[mine]], offsets[mine], tids[split][mine])
        calls.append((str(work), b, vocab_ref, info, config, jobs))
    eng.map(buckets.render_bucket, calls, "render")
    return source
