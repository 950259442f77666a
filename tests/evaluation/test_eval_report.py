"""The report (Markdown, JSON, PNGs) and the ablation / sweep tables from hand-made prediction files."""

import json

import matplotlib.image
import numpy as np
import pytest

from evaluation import metrics as M
from evaluation.__main__ import main
from evaluation.ablations import load_model_metrics, relative_drop
from evaluation.files import load_predictions, prediction_row, write_predictions
from evaluation.report import build_report, parse_named
from evaluation.temperature import T_MAX, T_MIN

NAMES = ["A", "B", "C", "D"]
# listed out of frequency order on purpose: the report must order by train_count
STATS = {"behaviors": [
    {"name": "C", "label_id": 0, "train_count": 8, "train_freq": 0.08, "is_anchor": False, "freq_group": "tail"},
    {"name": "A", "label_id": 1, "train_count": 60, "train_freq": 0.6, "is_anchor": True, "freq_group": "head"},
    {"name": "D", "label_id": 2, "train_count": 2, "train_freq": 0.02, "is_anchor": False, "freq_group": "tail"},
    {"name": "B", "label_id": 3, "train_count": 30, "train_freq": 0.3, "is_anchor": True, "freq_group": "medium"},
]}
CANDIDATES = [b["name"] for b in STATS["behaviors"]]
P1_LABELS = ["A", "A", "A", "B", "C"]
P2_LABELS = ["A", "A", "B", "B", "C", "C"]  # D has no test sample


def write_preds(out, split, labels, preds, method="constrained"):
    meta = [{"sample_id": f"{split}-{i}", "label": y} for i, y in enumerate(labels)]
    rows = [prediction_row(i, m, p, CANDIDATES, p_label=0.5, top=[(p, 0.5)] if p else [])
            for i, (m, p) in enumerate(zip(meta, preds))]
    write_predictions(out, split, rows, {"method": method})


def _first_table(md: str) -> list[str]:
    """The table lines before the ranking and calibration section (ours, then the paper's)."""
    return [line for line in md.split("## Ranking and calibration")[0].splitlines() if line.startswith("| ")]


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "stats.json").write_text(json.dumps(STATS))
    good, mf1, mf2, gen = (tmp_path / n for n in ("good", "mf_s1", "mf_s2", "gen"))
    write_preds(good, "test_p1", P1_LABELS, ["A", "A", "B", "B", "C"])
    write_preds(good, "test_p2", P2_LABELS, ["A", "A", "B", "A", "C", "D"])
    for out, p2_preds in ((mf1, ["A"] * 6), (mf2, ["A", "B", "A", "A", "A", "A"])):
        write_preds(out, "test_p1", P1_LABELS, ["A"] * 5)
        write_preds(out, "test_p2", P2_LABELS, p2_preds)
    write_preds(gen, "test_p2", P2_LABELS, ["A", None, "B", None, None, "C"], method="generate")
    return data, {"good": [str(good)], "mf": [str(mf1), str(mf2)], "gen": [str(gen)]}, tmp_path / "report"


