"""Events of one instant (hour-resolution logs): the history never holds an event of its target's instant,
and the order inside an instant never comes from the names (data_prep.encoding.ties)."""
from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from data_prep.config import PrepareConfig
from data_prep.encoding import ties
from data_prep.encoding.encode import events_from_arrays
from data_prep.prepare import prepare
from data_prep.reading.events import load_events
from data_prep.sampling.samples import build_sample_sets, window_indices
from sasrec.data import event_pattern, parse_history_contexts
from serving.prompting import Event
from serving.queries import make_query

L = 6
T0 = 1_709_251_200  # 2024-03-01 00:00
PAIRS = [("Zumba", "Aerobics"), ("Music", "Gaming")]   # written in this order: the reverse of the alphabet
SINGLES = ["Reading", "Cycling", "Podcasts"]


def write_log(path: Path, users: int = 40, days: int = 6, seed: int = 0, rename=None) -> Path:
    """An hour-resolution export: each day 07:00 a pair, 08:00 one event, 09:00 a pair, 10:00 one event.

    Every instant has its own place ("<user>@<hour>"), so a rendered history names the instants it holds.
    Each day is 6 events, as L: a history that ends where an instant starts also starts where one starts."""
    rng = np.random.default_rng(seed)
    rename = rename or (lambda name: name)
    rows = []
    for u in range(users):
        for d in range(days):
            for hour, kind in ((7, "pair"), (8, "single"), (9, "pair"), (10, "single")):
                t = T0 + d * 86400 + hour * 3600
                names = PAIRS[rng.integers(2)] if kind == "pair" else (SINGLES[rng.integers(3)],)
                rows += [(f"u{u:02d}", t, f"u{u:02d}@{d}.{hour}", rename(name)) for name in names]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "timestamp", "place", "behavior"])
        writer.writerows(rows)
    return path


CONFIG = dict(history_len=L, train_cap=None, valid_cap=None, test_cap=None, p2_per_behavior=0, eps=0.0)


def prepared(tmp_path: Path, name: str, rename=None, **config) -> tuple[Path, list[str]]:
    out, logged = tmp_path / name, []
    log = write_log(tmp_path / f"{name}.csv", rename=rename)
    prepare(load_events(log, tz="UTC"), out, PrepareConfig(**{**CONFIG, **config}),
            log=lambda *a, **k: logged.append(" ".join(map(str, a))))
    return out, logged


def samples_of(out: Path, split: str) -> list[dict]:
    meta = [json.loads(line) for line in (out / f"{split}.meta.jsonl").read_text().splitlines()]
    records = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
    names = json.loads((out / "stats.json").read_text())["behaviors"]
    pattern = event_pattern([b["name"] for b in names])
    for m, r in zip(meta, records):
        m["history_places"] = [place for _, _, place in parse_history_contexts(r["instruction"], m["history"],
                                                                               pattern)]
    return meta


def test_no_history_holds_an_event_of_its_targets_instant(tmp_path):
    out, logged = prepared(tmp_path, "hourly")
    every = [m for split in ("train_all", "valid", "test_p1") for m in samples_of(out, split)]
    assert every and all(len(m["history"]) == L for m in every)
    assert not [m for m in every if m["next_context"][2] in m["history_places"]]
    # both events of a pair are targets with one and the same history
    by_instant: dict[tuple, list] = {}
    for m in every:
        by_instant.setdefault((m["user_id"], m["next_context"][2]), []).append(m["history"])
    pairs = [h for h in by_instant.values() if len(h) == 2]
    assert pairs and all(a == b for a, b in pairs)

    stats = json.loads((out / "stats.json").read_text())["ties"]
    # 2 of the 6 events a day continue an instant; each user's first day is (part of) the first history
    assert stats["tied_targets"] / stats["targets"] == pytest.approx(2 / 6, abs=0.02)
    assert stats["largest_tie_group"] == 2 and stats["rule"] == ties.RULE
    assert stats["samples_changed"] >= stats["tied_targets"] > 0
    assert sum("tied" in line for line in logged if line.startswith("warning")) == 1


def cut_windows(samples: list[dict]) -> list[dict]:
    """Samples whose history starts inside an instant: its oldest event's pair partner is not in the window."""
    return [m for m in samples if m["history_places"][0].endswith((".7", ".9"))
            and m["history_places"].count(m["history_places"][0]) == 1]


