"""The prepare pipeline: events -> samples -> splits -> prompts -> one LLaMA-Factory dataset_dir.

`prepare(table, out_dir, config)` is the library entry point (`python -m data_prep prepare` parses its
arguments into a :class:`~data_prep.config.PrepareConfig` and calls it).
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data_prep.config import PrepareConfig
from data_prep.encoding import ties
from data_prep.encoding.table import drop_warning
from data_prep.prepared import protocol2_balance
from data_prep.rendering import prompts
from data_prep.rendering.render import Renderer, write_split
from data_prep.sampling import auxiliary, samples
from data_prep.writing import outputs, rundir


def prepare(table, out_dir: str | Path, config: PrepareConfig | None = None, source: dict | None = None,
            log=print) -> dict:
    """Write the whole dataset_dir for one run (docs/data-preparation.md) and return its stats.

    The run is built in a hidden sibling of out_dir and swapped in whole at the end (data_prep.writing.rundir): a
    failed or killed prepare leaves the earlier run as it was, and no file of the earlier run survives.
    Order: user split and caps (samples), training frequencies and groups, render + write the training
    datasets (anchor / train_all / tail_medium from one pass), valid, test_p1, test_p2, aux, then
    dataset_info.json and finally stats.json.

    Protocol 2 is never silently empty: when the test users' samples cannot fill both TEST_CAP and
    P2_PER_BEHAVIOR x behaviors, protocol 1 gives way down to half of them (samples.protocol1_size; stated in
    stats.json `protocols.rule` with a warning); fewer than 2 test samples stop prepare. How many behaviors
    each protocol covers is printed and kept in stats.json `protocols`."""
    config = config if config is not None else PrepareConfig()
    return staged_run(out_dir, config, lambda build_dir, aux_pool: _prepare_into(table, build_dir, config, aux_pool,
                                                                                 source), log)


def staged_run(out_dir: str | Path, config: PrepareConfig, build, log=print) -> dict:
    """Read the auxiliary set, run build(build_dir, aux_pool) in a staged run directory (swapped in
    whole when it returns), print the coverage line and warnings; returns the stats build returned."""
    # read the auxiliary file first: a bad --aux fails before minutes of rendering, not after
    aux_pool = auxiliary.load_aux(config.aux_path) if config.eps > 0 else None
    with rundir.staged(out_dir) as build_dir:
        stats = build(build_dir, aux_pool)
    log(_coverage_line(stats["protocols"], len(stats["behaviors"])), file=sys.stderr)
    for warning in stats["warnings"]:
        log(f"warning: {warning}", file=sys.stderr)
    return stats


def _prepare_into(table, out_dir: Path, config: PrepareConfig, aux_pool, source: dict | None) -> dict:
    """Every file of one run into the (empty, staged) directory out_dir; returns the stats."""
    names = list(table.behaviors)
    table = ties.order_instants(table, config.seed)
    sets = samples.build_sample_sets(
        table.user, table.behavior, len(names), time=table.time, history_len=config.history_len, seed=config.seed,
        ratios=tuple(config.split_ratios), train_cap=config.train_cap, valid_cap=config.valid_cap,
        test_cap=config.test_cap, p2_per_behavior=config.p2_per_behavior)
    info = behavior_info(names, sets, config)
    renderer = Renderer(table, info, sets, config)

    def write(split, targets, template_ids, routes, caps):
        return write_split(renderer, targets, template_ids, out_dir, routes, desc=split, caps=caps)

    return write_run(out_dir, config, aux_pool, source, EventsSummary.of(table), sets, info, write)


@dataclass
class EventsSummary:
    """What stats.json says about the events (the in-memory table, or the buckets of an out-of-core run)."""
    behaviors: list[str]
    n_events: int
    n_users: int
    n_places: int
    dropped: dict
    notes: dict

    @classmethod
    def of(cls, table) -> EventsSummary:
        return cls(list(table.behaviors), len(table.user), len(table.user_ids), len(table.places),
                   dict(getattr(table, "dropped", {}) or {}), getattr(table, "notes", {}) or {})


def behavior_info(names: list[str], sets, config: PrepareConfig) -> samples.BehaviorInfo:
    return samples.behavior_groups(names, sets.train_label_counts, anchor_threshold=config.anchor_threshold,
                                   head_threshold=config.head_threshold, tail_threshold=config.tail_threshold)


def template_ids(split: str, n: int, seed: int) -> np.ndarray:
    """The prompt template of each of a split's n samples, in output order."""
    return prompts.draw_template_ids(n, samples.rng_for(seed, f"templates_{split}"))


