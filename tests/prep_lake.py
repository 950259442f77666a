"""A small event log written as a hive-partitioned lake (dt=YYYY-MM-DD/part-N.<fmt>) for the prepare tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from data_prep.synthetic import write_events


def write_lake(root: Path, n_users: int = 40, n_days: int = 6, seed: int = 3, parts: int = 3,
               order_seed: int = 0) -> tuple[Path, Path]:
    """The same events as one Parquet file and as a lake: one folder a day, each day's rows dealt to `parts`
    files (Parquet, CSV and JSONL), rows shuffled by `order_seed`. Returns (single_file, lake_dir)."""
    single = root / "all.parquet"
    write_events(single, n_users, n_days, seed=seed)
    table = pq.read_table(single)
    table = table.cast(pa.schema([(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
                                  for f in table.schema]))
    rng = np.random.default_rng(order_seed)
    table = table.take(rng.permutation(table.num_rows))
    day = (table.column("timestamp").to_numpy() // 86_400)
    lake = root / "lake"
    for d in np.unique(day):
        rows = table.filter(pa.array(day == d))
        folder = lake / f"dt={np.datetime64(int(d), 'D')}"
        folder.mkdir(parents=True)
        deal = rng.integers(0, parts, rows.num_rows)
        for part in range(parts):
            piece = rows.filter(pa.array(deal == part))
            kind = ("parquet", "csv", "jsonl")[(part + int(d)) % 3]
            path = folder / f"part-{part}.{kind}"
            if kind == "parquet":
                pq.write_table(piece, path)
            elif kind == "csv":
                pa_csv.write_csv(piece, path)
            else:
                path.write_text("".join(f'{{"user_id": "{u}", "timestamp": {t}, "place": "{p}", '
                                        f'"behavior": "{b}"}}\n' for u, t, p, b in zip(*piece.to_pydict().values())))
    (lake / "_SUCCESS").write_text("")
    return single, lake
