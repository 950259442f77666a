"""A figure as files: `<name>.png` with its numbers beside it in `<name>.md` and `<name>.json` (so a figure can be
checked, diffed and quoted without reading pixels); every figure of :mod:`evaluation` is written so."""
from __future__ import annotations

import json
from pathlib import Path

from data_prep.writing.outputs import atomic_open


def write_figure(out_dir: Path, name: str, fig, table: list[dict], summary: str, data: dict) -> list[Path]:
    """<name>.png (the figure), <name>.md (the summary line and the table), <name>.json (`data`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{ext}" for ext in ("png", "md", "json")]
    with atomic_open(paths[0], "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    columns = list(table[0]) if table else []
    lines = [summary, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in table]
    with atomic_open(paths[1]) as handle:
        handle.write("\n".join(lines) + "\n")
    with atomic_open(paths[2]) as handle:
        handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return paths


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4%}" if value < 1 else f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)
