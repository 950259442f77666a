"""Writing the synthetic log to a file (Parquet, CSV or JSONL): `python -m data_prep synthetic`."""
from __future__ import annotations

import sys
from pathlib import Path

from data_prep.synthetic.catalogue import PLACES, RNG_BLOCK
from data_prep.synthetic.generator import (
    DEFAULT_CHUNK_USERS,
    DEFAULT_EVENTS_PER_DAY,
    DEFAULT_START,
    SyntheticError,
    behavior_names,
    check_sizes,
    iter_event_chunks,
    user_id_names,
)
from data_prep.writing.outputs import atomic_open


def _arrow_chunk(first: int, stop: int, n_users: int, user, time, place, behavior, names: list[str],
                 as_dictionary: bool):
    """One chunk as an Arrow table with the schema columns; text columns dictionary-encoded or plain."""
    import pyarrow as pa

    def labels(codes, vocab):
        column = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(vocab, pa.string()))
        return column if as_dictionary else column.cast(pa.string())

    return pa.table({"user_id": labels(user - first, user_id_names(first, stop, n_users)),
                     "timestamp": pa.array(time, pa.int64()),
                     "place": labels(place, PLACES),
                     "behavior": labels(behavior, names)})


def write_events(path, n_users: int, n_days: int, seed: int, behaviors=None,
                 chunk_users: int = DEFAULT_CHUNK_USERS, *, start: str = DEFAULT_START,
                 events_per_day: float = DEFAULT_EVENTS_PER_DAY, progress: bool = False) -> int:
    """Write a synthetic event log (Parquet, CSV or JSONL by extension) atomically; returns rows written.

    Columns: user_id, timestamp (int64 epoch seconds, local wall time as UTC), place, behavior. Generated
    and written chunk by chunk of users, so memory stays bounded by ``chunk_users``."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".jsonl"):
        raise SyntheticError(f"{path}: unsupported extension {suffix!r} (use .parquet, .csv or .jsonl)")
    check_sizes(n_users, n_days, events_per_day)
    names = behavior_names(behaviors)
    rows = 0
    writer = None
    chunks = iter_event_chunks(n_users, n_days, seed, behaviors, start, chunk_users, events_per_day)
    if progress:
        from tqdm import tqdm
        chunks = tqdm(chunks, total=-(-n_users // (max(1, -(-chunk_users // RNG_BLOCK)) * RNG_BLOCK)),
                      unit="chunk", file=sys.stderr)
    with atomic_open(path, "wb") as sink:
        for first, stop, user, time, place, behavior in chunks:
            table = _arrow_chunk(first, stop, n_users, user, time, place, behavior, names,
                                 as_dictionary=suffix == ".parquet")
            rows += table.num_rows
            if suffix == ".parquet":
                # Parquet dictionary-encodes text anyway; without the stored Arrow schema the columns
                # read back as plain strings, with no per-row cast on the way in.
                writer = writer or pq.ParquetWriter(sink, table.schema, compression="zstd",
                                                    store_schema=False)
                writer.write_table(table, row_group_size=1 << 20)
            elif suffix == ".csv":
                writer = writer or pa_csv.CSVWriter(sink, table.schema)
                writer.write_table(table)
            else:
                sink.write(table.to_pandas().to_json(orient="records", lines=True).encode())
        if writer is not None:
            writer.close()
    return rows
