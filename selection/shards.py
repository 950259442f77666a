"""Score parts on disk: Parquet parts of a resumable, data-parallel scoring run, its manifest, and reading
a finished run back (README "Files between stages": ``<scores>/part-*.parquet`` + ``manifest.json``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from data_prep.outputs import atomic_open, write_json

PART_COLUMNS = ("index", "label_id", "pred_id", "p_true", "probs", "logprobs", "embedding")


def write_part(path: Path, rows: dict) -> None:
    """One Parquet part (columns PART_COLUMNS; embedding null when scored without E(x)), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    list32 = pa.list_(pa.float32())
    emb = rows["embedding"]
    table = pa.table(
        {
            "index": pa.array(rows["index"], pa.int64()),
            "label_id": pa.array(rows["label_id"], pa.int64()),
            "pred_id": pa.array(rows["pred_id"], pa.int64()),
            "p_true": pa.array(rows["p_true"], pa.float32()),
            "probs": pa.array(list(rows["probs"]), list32),
            "logprobs": pa.array(list(rows["logprobs"]), list32),
            "embedding": pa.array(list(emb) if emb is not None else [None] * len(rows["index"]), list32),
        }
    )
    with atomic_open(path, "wb") as handle:
        pq.write_table(table, handle)


def check_or_write_manifest(out_dir: Path, manifest: dict, what: str) -> None:
    """Pin a resumable run's inputs: write out_dir/manifest.json on the first run; on a rerun refuse (ValueError,
    naming the differing keys) if it differs, so parts of two different runs never mix."""
    path = Path(out_dir) / "manifest.json"
    if not path.is_file():
        write_json(path, manifest)
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    if old != manifest:
        diff = sorted(k for k in manifest if old.get(k) != manifest[k])
        raise ValueError(f"{str(out_dir)!r} holds {what} of a different run (differs in {diff}); use a new --out")


def scoring_manifest(model_path, adapter_path, template, dataset_path, candidates, indices, world_size, shard_size):
    """What makes two scoring runs the same run (their parts may be mixed)."""
    digest = hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()
    return {
        "model": str(Path(model_path).resolve()),
        "adapter": str(Path(adapter_path).resolve()) if adapter_path else None,
        "template": template,
        "dataset": str(Path(dataset_path).resolve()),
        "candidates": list(candidates),
        "n_indices": len(indices),
        "indices_sha256": digest,
        "world_size": world_size,
        "shard_size": shard_size,
    }


def load_scores(out_dir) -> dict[str, np.ndarray]:
    """All parts of a finished scoring run as numpy arrays sorted by `index`; refuses incomplete runs.

    Keys: index, label_id, pred_id, p_true [n]; probs, logprobs [n, K]; embedding [n, H] (or None when
    scored without embeddings); plus "candidates" (list of names) from the manifest.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{str(out_dir)!r} holds no scoring run (no manifest.json)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    world = manifest["world_size"]
    missing = [r for r in range(world) if not (out_dir / f"done-{r}.json").is_file()]
    if missing:
        raise RuntimeError(f"scoring in {str(out_dir)!r} is incomplete: ranks {missing} not done (rerun to resume)")
    files = sorted(out_dir.glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    n = 0 if table is None else table.num_rows
    if n != manifest["n_indices"]:
        raise RuntimeError(f"scoring in {str(out_dir)!r} has {n} rows, expected {manifest['n_indices']}")
    order = np.argsort(table.column("index").to_numpy(), kind="stable")
    K = len(manifest["candidates"])

    def matrix(name):
        col = table.column(name).combine_chunks()
        if col.null_count == len(col):
            return None
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(n, -1)[order] if n else flat.reshape(0, K)

    result = {c: table.column(c).to_numpy()[order] for c in ("index", "label_id", "pred_id", "p_true")}
    if len(np.unique(result["index"])) != n:
        raise RuntimeError(f"scoring in {str(out_dir)!r} has duplicate rows")
    result.update(probs=matrix("probs"), logprobs=matrix("logprobs"), embedding=matrix("embedding"))
    result["candidates"] = manifest["candidates"]
    return result
