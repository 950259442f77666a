"""Did a model learn anything? Two signs that it did not, one warning line per model in the report and in
`make eval`'s output, so that a collapsed run is never read as a result:

- it puts on one behavior a share of a test split more than COLLAPSE_MARGIN above that behavior's true share
  ("a-tune answers Gaming for 44 of 48 test_p1 samples (true share 7 of 48)");
- its Rec_w on protocol 1 is below that of always answering the most frequent training behavior.

Baselines are not checked: most-frequent answers one label by definition. Counts are pooled over a model's runs.
Where the oracle baseline (the synthetic log's own law) over-answers a flagged split too, a note line says so:
on protocol 2, whose label distribution is not training's, a model that learned the data exceeds the share bound.
"""
from __future__ import annotations

from .files import TEST_SPLITS

COLLAPSE_MARGIN = 0.15   # a predicted share this far above the true share is a collapse, not a preference


def _pooled(model: dict, split: str) -> dict[str, tuple[int, int]] | None:
    """{behavior: (true count, predicted count)} over the model's runs of one split."""
    runs = [run[split]["per_behavior"] for run in model["runs"] if split in run]
    if not runs:
        return None
    return {name: (sum(r[name]["support"] for r in runs), sum(r[name]["predicted"] for r in runs))
            for name in runs[0]}


def over_answered(counts: dict[str, tuple[int, int]], split: str) -> str | None:
    """'answers X for P of N <split> samples (true share T of N)' when X's predicted share exceeds its true
    share by more than COLLAPSE_MARGIN (the behavior with the largest excess)."""
    n = sum(true for true, _ in counts.values())
    if not n:
        return None
    name, (true, predicted) = max(counts.items(), key=lambda item: (item[1][1] - item[1][0], item[0]))
    if (predicted - true) / n <= COLLAPSE_MARGIN:
        return None
    return f"answers {name} for {predicted} of {n} {split} samples (true share {true} of {n})"


def most_frequent_rec_w(counts: dict[str, tuple[int, int]], stats: dict) -> float | None:
    """Rec_w (accuracy) of always answering the most frequent training behavior, on these true counts."""
    n = sum(true for true, _ in counts.values())
    top = max(stats["behaviors"], key=lambda b: (int(b["train_count"]), -int(b["label_id"])))["name"]
    return counts.get(top, (0, 0))[0] / n if n else None


def warnings(models: dict, stats: dict) -> list[str]:
    """One line per model that shows either sign, naming each; then the oracle's notes (below)."""
    lines, flagged = [], set()
    for name, model in models.items():
        if all(m.startswith("baseline:") for m in model["methods"]):
            continue
        pooled = {split: _pooled(model, split) for split in TEST_SPLITS}
        shares = {split: over_answered(counts, split) for split, counts in pooled.items() if counts}
        signs = [sign for sign in shares.values() if sign]
        flagged |= {split for split, sign in shares.items() if sign}
        rec_w = model["summary"].get("test_p1", {}).get("rec_w", {}).get("mean")
        floor = most_frequent_rec_w(pooled["test_p1"], stats) if pooled["test_p1"] else None
        if rec_w is not None and floor is not None and rec_w < floor:
            signs.append(f"Rec_w {rec_w:.4f} below most-frequent's {floor:.4f}")
        if signs:
            lines.append(f"warning: {name} " + "; ".join(signs) + ": it may have learned nothing from the context")
    return lines + _oracle_notes(models, flagged)


def _oracle_notes(models: dict, splits: set[str]) -> list[str]:
    """A note per flagged split on which the synthetic log's own law (the oracle baseline) over-answers too: there
    the label distribution differs from training's (protocol 2), and the share sign alone does not say collapse."""
    notes = []
    for name, model in models.items():
        if model["methods"] != ["baseline:oracle"]:
            continue
        for split in sorted(splits, key=TEST_SPLITS.index):
            counts = _pooled(model, split)
            if counts and (sign := over_answered(counts, split)):
                notes.append(f"note: {name}, the data's own law, {sign}: on {split} a model that learned the "
                             "training distribution exceeds the share bound too")
    return notes
