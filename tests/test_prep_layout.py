"""data_prep's module layout (issue 8): one job a module, no module over ~400 lines, no import cycles, and
no module importing another module's _private names."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "data_prep"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every top-level `import` / `from ... import` (function-level ones are lazy
    and cannot form a cycle at import time)."""
    out = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_no_module_is_over_the_line_budget():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def test_no_import_cycles():
    mods = modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for module, names in imports(path):
            deps |= {module} | {f"{module}.{n}" for n in names}
        graph[name] = {d for d in deps if d in mods and d != name}
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(node):] + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph[node]):
            visit(dep, trail + [node])
        state[node] = 2

    for name in sorted(graph):
        visit(name, [])


def test_no_private_names_imported_from_another_module():
    reached = [(name, module, n) for name, path in modules().items() for module, names in imports(path)
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert reached == []