def test_report_files_table_and_json(setup):
    data, preds, out = setup
    report = build_report(data, preds, out, paper_table="behavior")
    md = (out / "report.md").read_text()
    table = _first_table(md)
    header = table[0]
    for column in ("Prec_w", "Rec_w", "Overall", "Head", "Medium", "Tail", "Anchor acc", "invalid P1 / P2"):
        assert column in header
    rows = {line.split(" | ")[0][2:]: line for line in table[1:]}
    assert {"good", "mf", "gen", "BehaviorLM (paper)", "TALLRec (paper)", "LLama-NT (paper)"} <= set(rows)
    assert "0.6317" in rows["BehaviorLM (paper)"]  # Table 3(b)
    assert "±" in rows["mf"] and "±" not in rows["good"]  # two seeds -> mean ± std
    assert rows["gen"].split(" | ")[2:4] == ["-", "-"]  # no protocol-1 file
    assert "D" in md.split("Behaviors without test_p2 samples")[1].splitlines()[0]

    good_p2 = report["models"]["good"]["summary"]["test_p2"]
    # per-class recalls A 1, B .5, C .5 (D excluded)
    assert good_p2["overall"]["mean"] == pytest.approx(2 / 3)
    assert good_p2["head"]["mean"] == 1.0 and good_p2["medium"]["mean"] == 0.5 and good_p2["tail"]["mean"] == 0.5
    mf = report["models"]["mf"]
    assert mf["summary"]["test_p2"]["overall"]["n"] == 2
    assert mf["summary"]["test_p2"]["overall"]["mean"] == pytest.approx(np.mean([1 / 3, 1 / 6]))
    assert report["models"]["gen"]["summary"]["test_p2"]["invalid_rate"]["mean"] == pytest.approx(0.5)
    assert report["behaviors"] == ["A", "B", "C", "D"]  # training frequency order

    loaded = json.loads((out / "metrics.json").read_text())
    assert loaded == json.loads(json.dumps(report))
    assert loaded["models"]["good"]["per_behavior_accuracy"]["test_p2"] == {"C": 0.5, "A": 1.0, "D": None, "B": 0.5}

    assert sorted(report["figures"]) == ["confusion_gen.png", "confusion_good.png", "confusion_mf.png",
                                         "long_tail.png", "per_behavior_accuracy.png"]
    long_tail = json.loads((out / "long_tail.json").read_text())   # Fig. 1a's numbers beside its PNG
    assert [b["behavior"] for b in long_tail["behaviors"]] == report["behaviors"]
    assert "`long_tail.png`" in md and (out / "long_tail.md").read_text().startswith("4 behaviors")
    for name in report["figures"]:
        raw = (out / name).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_report_metrics_match_metric_functions(setup):
    data, preds, out = setup
    report = build_report(data, {"good": preds["good"]}, out)
    ids = {n: i for i, n in enumerate(CANDIDATES)}
    cm = M.confusion_matrix([ids[y] for y in P1_LABELS], [ids[p] for p in ["A", "A", "B", "B", "C"]], 4)
    p1 = report["models"]["good"]["summary"]["test_p1"]
    assert p1["prec_w"]["mean"] == pytest.approx(M.prec_w(cm))
    assert p1["rec_w"]["mean"] == pytest.approx(0.8)
    header = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("| model | runs"))
    assert "Prec_w" in header and "invalid" not in header  # no generation, no invalid output: no invalid column


def test_report_cli_and_errors(setup, tmp_path):
    data, preds, out = setup
    args = ["report", "--dataset-dir", str(data), "--out", str(out)]
    assert main(args + ["--pred", f"good={preds['good'][0]}", "--pred", f"mf={','.join(preds['mf'])}"]) == 0
    assert set(json.loads((out / "metrics.json").read_text())["models"]) == {"good", "mf"}
    assert main(args + ["--pred", f"none={tmp_path}"]) == 2  # a directory without predictions
    with pytest.raises(ValueError, match="NAME=PATH"):
        parse_named(["oops"])
    assert parse_named(["a=x,y", "b=z", "a=w"]) == {"a": ["x", "y", "w"], "b": ["z"]}


