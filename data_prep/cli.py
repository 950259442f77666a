"""`python -m data_prep prepare`: event log -> samples -> splits -> prompts -> LLaMA-Factory dataset_dir.

`prepare(table, out_dir, config)` is the library entry point; `main()` is the command line.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep import aux as aux_mod
from data_prep import outputs, prompts, samples
from data_prep.events import PrepareError

RENDER_CHUNK = 20_000


@dataclass(frozen=True)
class PrepareConfig:
    history_len: int = 20
    seed: int = 42
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    train_cap: int | None = None
    valid_cap: int | None = None
    test_cap: int | None = None
    anchor_cap: int | None = None        # A-tune set size for budget runs; aux is sized from the capped set
    p2_per_behavior: int = 500
    anchor_threshold: float = 0.01
    head_threshold: float = 0.05
    tail_threshold: float = 0.01
    aux_path: str | None = None          # None: the shipped data_prep/resources/aux_conversations.jsonl
    eps: float = 0.05
    aux_max_length_ratio: float = 1.5
    system_prompt: str = prompts.SYSTEM_PROMPT

    def validate(self) -> None:
        for name in ("train_cap", "valid_cap", "test_cap", "anchor_cap"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PrepareError(f"{name.replace('_', '-')} must be >= 1 (or omitted for no cap), got {value}")
        if self.p2_per_behavior < 0:
            raise PrepareError(f"p2-per-behavior must be >= 0, got {self.p2_per_behavior}")
        if len(self.split_ratios) != 3 or min(self.split_ratios) <= 0:
            raise PrepareError(f"split ratios must be three positive numbers, got {self.split_ratios}")
        if not 0 <= self.tail_threshold <= self.head_threshold <= 1:
            raise PrepareError(f"need 0 <= tail threshold ({self.tail_threshold}) <= head threshold "
                               f"({self.head_threshold}) <= 1")
        if not 0 <= self.anchor_threshold < 1:
            raise PrepareError(f"anchor threshold must be in [0, 1), got {self.anchor_threshold}")
        if self.eps < 0:
            raise PrepareError(f"eps must be >= 0, got {self.eps}")
        if self.aux_max_length_ratio <= 0:
            raise PrepareError(f"aux max length ratio must be > 0, got {self.aux_max_length_ratio}")


class _Renderer:
    """Renders samples (target event indices) into alpaca record lines and meta lines, chunk by chunk.

    Lines are assembled from pre-escaped JSON fragments (the JSON escaping of a concatenation is the
    concatenation of the escapings); the result is exactly what `outputs.json_line` gives for the same dict
    (tests check this), about 3x faster than encoding hundreds of thousands of 2 kB dicts."""

    def __init__(self, table, info: samples.BehaviorInfo, sets: samples.SampleSets, config: PrepareConfig):
        self.table, self.info, self.sets, self.config = table, info, sets, config
        esc, quote = outputs.json_escape, outputs.json_line
        self.behaviors, self.places = list(table.behaviors), list(table.places)
        self.user_ids = table.user_ids
        candidates = prompts.format_candidates(self.behaviors)
        self.candidates_esc = esc(candidates)
        for template in prompts.TEMPLATES:
            assert esc(template) == template, "templates must need no JSON escaping"
        self.system_json = quote(config.system_prompt)[:-1]
        self.name_json = [quote(n)[:-1] for n in self.behaviors]
        self.place_esc = [esc(p) for p in self.places]
        self.anchor_json = ["true" if a else "false" for a in info.is_anchor.tolist()]
        # unescaped character counts, for the prompt lengths the auxiliary length filter compares against
        self.template_chars = np.array([len(t.format(history="", next_context="", candidates=""))
                                        for t in prompts.TEMPLATES], dtype=np.int64) + len(candidates)
        self.weekday_chars = np.array([len(w) for w in samples.WEEKDAYS], dtype=np.int64)
        self.place_chars = np.array([len(p) for p in self.places], dtype=np.int64)
        self.name_chars = np.array([len(n) for n in self.behaviors], dtype=np.int64)

    def chunks(self, targets: np.ndarray, template_ids: np.ndarray):
        """Yields (record_lines, meta_lines, labels, prompt_chars) per chunk of samples, in `targets` order."""
        t, L = self.table, self.config.history_len
        weekdays, groups = samples.WEEKDAYS, self.info.freq_group
        name_json, place_esc, anchor_json = self.name_json, self.place_esc, self.anchor_json
        user_ids, templates, cands = self.user_ids, prompts.TEMPLATES, self.candidates_esc
        head = '{"system": ' + self.system_json + ', "instruction": "'
        uid_json: dict[int, str] = {}   # user code -> '"<escaped id>' (no closing quote), built on first use
        for lo in range(0, len(targets), RENDER_CHUNK):
            idx = np.asarray(targets[lo:lo + RENDER_CHUNK], dtype=np.int64)
            tids = np.asarray(template_ids[lo:lo + RENDER_CHUNK], dtype=np.int64)
            win = samples.window_indices(idx, L)
            wd, hr = samples.weekday_hour(t.time[win])
            hist_behavior = t.behavior[win]
            histories, hist_chars = prompts.render_histories_escaped(
                wd, hr, t.place[win], hist_behavior, self.places, self.behaviors, outputs.json_escape)
            nwd, nhr = samples.weekday_hour(t.time[idx])
            npl, labels = t.place[idx], t.behavior[idx].astype(np.int64)
            next_chars = self.weekday_chars[nwd] + np.where(nhr >= 10, 2, 1) + self.place_chars[npl] + 6
            prompt_chars = (len(self.config.system_prompt) + self.template_chars[tids] + hist_chars + next_chars
                            + self.name_chars[labels])
            positions = self.sets.position_in_user(idx, t.user)
            records, metas = [], []
            for history, n_wd, n_hr, n_pl, label, user, pos, tid, hist in zip(
                    histories, nwd.tolist(), nhr.tolist(), npl.tolist(), labels.tolist(), t.user[idx].tolist(),
                    positions.tolist(), tids.tolist(), hist_behavior.tolist()):
                weekday = weekdays[n_wd]
                instruction = templates[tid].format(
                    history=history, next_context=f"({weekday}, {n_hr}, {place_esc[n_pl]})", candidates=cands)
                records.append(f'{head}{instruction}", "input": "", "output": {name_json[label]}}}\n')
                uid = uid_json.get(user)
                if uid is None:
                    uid = uid_json[user] = outputs.json_line(user_ids[user])[:-2]
                metas.append(
                    f'{{"sample_id": {uid}#{pos}", "user_id": {uid}", "label": {name_json[label]}, '
                    f'"label_id": {label}, "is_anchor": {anchor_json[label]}, "freq_group": "{groups[label]}", '
                    f'"template_id": {tid}, "history": [{", ".join([name_json[b] for b in hist])}], '
                    f'"next_context": ["{weekday}", {n_hr}, "{place_esc[n_pl]}"]}}\n')
            yield records, metas, labels, prompt_chars


def _write_split(renderer: _Renderer, targets: np.ndarray, template_ids: np.ndarray, out_dir: Path,
                 routes: dict[str, np.ndarray], desc: str, caps: dict[str, int] | None = None
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render `targets` once and write each sample to every stem whose route (a bool per label id) accepts
    its label, at most caps[stem] samples for a capped stem. Returns per-stem label counts and the prompt
    lengths (characters) of all samples."""
    n_labels = len(renderer.behaviors)
    remaining = dict(caps or {})
    counts = {stem: np.zeros(n_labels, dtype=np.int64) for stem in routes}
    chars = []
    with _open_all(out_dir, routes) as handles, \
            tqdm(total=len(targets), desc=desc, unit="sample", disable=None, mininterval=2.0) as bar:
        for records, metas, labels, prompt_chars in renderer.chunks(targets, template_ids):
            chars.append(prompt_chars)
            for stem, accepts in routes.items():
                keep = accepts[labels]
                if stem in remaining:
                    # targets are in seeded random order: the first N accepted are a seeded random subsample
                    keep &= np.cumsum(keep) <= remaining[stem]
                    remaining[stem] -= int(keep.sum())
                data, side = handles[stem]
                if keep.all():
                    data.write("".join(records))
                    side.write("".join(metas))
                else:
                    data.write("".join([records[i] for i in np.flatnonzero(keep).tolist()]))
                    side.write("".join([metas[i] for i in np.flatnonzero(keep).tolist()]))
                counts[stem] += np.bincount(labels[keep], minlength=n_labels)
            bar.update(len(labels))
    return counts, (np.concatenate(chars) if chars else np.empty(0, dtype=np.int64))


