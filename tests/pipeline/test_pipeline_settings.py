"""Where a run setting comes from: NAME=value arguments over the environment over the declared default."""
from __future__ import annotations

import pytest

from pipeline.settings import VariableError, Variables


def test_arguments_override_the_environment_which_overrides_defaults():
    s = Variables.from_sources(["EPS=0.2"], {"EPS": "0.1", "SEED": "7", "UNRELATED": "x"})
    assert s["EPS"] == "0.2" and s["SEED"] == "7" and s["MODEL"] == "smollm2-135m-instruct"
    with pytest.raises(VariableError, match="unknown variable"):
        Variables.from_sources(["NOT_A_SETTING=1"], {})


def test_a_terminal_width_in_COLUMNS_is_not_a_column_map():
    assert Variables.from_sources([], {"COLUMNS": "80"})["COLUMNS"] == ""
    assert Variables.from_sources([], {"COLUMNS": "user=uid,time=ts"})["COLUMNS"] == "user=uid,time=ts"
    # given on the command line it is the user's word, refused as a column map before anything runs
    with pytest.raises(VariableError, match="COLUMNS: --columns: '80' is not of the form key=column"):
        Variables.from_sources(["COLUMNS=80"], {})


def test_prepare_takes_a_lake_directory_and_reruns_when_a_part_changes(tmp_path):
    from prep_lake import write_lake

    from pipeline.graph import Runner
    from pipeline.layout import Layout
    from pipeline.stages import prepare

    _, lake = write_lake(tmp_path, n_users=6, n_days=2)
    s = Variables({"RUN_DIR": str(tmp_path / "run"), "INPUT": str(lake)})
    stage = prepare(s, Layout.of(s))
    parts = sorted(p for p in lake.rglob("part-*") if p.is_file())
    assert stage.inputs == parts and "--input" in stage.command and str(lake) in stage.command
    runner = Runner(tmp_path / "digests.json", dry_run=True)
    before = runner.cache.digests(stage.inputs)
    parts[0].write_bytes(parts[0].read_bytes() + b"\n")
    assert runner.cache.digests(stage.inputs) != before

    uri = Variables({"RUN_DIR": str(tmp_path / "run"), "INPUT": "s3://bucket/events/"})
    assert prepare(uri, Layout.of(uri)).inputs == [] and "s3://bucket/events/" in prepare(uri, Layout.of(uri)).command
    with pytest.raises(VariableError, match="INPUT: .*no such file, directory or glob match"):
        missing = Variables({"RUN_DIR": str(tmp_path / "run"), "INPUT": str(tmp_path / "nowhere")})
        prepare(missing, Layout.of(missing))
