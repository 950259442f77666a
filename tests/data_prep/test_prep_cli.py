"""prepare() end to end: dataset_dir contracts, stats counts, byte-identical reruns, atomic writes, the CLI."""
import calendar
import csv as csv_module
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_prep.cli import main
from data_prep.config import PrepareConfig
from data_prep.prepare import prepare
from data_prep.reading.events import PrepareError, events_from_arrays
from data_prep.rendering.prompts import INSTRUCTION_TEMPLATES, SYSTEM_PROMPT
from data_prep.writing.outputs import BEHAVIOR_STEMS, PACKAGE_DATASET_INFO, atomic_open, json_line, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
T0 = calendar.timegm((2024, 3, 4, 0, 0, 0))  # Monday
NAMES = [f"behavior {k:02d}" for k in range(10)]
NAMES[2] = 'Reading "news" \\ in a café'       # needs JSON escaping and non-ASCII output
PROBS = np.array([0.45, 0.2, 0.12, 0.08, 0.06, 0.04, 0.025, 0.015, 0.01, 0.0])  # the last: see event_rows


def event_rows(n_users=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(8, 60))
        times = T0 + np.sort(rng.choice(30 * 86400, n, replace=False))
        places = rng.choice(["home", "work", "plaza \u00e9t\u00e9"], n)
        for t, p, b in zip(times, places, rng.choice(NAMES, n, p=PROBS)):
            rows.append((f"u{u:02d}", int(t), str(p), str(b)))
    # a user too short to give any sample, the only one doing the last behavior (no training sample)
    rows.append(("u99", T0, "home", NAMES[-1]))
    return rows


def make_table(rows):
    u, t, p, b = zip(*rows)
    return events_from_arrays(list(u), np.array(t, dtype=np.int64), list(p), list(b))


@pytest.fixture(scope="module")
def aux_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("aux") / "aux.jsonl"
    items = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                           {"role": "assistant", "content": "Answer. " * (1 + i % 5)}]} for i in range(40)]
    items.append({"conversations": [{"from": "human", "value": "x" * 5000}, {"from": "gpt", "value": "y"}]})
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return path


CONFIG = {"history_len": 5, "seed": 3, "train_cap": 300, "valid_cap": 60, "test_cap": 40, "p2_per_behavior": 15,
          "eps": 0.05}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, aux_file):
    out = tmp_path_factory.mktemp("run") / "data"
    table = make_table(event_rows())
    stats = prepare(table, out, PrepareConfig(aux_path=str(aux_file), **CONFIG), log=lambda *a, **k: None)
    return out, stats, table


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_dataset_dir_files_and_record_layout(prepared):
    out, stats, table = prepared
    assert (out / "dataset_info.json").read_bytes() == PACKAGE_DATASET_INFO.read_bytes()
    registry = json.loads((out / "dataset_info.json").read_text())
    for stem in BEHAVIOR_STEMS:
        records, meta = read_jsonl(out / f"{stem}.jsonl"), read_jsonl(out / f"{stem}.meta.jsonl")
        assert len(records) == len(meta) == stats["samples"][stem]
        assert registry[f"behavior_{stem}"]["file_name"] == f"{stem}.jsonl"
        for rec, m in zip(records, meta):
            assert list(rec) == ["system", "instruction", "input", "output"]
            assert rec["system"] == SYSTEM_PROMPT and rec["input"] == "" and rec["output"] == m["label"]
            assert m["label"] == table.behaviors[m["label_id"]]
            assert len(m["history"]) == 5 and len(m["next_context"]) == 3
            assert rec["instruction"].startswith(INSTRUCTION_TEMPLATES[m["template_id"]].split("{")[0])
            nw, nh, npl = m["next_context"]
            assert f"are ({nw}, {nh}, {npl}), respectively" in rec["instruction"]
            assert ", ".join(table.behaviors) in rec["instruction"]
    assert {m["template_id"] for m in read_jsonl(out / "train_all.meta.jsonl")} == {0, 1, 2}


def test_lines_are_exactly_what_json_dumps_writes(prepared):
    out, stats, _ = prepared
    for stem in BEHAVIOR_STEMS:
        for name in (f"{stem}.jsonl", f"{stem}.meta.jsonl"):
            for line in (out / name).read_text(encoding="utf-8").splitlines(keepends=True):
                assert json_line(json.loads(line)) == line
    lengths = [len(r["system"]) + len(r["instruction"]) + len(r["output"]) for r in read_jsonl(out / "train_all.jsonl")]
    assert stats["median_prompt_chars"] == float(np.median(lengths))