def test_ablation_and_sweep_tables(setup, tmp_path):
    data, preds, _ = setup
    full_dir, var_dir = tmp_path / "full", tmp_path / "variants"
    build_report(data, {"BehaviorLM": preds["good"]}, full_dir)
    build_report(data, {"wo_dpo": preds["mf"], "other": preds["gen"]}, var_dir)
    full = load_model_metrics(str(full_dir / "metrics.json"))
    with pytest.raises(ValueError, match="#MODEL"):
        load_model_metrics(str(var_dir / "metrics.json"))
    variant = load_model_metrics(f"{var_dir / 'metrics.json'}#wo_dpo")
    assert relative_drop(variant["overall"], full["overall"]) == pytest.approx(
        100 * (np.mean([1 / 3, 1 / 6]) - 2 / 3) / (2 / 3))
    assert relative_drop(0.5, None) is None

    out = tmp_path / "ablations.md"
    assert main(["ablation-table", "--full", f"BehaviorLM={full_dir / 'metrics.json'}",
                 "--variant", f"wo_dpo={var_dir / 'metrics.json'}#wo_dpo",
                 "--variant", f"other={var_dir / 'metrics.json'}#other",
                 "--out", str(out), "--paper-table", "behavior"]) == 0
    text = out.read_text()
    drop_rows = [line for line in text.splitlines() if line.startswith("| wo_dpo (B-Tuning w/o DPO)")]
    assert len(drop_rows) == 1
    expected = relative_drop(variant["overall"], full["overall"])
    assert f"{expected:+.2f}%" in drop_rows[0] and "-3.58%" in drop_rows[0]  # ours, then paper Table 4(b)

    sweep = tmp_path / "sweep.md"
    assert main(["sweep-table", "--param", "aux ratio", "--point", f"0%={var_dir / 'metrics.json'}#other",
                 "--point", f"5%={full_dir / 'metrics.json'}", "--out", str(sweep),
                 "--paper-table", "aux-ratio"]) == 0
    lines = sweep.read_text().splitlines()
    five = [line for line in lines if line.startswith("| 5% |")]
    assert five[0].split(" | ")[1:3] == [f"{full['prec_w']:.4f}", f"{full['rec_w']:.4f}"]
    assert five[1].endswith("0.4520 | 0.3980 |")  # paper Table 5 row beside ours


def test_many_behaviors_without_test_samples_are_counted_with_a_few_names(tmp_path):
    # 40 behaviors, training counts 40..1; protocol 2 has samples of the 3 most frequent only
    names = [f"category {k:02d}" for k in range(40)]
    behaviors = [{"name": n, "label_id": k, "train_count": 40 - k, "train_freq": (40 - k) / 820,
                  "is_anchor": k < 3, "freq_group": "head" if k < 3 else "tail"} for k, n in enumerate(names)]
    data = tmp_path / "data"
    data.mkdir()
    (data / "stats.json").write_text(json.dumps({"behaviors": behaviors}))
    labels = names[:3] * 2
    meta = [{"sample_id": f"p2-{i}", "label": y} for i, y in enumerate(labels)]
    rows = [prediction_row(i, m, y, names, p_label=0.5, top=[(y, 0.5)]) for i, (m, y) in enumerate(zip(meta, labels))]
    write_predictions(tmp_path / "model", "test_p2", rows, {"method": "constrained"})
    report = build_report(data, {"model": [str(tmp_path / "model")]}, tmp_path / "report")

    missing = names[3:]                                     # training-frequency order, most frequent first
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["behaviors_without_samples"] == {
        "test_p2": missing}
    assert report["behaviors_without_samples"]["test_p2"] == missing
    md = (tmp_path / "report" / "report.md").read_text()
    line = md.split("Behaviors without test_p2 samples")[1].splitlines()[0]
    assert f"{len(missing)} of {len(names)}, e.g. " in line
    named = [n for n in names if n in line]
    assert named == missing[:len(named)] and 1 <= len(named) < 10
    assert f"and {len(missing) - len(named)} more" in line and "behaviors_without_samples.test_p2" in line
    assert "test_p1 samples" not in md                      # no protocol-1 file: nothing claimed about it


def test_protocol2_is_called_balanced_only_when_every_behavior_has_its_share(setup):
    from data_prep.prepared import protocol2_balance

    assert protocol2_balance([3, 3, 3], 3) == "balanced"
    assert protocol2_balance([3, 1, 0, 3], 3) == "not balanced: 2 of 4 behaviors short"
    assert protocol2_balance([5, 0], 0) == "none"
    data, preds, out = setup
    # an older stats.json without protocols: derived from protocol2_counts and the config
    stats = {**STATS, "protocol2_counts": {"C": 2, "A": 2, "D": 0, "B": 2}, "config": {"p2_per_behavior": 2}}
    (data / "stats.json").write_text(json.dumps(stats))
    report = build_report(data, preds, out)
    assert report["protocol2"] == "not balanced: 1 of 4 behaviors short"
    assert "Protocol 2 (test_p2, not balanced: 1 of 4 behaviors short)" in (out / "report.md").read_text()
    stats["protocols"] = {"test_p2": {"balance": "balanced"}}
    (data / "stats.json").write_text(json.dumps(stats))
    assert build_report(data, preds, out)["protocol2"] == "balanced"
    assert "Protocol 2 (test_p2, balanced)" in (out / "report.md").read_text()


