"""The embedded synthetic data set (data_prep/synthetic.py): shape, routines, determinism and files."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_prep import synthetic as syn
from data_prep.reading.events import PrepareError

NAMES = [name for name, _, _ in syn.BEHAVIORS]
PARENT = {name: parent for name, _, parent in syn.BEHAVIORS}


def _arrays(n_users, n_days, seed=0, behaviors=None, **kw):
    return syn.generate_arrays(n_users, n_days, seed=seed, behaviors=behaviors, **kw)


def _weekend_hour(time):
    return ((time // 86400 + 3) % 7) >= 5, (time // 3600) % 24  # 1970-01-01 was a Thursday


@pytest.fixture(scope="module")
def sample():
    """About 300,000 events: enough for the rarest behavior (0.02%) to show up many times."""
    return _arrays(600, 20, seed=7)


def test_behavior_table_is_the_documented_long_tail():
    assert len(NAMES) == 37 and len(set(NAMES)) == 37
    shares = np.array([s for _, s, _ in syn.BEHAVIORS])
    assert shares.sum() == pytest.approx(1.0)
    anchors = [n for n, s, p in syn.BEHAVIORS if s > 0.01]
    assert anchors == [n for n, _, p in syn.BEHAVIORS if p is None]  # anchors are exactly the parentless
    assert len(anchors) == 16 and 0.95 <= shares[shares > 0.01].sum() <= 0.99
    assert 0.35 <= shares.max() <= 0.45 and shares.min() <= 0.0003
    for name, _, parent in syn.BEHAVIORS:
        assert parent is None or parent in anchors, name
        assert not set(name) & set(",()[]\n"), name  # names go into comma-separated prompt lists


def test_same_seed_same_events_other_seed_differs():
    a, b, c = _arrays(40, 6, seed=3), _arrays(40, 6, seed=3), _arrays(40, 6, seed=4)
    for key in ("user", "time", "place", "behavior"):
        np.testing.assert_array_equal(a[key], b[key])
    assert len(a["time"]) != len(c["time"]) or not np.array_equal(a["time"], c["time"])


def test_chunk_size_does_not_change_events():
    whole = list(syn.iter_event_chunks(1100, 3, seed=5, chunk_users=10_000))
    parts = list(syn.iter_event_chunks(1100, 3, seed=5, chunk_users=400))
    assert len(whole) == 1 and len(parts) == 3
    assert [p[0] for p in parts] == [0, 500, 1000] and parts[-1][1] == 1100
    for i in range(2, 6):
        np.testing.assert_array_equal(whole[0][i], np.concatenate([p[i] for p in parts]))


def test_long_tail_shape_is_realized(sample):
    counts = np.bincount(sample["behavior"], minlength=37)
    share = counts / counts.sum()
    assert (counts > 0).all()                                      # all 37 behaviors occur
    anchors = share > 0.01
    assert anchors.sum() == 16 and list(np.flatnonzero(anchors)) == list(range(16))
    assert 0.95 <= share[anchors].sum() <= 0.985
    assert 0.30 <= share.max() <= 0.50 and sample["behaviors"][share.argmax()] == "Watching videos"
    assert share.min() < 0.0006
    table = np.array([s for _, s, _ in syn.BEHAVIORS])
    np.testing.assert_allclose(share[:16], table[:16], rtol=0.25)  # anchors land near their shares


def test_tails_occur_in_their_parents_contexts(sample):
    weekend, hour = _weekend_hour(sample["time"])
    context = (weekend * 6 + hour // 4) * len(syn.PLACES) + sample["place"]
    profile = np.zeros((37, 2 * 6 * len(syn.PLACES)))
    np.add.at(profile, (sample["behavior"], context), 1)
    enough = profile.sum(axis=1) >= 100
    corr = np.corrcoef(profile / profile.sum(axis=1, keepdims=True))
    names = sample["behaviors"]
    checked = 0
    for i in range(16, 37):
        if not enough[i]:
            continue
        parent = names.index(PARENT[names[i]])
        others = [corr[i, k] for k in range(16) if k != parent]
        assert corr[i, parent] > 0.6 and corr[i, parent] > np.median(others), names[i]
        checked += 1
    assert checked >= 15


def test_routine_depends_on_weekday_hour_and_place(sample):
    weekend, hour = _weekend_hour(sample["time"])
    place = np.array(syn.PLACES)[sample["place"]]
    at_work = place == "workplace"
    assert 0.1 < at_work.mean() < 0.4
    assert (~weekend[at_work]).mean() > 0.98                         # work is on weekdays ...
    assert ((hour[at_work] >= 7) & (hour[at_work] < 21)).mean() > 0.98  # ... in working hours
    night = (hour >= 1) & (hour < 5)
    assert (place[night] == "home").mean() > 0.9
    commute = place == "commute"
    assert ((hour[commute] >= 6) & (hour[commute] < 11) | (hour[commute] >= 16) & (hour[commute] < 21)).mean() > 0.7
    assert (place[weekend] == "outdoors").mean() > 2 * (place[~weekend] == "outdoors").mean()

    names = np.array(sample["behaviors"])[sample["behavior"]]
    for behavior, where in [("Email", "workplace"), ("Public transportation", "commute"),
                            ("Exercise", "gym"), ("Mobile payment", "restaurant")]:
        assert (names[place == where] == behavior).mean() > 3 * (names == behavior).mean(), behavior
    morning = (hour >= 6) & (hour < 9)
    assert (names[morning] == "Weather check").mean() > 2 * (names == "Weather check").mean()


def test_history_and_context_beat_the_most_frequent_baseline(sample):
    """A count-based predictor (context table x the user's last 20 behaviors x a repeat bonus), fitted
    on 80% of the users, clearly beats always answering the most frequent behavior on the rest."""
    user, behavior = sample["user"], sample["behavior"]
    weekend, hour = _weekend_hour(sample["time"])
    context = syn.context_index(weekend, hour, sample["place"])
    train = user < 480
    table = np.full((syn.N_CONTEXTS, 37), 0.01)
    np.add.at(table, (context[train], behavior[train]), 1)
    table /= table.sum(axis=1, keepdims=True)
    prior = np.bincount(behavior[train], minlength=37) / train.sum()
    first = np.r_[0, np.flatnonzero(np.diff(user)) + 1]
    position = np.arange(len(user)) - np.repeat(first, np.diff(np.r_[first, len(user)]))
    target = np.flatnonzero(~train & (position >= 20))
    window = behavior[target[:, None] - np.arange(1, 21)]
    history = np.bincount((np.arange(len(target))[:, None] * 37 + window).ravel(),
                          minlength=37 * len(target)).reshape(len(target), 37)
    score = table[context[target]] * (history + 5 * prior) / (20 + 5) / prior
    score = 0.7 * score / score.sum(axis=1, keepdims=True)
    score[np.arange(len(target)), behavior[target - 1]] += 0.3
    truth = behavior[target]
    most_frequent = (truth == prior.argmax()).mean()
    assert (score.argmax(axis=1) == truth).mean() > most_frequent + 0.05


def test_timestamps_strictly_increase_per_user_within_the_window():
    a = _arrays(30, 5, seed=1, start="2024-03-04")
    user, time = a["user"], a["time"]
    assert (np.diff(user) >= 0).all()
    same_user = np.diff(user) == 0
    assert (np.diff(time)[same_user] > 0).all()
    start = int(dt.datetime(2024, 3, 4, tzinfo=dt.UTC).timestamp())
    assert time.min() >= start and time.max() < start + 6 * 86400
    assert a["user_ids"][:2] == ["u000000", "u000001"] and sorted(set(user)) == list(range(30))
    assert time.dtype == np.int64


def test_subset_keeps_a_renormalized_long_tail():
    a = _arrays(400, 14, seed=2, behaviors=syn.DEMO_BEHAVIORS)
    assert set(a["behaviors"]) == set(syn.DEMO_BEHAVIORS) and len(a["behaviors"]) == 12
    share = np.bincount(a["behavior"], minlength=12) / len(a["behavior"])
    tails = np.array([PARENT[n] is not None for n in a["behaviors"]])
    assert tails.sum() == 4 and all(PARENT[n] in syn.DEMO_BEHAVIORS for n in np.array(a["behaviors"])[tails])
    assert (share[tails] < 0.01).all() and (share[tails] > 0).all() and (share[~tails] > 0.01).all()
    assert a["behaviors"][share.argmax()] == "Watching videos" and 0.4 < share.max() < 0.6
    with pytest.raises(PrepareError, match="Dancing"):
        _arrays(5, 2, behaviors=["Watching videos", "Dancing"])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_write_events_round_trip(tmp_path, suffix):
    import pandas as pd

    path = tmp_path / f"events{suffix}"
    rows = syn.write_events(path, n_users=12, n_days=3, seed=9, chunk_users=5)
    if suffix == ".parquet":
        table = pq.read_table(path)
        assert [str(t) for t in table.schema.types] == ["string", "int64", "string", "string"]
        frame = table.to_pandas()
    elif suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        frame = pd.read_json(path, lines=True, convert_dates=False)
    assert list(frame.columns) == ["user_id", "timestamp", "place", "behavior"] and len(frame) == rows
    a = _arrays(12, 3, seed=9)
    assert frame["user_id"].tolist() == [a["user_ids"][u] for u in a["user"]]
    np.testing.assert_array_equal(frame["timestamp"].to_numpy(np.int64), a["time"])
    assert frame["place"].tolist() == [syn.PLACES[p] for p in a["place"]]
    assert frame["behavior"].tolist() == [a["behaviors"][b] for b in a["behavior"]]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_generate_events_gives_a_clean_event_table():
    table = syn.generate_events(20, 4, seed=11)
    a = _arrays(20, 4, seed=11)
    assert len(table.time) == len(a["time"]) and not any(table.dropped.values())
    np.testing.assert_array_equal(np.sort(table.time), np.sort(a["time"]))
    assert set(table.behaviors) <= set(NAMES) and set(table.places) <= set(syn.PLACES)


def test_bad_arguments_fail_in_one_line(tmp_path):
    with pytest.raises(PrepareError, match="n_users"):
        syn.write_events(tmp_path / "x.parquet", n_users=0, n_days=3, seed=0)
    with pytest.raises(PrepareError, match="extension"):
        syn.write_events(tmp_path / "x.txt", n_users=2, n_days=3, seed=0)
    with pytest.raises(PrepareError, match="start"):
        _arrays(2, 2, start="March 1")
