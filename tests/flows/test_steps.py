"""The resumable flow: steps skip when their inputs are unchanged, and rerun downstream of a
change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.steps import Steps, fingerprint


def flow(root: Path, a: int, b: int, calls: list[str]) -> Steps:
    """Two independent steps feeding a third."""
    steps = Steps(root, log=lambda _: None)

    def write(name: str, value: int):
        def compute(out: Path) -> None:
            calls.append(name)
            (out / "v.json").write_text(json.dumps(value))
        return compute

    steps.run("one", {"a": a}, write("one", a))
    steps.run("two", {"b": b}, write("two", b))
    steps.run("sum", {}, write("sum", a + b), after=("one", "two"))
    return steps


def test_unchanged_inputs_skip_and_a_change_reruns_only_downstream(tmp_path: Path) -> None:
    calls: list[str] = []
    flow(tmp_path, 1, 2, calls)
    assert calls == ["one", "two", "sum"]
    calls.clear()
    again = flow(tmp_path, 1, 2, calls)
    assert calls == [] and again.skipped == ["one", "two", "sum"]
    flow(tmp_path, 1, 5, calls)
    assert calls == ["two", "sum"]  # "one" kept: its inputs did not change
    calls.clear()
    flow(tmp_path, 1, 2, calls)  # the first outputs are still there
    assert calls == []


def test_an_interrupted_step_is_not_mistaken_for_a_finished_one(tmp_path: Path) -> None:
    steps = Steps(tmp_path, log=lambda _: None)

    def crash(out: Path) -> None:
        (out / "half.txt").write_text("...")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        steps.run("x", {"a": 1}, crash)
    calls: list[str] = []
    steps.run("x", {"a": 1}, lambda out: calls.append("x"))
    assert calls == ["x"]


def test_a_dependency_must_run_first(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="depends on \\['one'\\]"):
        Steps(tmp_path, log=lambda _: None).run("sum", {}, lambda out: None, after=("one",))


def test_rewriting_a_data_file_changes_its_fingerprint(tmp_path: Path) -> None:
    f = tmp_path / "day.parquet"
    f.write_bytes(b"a")
    before = fingerprint([f])
    f.write_bytes(b"ab")
    assert fingerprint([f]) != before
