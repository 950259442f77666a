"""Samples, user splits, caps, the two test protocols and behavior frequency groups (paper 2.1, 4.1.1, 4.1.2).

A sample is identified by the index of its *target* event in the EventTable (sorted by user, time): its
input x is the L events strictly earlier than the target (same user, oldest first; events of the target's own
instant are never history, see data_prep.encoding.ties), its label y is the target's behavior, and the target's
weekday, hour and place are the "next behavior" context the prompt reveals.

Everything is vectorized: eligible samples are never materialized for the (large) training split; a cap
draws sample *ranks* and maps them to event indices through per-user cumulative counts, and windows are
gathered only for the selected samples.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from data_prep.encoding import ties
from data_prep.errors import PrepareError

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
USER_SPLITS = ("train", "valid", "test")
FREQ_GROUPS = ("head", "medium", "tail")


def rng_for(seed: int, step: str) -> np.random.Generator:
    """An independent, seeded random stream per pipeline step, so changing one step's parameters (a cap,
    the protocol-2 size) never reshuffles another step (the user split)."""
    return np.random.default_rng([int(seed), zlib.crc32(step.encode())])


def weekday_hour(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weekday (0 = Monday) and hour of local wall times encoded as UTC epoch seconds.

    1970-01-01 was a Thursday (weekday 3); floor division keeps pre-1970 times right."""
    t = np.asarray(time, dtype=np.int64)
    return ((t // 86400 + 3) % 7).astype(np.int8), ((t // 3600) % 24).astype(np.int8)


@dataclass
class UserRuns:
    """Where each user's events lie in the (user, time)-sorted table."""
    codes: np.ndarray   # user codes present in the table, ascending
    starts: np.ndarray  # index of each user's first event
    counts: np.ndarray  # events per user


def user_runs(user: np.ndarray) -> UserRuns:
    n = len(user)
    if n == 0:
        return UserRuns(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
    boundary = np.flatnonzero(user[1:] != user[:-1]) + 1
    starts = np.concatenate(([0], boundary)).astype(np.int64)
    counts = np.diff(np.concatenate((starts, [n]))).astype(np.int64)
    codes = np.asarray(user[starts], dtype=np.int64)
    if np.any(np.diff(codes) <= 0):
        raise PrepareError("event table is not sorted by user (internal error: load_events must sort it)")
    return UserRuns(codes, starts, counts)


def split_sizes(n_users: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """User counts for train/valid/test (8:1:1 by default), rounding half up; each split gets at least one."""
    if n_users < 3:
        raise PrepareError(f"need at least 3 users with enough events to split train/valid/test, got {n_users}")
    total = sum(ratios)
    n_valid = max(1, int(np.floor(n_users * ratios[1] / total + 0.5)))
    n_test = max(1, int(np.floor(n_users * ratios[2] / total + 0.5)))
    n_train = n_users - n_valid - n_test
    if n_train < 1:
        raise PrepareError(f"split ratios {ratios} leave no training user out of {n_users}")
    return n_train, n_valid, n_test


def split_users(n_users: int, seed: int, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """Seeded 8:1:1 user split (paper 4.1.2): returns 0/1/2 (train/valid/test) for each of n_users.

    A random permutation, never the users' order, decides the split."""
    n_train, n_valid, _ = split_sizes(n_users, ratios)
    perm = rng_for(seed, "split_users").permutation(n_users)
    split = np.full(n_users, 2, dtype=np.int8)
    split[perm[:n_train]] = 0
    split[perm[n_train:n_train + n_valid]] = 1
    return split


@dataclass
class EligibleSamples:
    """The samples of a set of users, addressable by rank 0..n-1 without materializing them."""
    starts: np.ndarray  # first *target* event of each user (the first event with L strictly earlier events)
    counts: np.ndarray  # samples per user (events from that target on)
    cum: np.ndarray     # cumulative counts

    @classmethod
    def of(cls, runs: UserRuns, users: np.ndarray, first_target: np.ndarray) -> EligibleSamples:
        counts = runs.starts[users] + runs.counts[users] - first_target[users]
        return cls(first_target[users], counts, np.cumsum(counts))

    @property
    def n(self) -> int:
        return int(self.cum[-1]) if len(self.cum) else 0

    def event_index(self, ranks: np.ndarray) -> np.ndarray:
        """Event index of the target of each sample rank."""
        ranks = np.asarray(ranks, dtype=np.int64)
        k = np.searchsorted(self.cum, ranks, side="right")
        return self.starts[k] + ranks - (self.cum[k] - self.counts[k])

    def all_events(self) -> np.ndarray:
        return self.event_index(np.arange(self.n, dtype=np.int64))


def sample_ranks(n: int, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """A seeded random subset of min(cap, n) ranks (all n when cap is None), in random order.

    The order is random too, so any prefix of a written file is itself a random subsample."""
    if cap is None or cap >= n:
        return rng.permutation(n).astype(np.int64)
    return rng.choice(n, size=cap, replace=False, shuffle=True).astype(np.int64)


def per_class_sample(labels: np.ndarray, per_class: int, n_classes: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Positions of up to `per_class` randomly drawn items of every class (protocol 2, paper 4.1.2).

    A class with fewer items gives all it has. Returns positions into `labels`, in random order."""
    perm = rng.permutation(len(labels))
    order = perm[np.argsort(labels[perm], kind="stable")]    # grouped by class, random within class
    sorted_labels = labels[order]
    class_start = np.searchsorted(sorted_labels, np.arange(n_classes))
    rank_in_class = np.arange(len(order)) - class_start[sorted_labels]
    chosen = order[rank_in_class < per_class]
    return chosen[rng.permutation(len(chosen))]


def anchor_quota(train_freq: np.ndarray, is_anchor: np.ndarray, cap: int, balance: float) -> np.ndarray:
    """Per-behavior caps of the A-tune set: cap x f_b^(1 - balance) / sum over anchors, 0 for non-anchors.

    balance 0 is the training distribution, 1 equal shares. Largest remainders round the shares, so the caps
    add up to `cap`; an anchor with fewer training samples than its cap gives all it has."""
    weight = np.where(is_anchor, np.asarray(train_freq, dtype=float) ** (1.0 - balance), 0.0)
    if weight.sum() == 0:
        return np.zeros(len(weight), dtype=np.int64)
    exact = cap * weight / weight.sum()
    quota = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - quota), kind="stable")
    quota[by_remainder[:cap - int(quota.sum())]] += 1
    return quota


def protocol1_size(n_test: int, test_cap: int | None, p2_per_behavior: int, n_behaviors: int) -> int:
    """Protocol 1's size: the test cap, lowered when test samples are scarce so that protocol 2 keeps some.

    Protocol 2 asks for K x B samples (P2_PER_BEHAVIOR x behaviors) from the test users' samples that
    protocol 1 leaves. When the N test samples cannot fill both (N < TEST_CAP + K x B), protocol 1 gives way
    to protocol 2, but never below half of N:

        p1 = min(TEST_CAP, max(N - K x B, ceil(N / 2)))      (TEST_CAP 'none' = no cap; K = 0: min(TEST_CAP, N))

    Why half: protocol 1 is the headline (natural distribution, Prec_w / Rec_w); keeping at least half the
    samples keeps its estimate within ~1.4x the standard error of using all of them, and the other half gives
    protocol 2 samples of every behavior the test users have with 2 or more samples (in expectation). With ample
    data (N >= TEST_CAP + K x B, e.g. the paper's 50 000 + 500 x 37) the rule never applies and outputs are
    those of a plain cap."""
    if p2_per_behavior <= 0:
        return n_test if test_cap is None else min(test_cap, n_test)
    wanted = n_test if test_cap is None else test_cap
    return min(wanted, max(n_test - p2_per_behavior * n_behaviors, (n_test + 1) // 2))


@dataclass
class SampleSets:
    """Target event indices of every written split, plus what the stats need."""
    train: np.ndarray
    valid: np.ndarray
    test_p1: np.ndarray
    test_p2: np.ndarray
    train_label_counts: np.ndarray          # per behavior, over ALL training-user samples (before the cap)
    available: dict[str, int]               # eligible samples per split before caps
    users: dict[str, int]                   # users per split
    user_split: dict[str, np.ndarray] = field(repr=False, default_factory=dict)  # user codes per split
    dropped: dict[str, int] = field(default_factory=dict)
    runs: UserRuns | None = field(repr=False, default=None)
    protocol1_lowered: bool = False         # the scarce-test-sample rule lowered protocol 1 (protocol1_size)
    tied: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, np.int64))  # ties.tied_positions
    ties: dict = field(default_factory=dict)  # stats.json `ties`

    def position_in_user(self, targets: np.ndarray, user: np.ndarray) -> np.ndarray:
        """0-based position of each target event within its user's sequence (a stable sample id part)."""
        k = np.searchsorted(self.runs.codes, user[targets])
        return np.asarray(targets, dtype=np.int64) - self.runs.starts[k]

    def history_end(self, targets: np.ndarray) -> np.ndarray:
        """Where each target's history ends (exclusive): the first event of the target's instant."""
        return ties.instant_start(self.tied, targets)


def build_sample_sets(user: np.ndarray, behavior: np.ndarray, n_behaviors: int, *, time: np.ndarray | None = None,
                      history_len: int = 20, seed: int = 42, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                      train_cap: int | None = None, valid_cap: int | None = None,
                      test_cap: int | None = None, p2_per_behavior: int = 500) -> SampleSets:
    """Windows -> user split -> caps -> protocol 1 and protocol 2 test sets (paper 2.1, 4.1.1, 4.1.2).

    Protocol 1 is a seeded random draw of protocol1_size(...) test samples (the test cap, lowered when test
    samples are scarce); protocol 2 draws up to p2_per_behavior samples of each behavior from the rest, so it
    is never empty while p2_per_behavior > 0 (fewer than 2 test samples is an error).

    ``time`` (the events' timestamps) applies the instant rule of data_prep.encoding.ties: a target needs L events
    strictly earlier than itself; without it every event is its own instant. Users with no such target give
    no sample; they are dropped before the split and counted (`user_too_short` events, `user_too_short_users`
    users). Training label counts are taken over all training-user samples before the cap (more stable for
    rare behaviors than the capped set)."""
    if history_len < 1:
        raise PrepareError(f"history length must be >= 1, got {history_len}")
    runs = user_runs(user)
    tied = ties.tied_positions(user, time) if time is not None else np.empty(0, np.int64)
    ends = runs.starts + runs.counts
    naive_first = runs.starts + history_len
    first_target = np.minimum(ties.next_instant(tied, naive_first), ends)
    long_enough = first_target < ends
    dropped = {"user_too_short": int(runs.counts[~long_enough].sum()),
               "user_too_short_users": int((~long_enough).sum())}
    eligible_users = np.flatnonzero(long_enough)            # positions into runs, ascending user code
    check_enough_users(len(eligible_users), history_len)
    split_of = split_users(len(eligible_users), seed, ratios)
    by_split = {name: eligible_users[split_of == s] for s, name in enumerate(USER_SPLITS)}
    pools = {name: EligibleSamples.of(runs, users, first_target) for name, users in by_split.items()}

    # Training label counts = all training-user events minus each training user's events before its first target.
    train_users = by_split["train"]
    in_train = np.zeros(len(runs.codes), dtype=bool)
    in_train[train_users] = True
    event_in_train = np.repeat(in_train, runs.counts)
    head_len = first_target[train_users] - runs.starts[train_users]
    head_events = np.repeat(runs.starts[train_users] - np.cumsum(head_len) + head_len, head_len) + np.arange(
        head_len.sum())
    train_label_counts = (np.bincount(behavior[event_in_train], minlength=n_behaviors)
                          - np.bincount(behavior[head_events], minlength=n_behaviors)).astype(np.int64)

    train = pools["train"].event_index(sample_ranks(pools["train"].n, train_cap, rng_for(seed, "cap_train")))
    valid = pools["valid"].event_index(sample_ranks(pools["valid"].n, valid_cap, rng_for(seed, "cap_valid")))

    # Protocol 1 = a capped draw of the test users' samples; protocol 2 draws from the rest (protocol1_size
    # lowers the cap when the rest would not be enough for protocol 2).
    test_all = pools["test"].all_events()
    n_p1 = protocol1_size(len(test_all), test_cap, p2_per_behavior, n_behaviors)
    check_test_samples(len(test_all), n_p1, p2_per_behavior)
    p1_pos = sample_ranks(len(test_all), n_p1, rng_for(seed, "cap_test"))
    unused = np.ones(len(test_all), dtype=bool)
    unused[p1_pos] = False
    rest = test_all[unused]
    if p2_per_behavior > 0:
        p2_pos = per_class_sample(behavior[rest], p2_per_behavior, n_behaviors, rng_for(seed, "protocol2"))
    else:
        p2_pos = np.empty(0, dtype=np.int64)
    return SampleSets(
        train=train, valid=valid, test_p1=test_all[p1_pos], test_p2=rest[p2_pos],
        train_label_counts=train_label_counts,
        available={name: pool.n for name, pool in pools.items()},
        users={name: len(u) for name, u in by_split.items()},
        user_split={name: runs.codes[u] for name, u in by_split.items()},
        dropped=dropped, runs=runs,
        protocol1_lowered=n_p1 < (len(test_all) if test_cap is None else min(test_cap, len(test_all))),
        tied=tied, ties=_tie_stats(tied, runs, eligible_users, first_target, naive_first, ends))


def check_enough_users(n_eligible: int, history_len: int) -> None:
    if n_eligible < 3:
        raise PrepareError(
            f"only {n_eligible} users have at least {history_len + 1} events (history length "
            f"{history_len} + 1, the history strictly earlier than the target); need at least 3 for the "
            f"train/valid/test split")


def check_test_samples(n_test: int, n_p1: int, p2_per_behavior: int) -> None:
    if p2_per_behavior > 0 and n_p1 >= n_test:
        raise PrepareError(
            f"the test users have {n_test} sample(s): too few for protocol 1 and protocol 2 (need at "
            f"least 2); add users or events, lower --history-len, or set --p2-per-behavior 0 to skip protocol 2")


def _tie_stats(tied, runs: UserRuns, users, first_target, naive_first, ends) -> dict:
    """stats.json `ties`, over every eligible sample of every split (before the caps)."""
    first, end = first_target[users], ends[users]
    targets = int((end - first).sum())
    tied_targets = int((np.searchsorted(tied, end) - np.searchsorted(tied, first)).sum())
    # targets the plain rule (the L events just before) would have had that now lack L strictly earlier events
    lost = int(np.clip(np.minimum(first_target, ends) - naive_first, 0, None).sum())
    return tie_stats(targets, tied_targets, ties.largest_instant(tied), lost)


def tie_stats(targets: int, tied_targets: int, largest: int, lost: int) -> dict:
    """stats.json `ties` from its counts (also summed over the buckets of an out-of-core run)."""
    return {"rule": ties.RULE, "targets": targets, "tied_targets": tied_targets,
            "tied_share": round(tied_targets / targets, 6) if targets else 0.0,
            "largest_tie_group": largest,
            "samples_changed": tied_targets + lost, "samples_history_moved": tied_targets,
            "samples_without_history": lost}


def window_indices(ends: np.ndarray, history_len: int) -> np.ndarray:
    """(n, L) event indices of each sample's history, oldest first: end-L .. end-1, where ``end`` is the
    target itself or, with ties, SampleSets.history_end(target)."""
    return np.asarray(ends, dtype=np.int64)[:, None] - np.arange(history_len, 0, -1, dtype=np.int64)


@dataclass
class BehaviorInfo:
    """Per-behavior training frequency and the groups derived from it, in label_id order."""
    names: list[str]
    train_count: np.ndarray
    train_freq: np.ndarray
    is_anchor: np.ndarray
    freq_group: list[str]

    @property
    def without_train_samples(self) -> list[str]:
        return [n for n, c in zip(self.names, self.train_count) if c == 0]


def behavior_groups(names: list[str], train_count: np.ndarray, *, anchor_threshold: float = 0.01,
                    head_threshold: float = 0.05, tail_threshold: float = 0.01) -> BehaviorInfo:
    """Anchor (freq > anchor_threshold, paper 2.2/3.2; Algorithm 1 line 1: D^a vs D^t) and head/medium/tail
    (paper 4.1.2: head > 5%,
    medium 1-5%, tail the rest, i.e. freq <= tail_threshold) from training-split frequencies.

    A behavior with no training sample has frequency 0: it stays a candidate and is a tail behavior."""
    if not 0 <= tail_threshold <= head_threshold <= 1:
        raise PrepareError(f"need 0 <= tail threshold ({tail_threshold}) <= head threshold ({head_threshold}) <= 1")
    if not 0 <= anchor_threshold < 1:
        raise PrepareError(f"anchor threshold must be in [0, 1), got {anchor_threshold}")
    counts = np.asarray(train_count, dtype=np.int64)
    total = counts.sum()
    if total == 0:
        raise PrepareError("the training split has no samples")
    freq = counts / total
    group = np.where(freq > head_threshold, "head", np.where(freq > tail_threshold, "medium", "tail"))
    return BehaviorInfo(list(names), counts, freq, freq > anchor_threshold, [str(g) for g in group])
