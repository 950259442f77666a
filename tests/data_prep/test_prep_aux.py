"""Auxiliary conversations (paper 3.2): formats, the length filter, eps sizing, seeded sampling."""
import json

import pytest

from data_prep.config import PrepareConfig
from data_prep.reading.events import PrepareError
from data_prep.sampling.auxiliary import aux_sample_size, conversation_chars, normalize_conversation, select_aux


def conv(chars_q, chars_a):
    return {"conversations": [{"from": "human", "value": "q" * chars_q}, {"from": "gpt", "value": "a" * chars_a}]}


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return path


def test_messages_layout_is_normalized_to_from_value():
    item = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello!"}]}
    assert normalize_conversation(item) == [{"from": "system", "value": "Be brief."},
                                            {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]


@pytest.mark.parametrize("item", [
    {"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]},   # starts with gpt
    {"conversations": [{"from": "human", "value": "x"}]},                                # no answer
    {"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "  "}]},  # empty turn
    {"conversations": [{"from": "human", "value": "x"}, {"from": "robot", "value": "y"}]},  # unknown role
    {"text": "no turns"}, ["not", "a", "dict"],
])
def test_conversations_llamafactory_would_reject_are_malformed(item):
    assert normalize_conversation(item) is None


def test_eps_sizing():
    assert aux_sample_size(0.05, 200_000) == 10_000
    assert aux_sample_size(0.05, 10) == 1          # rounded up: any eps > 0 keeps at least one
    assert aux_sample_size(0.1, 30) == 3
    assert aux_sample_size(0, 1000) == 0
    with pytest.raises(PrepareError, match="eps must be >= 0"):
        PrepareConfig(eps=-0.1)   # checked once, in the config


def test_length_filter_and_sampling(tmp_path):
    short = [conv(20, 30 + i) for i in range(30)]               # 50..79 characters
    long = [conv(100, 100) for _ in range(7)]                    # 200 characters
    path = write_jsonl(tmp_path / "aux.jsonl", short + long + [{"bad": 1}])
    sel = select_aux(path, eps=0.1, n_anchor=100, prompt_chars_median=100, seed=0, max_length_ratio=1.5)
    assert sel.stats["max_chars"] == 150
    assert (sel.stats["read"], sel.stats["malformed"], sel.stats["too_long"], sel.stats["available"]) == (38, 1, 7, 30)
    assert len(sel.conversations) == sel.stats["written"] == 10 and sel.stats["shortfall"] == 0
    assert all(conversation_chars(c) <= 150 for c in sel.conversations)
    assert len({json.dumps(c) for c in sel.conversations}) == 10      # without replacement
    again = select_aux(path, eps=0.1, n_anchor=100, prompt_chars_median=100, seed=0)
    other = select_aux(path, eps=0.1, n_anchor=100, prompt_chars_median=100, seed=1)
    assert again.conversations == sel.conversations and other.conversations != sel.conversations


def test_shortfall_takes_everything_available(tmp_path):
    path = tmp_path / "aux.json"                                   # a JSON list is accepted too
    path.write_text(json.dumps([conv(5, 5) for _ in range(4)] + [conv(500, 5)]), encoding="utf-8")
    sel = select_aux(path, eps=0.5, n_anchor=20, prompt_chars_median=100, seed=0)
    assert sel.stats["requested"] == 10 and sel.stats["written"] == 4 and sel.stats["shortfall"] == 6
    assert sel.stats["too_long"] == 1 and len(sel.conversations) == 4


def test_eps_zero_does_not_read_the_file(tmp_path):
    sel = select_aux(tmp_path / "missing.jsonl", eps=0, n_anchor=500, prompt_chars_median=100, seed=0)
    assert sel.conversations == [] and sel.stats["requested"] == 0


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(PrepareError, match="not found"):
        select_aux(tmp_path / "missing.jsonl", eps=0.1, n_anchor=50, prompt_chars_median=100, seed=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": []}\n{oops\n', encoding="utf-8")
    with pytest.raises(PrepareError, match="line 2"):
        select_aux(bad, eps=0.1, n_anchor=50, prompt_chars_median=100, seed=0)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"conversations": [{"from": "human", "value": "caf\xe9"}]}\n')
    with pytest.raises(PrepareError, match="UTF-8"):
        select_aux(latin, eps=0.1, n_anchor=50, prompt_chars_median=100, seed=0)


def test_alpaca_files_are_read_and_other_layouts_are_one_line_errors(tmp_path):
    from data_prep.sampling.auxiliary import load_aux

    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi.", "input": "", "output": "Hi!", "system": "Be brief."},
        {"instruction": "No answer.", "input": "", "output": ""}])                     # malformed: empty answer
    pool = load_aux(alpaca)
    assert pool.format == "alpaca" and pool.read == 3
    assert pool.conversations == [
        [{"from": "human", "value": "Add the numbers.\n\n2 and 3"}, {"from": "gpt", "value": "5"}],
        [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Say hi."},
         {"from": "gpt", "value": "Hi!"}]]
    other = write_jsonl(tmp_path / "other.jsonl", [{"prompt": "x", "completion": "y"}])
    with pytest.raises(PrepareError, match=r"other.jsonl: not an auxiliary conversation file \(first record: "
                                           r"completion, prompt\); accepted: ShareGPT"):
        load_aux(other)


def test_the_asked_and_achieved_ratio_and_sampling_with_replacement(tmp_path):
    from data_prep.sampling.auxiliary import load_aux, ratio_line

    pool = load_aux(write_jsonl(tmp_path / "small.jsonl", [conv(5, 5) for _ in range(4)]))
    short = select_aux(pool, eps=0.1, n_anchor=100, prompt_chars_median=100, seed=1)
    assert (short.stats["requested"], short.stats["written"], short.stats["distinct"]) == (10, 4, 4)
    assert short.stats["eps_achieved"] == 0.04 and short.stats["shortfall"] == 6
    assert "eps 0.1 asked (10), 0.04 achieved" in ratio_line(short.stats) and "AUX_REPEAT=1" in ratio_line(short.stats)
    full = select_aux(pool, eps=0.1, n_anchor=100, prompt_chars_median=100, seed=1, repeat=True)
    assert (full.stats["written"], full.stats["distinct"], full.stats["repeated"]) == (10, 4, 6)
    assert full.stats["eps_achieved"] == 0.1 and full.stats["shortfall"] == 0 and len(full.conversations) == 10
    assert "6 repeats" in ratio_line(full.stats) and "short" not in ratio_line(full.stats)
    again = select_aux(pool, eps=0.1, n_anchor=100, prompt_chars_median=100, seed=1, repeat=True)
    assert again.conversations == full.conversations                                  # seeded
