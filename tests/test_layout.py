"""The module layout: one job a module, no module over ~400 lines, no import cycles, function-level imports
included (packages included: a package may not import a package that imports it back), and no module importing
another module's _private names."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cli", "data_prep", "scoring", "selection", "evaluation", "pipeline", "serving", "sasrec")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of a `from ... import` (relative imports resolved against the importing module)."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import, function-level ones included (a lazy import that closes a
    cycle still ties the two modules together)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            out.append((_resolve(name, path, node), [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_no_module_is_over_the_line_budget():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def test_test_modules_fit_the_line_budget_and_have_unique_names():
    """The tests' own modules: none over the line budget, and no two with one name (the test folders are not
    packages, so pytest imports each test module by its bare name)."""
    paths = sorted((ROOT / "tests").rglob("*.py"))
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in paths}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
    names = [p.name for p in paths if p.name != "conftest.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def _graph(key) -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for module, names in imports(name, path):
            deps |= {m for m in [module, *(f"{module}.{n}" for n in names)] if m in mods}
        graph.setdefault(key(name), set()).update(key(d) for d in deps if key(d) != key(name))
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(node):] + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            visit(dep, trail + [node])
        state[node] = 2

    for name in sorted(graph):
        visit(name, [])


@pytest.mark.parametrize("level", ["module", "package"])
def test_no_import_cycles(level):
    _find_cycle(_graph((lambda n: n) if level == "module" else (lambda n: n.split(".")[0])))


def test_the_cycle_check_can_fail():
    with pytest.raises(AssertionError, match="import cycle: a -> b -> a"):
        _find_cycle({"a": {"b"}, "b": {"a"}})


def test_no_private_names_imported_from_another_module():
    reached = [(name, module, n) for name, path in modules().items() for module, names in imports(name, path)
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert reached == []
