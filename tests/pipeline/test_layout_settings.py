"""One definition of each default: a stage's settings are the fields of its config dataclass (default, help,
check), which the command lines, the pipeline's variables and `make help` read. Checked on the source, so a
copied default cannot come back unnoticed."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest
from test_layout import PACKAGES

from pipeline import settings as pipeline_settings
from selection.config import SelectConfig

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


def is_none(node: ast.AST) -> bool:
    """A default of None: two fields of one name that are both unset by default are one setting too."""
    return isinstance(node, ast.Constant) and node.value is None


def literal_option_defaults(tree: ast.Module) -> list[int]:
    """Lines of ``add_argument(..., default=<literal>)`` calls."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
            and any(k.arg == "default" and is_literal(k.value) for k in node.keywords)]


def settings_literals(tree: ast.Module) -> list[tuple[str, str, str, int]]:
    """(class, field, literal, line) of every field of a config dataclass (one whose fields carry a help text,
    given to ``field`` or to a helper such as ``_option(20, "help")``) whose default is a literal or None: its
    ``default=``, the helper's first argument, or the value written in place (``seed: int = 42``)."""
    found = []
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        rows = []
        for stmt in cls.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value):
                continue
            value, default, help_given = stmt.value, stmt.value, False
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
                keywords = {k.arg: k.value for k in value.keywords}
                default = keywords.get("default", value.args[0] if value.args else None)
                metadata = ast.unparse(keywords.get("metadata", ast.Constant("")))
                help_given = value.func.id != "field" or "'help'" in metadata
            rows.append((stmt.target.id, default, stmt.lineno, help_given))
        if any(row[3] for row in rows):
            found += [(cls.name, name, ast.unparse(default), line) for name, default, line, _ in rows
                      if default and (is_literal(default) or is_none(default))]
    return found


def test_the_checks_see_a_literal_default():
    tree = ast.parse("from dataclasses import field\nclass C:\n    n: int = field(default=8, metadata={'help': 'h'})\n"
                     "    m: int = field(default=N, metadata={'help': 'h'})\n"
                     "p.add_argument('--n', default=1 << 3)\np.add_argument('--m', default=None)\n"
                     "class TrainConfig:\n    seed: int = 42\n    cap: int | None = _setting(None, 'h')\n")
    assert settings_literals(tree) == [("C", "n", "8", 3), ("TrainConfig", "seed", "42", 8),
                                       ("TrainConfig", "cap", "None", 9)]
    assert literal_option_defaults(tree) == [5]


def test_command_lines_take_their_defaults_from_settings_dataclasses():
    found = {str(p.relative_to(ROOT)): literal_option_defaults(tree) for p, tree in sources().items()}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_no_setting_has_its_default_written_twice():
    """A field of one name with the same literal default in two config dataclasses is a copy: the second
    refers to the first (``seed: int = field(default=PrepareConfig.seed, ...)``)."""
    copies: dict[tuple[str, str], list[str]] = {}
    for path, tree in sources().items():
        for cls, name, literal, line in settings_literals(tree):
            copies.setdefault((name, literal), []).append(f"{path.relative_to(ROOT)}:{line} {cls}.{name}")
    assert {key: where for key, where in copies.items() if len(where) > 1} == {}


def test_a_variable_is_declared_once():
    """A stage's variable is a field with a Make name, never a RunConfig field too; fields that several stages
    take from one variable (SEED) share its default."""
    run_level = {f.name for f in fields(pipeline_settings.RunConfig)}
    by_name: dict[str, set[str]] = {}
    for configs in pipeline_settings.STAGE_CONFIGS.values():
        for config in configs:
            for f in pipeline_settings.make_fields(config):
                by_name.setdefault(f.metadata["make"], set()).add(pipeline_settings.default_text(config, f))
    assert not run_level & set(by_name)
    assert {name: defaults for name, defaults in by_name.items() if len(defaults) > 1} == {}
    assert set(pipeline_settings.BY_NAME) == run_level | set(by_name)


def test_a_bad_value_is_refused_with_its_variable_before_anything_runs():
    with pytest.raises(pipeline_settings.VariableError, match="F='0': F must be a positive integer"):
        pipeline_settings.Variables({"F": "0"})
    with pytest.raises(pipeline_settings.VariableError, match="max-rejected must be a positive integer or 'none'"):
        pipeline_settings.Variables({"MAX_REJECTED": "0"})
    with pytest.raises(pipeline_settings.VariableError, match="NPROC='two'"):
        pipeline_settings.Variables({"NPROC": "two"})
    with pytest.raises(pipeline_settings.VariableError, match="HEAD_THRESHOLD"):
        pipeline_settings.Variables({"HEAD_THRESHOLD": "0.001"})   # below the tail threshold
    assert pipeline_settings.Variables({"F": "3"}).options(SelectConfig)[:2] == ["--F", "3"]


def test_the_docs_table_of_variables_is_the_code_s():
    """`python -m pipeline.settings` rewrites it."""
    text = pipeline_settings.DOCS.read_text(encoding="utf-8")
    assert pipeline_settings.docs_with_table(text) == text


def test_no_sasrec_profile_repeats_a_default():
    """sasrec's settings are the fields of ModelConfig and TrainConfig; a profile YAML holds only what differs."""
    import yaml

    from sasrec.model import ModelConfig
    from sasrec.train import TrainConfig

    defaults = {f.name: f.default for config in (ModelConfig, TrainConfig) for f in fields(config)}
    profiles = sorted((ROOT / "recipes" / "sasrec").glob("*.yaml"))
    assert profiles
    for path in profiles:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert {key: value for section in raw.values() for key, value in section.items()
                if defaults.get(key) == value} == {}, path
