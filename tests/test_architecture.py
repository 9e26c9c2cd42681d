"""The rules of docs/ARCHITECTURE.md, checked on the source: imports point one way, flows/
holds one module or package per command, defaults live in config dataclasses (not in flags
or path literals), and references to the architecture document name sections it has."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

# Lowest first: a package may import those before it, never those after it.
LAYERS = ("features", "index", "train", "interests", "serve", "flows")
FLOW_HELPERS = {"__init__", "cli", "runtime", "steps", "layout", "sources"}


def sources(package: str) -> Iterator[Path]:
    yield from sorted((REPO / package).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(LAYERS)


@pytest.mark.parametrize("package", LAYERS)
def test_imports_point_down_the_layers(package: str) -> None:
    allowed = set(LAYERS[:LAYERS.index(package) + 1])
    wrong = {str(p.relative_to(REPO)): sorted(imported_packages(p) - allowed)
             for p in sources(package) if imported_packages(p) - allowed}
    assert not wrong, f"{package} may import only {sorted(allowed)}: {wrong}"


def test_flows_holds_one_module_or_package_per_command() -> None:
    from flows.cli import COMMANDS

    top = {p.stem for p in (REPO / "flows").glob("*.py")}
    top |= {p.name for p in (REPO / "flows").iterdir() if (p / "__init__.py").exists()}
    assert top - FLOW_HELPERS == set(COMMANDS)
    for name in COMMANDS:
        module = REPO / "flows" / f"{name}.py"
        main = module if module.exists() else REPO / "flows" / name / "__main__.py"
        assert f'run_module("{name}")' in main.read_text(), f"{main} does not run {name}"
    mains = [str(p.relative_to(REPO)) for p in sources("flows")
             if any(isinstance(n, ast.FunctionDef) and n.name == "main"
                    for n in ast.parse(p.read_text()).body) and p.name != "cli.py"]
    assert not mains, f"per-module main() functions: {mains}"


def _calls(path: Path, name: str) -> Iterator[ast.Call]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == name:
                yield node


def test_flag_defaults_and_choices_come_from_configs_and_constants() -> None:
    """A flag's default is a config field or None/False (a literal would be a second copy
    of a default), and its choices are a named constant."""
    found = []
    for path in sources("flows"):
        for call in _calls(path, "add_argument"):
            for kw in call.keywords:
                value = kw.value
                literal_default = (kw.arg == "default" and isinstance(value, ast.Constant)
                                   and value.value not in (None, False, ""))
                literal_choices = kw.arg == "choices" and isinstance(value, ast.List | ast.Tuple)
                if literal_default or literal_choices:
                    found.append(f"{path.relative_to(REPO)}:{call.lineno}: {kw.arg}=")
    assert not found, found


def test_default_paths_are_written_once() -> None:
    """`Path("data")`, `Path("artifacts")` and the like appear only in flows/layout.py."""
    found = [f"{p.relative_to(REPO)}:{c.lineno}"
             for package in LAYERS for p in sources(package) if p.name != "layout.py"
             for c in _calls(p, "Path")
             if c.args and isinstance(c.args[0], ast.Constant)]
    assert not found, found


def test_references_to_the_architecture_document_name_its_sections() -> None:
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    headings = {h.strip() for h in re.findall(r"^#+ (.+)$", doc, flags=re.M)}
    cited = []
    for package in LAYERS + ("bench",):
        for p in sources(package):
            text = p.read_text()
            assert "DESIGN.md" not in text, f"{p} cites a document outside the repository"
            cited += [(p, s) for s in re.findall(r'ARCHITECTURE\.md, "([^"]+)"',
                                                 " ".join(text.split()))]
    assert cited, "no code points at docs/ARCHITECTURE.md"
    missing = [(str(p.relative_to(REPO)), s) for p, s in cited if s not in headings]
    assert not missing, f"sections not in docs/ARCHITECTURE.md: {missing}"


LONG = 60  # lines: a job's function longer than this says why, in a comment starting "# Long:"


def test_no_function_in_flows_is_long_without_saying_why() -> None:
    """Jobs read as numbered step calls (docs/ARCHITECTURE.md, "Configuration"); a long one
    is a library hiding in a job, or a step not yet named."""
    long = []
    for path in sources("flows"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = lines[node.lineno - 1:node.end_lineno]
                if len(body) > LONG and not any(b.strip().startswith("# Long:") for b in body):
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
                                f"({len(body)} lines)")
    assert not long, long


def test_public_functions_return_named_values_not_dicts() -> None:
    """A result that crosses a module boundary is a dataclass; where a dict is the right
    form (a JSON or YAML document, Ray's own schema) the signature says so in a comment."""
    bare = []
    for path in [*sources("serve"), *sources("train"), REPO / "flows" / "evaluate.py"]:
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not node.name.startswith("_") and node.returns is not None
                    and ast.unparse(node.returns) == "dict[str, Any]"
                    and "#" not in lines[node.returns.end_lineno - 1]):
                bare.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert not bare, bare
