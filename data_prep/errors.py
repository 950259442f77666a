"""The one error type of data preparation and the helpers that keep its messages to one line."""
from __future__ import annotations

from collections.abc import Mapping

from cli import UsageError

MAX_EXAMPLES = 5  # row numbers / raw values kept in notes as examples of a problem


class PrepareError(UsageError):
    """Bad input for `make prepare`; the message is one line naming the file (and row)."""


def one_line(exc: BaseException) -> str:
    """A library exception's message squeezed onto one line (pyarrow's span several)."""
    return " ".join(str(exc).split())


def fmt_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "nothing dropped"
