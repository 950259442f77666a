"""The paper's figures on a run's own data: each one a PNG with its numbers beside it (.md, .json)."""
from __future__ import annotations

import json

import pytest

from evaluation.long_tail import long_tail, plot_long_tail


def stats_of(counts: dict[str, int], anchor=0.1, head=0.3, tail=0.1) -> dict:
    total = sum(counts.values())
    behaviors = []
    for i, (name, c) in enumerate(counts.items()):
        f = c / total
        behaviors.append({"name": name, "label_id": i, "train_count": c, "train_freq": f, "is_anchor": f > anchor,
                          "freq_group": "head" if f > head else "medium" if f > tail else "tail"})
    return {"behaviors": behaviors,
            "config": {"anchor_threshold": anchor, "head_threshold": head, "tail_threshold": tail}}


def test_long_tail_orders_by_frequency_and_marks_anchors_and_groups(tmp_path):
    stats = stats_of({"rare": 2, "top": 60, "never": 0, "mid": 20, "low": 18})
    data = long_tail(stats)
    assert [b["behavior"] for b in data["behaviors"]] == ["top", "mid", "low", "rare", "never"]
    assert [b["anchor"] for b in data["behaviors"]] == [True, True, True, False, False]
    assert data["anchors"] == 3 and data["anchor_threshold"] == 0.1
    assert {g: v["behaviors"] for g, v in data["groups"].items()} == {"head": 1, "medium": 2, "tail": 2}
    assert data["groups"]["tail"]["share_of_samples"] == pytest.approx(0.02)

    png, md, js = plot_long_tail(stats, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(js.read_text()) == json.loads(json.dumps(data))
    table = [line for line in md.read_text().splitlines() if line.startswith("| ")]
    assert table[0] == "| rank | behavior | train_count | train_freq | group | anchor |" and len(table) == 6
    assert table[1].startswith("| 1 | top | 60 | 60.0000% | head | yes |")


def test_behavior_map_lists_each_tails_nearest_anchor():
    from evaluation.behavior_map import behavior_map

    names = ["Taking a taxi", "Public transportation", "Watching videos", "Watching sports matches"]
    emb = [[1.0, 0.1, 0.0], [0.9, 0.0, 0.1], [0.0, 1.0, 0.0], [0.1, 0.8, 0.2]]
    data = behavior_map(names, emb, [False, True, True, False])
    assert data["nearest_anchor"] == [
        {"tail": "Taking a taxi", "nearest_anchor": "Public transportation", "cosine": pytest.approx(0.9889, abs=1e-4)},
        {"tail": "Watching sports matches", "nearest_anchor": "Watching videos",
         "cosine": pytest.approx(0.9631, abs=1e-4)}]
    xy = [(p["x"], p["y"]) for p in data["points"]]
    assert len(set(xy)) == 4 and [p["anchor"] for p in data["points"]] == [False, True, True, False]


def test_behavior_map_of_a_tiny_model_end_to_end(tmp_path):
    from tiny_models import build_tiny_llama

    from evaluation.behavior_map import run

    stats = stats_of({"Music": 50, "Gaming": 30, "Podcasts": 3, "Karaoke": 2})
    model = build_tiny_llama(tmp_path / "tiny", [b["name"] for b in stats["behaviors"]] * 20, vocab_size=300)
    png, md, js = run(str(model), stats, tmp_path / "report", device="cpu")
    data = json.loads(js.read_text())
    assert {p["behavior"] for p in data["points"]} == {"Music", "Gaming", "Podcasts", "Karaoke"}
    assert [n["tail"] for n in data["nearest_anchor"]] == ["Podcasts", "Karaoke"]
    assert all(n["nearest_anchor"] in ("Music", "Gaming") for n in data["nearest_anchor"])
    assert png.read_bytes()[:4] == b"\x89PNG" and "nearest_anchor" in md.read_text()


def _metrics_json(path, models: dict[str, tuple[float, float, float]]):
    """metrics.json of models given as (overall, anchor accuracy, tail accuracy)."""
    def summary(overall, anchor, tail):
        mean = lambda v: {"mean": v, "std": None, "n": 1}  # noqa: E731
        return {"test_p1": {"prec_w": mean(0.5), "rec_w": mean(0.4)},
                "test_p2": {"overall": mean(overall), "head": mean(None), "medium": mean(0.3), "tail": mean(0.2),
                            "anchor_accuracy": mean(anchor), "tail_behavior_accuracy": mean(tail)}}
    path.write_text(json.dumps({"models": {n: {"summary": summary(*v)} for n, v in models.items()}}))
    return path


def test_sweep_f_and_compare_runs_read_anchor_and_tail_accuracy(tmp_path):
    from evaluation.comparison_figures import write

    metrics = _metrics_json(tmp_path / "metrics.json", {"sweep-f1": (0.3, 0.6, 0.1), "sweep-f5": (0.4, 0.7, 0.25)})
    paths = write("sweep_f", [f"1={metrics}#sweep-f1", f"5={metrics}#sweep-f5"], tmp_path / "out")
    assert [p.name for p in paths] == ["sweep_f.png", "sweep_f.md", "sweep_f.json"]
    data = json.loads(paths[2].read_text())["points"]
    assert data["5"]["anchor_accuracy"] == 0.7 and data["1"]["tail_behavior_accuracy"] == 0.1
    rows = [line for line in paths[1].read_text().splitlines() if line.startswith("| 5 ")]
    assert len(rows) == 1 and "70.0000%" in rows[0] and "25.0000%" in rows[0] and "| - |" in rows[0]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    other = _metrics_json(tmp_path / "other.json", {"behaviorlm": (0.5, 0.8, 0.4)})
    paths = write("compare_runs", [f"run-8b/behaviorlm={other}#behaviorlm", f"run-1.5b/a-tune={metrics}#sweep-f1"],
                  tmp_path / "out")
    runs = json.loads(paths[2].read_text())["runs"]
    assert list(runs) == ["run-8b", "run-1.5b"] and runs["run-8b"]["behaviorlm"]["tail_behavior_accuracy"] == 0.4
    with pytest.raises(ValueError, match="no model 'nope'"):
        write("tuning_data", [f"x={metrics}#nope"], tmp_path / "out")