def test_meta_history_matches_the_event_log(prepared):
    out, _, _ = prepared
    by_user = {}
    for u, t, p, b in sorted(event_rows()):
        by_user.setdefault(u, []).append((t, p, b))
    for m in read_jsonl(out / "test_p1.meta.jsonl")[:20]:
        user, pos = m["sample_id"].split("#")
        events = by_user[m["user_id"]]
        assert user == m["user_id"]
        assert m["history"] == [b for _, _, b in events[int(pos) - 5:int(pos)]]
        assert m["label"] == events[int(pos)][2] and m["next_context"][2] == events[int(pos)][1]


def test_anchor_and_tail_medium_are_the_right_subsets_of_train_all(prepared):
    out, stats, _ = prepared
    train = {m["sample_id"]: m for m in read_jsonl(out / "train_all.meta.jsonl")}
    anchor = read_jsonl(out / "anchor.meta.jsonl")
    tail_medium = read_jsonl(out / "tail_medium.meta.jsonl")
    assert all(m["sample_id"] in train and m["label"] in stats["anchors"] and m["is_anchor"] for m in anchor)
    assert len(anchor) == sum(m["is_anchor"] for m in train.values())
    assert all(m["freq_group"] != "head" and m["sample_id"] in train for m in tail_medium)
    assert len(tail_medium) == sum(m["freq_group"] != "head" for m in train.values())
    # the same sample carries the same rendering in every training dataset
    lines = dict(zip((m["sample_id"] for m in read_jsonl(out / "train_all.meta.jsonl")),
                     (out / "train_all.jsonl").read_text().splitlines()))
    for m, line in zip(anchor, (out / "anchor.jsonl").read_text().splitlines()):
        assert lines[m["sample_id"]] == line


def test_no_user_shared_between_training_validation_and_tests(prepared):
    out, _, _ = prepared
    users = {stem: {m["user_id"] for m in read_jsonl(out / f"{stem}.meta.jsonl")} for stem in BEHAVIOR_STEMS}
    assert not users["train_all"] & (users["valid"] | users["test_p1"] | users["test_p2"])
    assert not users["valid"] & (users["test_p1"] | users["test_p2"])
    p1 = {m["sample_id"] for m in read_jsonl(out / "test_p1.meta.jsonl")}
    assert not p1 & {m["sample_id"] for m in read_jsonl(out / "test_p2.meta.jsonl")}


