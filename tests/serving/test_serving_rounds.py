"""Which model a run serves: its last B-tune round's (final/, else the model it trained on + its adapter), the
model `make eval` scores as behaviorlm; with BTUNE_ROUNDS > 1 that is round<r>/'s, not round 1's final/."""
from __future__ import annotations

from pathlib import Path

import pytest

from serving.run import ServingError, is_own_model, resolve_model


def _model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def _adapter(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    return path


def test_one_round_serves_final_else_pi_ref_with_the_adapter(tmp_path):
    pi_ref, btune = _model(tmp_path / "pi_ref"), _adapter(tmp_path / "btune")
    assert resolve_model(tmp_path, None, None) == (pi_ref, btune)
    final = _model(tmp_path / "final")
    assert resolve_model(tmp_path, None, None) == (final, None)
    assert is_own_model(tmp_path, final, None) and is_own_model(tmp_path, pi_ref, btune)


def test_the_last_round_is_served_and_is_the_evaluated_model(tmp_path):
    _model(tmp_path / "pi_ref"), _adapter(tmp_path / "btune")
    final1 = _model(tmp_path / "final")
    btune2 = _adapter(tmp_path / "round2" / "btune")
    assert resolve_model(tmp_path, None, None) == (final1, btune2)
    assert is_own_model(tmp_path, final1, btune2) and not is_own_model(tmp_path, final1, None)
    final2 = _model(tmp_path / "round2" / "final")
    btune3 = _adapter(tmp_path / "round3" / "btune")
    assert resolve_model(tmp_path, None, None) == (final2, btune3)
    final3 = _model(tmp_path / "round3" / "final")
    assert resolve_model(tmp_path, None, None) == (final3, None)
    assert is_own_model(tmp_path, final3, None) and not is_own_model(tmp_path, final1, None)


def test_a_round_without_its_base_says_what_is_missing(tmp_path):
    _adapter(tmp_path / "round2" / "btune")
    with pytest.raises(ServingError, match=r"neither round2/final/ nor final/ \+ round2/btune/"):
        resolve_model(tmp_path, None, None)