def write_run(out_dir: Path, config: PrepareConfig, aux_pool, source: dict | None, table: EventsSummary, sets,
              info, write) -> dict:
    """The files of one run from its samples: write(split, targets, template_ids, routes, caps) writes the
    behavior datasets of one split; then aux, dataset_info.json and stats.json."""
    names = table.behaviors
    warnings = [w for w in (drop_warning(table),) if w]
    if sets.ties["tied_share"] > ties.WARN_SHARE:
        t = sets.ties
        warnings.append(f"{t['tied_share']:.1%} of the targets ({t['tied_targets']} of {t['targets']}) are tied: "
                        f"they share their timestamp with the previous event (largest instant: "
                        f"{t['largest_tie_group']} events); their histories end before their instant and the events "
                        f"of one instant are in a seeded order, never by name (stats.json 'ties')")
    if info.without_train_samples:
        warnings.append(f"{len(info.without_train_samples)} behavior(s) have no training sample; kept as tail "
                        f"candidates: {', '.join(info.without_train_samples)}")
    split_counts, prompt_chars = _write_behavior_splits(write, info, sets, config)
    if config.anchor_balance and split_counts["anchor"].sum() < config.anchor_cap:
        short = [n for n, c, q in zip(names, split_counts["anchor"], _anchor_cap(info, config)) if c < q]
        warnings.append(f"anchor-balance: {int(split_counts['anchor'].sum())} anchor samples of anchor-cap "
                        f"{config.anchor_cap}: {', '.join(short)} had fewer training samples than their share")

    # Algorithm 1 line 5: eps x |anchor samples| general conversations, no longer than the behavior prompts
    median_chars = float(np.median(prompt_chars)) if len(prompt_chars) else 0.0
    aux_sel = auxiliary.select_aux(aux_pool, config.eps, int(split_counts["anchor"].sum()), median_chars,
                                   config.seed, config.aux_max_length_ratio, config.aux_repeat)
    outputs.write_jsonl(out_dir / f"{outputs.AUX_STEM}.jsonl",
                        ({"conversations": c} for c in aux_sel.conversations))
    if aux_sel.stats["shortfall"]:
        warnings.append(auxiliary.ratio_line(aux_sel.stats))
    outputs.copy_dataset_info(out_dir)

    p2_short = [n for n, c in zip(names, split_counts["test_p2"]) if c < config.p2_per_behavior]
    if sets.protocol1_lowered:
        warnings.append(
            f"protocol 1: test cap {config.test_cap if config.test_cap else 'none'} lowered to "
            f"{len(sets.test_p1)} of the test users' {sets.available['test']} samples so that protocol 2 keeps "
            f"samples (stats.json protocols.rule); set --test-cap and --p2-per-behavior to choose otherwise")
    if config.p2_per_behavior and p2_short:
        warnings.append(f"protocol 2: {len(p2_short)} behavior(s) have fewer than {config.p2_per_behavior} "
                        f"samples (see protocol2_counts)")
    stats = _stats(table, sets, info, split_counts, aux_sel, median_chars, warnings, source, config)
    outputs.write_json(out_dir / "stats.json", stats)
    return stats


PROTOCOL_RULE = ("test_p1 = min(TEST_CAP, max(N - P2_PER_BEHAVIOR x behaviors, ceil(N / 2))) of the test users' "
                 "N samples (TEST_CAP none = no cap; P2_PER_BEHAVIOR 0: min(TEST_CAP, N)); test_p2 = up to "
                 "P2_PER_BEHAVIOR samples of each behavior from the rest")


def _protocols(sets, split_counts, config: PrepareConfig) -> dict:
    """stats.json `protocols`: the rule, its inputs, and each protocol's size and behavior coverage."""
    p1, p2 = split_counts["test_p1"], split_counts["test_p2"]
    return {
        "rule": PROTOCOL_RULE,
        "test_samples": sets.available["test"],
        "test_p1": {"cap": config.test_cap, "samples": int(p1.sum()), "behaviors": int((p1 > 0).sum()),
                    "lowered_by_rule": sets.protocol1_lowered},
        "test_p2": {"per_behavior": config.p2_per_behavior, "requested": config.p2_per_behavior * len(p2),
                    "samples": int(p2.sum()), "behaviors": int((p2 > 0).sum()),
                    "behaviors_short": int((p2 < config.p2_per_behavior).sum()),
                    "balance": protocol2_balance(p2, config.p2_per_behavior)},
    }


