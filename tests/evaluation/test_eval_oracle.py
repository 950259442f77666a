"""The oracle baseline on data prepared from the synthetic log: the generator's own law gives the test labels a
higher likelihood than any other baseline, and data from anywhere else gets a one-line refusal."""
import json

import numpy as np
import pytest
from baseline_logs import write_dataset
from prediction_checks import assert_pred_is_argmax

from data_prep.cli import main as prepare_main
from data_prep.synthetic import DEMO_BEHAVIORS
from data_prep.synthetic.generator import SyntheticError
from data_prep.synthetic.oracle import oracle_probabilities
from data_prep.writing.outputs import read_jsonl
from evaluation.__main__ import main
from evaluation.baselines import KINDS, run_baseline


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle") / "data"
    assert prepare_main(["prepare", "--synthetic", "--out", str(out), "--users", "120", "--days", "10",
                         "--behaviors", ",".join(DEMO_BEHAVIORS), "--history-len", "4", "--seed", "3",
                         "--test-cap", "300", "--p2-per-behavior", "20"]) == 0
    return out


def _mean_log_p_label(rows):
    return float(np.mean([np.log(r["p_label"]) for r in rows]))


@pytest.mark.parametrize("split", ["test_p1", "test_p2"])
def test_the_oracle_is_the_best_predictor_of_the_labels(synthetic_data, tmp_path, split):
    rows = {kind: read_jsonl(run_baseline(synthetic_data, kind, split, tmp_path / kind)) for kind in (*KINDS, "oracle")}
    assert_pred_is_argmax(rows["oracle"])
    assert len(rows["oracle"]) == len(rows["markov"]) > 100
    oracle = _mean_log_p_label(rows["oracle"])
    for kind in KINDS:
        assert oracle > _mean_log_p_label(rows[kind]) + 0.1, kind
    meta = read_jsonl(synthetic_data / f"{split}.meta.jsonl")
    assert [r["label"] for r in rows["oracle"]] == [m["label"] for m in meta]


def test_the_oracle_needs_the_synthetic_log(tmp_path, capsys):
    data = write_dataset(tmp_path)
    with pytest.raises(SyntheticError, match="synthetic"):
        run_baseline(data, "oracle", "test_p1", tmp_path / "oracle")
    assert main(["baseline", "--dataset-dir", str(data), "--kind", "oracle", "--dataset", "test_p1",
                 "--out", str(tmp_path / "oracle")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "prepare --synthetic" in err
    assert not (tmp_path / "oracle").exists()


def test_the_oracle_renormalizes_over_candidates_and_refuses_others(synthetic_data, tmp_path):
    stats = json.loads((synthetic_data / "stats.json").read_text())
    names = [b["name"] for b in sorted(stats["behaviors"], key=lambda b: b["label_id"])]
    meta = read_jsonl(synthetic_data / "test_p1.meta.jsonl")
    full = oracle_probabilities(stats["notes"]["synthetic"], names, meta)
    fewer = oracle_probabilities(stats["notes"]["synthetic"], names[:-2], meta)   # a log that lacks two behaviors
    assert np.allclose(fewer.sum(axis=1), 1.0)
    assert np.allclose(fewer, full[:, :-2] / full[:, :-2].sum(axis=1, keepdims=True))
    stats["notes"]["synthetic"]["behaviors"] = DEMO_BEHAVIORS[:6]
    data = tmp_path / "data"
    data.mkdir()
    for path in synthetic_data.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    (data / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(SyntheticError, match="not among the generated behaviors"):
        run_baseline(data, "oracle", "test_p1", tmp_path / "oracle")
