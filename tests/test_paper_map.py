"""The README's paper map is true: every row names a file that exists and a function defined there whose
docstring cites the row's equation or Algorithm 1 line, or a recipe key that the recipe sets."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _rows() -> list[tuple[str, str, str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Paper map", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 4 and cells[2].startswith("`"):
            rows.append((cells[0], cells[2].strip("`"), cells[3].strip("`")))
    return rows


def _citations(paper: str) -> list[str]:
    """What the docstring must say: "Eq. N" for an equation, "line N" / "lines N-M" for Algorithm 1."""
    eq = re.match(r"Eq\. (\d+)", paper)
    if eq:
        return [f"Eq. {eq.group(1)}"]
    line = re.search(r"lines? ([\d-]+)", paper)
    return [f"line {line.group(1)}", f"lines {line.group(1)}"]


def test_the_map_covers_every_equation_and_the_algorithm():
    papers = " ".join(p for p, _, _ in _rows())
    for n in range(1, 11):
        assert re.search(rf"Eq\. {n}\b", papers), f"Eq. {n} missing from the paper map"
    for line in (5, 7, 22, 26, 31):
        assert f"line {line}" in papers


@pytest.mark.parametrize("paper,path,name", _rows())
def test_each_row_points_at_code_that_cites_it(paper, path, name):
    file = ROOT / path
    assert file.is_file(), path
    if file.suffix == ".yaml":
        assert name in yaml.safe_load(file.read_text(encoding="utf-8")), f"{path} has no key {name}"
        return
    tree = ast.parse(file.read_text(encoding="utf-8"))
    funcs = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert name in funcs, f"{path} defines no {name}"
    doc = ast.get_docstring(funcs[name]) or ""
    assert any(c in doc for c in _citations(paper)), f"{path}:{name} docstring does not cite {paper}: {doc[:120]!r}"
