"""Every command line has one shape (cli): a command table, options made from config dataclasses, and one
`error: <message>` line with exit code 2 for a bad argument or bad input, whatever the package."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cli

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Toy:
    count: int = field(default=3, metadata={"type": cli.positive_int, "help": "how many"})
    name: str = field(default="x", metadata={"help": "what"})
    hidden: str = "not an option"

    def __post_init__(self):
        if self.name == "bad":
            raise ValueError("name may not be\n   bad")


def _toy_table(seen: list) -> dict:
    def handle(args):
        seen.append(cli.config_from_args(Toy, args))
        return 0

    def fail(args):
        raise cli.UsageError("no such\n file")

    return {"go": cli.Command("use the toy settings", lambda p: cli.add_config(p, Toy), handle),
            "fail": cli.Command("always fails", lambda p: None, fail)}


def _run(table, argv):
    return cli.run(cli.build_parser("toy", "a toy", table), table, argv)


def test_settings_fields_become_options_and_come_back_checked(capsys):
    seen: list = []
    table = _toy_table(seen)
    assert _run(table, ["go"]) == 0 and seen[-1] == Toy()
    assert _run(table, ["go", "--count", "5", "--name", "y"]) == 0 and seen[-1] == Toy(count=5, name="y")
    help_text = cli.build_parser("toy", "a toy", table)._subparsers._group_actions[0].choices["go"].format_help()
    assert "how many (default: 3)" in help_text and "--hidden" not in help_text
    assert _run(table, ["go", "--name", "bad"]) == 2
    assert capsys.readouterr().err == "error: name may not be bad\n"


@pytest.mark.parametrize("argv, words", [(["fail"], "error: no such file"),
                                         (["go", "--count", "0"], "--count: value must be a positive integer"),
                                         (["go", "--nope"], "unrecognized arguments: --nope"),
                                         (["nothing"], "invalid choice")])
def test_every_error_is_one_line_and_exit_code_2(capsys, argv, words):
    assert _run(_toy_table([]), argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err


# One bad argument and one missing input per package with a command line; a new package adds its own.
BAD = {
    "data_prep": [["prepare", "--out", "{tmp}/o", "--synthetic", "--history-len", "x"],
                  ["prepare", "--out", "{tmp}/o", "--input", "{tmp}/missing.csv"]],
    "evaluation": [["predict", "--model", "m", "--template", "t", "--dataset-dir", "{tmp}", "--dataset", "test_p1",
                    "--out", "{tmp}/o", "--batch-size", "0"],
                   ["baseline", "--dataset-dir", "{tmp}/missing", "--kind", "markov", "--dataset", "test_p1",
                    "--out", "{tmp}/o"]],
    "serving": [["predict", "--run-dir", "{tmp}", "--template", "t", "--events", "e", "--next", "n", "--out", "o",
                 "--top-k", "0"],
                ["template-eval", "--run-dir", "{tmp}/missing", "--template", "t"]],
    "sasrec": [["sample-efficiency", "--dataset-dir", "{tmp}", "--out", "{tmp}/o", "--sizes", "0"],
               ["train", "--dataset-dir", "{tmp}", "--out", "{tmp}/o", "--config", "{tmp}/missing.yaml"]],
    "selection": [["select", "--scores", "{tmp}", "--dataset-dir", "{tmp}", "--out", "{tmp}/o", "--F", "0"],
                  ["select", "--scores", "{tmp}/missing", "--dataset-dir", "{tmp}", "--out", "{tmp}/o"]],
    "scoring": [["score", "--model", "m", "--template", "t", "--dataset-dir", "{tmp}", "--out", "{tmp}/o",
                 "--batch-size", "0"],
                ["token-lengths", "--dataset-dir", "{tmp}/missing", "--model", "{tmp}/missing", "--template", "t"]],
}


def test_every_package_command_line_is_in_the_table():
    with_main = {p.parent.name for p in ROOT.glob("*/__main__.py")} - {"pipeline"}
    assert set(BAD) == with_main


@pytest.mark.parametrize("package, case", [(p, i) for p in BAD for i in range(len(BAD[p]))])
def test_every_command_line_answers_a_bad_argument_with_one_error_line(tmp_path, capsys, package, case):
    main = importlib.import_module(f"{package}.__main__").main
    assert main([w.format(tmp=tmp_path) for w in BAD[package][case]]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("error: ")] == err[-1:] and "usage:" not in "\n".join(err)
    assert main(["no-such-command"]) == 2 and capsys.readouterr().err.startswith("error: ")


def test_the_pipeline_answers_a_bad_word_with_one_error_line(tmp_path, capsys):
    from pipeline.__main__ import main

    run = f"RUN_DIR={tmp_path}"   # not prepared: a bad value is named before the missing dataset
    for argv, words in ((["no-such-target"], "unknown target(s) no-such-target"),
                        (["prepare", "NOT_A_VARIABLE=1"], "unknown variable(s): NOT_A_VARIABLE"),
                        (["--no-such-flag", "prepare"], "unrecognized arguments: --no-such-flag"),
                        (["select", "F=abc", run], "F='abc'"),
                        (["prepare", "HISTORY_LEN=-3", "--dry-run", run], "history-len must be >= 1"),
                        (["predict", run], "EVENTS and NEXT are needed"),
                        (["a-tune", run], "run make prepare first")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err
