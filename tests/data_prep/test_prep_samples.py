"""Samples, user split, caps, protocol 1/2 test sets and frequency groups (paper 2.1, 4.1.1, 4.1.2)."""
import calendar

import numpy as np
import pytest

from data_prep.reading.events import PrepareError, events_from_arrays
from data_prep.sampling.samples import (
    behavior_groups,
    build_sample_sets,
    per_class_sample,
    protocol1_size,
    sample_ranks,
    split_users,
    weekday_hour,
    window_indices,
)

T0 = calendar.timegm((2024, 3, 4, 0, 0, 0))  # a Monday, 00:00


def make_table(event_counts, seed=0, n_behaviors=6, probs=None):
    """User i gets event_counts[i] events, one an hour, with random behaviors/places (strings in, codes out)."""
    rng = np.random.default_rng(seed)
    names = [f"beh{k}" for k in range(n_behaviors)]
    users, times, places, behaviors = [], [], [], []
    for u, n in enumerate(event_counts):
        users += [f"user{u:03d}"] * n
        times += (T0 + 3600 * np.arange(n) + u).tolist()
        places += rng.choice(["home", "work", "out"], n).tolist()
        behaviors += rng.choice(names, n, p=probs).tolist()
    return events_from_arrays(users, np.array(times, dtype=np.int64), places, behaviors)


def sets_for(table, **kw):
    kw.setdefault("history_len", 5)
    return build_sample_sets(table.user, table.behavior, len(table.behaviors), **kw)


def test_weekday_and_hour_of_local_epoch():
    wd, hr = weekday_hour(np.array([T0 + 18 * 3600 + 59, T0 + 6 * 86400 + 23 * 3600, T0 - 1]))
    assert wd.tolist() == [0, 6, 6]   # Monday, Sunday, the Sunday before
    assert hr.tolist() == [18, 23, 23]


def test_user_split_is_8_1_1_disjoint_seeded_and_not_positional():
    split = split_users(100, seed=7)
    assert np.bincount(split).tolist() == [80, 10, 10]
    assert np.array_equal(split, split_users(100, seed=7))
    assert not np.array_equal(split, split_users(100, seed=8))
    assert not (split[:80] == 0).all()          # not the first 80 users
    with pytest.raises(PrepareError):
        split_users(2, seed=0)


def test_no_user_in_two_splits_and_samples_come_from_their_split():
    table = make_table([30] * 50)
    s = sets_for(table)
    users = {name: set(table.user[getattr(s, name)].tolist()) for name in ("train", "valid", "test_p1", "test_p2")}
    assert not users["train"] & (users["valid"] | users["test_p1"] | users["test_p2"])
    assert not users["valid"] & (users["test_p1"] | users["test_p2"])
    assert s.users == {"train": 40, "valid": 5, "test": 5}
    for name, split in (("train", "train"), ("valid", "valid"), ("test_p1", "test")):
        assert users[name] <= set(s.user_split[split].tolist())
    # uncapped: every eligible sample (25 per user) of the split is used exactly once
    assert len(s.train) == len(set(s.train.tolist())) == 40 * 25


def test_window_is_the_L_previous_events_of_the_same_user_oldest_first():
    table = make_table([12, 9, 15, 11, 10], seed=3)
    s = sets_for(table, history_len=4)
    targets = np.concatenate([s.train, s.valid, s.test_p1, s.test_p2])   # uncapped: P2 takes all P1 leaves
    win = window_indices(targets, 4)
    for target, row in zip(targets.tolist(), win.tolist()):
        assert row == [target - 4, target - 3, target - 2, target - 1]
        assert (table.user[row] == table.user[target]).all()
        assert (np.diff(table.time[row + [target]]) > 0).all()     # oldest first, target after history
    # every event with >= 4 earlier events of its user is a target, and no other one
    first = {u: np.flatnonzero(table.user == u)[0] for u in np.unique(table.user)}
    positions = sorted(t - first[table.user[t]] for t in targets.tolist())
    expected = sorted(p for n in [12, 9, 15, 11, 10] for p in range(4, n))
    assert positions == expected


def test_short_users_are_dropped_and_counted():
    table = make_table([5, 6, 20, 3, 20, 20, 20], seed=1)
    s = sets_for(table, history_len=5)       # needs >= 6 events
    assert s.dropped == {"user_too_short": 5 + 3, "user_too_short_users": 2}
    assert sum(s.users.values()) == 5
    with pytest.raises(PrepareError, match="at least 6 events"):
        sets_for(make_table([5, 20, 20]), history_len=5)


def test_caps_are_seeded_random_samples_not_prefixes():
    table = make_table([40] * 30)
    full = sets_for(table)
    capped = sets_for(table, train_cap=100, valid_cap=20)
    assert len(capped.train) == 100 and len(capped.valid) == 20
    assert set(capped.train.tolist()) <= set(full.train.tolist())
    assert len(set(capped.train.tolist())) == 100
    assert len(set(table.user[capped.train].tolist())) > 10                      # spread over users
    assert not np.array_equal(np.sort(capped.train), np.sort(full.train)[:100])  # not the first 100
    assert np.array_equal(capped.train, sets_for(table, train_cap=100, valid_cap=20).train)
    assert not np.array_equal(capped.train, sets_for(table, train_cap=100, seed=1).train)
    # a cap does not change the user split
    assert all(np.array_equal(capped.user_split[k], full.user_split[k]) for k in full.user_split)


def test_sample_ranks_full_permutation_without_cap():
    ranks = sample_ranks(50, None, np.random.default_rng(0))
    assert sorted(ranks.tolist()) == list(range(50)) and ranks.tolist() != list(range(50))


