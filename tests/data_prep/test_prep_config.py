"""PrepareConfig is the one declaration of each prepare default: the command line takes them from it."""
from dataclasses import fields

import pytest

from cli import UsageError
from data_prep.cli import build_parser, prepare_config
from data_prep.config import PrepareConfig

PAPER = {"history_len": 20, "train_cap": 200_000, "valid_cap": 50_000, "test_cap": 50_000, "p2_per_behavior": 500,
         "anchor_threshold": 0.01, "head_threshold": 0.05, "eps": 0.05, "seed": 42}


def parse(*extra):
    return build_parser().parse_args(["prepare", "--out", "o", "--synthetic", *extra])


def test_defaults_are_the_papers():
    config = PrepareConfig()
    assert {k: getattr(config, k) for k in PAPER} == PAPER


def test_the_command_line_defaults_are_the_dataclass_defaults():
    assert prepare_config(parse()) == PrepareConfig()


def test_every_field_is_an_option_with_its_default_in_the_help():
    sub = build_parser()._subparsers._group_actions[0].choices["prepare"]
    actions = {a.dest: a for a in sub._actions}
    for f in fields(PrepareConfig):
        action = actions[f.name]
        assert action.default == f.default and action.help.startswith(f.metadata["help"])
    assert actions["train_cap"].help.endswith("(default: 200000)")
    assert actions["split_ratios"].help.endswith("(default: 0.8,0.1,0.1)")
    assert actions["aux_path"].option_strings == ["--aux"]


@pytest.mark.parametrize("word", ["none", "None", "all"])
def test_none_means_no_cap(word):
    assert prepare_config(parse("--train-cap", word, "--test-cap", "7")) == PrepareConfig(train_cap=None, test_cap=7)


def test_options_parse_into_their_fields():
    config = prepare_config(parse("--split-ratios", "0.7,0.2,0.1", "--aux", "a.jsonl", "--eps", "0"))
    assert config.split_ratios == (0.7, 0.2, 0.1) and config.aux_path == "a.jsonl" and config.eps == 0
    with pytest.raises(UsageError, match="split-ratios"):
        parse("--split-ratios", "0.7,0.3")