def test_stats_counts(prepared):
    out, stats, _ = prepared
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk == json.loads(json.dumps(stats))
    names = [b["name"] for b in stats["behaviors"]]
    assert names == sorted(NAMES) and [b["label_id"] for b in stats["behaviors"]] == list(range(10))
    assert sum(b["train_count"] for b in stats["behaviors"]) == stats["available_samples"]["train"]
    assert stats["behaviors_without_train_samples"] == [NAMES[-1]]
    never = stats["behaviors"][-1]
    assert never["freq_group"] == "tail" and not never["is_anchor"] and never["train_count"] == 0
    assert set(stats["head"]) | set(stats["medium"]) | set(stats["tail"]) == set(names)
    assert set(stats["anchors"]) | set(stats["tails"]) == set(names)
    p2 = read_jsonl(out / "test_p2.meta.jsonl")
    assert stats["protocol2_counts"] == {n: sum(m["label"] == n for m in p2) for n in names}
    assert max(stats["protocol2_counts"].values()) == 15 and stats["protocol2_counts"][NAMES[-1]] == 0
    short = sum(c < 15 for c in stats["protocol2_counts"].values())
    assert short >= 1 and stats["protocols"]["test_p2"]["balance"] == f"not balanced: {short} of 10 behaviors short"
    assert stats["dropped"]["user_too_short_users"] == 1 and stats["dropped"]["user_too_short"] == 1
    assert stats["samples"]["aux"] == -(-stats["samples"]["anchor"] * 5 // 100)
    assert stats["dropped"]["aux_too_long"] == 1
    assert stats["config"]["seed"] == 3 and stats["config"]["train_cap"] == 300
    assert stats["samples"]["train_all"] == 300 and stats["samples"]["test_p1"] == 40


def test_anchor_cap_takes_a_seeded_subset_and_sizes_aux_from_it(tmp_path, aux_file, prepared):
    full_out, full_stats, table = prepared
    out = tmp_path / "capped"
    cap = full_stats["samples"]["anchor"] // 3
    stats = prepare(table, out, PrepareConfig(aux_path=str(aux_file), anchor_cap=cap, **CONFIG),
                    log=lambda *a, **k: None)
    anchor = read_jsonl(out / "anchor.meta.jsonl")
    assert len(anchor) == stats["samples"]["anchor"] == cap
    full_ids = [m["sample_id"] for m in read_jsonl(full_out / "anchor.meta.jsonl")]
    # a subset of the uncapped anchor set, and not the anchors of the first users (seeded random order)
    assert [m["sample_id"] for m in anchor] == full_ids[:cap]
    assert sorted(full_ids)[:cap] != sorted(m["sample_id"] for m in anchor)
    assert stats["samples"]["aux"] == math.ceil(CONFIG["eps"] * cap)
    # the cap touches only the A-tune set: the other training datasets and the frequencies are unchanged
    assert stats["samples"]["train_all"] == full_stats["samples"]["train_all"]
    def without_anchor_counts(behaviors):
        return [{**b, "samples": {k: v for k, v in b["samples"].items() if k != "anchor"}} for b in behaviors]
    assert without_anchor_counts(stats["behaviors"]) == without_anchor_counts(full_stats["behaviors"])


def test_aux_file_is_sharegpt_from_value(prepared):
    out, stats, _ = prepared
    aux = read_jsonl(out / "aux.jsonl")
    assert len(aux) == stats["samples"]["aux"] > 0
    assert all([t["from"] for t in a["conversations"]] == ["human", "gpt"] for a in aux)


def test_same_inputs_and_seed_give_byte_identical_outputs(prepared, tmp_path, aux_file):
    out, _, _ = prepared
    prepare(make_table(event_rows()), tmp_path, PrepareConfig(aux_path=str(aux_file), **CONFIG),
            log=lambda *a, **k: None)
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(p.name for p in tmp_path.iterdir())
    for name in files:
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "x.jsonl"
    write_jsonl(target, [{"a": 1}])

    def records():
        yield {"a": 2}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(target, records())
    assert target.read_text() == '{"a": 1}\n'              # the old file is untouched
    assert os.listdir(tmp_path) == ["x.jsonl"]              # and no temp file is left behind
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "new.json") as f:
        f.write("{")
        raise RuntimeError
    assert os.listdir(tmp_path) == ["x.jsonl"]


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "data_prep", "prepare", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, check=False)


