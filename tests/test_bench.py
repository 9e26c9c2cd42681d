"""Every benchmark can run on an install of the `bench` extra: each module imports, and every
package any of them imports (at the top or inside a function) is installed."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys

import pytest

from tests.helpers import REPO

MODULES = sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_a_bench_module_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    if name not in ("redis_server", "catalog", "memory"):  # helpers of the others
        assert hasattr(module, "main") or hasattr(module, "run"), f"bench.{name} runs nothing"


def test_every_package_a_bench_imports_is_installed() -> None:
    missing = set()
    for path in (REPO / "bench").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and node.level == 0 else [])
            for top in {n.split(".")[0] for n in names}:
                if top not in sys.stdlib_module_names and importlib.util.find_spec(top) is None:
                    missing.add(f"{top} (bench/{path.name})")
    assert not missing, f"not installed by `pip install -e .[bench]`: {sorted(missing)}"
