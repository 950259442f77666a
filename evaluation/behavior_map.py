"""Fig. 1b (`behavior_map`): where the base model puts every behavior name, anchors and tails marked.

Each name is embedded as the scorer embeds a prompt (E(x): the mean last hidden state over its tokens,
scoring.kernel), reduced to two dimensions with scikit-learn's PCA, and each tail behavior is listed with
its nearest anchor by cosine similarity in the full embedding space: the anchor whose knowledge a tail can
borrow (paper 2.2: tails semantically close to anchors are predicted better after A-tuning).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .figure_files import write_figure


def embed_names(model_path: str, names: list[str], device: str | None = None) -> np.ndarray:
    """[n, H] E(x) of each behavior name under the model (no chat template: the name's own tokens)."""
    from scoring.kernel import cached_candidate_logprobs
    from scoring.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_path, device=device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    for name in names:
        ids = tokenizer(name, add_special_tokens=False)["input_ids"] or [pad]
        _, embedding = cached_candidate_logprobs(model, [ids], [[pad]], pad, with_embeddings=True)
        rows.append(embedding[0])
    return np.stack(rows).astype(np.float32)


def behavior_map(names: list[str], embeddings: np.ndarray, is_anchor: list[bool], seed: int = 0) -> dict:
    """2-D PCA coordinates of every behavior and, for each tail, its nearest anchor (cosine, full space)."""
    from sklearn.decomposition import PCA

    emb = np.asarray(embeddings, dtype=np.float64)
    xy = PCA(n_components=2, random_state=seed).fit_transform(emb) if len(names) >= 2 else np.zeros((len(names), 2))
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    anchors = [i for i, a in enumerate(is_anchor) if a]
    points, nearest = [], []
    for i, name in enumerate(names):
        points.append({"behavior": name, "anchor": bool(is_anchor[i]), "x": float(xy[i, 0]), "y": float(xy[i, 1])})
        if not is_anchor[i] and anchors:
            sims = unit[anchors] @ unit[i]
            best = int(np.argmax(sims))
            nearest.append({"tail": name, "nearest_anchor": names[anchors[best]], "cosine": float(sims[best])})
    return {"points": points, "nearest_anchor": nearest}


def plot_behavior_map(data: dict, out_dir: Path, model: str) -> list[Path]:
    """behavior_map.png / .md / .json into out_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 6.5))
    by_name = {p["behavior"]: p for p in data["points"]}
    for pair in data["nearest_anchor"]:
        a, b = by_name[pair["tail"]], by_name[pair["nearest_anchor"]]
        ax.plot([a["x"], b["x"]], [a["y"], b["y"]], color="0.75", linewidth=0.8, zorder=1)
    for anchor, color, label in ((True, "tab:blue", "anchor"), (False, "tab:red", "tail")):
        pts = [p for p in data["points"] if p["anchor"] == anchor]
        ax.scatter([p["x"] for p in pts], [p["y"] for p in pts], c=color, label=label, s=28, zorder=2)
        for p in pts:
            ax.annotate(p["behavior"], (p["x"], p["y"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"Behavior names in the base model's embedding (Fig. 1b; {Path(model).name})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    summary = (f"{len(data['points'])} behaviors embedded by {model} (mean last hidden state), PCA to 2-D; "
               f"each tail's nearest anchor by cosine similarity:")
    paths = write_figure(out_dir, "behavior_map", fig, data["nearest_anchor"], summary, {"model": model, **data})
    plt.close(fig)
    return paths


def run(model_path: str, stats: dict, out_dir: Path, device: str | None = None) -> list[Path]:
    behaviors = sorted(stats["behaviors"], key=lambda b: b["label_id"])
    names = [b["name"] for b in behaviors]
    data = behavior_map(names, embed_names(model_path, names, device), [b["is_anchor"] for b in behaviors])
    return plot_behavior_map(data, out_dir, model_path)