def test_per_class_sample_takes_up_to_k_per_class_and_all_of_rarer_ones():
    labels = np.array([0] * 700 + [1] * 3 + [3] * 500 + [2] * 499)
    pos = per_class_sample(labels, 500, 5, np.random.default_rng(0))
    assert len(set(pos.tolist())) == len(pos)
    assert np.bincount(labels[pos], minlength=5).tolist() == [500, 3, 499, 500, 0]
    again = per_class_sample(labels, 500, 5, np.random.default_rng(0))
    assert np.array_equal(pos, again)


def test_protocol2_is_disjoint_from_protocol1_and_from_test_users_only():
    probs = [0.6, 0.3, 0.07, 0.02, 0.01, 0.0]
    table = make_table([60] * 40, seed=2, probs=probs)
    s = sets_for(table, test_cap=40, p2_per_behavior=30)
    assert not set(s.test_p1.tolist()) & set(s.test_p2.tolist())
    test_users = set(s.user_split["test"].tolist())
    assert set(table.user[s.test_p2].tolist()) <= test_users
    assert set(table.user[s.test_p1].tolist()) <= test_users
    # per behavior: min(30, what the test users have outside protocol 1)
    rest = np.setdiff1d(np.concatenate([s.test_p1, s.test_p2]), s.test_p1)
    all_test = np.flatnonzero(np.isin(table.user, list(test_users)))
    first = {u: np.flatnonzero(table.user == u)[0] for u in test_users}
    eligible = np.array([i for i in all_test if i - first[table.user[i]] >= 5])
    leftover = np.setdiff1d(eligible, s.test_p1)
    have = np.bincount(table.behavior[leftover], minlength=6)
    got = np.bincount(table.behavior[rest], minlength=6)
    assert got.tolist() == np.minimum(have, 30).tolist()
    assert got[5] == 0 and len(s.test_p1) == 40


def test_without_a_test_cap_protocol1_leaves_protocol2_half_of_scarce_test_samples():
    s = sets_for(make_table([20] * 10), p2_per_behavior=500)
    n = s.available["test"]
    assert len(s.test_p1) == (n + 1) // 2 and s.protocol1_lowered
    assert len(s.test_p2) == n - len(s.test_p1)            # every class is under 500: P2 takes all the rest
    assert not set(s.test_p1.tolist()) & set(s.test_p2.tolist())
    only_p1 = sets_for(make_table([20] * 10), p2_per_behavior=0)
    assert len(only_p1.test_p1) == n and len(only_p1.test_p2) == 0 and not only_p1.protocol1_lowered


@pytest.mark.parametrize("n, cap, k, b", [(754, 50_000, 500, 192), (68_500, 50_000, 500, 37), (60_000, 50_000, 500, 37),
                                          (626, 200, 20, 33), (2, 1, 1, 1), (101, None, 5, 10), (7, 3, 0, 5)])
def test_protocol1_size_gives_way_to_protocol2_but_keeps_half(n, cap, k, b):
    p1 = protocol1_size(n, cap, k, b)
    limit = n if cap is None else min(cap, n)
    assert min(limit, (n + 1) // 2) <= p1 <= limit          # P1 keeps at least half (or its cap)
    if k == 0 or n - limit >= k * b:                        # enough for both (or no P2): a plain cap
        assert p1 == limit
    else:
        assert n - p1 >= 1                                  # P2 keeps samples
        assert p1 == limit or n - p1 == min(k * b, n // 2)  # lowered only as far as P2's request needs


def test_protocol2_keeps_samples_when_the_test_cap_would_take_them_all():
    table = make_table([30] * 30, seed=5)                  # 3 test users x 25 samples
    full = sets_for(table, test_cap=10_000, p2_per_behavior=50)
    n = full.available["test"]
    assert len(full.test_p1) == (n + 1) // 2 and len(full.test_p2) == n - len(full.test_p1)
    assert full.protocol1_lowered
    ample = sets_for(table, test_cap=20, p2_per_behavior=2)  # 20 + 2 x 6 <= n: the cap as given
    assert len(ample.test_p1) == 20 and not ample.protocol1_lowered
    with pytest.raises(PrepareError, match="too few for protocol 1 and protocol 2"):
        sets_for(make_table([6, 6, 6, 6, 6, 6, 6, 6, 6, 6]), test_cap=5, p2_per_behavior=1)


def test_training_label_counts_cover_all_training_samples_before_the_cap():
    table = make_table([25, 30, 35, 40, 22, 28, 33, 26, 31, 29], seed=4)
    s = sets_for(table, train_cap=10)
    full = sets_for(table)
    assert np.array_equal(s.train_label_counts, np.bincount(table.behavior[full.train], minlength=6))


def test_anchor_and_head_medium_tail_thresholds():
    # frequencies: 60%, 5% (not > 5%: medium), 5.5%, 1% (not > 1%: tail, no anchor), 1.5%, 0.5%, 0, rest
    counts = np.array([6000, 500, 550, 100, 150, 50, 0, 2650])
    info = behavior_groups([f"b{i}" for i in range(8)], counts)
    assert info.freq_group == ["head", "medium", "head", "tail", "medium", "tail", "tail", "head"]
    assert info.is_anchor.tolist() == [True, True, True, False, True, False, False, True]
    assert info.without_train_samples == ["b6"]
    assert info.train_freq.sum() == pytest.approx(1.0)
    stricter = behavior_groups([f"b{i}" for i in range(8)], counts, anchor_threshold=0.02)
    assert stricter.is_anchor.tolist() == [True, True, True, False, False, False, False, True]
    with pytest.raises(PrepareError):
        behavior_groups(["a"], np.array([0]))