@contextlib.contextmanager
def _open_all(out_dir: Path, stems):
    """Atomic writers for <stem>.jsonl and <stem>.meta.jsonl of several stems; an error in any of them
    removes every temp file (ExitStack hands the exception to each writer)."""
    with contextlib.ExitStack() as stack:
        yield {stem: (stack.enter_context(outputs.atomic_open(out_dir / f"{stem}.jsonl")),
                      stack.enter_context(outputs.atomic_open(out_dir / f"{stem}.meta.jsonl")))
               for stem in stems}


def prepare(table, out_dir: str | Path, config: PrepareConfig = PrepareConfig(), source: dict | None = None,
            log=print) -> dict:
    """Write the whole dataset_dir for one run (README contracts) and return its stats.

    Order: user split and caps (samples), training frequencies and groups, render + write the training
    datasets (anchor / train_all / tail_medium from one pass), valid, test_p1, test_p2, aux, then
    dataset_info.json and finally stats.json (its presence marks a complete run)."""
    config.validate()
    out_dir = Path(out_dir)
    names = list(table.behaviors)
    # read the auxiliary file first: a bad --aux fails before minutes of rendering, not after
    aux_pool = aux_mod.load_aux(config.aux_path) if config.eps > 0 else None
    sets = samples.build_sample_sets(
        table.user, table.behavior, len(names), history_len=config.history_len, seed=config.seed,
        ratios=tuple(config.split_ratios), train_cap=config.train_cap, valid_cap=config.valid_cap,
        test_cap=config.test_cap, p2_per_behavior=config.p2_per_behavior)
    info = samples.behavior_groups(names, sets.train_label_counts, anchor_threshold=config.anchor_threshold,
                                   head_threshold=config.head_threshold, tail_threshold=config.tail_threshold)
    renderer = _Renderer(table, info, sets, config)
    warnings = []
    if info.without_train_samples:
        warnings.append(f"{len(info.without_train_samples)} behavior(s) have no training sample; kept as tail "
                        f"candidates: {', '.join(info.without_train_samples)}")

    every = np.ones(len(names), dtype=bool)
    not_head = np.array([g != "head" for g in info.freq_group], dtype=bool)
    split_counts: dict[str, np.ndarray] = {}
    prompt_chars = np.empty(0, dtype=np.int64)
    for split, stem_routes in (
            ("train", {"train_all": every, "anchor": info.is_anchor, "tail_medium": not_head}),
            ("valid", {"valid": every}), ("test_p1", {"test_p1": every}), ("test_p2", {"test_p2": every})):
        targets = getattr(sets, split)
        template_ids = prompts.draw_template_ids(len(targets), samples.rng_for(config.seed, f"templates_{split}"))
        caps = {"anchor": config.anchor_cap} if split == "train" and config.anchor_cap else None
        counts, chars = _write_split(renderer, targets, template_ids, out_dir, stem_routes, desc=split, caps=caps)
        split_counts.update(counts)
        if split == "train":
            prompt_chars = chars

    n_anchor = int(split_counts["anchor"].sum())
    median_chars = float(np.median(prompt_chars)) if len(prompt_chars) else 0.0
    aux_sel = aux_mod.select_aux(aux_pool, config.eps, n_anchor, median_chars, config.seed,
                                 config.aux_max_length_ratio)
    outputs.write_jsonl(out_dir / f"{outputs.AUX_STEM}.jsonl",
                        ({"conversations": c} for c in aux_sel.conversations))
    if aux_sel.stats["shortfall"]:
        warnings.append(f"auxiliary conversations: {aux_sel.stats['requested']} requested, only "
                        f"{aux_sel.stats['available']} available after filtering")
    outputs.copy_dataset_info(out_dir)

    p2_counts = split_counts["test_p2"]
    p2_short = [n for n, c in zip(names, p2_counts) if c < config.p2_per_behavior]
    if config.p2_per_behavior and p2_short:
        warnings.append(f"protocol 2: {len(p2_short)} behavior(s) have fewer than {config.p2_per_behavior} "
                        f"samples (see protocol2_counts)")
    dropped = dict(getattr(table, "dropped", {}) or {})
    dropped.update(sets.dropped)
    dropped["aux_malformed"] = aux_sel.stats["malformed"]
    dropped["aux_too_long"] = aux_sel.stats["too_long"]
    stats = {
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
        "events": {"events": int(len(table.user)), "users": len(table.user_ids),
                   "behaviors": len(names), "places": len(table.places)},
        "protocol2_counts": {n: int(c) for n, c in zip(names, p2_counts)},
        "dropped": {k: int(dropped[k]) for k in sorted(dropped)},
        "aux": aux_sel.stats,
        "frequency_basis": "training-split samples before the train cap",
        "median_prompt_chars": median_chars,
        "warnings": warnings,
        "notes": getattr(table, "notes", {}) or {},
        "source": source or {},
        "config": {**asdict(config), "split_ratios": list(config.split_ratios)},
    }
    outputs.write_json(out_dir / "stats.json", stats)
    for warning in warnings:
        log(f"warning: {warning}", file=sys.stderr)
    return stats


