"""Where a run setting comes from: NAME=value arguments over the environment over the declared default."""
from __future__ import annotations

import pytest

from pipeline.settings import Settings, SettingsError


def test_arguments_override_the_environment_which_overrides_defaults():
    s = Settings.from_sources(["EPS=0.2"], {"EPS": "0.1", "SEED": "7", "UNRELATED": "x"})
    assert s["EPS"] == "0.2" and s["SEED"] == "7" and s["MODEL"] == "smollm2-135m-instruct"
    with pytest.raises(SettingsError, match="unknown variable"):
        Settings.from_sources(["NOT_A_SETTING=1"], {})


def test_a_terminal_width_in_COLUMNS_is_not_a_column_map():
    assert Settings.from_sources([], {"COLUMNS": "80"})["COLUMNS"] == ""
    assert Settings.from_sources([], {"COLUMNS": "user=uid,time=ts"})["COLUMNS"] == "user=uid,time=ts"
    # given on the command line it is the user's word: passed on (prepare refuses it with one line)
    assert Settings.from_sources(["COLUMNS=80"], {})["COLUMNS"] == "80"
