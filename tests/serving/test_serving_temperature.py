"""predict and serve apply the run's temperature (eval/behaviorlm/temperature.json, written by `make eval`'s
predict) of the prompt mode they use, fitted on the validation samples in that mode: their probabilities equal
softmax(eval log-probs / T) for the same sample, and say which T. The run's own model keeps its T when named by
--model; another model gets T = 1."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import build_tiny_run, protocol2_samples, serve_in_thread

from data_prep.prepared import load_prepared
from data_prep.rendering.prompts import rerender
from evaluation import metrics as M
from evaluation.__main__ import main as evaluation_main
from evaluation.temperature import calibration_subset, fit_temperature, scale
from serving.__main__ import main as serving_main
from serving.app import AppConfig, create_app
from serving.config import PredictionConfig, ServedModelConfig
from serving.predictor import Predictor, local_iso, result_line
from serving.prompting import MODES, Query, render_records, template_ids
from serving.run import load_run


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny run, evaluated as make eval does (test_p2 only), its temperature fitted on valid."""
    built = build_tiny_run(tmp_path_factory.mktemp("serving_t"))
    out = built["run"] / "eval" / "behaviorlm"
    assert evaluation_main(["predict", "--model", str(built["run"] / "final"), "--template", "smollm2",
                            "--dataset-dir", str(built["data"]), "--dataset", "test_p2", "--out", str(out),
                            "--device", "cpu", "--calib-samples", "16", "--calib-seed", "1"]) == 0
    record = json.loads((out / "temperature.json").read_text())
    return {**built, "rows": _jsonl(out / "test_p2.predictions.jsonl"), "T": record["temperature"],
            "record": record, "T_of": {mode: fit["temperature"] for mode, fit in record["modes"].items()}}


@pytest.fixture(scope="module")
def samples(tiny_run):
    """test_p2 samples with their raw events (serving_helpers.protocol2_samples)."""
    return protocol2_samples(tiny_run)


def _expected(row: dict, t: float) -> np.ndarray:
    return np.exp(scale(np.array(row["logprobs"]), t))


def _by_name(top: list[dict]) -> dict[str, float]:
    return {x["behavior"]: x["p"] for x in top}


def test_eval_fits_a_temperature_that_is_not_one(tiny_run):
    record = tiny_run["record"]
    assert record["n_samples"] == 16 and record["seed"] == 1 and record["nll_after"] <= record["nll_before"]
    for t in (tiny_run["T"], *tiny_run["T_of"].values()):
        assert abs(np.log(t)) > 0.05   # otherwise the comparisons below could not tell T from 1


def test_each_prompt_mode_has_the_t_fitted_on_its_own_prompts(tiny_run):
    """The validation subset, scored by serving's predictor in each mode, gives that mode's fit (its NLL before
    scaling tells the modes apart) and the T it is served with."""
    valid = load_prepared(tiny_run["data"], "valid")
    indices = calibration_subset(len(valid.meta), 16, 1).tolist()
    run = load_run(tiny_run["run"], "smollm2")
    predictor = Predictor(run, ServedModelConfig(batch_size=4), device="cpu")
    labels = [valid.candidates.index(valid.meta[i]["label"]) for i in indices]
    assert set(MODES) == set(tiny_run["T_of"])
    nll_before = {}
    for mode in MODES:
        lp = np.stack([predictor.logprobs([rerender(valid.records[i], valid.meta[i]["template_id"], t)
                                           for t in template_ids(mode)]).mean(axis=0) for i in indices])
        fit = tiny_run["record"]["modes"][mode]
        nll_before[mode] = fit["nll_before"]
        assert fit["nll_before"] == pytest.approx(M.nll(lp, labels), rel=1e-4)
        assert fit["temperature"] == pytest.approx(fit_temperature(lp, labels), rel=1e-3)
        assert run.temperature(mode) == fit["temperature"]
    assert len({round(v, 4) for v in nll_before.values()}) == len(MODES)   # four different fits


def test_each_mode_is_served_with_its_own_temperature(tiny_run, samples):
    from serving.prompting import Event

    ts = {mode: 0.5 + i for i, mode in enumerate(MODES)}
    run = replace(load_run(tiny_run["run"], "smollm2"), temperatures=ts)
    predictor = Predictor(run, ServedModelConfig(batch_size=4), device="cpu")
    s = samples[0]
    for mode, t in ts.items():
        query = Query(None, [Event(*e) for e in s["history"]], s["next"][0], s["next"][1], 100, mode)
        raw = predictor.logprobs(render_records(query, run.behaviors, run.system_prompt)).mean(axis=0)
        np.testing.assert_allclose(predictor.predict([query])[0].probs, np.exp(scale(raw[None], t)[0]), atol=1e-6)
        assert result_line(predictor.predict([query])[0], run)["temperature"] == t