def _summary(stats: dict, out_dir: Path) -> str:
    s = stats["samples"]
    return (f"prepared {out_dir}: {stats['events']['events']} events, {stats['events']['users']} users, "
            f"{stats['events']['behaviors']} behaviors ({len(stats['anchors'])} anchors); samples: "
            + ", ".join(f"{k}={v}" for k, v in s.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="event log -> LLaMA-Factory dataset_dir (README contracts)")
    p.add_argument("--out", required=True, help="dataset_dir to write (e.g. runs/<RUN>/data)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="event log: CSV, JSONL or Parquet")
    src.add_argument("--foursquare", help="Foursquare TSMC2014 file (tab separated, original layout)")
    src.add_argument("--synthetic", action="store_true", help="the embedded synthetic default")
    p.add_argument("--format", choices=("csv", "jsonl", "parquet"), help="input format (default: by suffix)")
    p.add_argument("--columns", help="column mapping, e.g. user=uid,time=ts,place=loc,behavior=label")
    p.add_argument("--label-map", help="JSON file merging raw labels into categories")
    p.add_argument("--tz", help="time zone for timestamps without an offset (e.g. Asia/Shanghai)")
    p.add_argument("--users", type=int, default=2000, help="synthetic: number of users")
    p.add_argument("--days", type=int, default=60, help="synthetic: number of days")
    p.add_argument("--behaviors", help="synthetic: comma-separated subset of behaviors (demo profile)")
    d = PrepareConfig()
    p.add_argument("--history-len", type=int, default=d.history_len)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--train-cap", type=int)
    p.add_argument("--valid-cap", type=int)
    p.add_argument("--test-cap", type=int, help="protocol 1 size; protocol 2 draws from the rest of the "
                                                "test users' samples, so without a cap it is empty")
    p.add_argument("--anchor-cap", type=int, help="at most this many anchor samples (the A-tune set; budget "
                                                  "runs); the auxiliary set is eps x this")
    p.add_argument("--p2-per-behavior", type=int, default=d.p2_per_behavior)
    p.add_argument("--anchor-threshold", type=float, default=d.anchor_threshold)
    p.add_argument("--head-threshold", type=float, default=d.head_threshold)
    p.add_argument("--tail-threshold", type=float, default=d.tail_threshold)
    p.add_argument("--aux", help="ShareGPT JSON/JSONL of general conversations (default: the shipped set)")
    p.add_argument("--eps", type=float, default=d.eps, help="auxiliary conversations per anchor sample")
    p.add_argument("--aux-max-length-ratio", type=float, default=d.aux_max_length_ratio,
                   help="drop conversations longer than this x the median behavior prompt (characters)")
    p.add_argument("--system-prompt", default=d.system_prompt)
    return parser


def _load(args) -> tuple[object, dict]:
    from data_prep import events
    if args.input:
        columns = events.parse_columns_option(args.columns) if args.columns else None
        label_map = events.load_label_map(args.label_map) if args.label_map else None
        table = events.load_events(args.input, fmt=args.format, columns=columns, label_map=label_map, tz=args.tz)
        return table, {"kind": "events", "path": args.input, "format": args.format, "columns": args.columns,
                       "label_map": args.label_map, "tz": args.tz}
    if args.foursquare:
        return events.load_foursquare(args.foursquare), {"kind": "foursquare", "path": args.foursquare}
    from data_prep import synthetic
    behaviors = [b.strip() for b in args.behaviors.split(",") if b.strip()] if args.behaviors else None
    table = synthetic.generate_events(n_users=args.users, n_days=args.days, seed=args.seed, behaviors=behaviors)
    return table, {"kind": "synthetic", "users": args.users, "days": args.days, "seed": args.seed,
                   "behaviors": behaviors}


def _input_errors() -> tuple[type[Exception], ...]:
    """Bad-input errors that get a one-line message and exit code 2 (a traceback means a bug)."""
    from data_prep.synthetic import SyntheticError
    return PrepareError, SyntheticError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = PrepareConfig(
            history_len=args.history_len, seed=args.seed, train_cap=args.train_cap, valid_cap=args.valid_cap,
            test_cap=args.test_cap, anchor_cap=args.anchor_cap, p2_per_behavior=args.p2_per_behavior,
            anchor_threshold=args.anchor_threshold, head_threshold=args.head_threshold,
            tail_threshold=args.tail_threshold, aux_path=args.aux, eps=args.eps,
            aux_max_length_ratio=args.aux_max_length_ratio, system_prompt=args.system_prompt)
        config.validate()
        print("loading events ...", file=sys.stderr)
        table, source = _load(args)
        stats = prepare(table, args.out, config, source=source)
    except _input_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(_summary(stats, Path(args.out)))
    return 0