def _coverage_line(protocols: dict, n_behaviors: int) -> str:
    p1, p2 = protocols["test_p1"], protocols["test_p2"]
    return (f"protocol 1 (test_p1): {p1['samples']} samples, {p1['behaviors']} of {n_behaviors} behaviors; "
            f"protocol 2 (test_p2): {p2['samples']} samples, {p2['behaviors']} of {n_behaviors} behaviors "
            f"(up to {p2['per_behavior']} each; {p2['behaviors_short']} with fewer: {p2['balance']})")


def _write_behavior_splits(write, info, sets, config) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render and write the six behavior datasets; the three training ones come from one pass over the
    training split. Returns per-stem label counts and the training prompts' lengths (characters)."""
    every = np.ones(len(info.names), dtype=bool)
    not_head = np.array([g != "head" for g in info.freq_group], dtype=bool)
    split_counts: dict[str, np.ndarray] = {}
    prompt_chars = np.empty(0, dtype=np.int64)
    for split, stem_routes in (
            ("train", {"train_all": every, "anchor": info.is_anchor, "tail_medium": not_head}),
            ("valid", {"valid": every}), ("test_p1", {"test_p1": every}), ("test_p2", {"test_p2": every})):
        targets = getattr(sets, split)
        caps = {"anchor": _anchor_cap(info, config)} if split == "train" and config.anchor_cap else None
        counts, chars = write(split, targets, template_ids(split, len(targets), config.seed), stem_routes, caps)
        split_counts.update(counts)
        if split == "train":
            prompt_chars = chars
    return split_counts, prompt_chars


def _anchor_cap(info, config: PrepareConfig):
    """ANCHOR_CAP as one total, or with ANCHOR_BALANCE one cap per behavior (samples.anchor_quota)."""
    if not config.anchor_balance:
        return config.anchor_cap
    return samples.anchor_quota(info.train_freq, info.is_anchor, config.anchor_cap, config.anchor_balance)


def _stats(table, sets, info, split_counts, aux_sel, median_chars, warnings, source, config) -> dict:
    """The content of stats.json (docs/data-preparation.md "Files between stages"); key order is fixed."""
    names = list(table.behaviors)
    dropped = dict(table.dropped)
    dropped.update(sets.dropped)
    dropped["aux_malformed"] = aux_sel.stats["malformed"]
    dropped["aux_too_long"] = aux_sel.stats["too_long"]
    return {
        "behaviors": [
            {"name": n, "label_id": i, "train_count": int(info.train_count[i]),
             "train_freq": float(info.train_freq[i]), "is_anchor": bool(info.is_anchor[i]),
             "freq_group": info.freq_group[i],
             "samples": {stem: int(c[i]) for stem, c in split_counts.items()}}
            for i, n in enumerate(names)],
        "anchors": [n for i, n in enumerate(names) if info.is_anchor[i]],
        "tails": [n for i, n in enumerate(names) if not info.is_anchor[i]],
        "head": [n for i, n in enumerate(names) if info.freq_group[i] == "head"],
        "medium": [n for i, n in enumerate(names) if info.freq_group[i] == "medium"],
        "tail": [n for i, n in enumerate(names) if info.freq_group[i] == "tail"],
        "behaviors_without_train_samples": info.without_train_samples,
        "samples": {**{stem: int(split_counts[stem].sum()) for stem in outputs.BEHAVIOR_STEMS},
                    outputs.AUX_STEM: len(aux_sel.conversations)},
        "available_samples": sets.available,
        "users": sets.users,
        "events": {"events": table.n_events, "users": table.n_users,
                   "behaviors": len(names), "places": table.n_places},
        "protocol2_counts": {n: int(c) for n, c in zip(names, split_counts["test_p2"])},
        "protocols": _protocols(sets, split_counts, config),
        "ties": sets.ties,
        "dropped": {k: int(dropped[k]) for k in sorted(dropped)},
        "aux": aux_sel.stats,
        "frequency_basis": "training-split samples before the train cap",
        "median_prompt_chars": median_chars,
        "warnings": warnings,
        "notes": table.notes,
        "source": source or {},
        "config": {**asdict(config), "split_ratios": list(config.split_ratios)},
    }