@pytest.mark.parametrize("history_len", [L, L - 1])      # L - 1: windows cut an instant at their oldest end
def test_reversing_the_alphabet_changes_no_target_and_no_history(tmp_path, history_len):
    names = sorted({n for pair in PAIRS for n in pair} | set(SINGLES))
    # rank r in the alphabet -> a name that sorts at len - 1 - r
    renamed = {n: f"{chr(ord('a') + len(names) - 1 - r)} {n}" for r, n in enumerate(names)}
    back = {v: k for k, v in renamed.items()}
    assert sorted(renamed.values(), key=lambda v: back[v]) == sorted(renamed.values(), reverse=True)

    def key_set(out, mapping):
        return Counter((m["user_id"], m["next_context"][2], mapping.get(m["label"], m["label"]),
                        tuple(mapping.get(h, h) for h in m["history"]), tuple(m["history_places"]))
                       for split in ("train_all", "valid", "test_p1") for m in samples_of(out, split))

    plain, _ = prepared(tmp_path, "plain", history_len=history_len)
    reversed_, _ = prepared(tmp_path, "reversed", rename=renamed.get, history_len=history_len)
    if history_len < L:
        assert len(cut_windows(samples_of(plain, "train_all"))) > 50
    assert key_set(plain, {}) == key_set(reversed_, back)


@pytest.mark.parametrize("rename", [{"Aerobics": "Zumba", "Baking": "Aqua", "Cycling": "Cycling"},
                                    {"Aerobics": "Baking", "Baking": "Aerobics", "Cycling": "Cycling"},
                                    {"Aerobics": "b", "Baking": "a", "Cycling": "c"}])
def test_the_event_that_fills_a_cut_window_does_not_depend_on_its_name(tmp_path, rename):
    """3 users, each with 07:00 {Aerobics, Baking} and 08:00 {Cycling}; L = 1, seed 0: the 08:00 target's one
    history event is one of the 07:00 pair, chosen alike whatever the pair is called."""
    def histories(mapping):
        path = tmp_path / f"log{len(list(tmp_path.iterdir()))}.csv"
        rows = [f"u{u},{T0 + 7 * 3600},home,{mapping[b]}" for u in range(3) for b in ("Aerobics", "Baking")]
        rows += [f"u{u},{T0 + 8 * 3600},home,{mapping['Cycling']}" for u in range(3)]
        path.write_text("user_id,timestamp,place,behavior\n" + "\n".join(rows) + "\n")
        table = ties.order_instants(load_events(path), seed=0)
        back = {v: k for k, v in mapping.items()}
        sets = build_sample_sets(table.user, table.behavior, len(table.behaviors), time=table.time, history_len=1,
                                 seed=0, ratios=(0.34, 0.33, 0.33), p2_per_behavior=0)
        targets = np.sort(np.concatenate([sets.train, sets.valid, sets.test_p1]))
        window = window_indices(sets.history_end(targets), 1)[:, 0]
        return [(table.user_ids[table.user[t]], back[table.behaviors[table.behavior[w]]])
                for t, w in zip(targets, window)]

    plain = histories({n: n for n in rename})
    assert len(plain) == 3 and histories(rename) == plain


def test_a_log_without_ties_keeps_its_windows_and_says_so(tmp_path):
    rng = np.random.default_rng(3)
    n_users, per_user = 6, 12
    users = np.repeat([f"u{u}" for u in range(n_users)], per_user)
    times = np.tile(T0 + 60 * np.arange(per_user), n_users)
    table = events_from_arrays(users, times, ["home"] * users.size, rng.choice(["a", "b", "c"], users.size))
    assert ties.order_instants(table, seed=1) is table
    sets = build_sample_sets(table.user, table.behavior, 3, time=table.time, history_len=4, seed=1)
    plain = build_sample_sets(table.user, table.behavior, 3, history_len=4, seed=1)
    for split in ("train", "valid", "test_p1"):
        assert np.array_equal(getattr(sets, split), getattr(plain, split))
        assert np.array_equal(sets.history_end(getattr(sets, split)), getattr(sets, split))
    assert sets.ties["tied_targets"] == 0 and sets.ties["largest_tie_group"] == 1
    assert sets.ties["samples_changed"] == 0


def test_instant_order_is_seeded_never_alphabetical_and_independent_of_names():
    users = ["x"] * 8
    times = [T0] * 8
    names = [f"b{k}" for k in range(8)]

    def order(seed, labels):
        table = events_from_arrays(users, np.array(times, np.int64), ["p"] * 8, labels)
        return [table.behaviors[b] for b in ties.order_instants(table, seed).behavior]

    orders = {seed: order(seed, names) for seed in range(6)}
    assert all(sorted(o) == names for o in orders.values())
    assert len({tuple(o) for o in orders.values()}) > 1          # the seed moves the order
    assert not all(o == names for o in orders.values())           # and it is not the alphabet
    for seed, found in orders.items():
        # the same rows under other names keep their places: the order comes from the rows, not the names
        renamed = [f"{chr(ord('z') - k)}" for k in range(8)]
        assert order(seed, renamed) == [renamed[names.index(n)] for n in found]
        # serving's order of the same events, listed as the input lists them, is the same
        assert [names[i] for i in ties.event_order(seed, "x", times)] == found


