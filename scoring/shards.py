"""Score parts on disk: Parquet parts of a resumable, data-parallel scoring run, its manifest, and reading
a finished run back (docs/data-preparation.md "Files between stages": ``<scores>/part-*.parquet`` + ``manifest.json``).

Parts are keyed by the row indices they hold (``part-<first index>.parquet``), not by rank: a rerun with
any number of ranks reuses every row already scored and re-shards only what is left.  A run is complete
when its parts cover the manifest's pool exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from data_prep.writing.outputs import atomic_open, write_json

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


def check_or_write_manifest(out_dir: Path, manifest: dict, what: str, ignore: tuple[str, ...] = ()) -> None:
    """Pin a resumable run's inputs: write out_dir/manifest.json on the first run; on a rerun refuse (ValueError,
    naming the differing keys) if it differs, so parts of two different runs never mix.  Keys in `ignore`
    (left in manifests by older versions) do not count."""
    path = Path(out_dir) / "manifest.json"
    if not path.is_file():
        write_json(path, manifest)
        return
    old = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k not in ignore}
    if old != manifest:
        diff = sorted(k for k in set(manifest) | set(old) if old.get(k) != manifest.get(k))
        raise ValueError(f"{str(out_dir)!r} holds {what} of a different run (differs in {diff}); use a new --out")


# Older scoring manifests recorded how the work was split; that no longer makes two runs different.
LAYOUT_KEYS = ("world_size", "shard_size")


def pool_digest(indices) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()


def scoring_manifest(model_path, adapter_path, template, dataset_path, candidates, indices) -> dict:
    """What makes two scoring runs the same run (their parts may be mixed): model, data, pool -- not how many
    ranks score it or how big the parts are."""
    return {
        "model": str(Path(model_path).resolve()),
        "adapter": str(Path(adapter_path).resolve()) if adapter_path else None,
        "template": template,
        "dataset": str(Path(dataset_path).resolve()),
        "candidates": list(candidates),
        "n_indices": len(indices),
        "indices_sha256": pool_digest(indices),
    }


def part_path(out_dir: Path, rows) -> Path:
    """A part is named by its first row index: unique, because a row is scored into one part only."""
    return Path(out_dir) / f"part-{int(rows[0]):010d}.parquet"


def part_files(out_dir: Path) -> list[Path]:
    return sorted(Path(out_dir).glob("part-*.parquet"))


def scored_indices(out_dir: Path) -> np.ndarray:
    """Row indices already scored into out_dir by any earlier launch (any number of ranks), sorted."""
    import pyarrow.parquet as pq

    chunks = [pq.read_table(f, columns=["index"]).column("index").to_numpy() for f in part_files(out_dir)]
    return np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.int64)


def missing_rows(out_dir: Path) -> int:
    """How many rows of the manifest's pool no part holds yet (0 = complete); raises on foreign rows."""
    manifest = json.loads((Path(out_dir) / "manifest.json").read_text(encoding="utf-8"))
    done = scored_indices(out_dir)
    if len(np.unique(done)) != len(done):
        raise RuntimeError(f"scoring in {str(out_dir)!r} has duplicate rows")
    if len(done) == manifest["n_indices"]:
        if pool_digest(done) != manifest["indices_sha256"]:
            raise RuntimeError(f"scoring in {str(out_dir)!r} holds rows outside its pool; use a new --out")
        return 0
    return manifest["n_indices"] - len(done)


def wait_for_scores(out_dir: Path, poll_s: float = 5.0, timeout_s: float = 6 * 3600) -> None:
    """Under torchrun every rank scores its share; rank 0 waits until the parts cover the whole pool."""
    import time

    deadline = time.monotonic() + timeout_s
    while missing_rows(out_dir):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{out_dir}: other ranks did not finish; rerun to resume and assemble")
        time.sleep(poll_s)


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
    missing = missing_rows(out_dir)
    if missing:
        raise RuntimeError(
            f"scoring in {str(out_dir)!r} is incomplete: {missing} of {manifest['n_indices']} rows not scored yet "
            "(rerun to resume, with any number of ranks)"
        )
    files = part_files(out_dir)
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