def test_cli_prepares_a_csv_log(tmp_path, aux_file, capsys):
    csv = tmp_path / "events.csv"
    with open(csv, "w", encoding="utf-8", newline="") as f:
        writer = csv_module.writer(f)
        writer.writerow(["user_id", "timestamp", "place", "behavior"])
        writer.writerows(event_rows())
    out = tmp_path / "run" / "data"
    assert main(["prepare", "--input", str(csv), "--out", str(out), "--history-len", "5", "--test-cap", "30",
                 "--p2-per-behavior", "10", "--aux", str(aux_file)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["source"]["kind"] == "events" and stats["samples"]["test_p1"] == 30
    assert f"train_all={stats['samples']['train_all']}" in capsys.readouterr().out
    # the same log through the library gives the same datasets
    lib = tmp_path / "lib"
    prepare(make_table(event_rows()), lib, PrepareConfig(history_len=5, test_cap=30, p2_per_behavior=10,
                                                         aux_path=str(aux_file)), log=lambda *a, **k: None)
    for stem in BEHAVIOR_STEMS:
        assert (lib / f"{stem}.jsonl").read_bytes() == (out / f"{stem}.jsonl").read_bytes()


@pytest.mark.parametrize("args, words", [
    (["--input", "{tmp}/nope.csv"], "nope.csv"),
    (["--synthetic", "--train-cap", "0"], "train-cap"),
    (["--synthetic", "--users", "0"], "users"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, args, words):
    out = tmp_path / "o"
    code = main(["prepare", "--out", str(out), *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and words in err[-1]
    assert not out.exists()


def test_cli_synthetic_end_to_end(tmp_path):
    out = tmp_path / "data"
    result = run_cli("--synthetic", "--users", "30", "--days", "4", "--out", str(out), "--test-cap", "50",
                     "--p2-per-behavior", "5")                  # eps 0.05 with the shipped conversations
    assert result.returncode == 0, result.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["source"]["kind"] == "synthetic" and stats["samples"]["train_all"] > 0
    assert len(stats["behaviors"]) == stats["events"]["behaviors"]
    assert len(read_jsonl(out / "train_all.meta.jsonl")) == stats["samples"]["train_all"]
    aux = stats["aux"]
    assert "shipped default" in aux["path"] and aux["read"] >= 300
    assert stats["samples"]["aux"] == min(aux["requested"], aux["available"]) > 0
    assert aux["requested"] == -(-stats["samples"]["anchor"] * 5 // 100)


def test_a_missing_aux_file_fails_before_anything_is_written(tmp_path):
    with pytest.raises(PrepareError, match="not found"):
        prepare(make_table(event_rows()), tmp_path / "o", PrepareConfig(history_len=5, aux_path=str(tmp_path / "x")))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("balance", [0.5, 1.0])
def test_anchor_balance_takes_each_anchors_share_of_the_cap_from_its_own_seeded_order(tmp_path, aux_file,
                                                                                        prepared, balance):
    full_out, full_stats, table = prepared
    anchors = [b for b in full_stats["behaviors"] if b["is_anchor"]]
    weight = {b["name"]: b["train_freq"] ** (1 - balance) for b in anchors}
    # the largest cap whose every share the uncapped anchor set can fill
    cap = min(int(b["samples"]["anchor"] * sum(weight.values()) / weight[b["name"]]) for b in anchors)
    assert cap >= 2 * len(anchors)
    stats = prepare(table, tmp_path, PrepareConfig(aux_path=str(aux_file), anchor_cap=cap, anchor_balance=balance,
                                                   **CONFIG), log=lambda *a, **k: None)
    got = {b["name"]: b["samples"]["anchor"] for b in stats["behaviors"] if b["is_anchor"]}
    assert sum(got.values()) == stats["samples"]["anchor"] == cap
    for name, count in got.items():      # largest remainders: within one sample of the exact share
        assert abs(count - cap * weight[name] / sum(weight.values())) < 1, name
    head = max(got, key=lambda n: weight[n])
    assert got[head] < cap * max(b["train_freq"] for b in anchors) / sum(b["train_freq"] for b in anchors)
    # each behavior's samples are the first of its own in the uncapped set's seeded order
    full = read_jsonl(full_out / "anchor.meta.jsonl")
    for name, count in got.items():
        assert [m["sample_id"] for m in read_jsonl(tmp_path / "anchor.meta.jsonl") if m["label"] == name] == \
            [m["sample_id"] for m in full if m["label"] == name][:count]
    assert stats["samples"]["aux"] == math.ceil(CONFIG["eps"] * cap)
    assert stats["samples"]["train_all"] == full_stats["samples"]["train_all"]


def test_anchor_balance_says_when_an_anchor_has_fewer_samples_than_its_share(tmp_path, aux_file, prepared):
    full_out, full_stats, table = prepared
    cap = full_stats["samples"]["anchor"]      # equal shares of every anchor sample: the rarest run short
    stats = prepare(table, tmp_path, PrepareConfig(aux_path=str(aux_file), anchor_cap=cap, anchor_balance=1.0,
                                                   **CONFIG), log=lambda *a, **k: None)
    assert stats["samples"]["anchor"] < cap
    assert any(w.startswith(f"anchor-balance: {stats['samples']['anchor']} anchor samples of anchor-cap {cap}")
               for w in stats["warnings"])


@pytest.mark.parametrize("kwargs, message", [
    ({"anchor_balance": 0.5}, "anchor-balance needs anchor-cap"),
    ({"anchor_balance": 1.5, "anchor_cap": 10}, "anchor-balance must be in [0, 1], got 1.5"),
    ({"anchor_balance": -0.1, "anchor_cap": 10}, "anchor-balance must be in [0, 1], got -0.1")])
def test_anchor_balance_rejects_bad_values_in_one_line(kwargs, message):
    with pytest.raises(PrepareError, match=message.replace("[", r"\[").replace("]", r"\]")):
        PrepareConfig(**kwargs)