def test_ranking_calibration_temperature_and_reliability(setup, tmp_path):
    data, preds, out = setup
    over = tmp_path / "over"
    rng = np.random.default_rng(0)
    for split, labels in (("test_p1", P1_LABELS * 20), ("test_p2", P2_LABELS * 20)):
        meta = [{"sample_id": f"{split}-{i}", "label": y} for i, y in enumerate(labels)]
        logits = 4.0 * rng.normal(size=(len(labels), len(CANDIDATES)))   # confident, mostly wrong
        lp = M.log_softmax(logits)
        rows = [prediction_row(i, m, CANDIDATES[int(np.argmax(p))], CANDIDATES, logprobs=p)
                for i, (m, p) in enumerate(zip(meta, lp))]
        write_predictions(over, split, rows, {"method": "constrained"})
    (over / "temperature.json").write_text(json.dumps({"temperature": 4.0}))
    report = build_report(data, {"over": [str(over)], "good": preds["good"]}, out)
    run = report["models"]["over"]["runs"][0]["test_p1"]
    ids = [CANDIDATES.index(y) for y in P1_LABELS * 20]
    lp = np.array([r["logprobs"] for r in load_predictions(over, "test_p1")[0]])
    assert run["hit@3"] == pytest.approx(M.hit_at_k(lp, ids, 3)) and run["mrr"] == pytest.approx(M.mrr(lp, ids))
    assert run["temperature"] == 4.0 and run["nll_scaled"] == pytest.approx(M.nll(lp / 4.0, ids))
    assert run["ece_scaled"] < run["ece"] and run["nll_scaled"] < run["nll"]
    md = (out / "report.md").read_text()
    section = md.split("## Ranking and calibration")[1]
    assert "| model | Hit@1 | Hit@3 | Hit@5 | MRR | NDCG@5 | ECE | Brier | NLL | T | ECE (T) | NLL (T) |" in section
    good_row = next(line for line in section.splitlines() if line.startswith("| good |"))
    assert set(good_row.split(" | ")[1:]) == {"-", "- |"}   # no log-probabilities in good's files
    assert "- good: no per-candidate log-probabilities" in section
    assert report["models"]["good"]["runs"][0]["test_p1"]["ece"] is None
    assert "reliability_over.png" in report["figures"] and "reliability_good.png" not in report["figures"]
    assert matplotlib.image.imread(out / "reliability_over.png").shape[0] > 100
    summary = json.loads((out / "metrics.json").read_text())["models"]["over"]["summary"]["test_p2"]
    assert set(M.DISTRIBUTION_METRICS) <= set(summary) and summary["ndcg@5"]["mean"] is not None
    assert "search bound" not in md
    # a fit at its search bound (the own mode at T_MAX, "mean" at T_MIN) is said in one line
    (over / "temperature.json").write_text(json.dumps({"temperature": T_MAX, "modes": {
        "2": {"temperature": 1.3}, "mean": {"temperature": T_MIN}}}))
    build_report(data, {"over": [str(over)], "good": preds["good"]}, out)
    flagged = [line for line in (out / "report.md").read_text().splitlines() if "search bound" in line]
    assert len(flagged) == 1 and flagged[0].startswith("- over: ")
    assert f"own {T_MAX:g}" in flagged[0] and f"mean {T_MIN:g}" in flagged[0] and "1.3" not in flagged[0]


def test_report_header_states_the_auxiliary_ratio_and_the_remedy(setup):
    data, preds, out = setup
    aux = {"eps": 0.1, "requested": 20, "written": 4, "distinct": 4, "repeated": 0, "shortfall": 16, "available": 4,
           "eps_achieved": 0.02}
    (data / "stats.json").write_text(json.dumps({**STATS, "aux": aux}))
    build_report(data, {"good": preds["good"]}, out)
    header = (out / "report.md").read_text().split("| model |")[0]
    assert "A-tune's auxiliary conversations: eps 0.1 asked (20), 0.02 achieved (4 written" in header
    assert "16 short: give AUX= a larger conversation set" in header and "AUX_REPEAT=1" in header
