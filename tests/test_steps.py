"""The resumable flow: steps skip when their inputs are unchanged, and rerun downstream of a
change."""

from __future__ import annotations

import json
from dataclasses import replace
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


@pytest.mark.ray
def test_train_rerun_reuses_every_step_and_a_ranker_change_reruns_three(
        tiny_data: Path, tiny_artifacts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.training import TrainConfig, train

    cfg = TrainConfig(data=tiny_data, artifacts=tiny_artifacts.parent)
    cfg = replace(cfg, two_tower_loop=replace(cfg.two_tower_loop, epochs=3),
                  dlrm_loop=replace(cfg.dlrm_loop, epochs=2))  # as the fixture trained
    assert train(cfg) == tiny_artifacts
    assert "ran 0 steps, reused 8" in capsys.readouterr().out
    changed = replace(cfg, dlrm_loop=replace(cfg.dlrm_loop, epochs=1))
    folder = train(changed)
    assert folder != tiny_artifacts
    ran = json.loads((folder / "manifest.json").read_text())["metrics"]["steps"]["ran"]
    assert ran == ["train_ranker", "evaluate"]  # recorded by publish, the third, as it runs
    (tiny_artifacts.parent / "LATEST").write_text(tiny_artifacts.name)  # leave it as found


def test_large_training_data_gets_fewer_epochs_and_larger_batches() -> None:
    from flows.training import TrainConfig, for_data_size

    cfg = TrainConfig()
    assert for_data_size(cfg, 1_000_000) == cfg  # small: as configured
    big = for_data_size(cfg, 8_400_000)
    assert (big.two_tower_loop.epochs, big.dlrm_loop.epochs) == cfg.large_epochs
    assert big.two_tower_loop.batch_size == big.dlrm_loop.batch_size == cfg.large_batch_size
    assert big.two_tower_loop.lr == cfg.two_tower_loop.lr
    off = replace(cfg, large_rows=None)
    assert for_data_size(off, 8_400_000) == off
