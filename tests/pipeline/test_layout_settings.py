"""One definition of each default: a stage's settings are the fields of its settings dataclass (default, help,
check), which the command lines, the pipeline's variables and `make help` read. Checked on the source, so a
copied default cannot come back unnoticed."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_layout import PACKAGES

from cli import field_default, option_fields, shown
from pipeline import settings as pipeline_settings

ROOT = Path(__file__).resolve().parents[2]


def sources() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(encoding="utf-8")) for package in PACKAGES
            for p in sorted((ROOT / package).rglob("*.py"))}


def is_literal(node: ast.AST) -> bool:
    """A number or text written in place (``5``, ``"x"``, ``1 << 20``, ``(0.8, 0.1)``); not None or a bool."""
    if isinstance(node, ast.Constant):
        return node.value is not None and not isinstance(node.value, bool)
    if isinstance(node, ast.BinOp):
        return is_literal(node.left) and is_literal(node.right)
    if isinstance(node, ast.UnaryOp):
        return is_literal(node.operand)
    if isinstance(node, ast.Tuple):
        return bool(node.elts) and all(is_literal(e) for e in node.elts)
    return False


def literal_option_defaults(tree: ast.Module) -> list[int]:
    """Lines of ``add_argument(..., default=<literal>)`` calls."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
            and any(k.arg == "default" and is_literal(k.value) for k in node.keywords)]


def settings_literals(tree: ast.Module) -> list[tuple[str, str, str, int]]:
    """(class, field, literal, line) of every field of a settings dataclass (one whose fields carry a help text)
    whose default is a literal."""
    found = []
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        rows = []
        for stmt in cls.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value):
                continue
            value, default = stmt.value, stmt.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
                keywords = {k.arg: k.value for k in value.keywords}
                default = keywords.get("default", value.args[0] if value.args else None)
                metadata = ast.unparse(keywords.get("metadata", ast.Constant("")))
                help_given = value.func.id == "_option" or "'help'" in metadata
                rows.append((stmt.target.id, default, stmt.lineno, help_given))
        if any(row[3] for row in rows):
            found += [(cls.name, name, ast.unparse(default), line) for name, default, line, _ in rows
                      if default and is_literal(default)]
    return found


def test_the_checks_see_a_literal_default():
    tree = ast.parse("from dataclasses import field\nclass C:\n    n: int = field(default=8, metadata={'help': 'h'})\n"
                     "    m: int = field(default=N, metadata={'help': 'h'})\n"
                     "p.add_argument('--n', default=1 << 3)\np.add_argument('--m', default=None)\n")
    assert settings_literals(tree) == [("C", "n", "8", 3)] and literal_option_defaults(tree) == [5]


def test_command_lines_take_their_defaults_from_settings_dataclasses():
    found = {str(p.relative_to(ROOT)): literal_option_defaults(tree) for p, tree in sources().items()}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_no_setting_has_its_default_written_twice():
    """A field of one name with the same literal default in two settings dataclasses is a copy: the second
    refers to the first (``seed: int = field(default=PrepareConfig.seed, ...)``)."""
    copies: dict[tuple[str, str], list[str]] = {}
    for path, tree in sources().items():
        for cls, name, literal, line in settings_literals(tree):
            copies.setdefault((name, literal), []).append(f"{path.relative_to(ROOT)}:{line} {cls}.{name}")
    assert {key: where for key, where in copies.items() if len(where) > 1} == {}


@pytest.mark.parametrize("name", sorted(pipeline_settings.DEFAULT_FROM))
def test_every_stage_default_of_the_pipeline_is_a_settings_field(name):
    settings, field_name = pipeline_settings.DEFAULT_FROM[name]
    assert field_name in {f.name for f in option_fields(settings)}
    assert pipeline_settings.BY_NAME[name].default is None   # not written again in the pipeline
    value = field_default(settings, field_name)
    assert pipeline_settings.default_of(name) == ("all" if name == "POOL" and value is None else shown(value))


@pytest.mark.parametrize("stage", sorted(pipeline_settings.STAGE_OPTIONS))
def test_every_variable_passed_as_an_option_names_a_field(stage):
    settings, names = pipeline_settings.STAGE_OPTIONS[stage]
    assert set(names.values()) <= {f.name for f in option_fields(settings)}
    for name in names:   # its default, if any, is the field's: no copy of it in the pipeline
        assert pipeline_settings.BY_NAME[name].default is None
        if name in pipeline_settings.DEFAULT_FROM:
            assert pipeline_settings.DEFAULT_FROM[name] in {
                (cls, f) for cls, fs in pipeline_settings.STAGE_OPTIONS.values() for n, f in fs.items() if n == name}


def test_a_bad_value_is_refused_with_its_variable_before_anything_runs():
    with pytest.raises(pipeline_settings.SettingsError, match="F='0': F must be a positive integer"):
        pipeline_settings.Settings({"F": "0"}).options("select")
    assert pipeline_settings.Settings({"F": "3"}).options("select")[:2] == ["--F", "3"]


def test_the_docs_table_of_variables_is_the_code_s():
    text = (ROOT / "docs" / "pipeline.md").read_text(encoding="utf-8")
    table = text.split("<!-- settings table: pipeline.settings.markdown_table() -->\n", 1)[1]
    assert table.split("<!-- end of settings table -->", 1)[0].strip() == pipeline_settings.markdown_table()
