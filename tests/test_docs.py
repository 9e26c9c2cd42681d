"""The documents stay true to the code: README lists exactly the CLI's commands, every
relative link and every file path they name exists, and no figure that changes with every
commit (a test count) sits in their prose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "cluster" / "README.md"]
TOP = ("flows", "serve", "train", "index", "interests", "features", "cluster", "bench",
       "tests", "docs", "scripts", "docker")


def test_readme_lists_exactly_the_cli_commands_in_order() -> None:
    from flows.cli import COMMANDS

    listed = re.findall(r"^\| `warmstart ([a-z-]+)` \|", (REPO / "README.md").read_text(),
                        flags=re.M)
    assert listed == list(COMMANDS)


def test_the_readme_stays_a_front_door() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:|#", target):
            continue  # a URL or an anchor in the same page
        if not (doc.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{doc.name} links to what does not exist: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_file_paths_named_exist(doc: Path) -> None:
    named = re.findall(rf"`((?:{'|'.join(TOP)})/[\w./-]*\w)`", doc.read_text())
    missing = sorted({p for p in named if not (REPO / p).exists()})
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_test_counts_in_prose(doc: Path) -> None:
    counts = re.findall(r"\b\d[\d,]* (?:of the \d[\d,]* )?(?:tests|passed)\b", doc.read_text())
    assert not counts, f"{doc.name}: {counts} goes stale with every commit"
