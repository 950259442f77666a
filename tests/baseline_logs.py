"""A hand-made prepared dataset (stats.json, train_all.meta.jsonl and both test splits, five behaviors) whose
baseline predictions are checked by hand: used by the evaluation's baseline tests and the pipeline's launch tests."""
import json

NAMES = ["sleep", "work", "eat", "game", "taxi"]
COUNTS = [10, 10, 5, 2, 1]  # sleep and work tie: the lower label_id (sleep) is the most frequent
TRAIN = [  # global table: sleep->{work 1, eat 1}, work->{eat 2}, eat->{work 1, game 1, sleep 2}, game->{eat 1}
    {"history": ["sleep", "work", "eat"], "label": "work"},
    {"history": ["eat", "game", "eat"], "label": "sleep"},
    {"history": ["work", "eat", "sleep"], "label": "eat"},
]
# (history, label, expected prediction, expected source)
CASES = [
    # work -> eat 1, work -> game 1 in x: tie broken by the global row of work (eat 2, game 0)
    (["work", "eat", "work", "game", "work"], "eat", "eat", "user"),
    # eat is last and never followed inside x: global row of eat, sleep 2 wins
    (["game", "sleep", "eat"], "game", "sleep", "global"),
    # taxi never followed, in x or in training: most frequent
    (["eat", "taxi"], "work", "sleep", "most_frequent"),
    # eat -> work 2, eat -> game 1 in x
    (["eat", "work", "eat", "game", "eat", "work", "eat"], "work", "work", "user"),
    # sleep -> game 1, sleep -> taxi 1; global sleep row has neither: training count game 2 > taxi 1
    (["sleep", "game", "sleep", "taxi", "sleep"], "taxi", "game", "user"),
]


def stats_of(names: list[str], counts: list[int]) -> dict:
    total = sum(counts)
    return {"behaviors": [{"name": n, "label_id": i, "train_count": c, "train_freq": c / total, "is_anchor": c >= 5,
                           "freq_group": "head" if c >= 5 else "tail"} for i, (n, c) in enumerate(zip(names, counts))]}


STATS = stats_of(NAMES, COUNTS)


def write_dataset(tmp_path, stats=STATS, train=TRAIN, cases=CASES):
    d = tmp_path / "data"
    d.mkdir()
    names = [b["name"] for b in stats["behaviors"]]
    (d / "stats.json").write_text(json.dumps(stats))
    with open(d / "train_all.meta.jsonl", "w") as f:
        f.writelines(json.dumps({"sample_id": f"tr{i}", "user_id": "u0", **m}) + "\n" for i, m in enumerate(train))
    for split in ("test_p1", "test_p2"):
        with open(d / f"{split}.jsonl", "w") as rec, open(d / f"{split}.meta.jsonl", "w") as meta:
            for i, (hist, label, _, _) in enumerate(cases):
                rec.write(json.dumps({"system": "", "instruction": "?", "input": "", "output": label}) + "\n")
                meta.write(json.dumps({"sample_id": f"{split}-{i}", "user_id": f"u{i}", "label": label,
                                       "label_id": names.index(label), "history": hist}) + "\n")
    return d
