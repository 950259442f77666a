"""Rendering samples into the alpaca records and meta lines of a split, and writing a split's files.

Lines are assembled from pre-escaped JSON fragments (the JSON escaping of a concatenation is the
concatenation of the escapings); the result is exactly what `outputs.json_line` gives for the same dict
(tests check this), about 3x faster than encoding hundreds of thousands of 2 kB dicts.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.config import PrepareConfig
from data_prep.rendering import prompts
from data_prep.sampling import samples
from data_prep.writing import outputs

RENDER_CHUNK = 20_000


class Renderer:
    """Renders samples (target event indices) into alpaca record lines and meta lines, chunk by chunk."""

    def __init__(self, table, info: samples.BehaviorInfo, sets: samples.SampleSets, config: PrepareConfig):
        self.table, self.info, self.sets, self.config = table, info, sets, config
        esc, quote = outputs.json_escape, outputs.json_line
        self.behaviors, self.places = list(table.behaviors), list(table.places)
        self.user_ids = table.user_ids
        candidates = prompts.format_candidates(self.behaviors)
        self.candidates_esc = esc(candidates)
        for template in prompts.INSTRUCTION_TEMPLATES:
            assert esc(template) == template, "templates must need no JSON escaping"
        self.system_json = quote(config.system_prompt)[:-1]
        self.name_json = [quote(n)[:-1] for n in self.behaviors]
        self.place_esc = [esc(p) for p in self.places]
        self.anchor_json = ["true" if a else "false" for a in info.is_anchor.tolist()]
        # unescaped character counts, for the prompt lengths the auxiliary length filter compares against
        self.template_chars = np.array([len(t.format(history="", next_context="", candidates=""))
                                        for t in prompts.INSTRUCTION_TEMPLATES], dtype=np.int64) + len(candidates)
        self.weekday_chars = np.array([len(w) for w in samples.WEEKDAYS], dtype=np.int64)
        self.place_chars = np.array([len(p) for p in self.places], dtype=np.int64)
        self.name_chars = np.array([len(n) for n in self.behaviors], dtype=np.int64)

    def chunks(self, targets: np.ndarray, template_ids: np.ndarray):
        """Yields (record_lines, meta_lines, labels, prompt_chars) per chunk of samples, in `targets` order."""
        t, L = self.table, self.config.history_len
        weekdays, groups = samples.WEEKDAYS, self.info.freq_group
        name_json, place_esc, anchor_json = self.name_json, self.place_esc, self.anchor_json
        user_ids, templates, cands = self.user_ids, prompts.INSTRUCTION_TEMPLATES, self.candidates_esc
        head = '{"system": ' + self.system_json + ', "instruction": "'
        uid_json: dict[int, str] = {}   # user code -> '"<escaped id>' (no closing quote), built on first use
        for lo in range(0, len(targets), RENDER_CHUNK):
            idx = np.asarray(targets[lo:lo + RENDER_CHUNK], dtype=np.int64)
            tids = np.asarray(template_ids[lo:lo + RENDER_CHUNK], dtype=np.int64)
            win = samples.window_indices(self.sets.history_end(idx), L)
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


def write_split(renderer: Renderer, targets: np.ndarray, template_ids: np.ndarray, out_dir: Path,
                 routes: dict[str, np.ndarray], desc: str, caps: dict[str, int] | None = None
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render `targets` once and write each sample to every stem whose route (a bool per label id) accepts
    its label, at most caps[stem] samples for a capped stem. Returns per-stem label counts and the prompt
    lengths (characters) of all samples."""
    return write_chunks(renderer.chunks(targets, template_ids), len(targets), len(renderer.behaviors), out_dir,
                        routes, desc, caps)


def write_chunks(chunks, total: int, n_labels: int, out_dir: Path, routes: dict[str, np.ndarray], desc: str,
                 caps: dict[str, int] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """write_split's writing half: `chunks` yields (record_lines, meta_lines, labels, prompt_chars) in order."""
    remaining = dict(caps or {})
    counts = {stem: np.zeros(n_labels, dtype=np.int64) for stem in routes}
    chars = []
    with _open_all(out_dir, routes) as handles, \
            tqdm(total=total, desc=desc, unit="sample", disable=None, mininterval=2.0) as bar:
        for records, metas, labels, prompt_chars in chunks:
            chars.append(prompt_chars)
            for stem, accepts in routes.items():
                keep = accepts[labels]
                if stem in remaining:
                    # targets are in seeded random order: the first N accepted are a seeded random subsample
                    keep &= _within_cap(labels, keep, remaining[stem])
                    taken = np.bincount(labels[keep], minlength=n_labels)
                    per_label = isinstance(remaining[stem], np.ndarray)
                    remaining[stem] = remaining[stem] - (taken if per_label else int(taken.sum()))
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


def _within_cap(labels: np.ndarray, keep: np.ndarray, cap) -> np.ndarray:
    """The accepted samples still under the cap: an int caps the chunk's accepted samples in order, an array
    of one cap per label caps each label's (data_prep.sampling.samples.anchor_quota)."""
    if not isinstance(cap, np.ndarray):
        return np.cumsum(keep) <= cap
    accepted = np.flatnonzero(keep)
    label = labels[accepted]
    order = np.argsort(label, kind="stable")      # grouped by label, chunk order within one (as per_class_sample)
    rank = np.empty(len(accepted), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.searchsorted(label[order], label[order])
    under = np.zeros(len(labels), dtype=bool)
    under[accepted[rank < cap[label]]] = True
    return under


@contextlib.contextmanager
def _open_all(out_dir: Path, stems):
    """Atomic writers for <stem>.jsonl and <stem>.meta.jsonl of several stems; an error in any of them
    removes every temp file (ExitStack hands the exception to each writer)."""
    with contextlib.ExitStack() as stack:
        yield {stem: (stack.enter_context(outputs.atomic_open(out_dir / f"{stem}.jsonl")),
                      stack.enter_context(outputs.atomic_open(out_dir / f"{stem}.meta.jsonl")))
               for stem in stems}