def test_predictor_applies_the_runs_temperature(tiny_run, samples):
    from serving.prompting import Event

    for enabled in (True, False):
        run = load_run(tiny_run["run"], "smollm2", temperature=enabled)
        predictor = Predictor(run, ServedModelConfig(batch_size=4), device="cpu")
        queries = [Query(None, [Event(*e) for e in s["history"]], s["next"][0], s["next"][1], 100,
                         str(s["meta"]["template_id"])) for s in samples]
        for pred, row, q in zip(predictor.predict(queries), tiny_run["rows"], queries):
            t = tiny_run["T_of"][q.mode] if enabled else 1.0
            assert run.temperature(q.mode) == pytest.approx(t)
            np.testing.assert_allclose(pred.probs, _expected(row, t), atol=1e-4)


def test_the_runs_own_model_keeps_its_temperature_another_gets_one(tiny_run, tmp_path):
    final = tiny_run["run"] / "final"
    assert load_run(tiny_run["run"], "smollm2", model=str(final)).temperatures == tiny_run["T_of"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text((final / "config.json").read_text())
    run = load_run(tiny_run["run"], "smollm2", model=str(other))
    assert run.temperatures == {} and all(run.temperature(mode) == 1.0 for mode in MODES)


def _inputs(tmp_path, samples) -> tuple[Path, Path]:
    events, nexts = [], []
    for i, s in enumerate(samples):
        events += [{"user_id": f"s{i:03d}", "timestamp": local_iso(t), "place": p, "behavior": b}
                   for t, p, b in s["history"]]
        nexts.append(f"s{i:03d},{local_iso(s['next'][0])},{s['next'][1]}\n")
    ev, nx = tmp_path / "recent.jsonl", tmp_path / "next.csv"
    ev.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    nx.write_text("user_id,timestamp,place\n" + "".join(nexts), encoding="utf-8")
    return ev, nx


def test_predict_cli_lines_carry_the_temperature(tiny_run, samples, tmp_path):
    ev, nx = _inputs(tmp_path, samples)
    template = samples[0]["meta"]["template_id"]
    own = ["--model", str(tiny_run["run"] / "final")]   # the run's own model, named: it keeps its T
    for i, (extra, t) in enumerate((([], tiny_run["T_of"][str(template)]), (["--no-temperature"], 1.0),
                                    (own, tiny_run["T_of"][str(template)]))):
        out = tmp_path / f"pred{i}.jsonl"
        assert serving_main(["predict", "--run-dir", str(tiny_run["run"]), "--template", "smollm2", "--events",
                             str(ev), "--next", str(nx), "--out", str(out), "--top-k", "100", "--device", "cpu",
                             "--instruction-template", str(template), *extra]) == 0
        lines = {line["user_id"]: line for line in _jsonl(out)}
        names = load_run(tiny_run["run"], "smollm2").behaviors
        for i, (s, row) in enumerate(zip(samples, tiny_run["rows"])):
            line = lines[f"s{i:03d}"]
            assert line["temperature"] == pytest.approx(t)
            if s["meta"]["template_id"] == template:
                got = _by_name(line["top"])
                np.testing.assert_allclose([got[n] for n in names], _expected(row, t), atol=1e-4)


def test_http_response_carries_the_temperature(tiny_run, samples):
    predictor = Predictor(load_run(tiny_run["run"], "smollm2"), ServedModelConfig(batch_size=4), device="cpu")
    s, row = samples[0], tiny_run["rows"][0]
    body = {"events": [{"timestamp": local_iso(t), "place": p, "behavior": b} for t, p, b in s["history"]],
            "next": {"timestamp": local_iso(s["next"][0]), "place": s["next"][1]},
            "instruction_template": str(s["meta"]["template_id"])}
    with serve_in_thread(create_app(predictor, AppConfig(PredictionConfig(top_k=100)))) as port:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json=body, timeout=60)
    assert r.status_code == 200, r.text
    t = tiny_run["T_of"][str(s["meta"]["template_id"])]
    assert r.json()["temperature"] == pytest.approx(t)
    got = _by_name(r.json()["top"])
    np.testing.assert_allclose([got[n] for n in predictor.run.behaviors], _expected(row, t), atol=1e-4)
