"""The predictions contract's argmax rule, checked the same way for every model kind: ``pred`` is the first
maximum of the row's stored ``logprobs`` (equal values: the lower label_id), or, in a row without them, the
first of its ``top`` list, whose probabilities do not increase."""
from __future__ import annotations

import numpy as np


def assert_pred_is_argmax(rows: list[dict]) -> None:
    assert rows
    for row in rows:
        if row.get("logprobs"):
            expected = int(np.argmax(row["logprobs"]))   # numpy returns the first of equal maxima
            assert row["pred_id"] == expected, (row["sample_id"], row["pred"], row["logprobs"])
            assert row["top"][0]["name"] == row["pred"]
        else:
            ps = [t["p"] for t in row["top"]]
            assert row["top"][0]["name"] == row["pred"] and ps == sorted(ps, reverse=True), row["sample_id"]