def test_history_windows_end_at_the_targets_instant():
    # one user: times 0,0,1,1,1,2,3 (x 60 s); L = 2
    t = T0 + 60 * np.array([0, 0, 1, 1, 1, 2, 3])
    users = ["u"] * 7 + ["v"] * 7 + ["w"] * 7
    table = events_from_arrays(users, np.tile(t, 3), ["p"] * 21, list("abcdefg") * 3)
    sets = build_sample_sets(table.user, table.behavior, 7, time=table.time, history_len=2, seed=0,
                             p2_per_behavior=0)
    targets = np.sort(np.concatenate([sets.train, sets.valid, sets.test_p1]))
    within = targets % 7
    # first target: the first event with 2 strictly earlier events is index 2 (time 1)
    assert within.min() == 2 and len(targets) == 3 * 5
    ends = sets.history_end(targets) % 7
    assert dict(zip(within.tolist(), ends.tolist())) == {2: 2, 3: 2, 4: 2, 5: 5, 6: 6}
    win = window_indices(sets.history_end(targets), 2)
    assert (table.time[win] < table.time[targets][:, None]).all()
    assert sets.ties["tied_targets"] == 3 * 2 and sets.ties["largest_tie_group"] == 3


@pytest.mark.parametrize("history_len", [L, L - 1])
def test_serving_builds_the_history_prepare_built(tmp_path, history_len):
    out, _ = prepared(tmp_path, "hourly", seed=11, history_len=history_len)
    events = list(csv.DictReader((tmp_path / "hourly.csv").open()))
    checked = samples_of(out, "test_p1")[:40]
    assert history_len == L or cut_windows(checked)
    for m in checked:
        target_place = m["next_context"][2]
        target_time = next(int(e["timestamp"]) for e in events if e["place"] == target_place)
        mine = [Event(int(e["timestamp"]), e["place"], e["behavior"]) for e in events
                if e["user_id"] == m["user_id"] and int(e["timestamp"]) < target_time]
        query = make_query(m["user_id"], mine, target_time, target_place, history_len, 3, "2", seed=11)
        assert [e.behavior for e in query.history] == m["history"]
        assert [e.place for e in query.history] == m["history_places"]
        late = mine + [Event(target_time, target_place, "Reading")]
        with pytest.raises(ValueError, match="at or after the next event"):
            make_query(m["user_id"], late, target_time, target_place, history_len, 3, "2", seed=11)


def test_cut_windows_are_the_same_in_memory_out_of_core_on_ray_and_in_predict(tmp_path, monkeypatch):
    """The hourly log dealt to two files (instants split across them, one of them compressed): every engine
    writes the same files, and predict's reader hands make_query the events in the order prepare ranked."""
    import hashlib

    from data_prep.engines import outofcore
    from data_prep.reading import sources
    from serving.predict_files import ReadOptions
    from serving.spool import read_spooled_events, spool_inputs

    log = write_log(tmp_path / "all.csv")
    lines = log.read_text().splitlines()
    lake = tmp_path / "lake"
    lake.mkdir()
    for part in range(2):
        (lake / f"part-{part}.csv").write_text("\n".join([lines[0], *lines[1 + part::2]]) + "\n")
    with gzip.open(lake / "part-1.csv.gz", "wb") as f:
        f.write((lake / "part-1.csv").read_bytes())
    (lake / "part-1.csv").unlink()
    config = PrepareConfig(**{**CONFIG, "history_len": L - 1})

    def digests(run):
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(run.iterdir())}

    prepare(sources.load_input(lake), tmp_path / "mem", config, log=lambda *a, **k: None)
    expected = digests(tmp_path / "mem")
    outofcore.prepare_input(lake, tmp_path / "ooc", config, n_buckets=3, log=lambda *a, **k: None)
    assert digests(tmp_path / "ooc") == expected
    # predict: the lake spooled and read per bucket, each user's events as make_query gets them
    (tmp_path / "spool").mkdir()
    read = ReadOptions(tz="UTC")
    histories = {}
    for spools in spool_inputs(str(lake), read, 4, set(range(4)), tmp_path / "spool", "events").values():
        histories.update(read_spooled_events(spools, read)[0])
    checked = samples_of(tmp_path / "mem", "train_all")
    assert cut_windows(checked)
    for m in checked:
        target = next(e for e in histories[m["user_id"]] if e.place == m["next_context"][2])
        mine = [e for e in histories[m["user_id"]] if e.time < target.time]
        query = make_query(m["user_id"], mine, target.time, target.place, L - 1, 3, "2", seed=config.seed)
        assert [e.behavior for e in query.history] == m["history"]
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_NUM_CPUS", "1")
    outofcore.prepare_input(lake, tmp_path / "ray", config, n_buckets=2, engine="ray", log=lambda *a, **k: None)
    assert digests(tmp_path / "ray") == expected
