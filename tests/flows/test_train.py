"""`warmstart train`: a rerun reuses every finished step and a change reruns only what
depends on it; the Two-Tower that serves is refitted on the validation days; large data gets
fewer epochs and larger batches."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from flows.train import TrainConfig, for_data_size, train
from train.artifacts import load_model


@pytest.mark.ray
def test_train_rerun_reuses_every_step_and_a_ranker_change_reruns_four(
        tiny_data: Path, tiny_artifacts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = TrainConfig(data=tiny_data, artifacts=tiny_artifacts.parent)
    cfg = replace(cfg, two_tower_loop=replace(cfg.two_tower_loop, epochs=3),
                  dlrm_loop=replace(cfg.dlrm_loop, epochs=2))  # as the fixture trained
    assert train(cfg) == tiny_artifacts
    assert "ran 0 steps, reused 10" in capsys.readouterr().out
    # what serves is the Two-Tower trained again on training and validation days, for the
    # epochs step 3 chose on the validation days
    refit = json.loads((tiny_artifacts / "manifest.json").read_text())["metrics"][
        "two_tower_refit_epochs"]
    step3 = json.loads(next((tiny_artifacts.parent / "_steps" / "train_retrieval").glob(
        "*/history.json")).read_text())["epochs"]
    # chosen by the ranking score over the catalog (the catalog is small), not the loss
    assert all(0 <= e["val_ranking"] <= 1 and e["val_objective"] == pytest.approx(
        1 - e["val_ranking"]) for e in step3)
    best = min(range(len(step3)), key=lambda n: step3[n]["val_objective"])
    assert refit["epochs_chosen"] == len(refit["epochs"]) == best + 1
    served, provisional = (load_model("two_tower", f) for f in (
        tiny_artifacts, next((tiny_artifacts.parent / "_steps" / "train_retrieval").glob("*/"))))
    assert not torch.equal(served.item_tower.residual.weight,
                           provisional.item_tower.residual.weight)
    changed = replace(cfg, dlrm_loop=replace(cfg.dlrm_loop, epochs=1))
    folder = train(changed)
    assert folder != tiny_artifacts
    ran = json.loads((folder / "manifest.json").read_text())["metrics"]["steps"]["ran"]
    # the sources' blend weighs the DLRM, so it is refitted; publish, the fourth, records
    assert ran == ["train_ranker", "fit_sources", "evaluate"]
    (tiny_artifacts.parent / "LATEST").write_text(tiny_artifacts.name)  # leave it as found


@pytest.mark.ray
def test_the_options_that_are_off_by_default_train_and_serve(tiny_data: Path,
                                                             tiny_artifacts: Path) -> None:
    """The query tower's bag of clicked items and the DLRM's negatives from retrieval
    candidates (both off by default, their figures in docs/results.md), the in-batch softmax
    of large catalogs and a Two-Tower that is not refitted still train, publish and
    answer."""
    import asyncio

    from serve.pipeline import Pipeline, Request, bare_stores
    from serve.state import build_state
    from train.artifacts import load_bundle

    cfg = TrainConfig(data=tiny_data, artifacts=tiny_artifacts.parent)
    cfg = replace(cfg, two_tower=replace(cfg.two_tower, item_history=True),
                  dlrm_candidate_negatives=2, full_softmax_items=0, two_tower_refit=False,
                  two_tower_loop=replace(cfg.two_tower_loop, epochs=1),
                  dlrm_loop=replace(cfg.dlrm_loop, epochs=1))
    try:
        bundle = load_bundle(train(cfg))
    finally:
        (tiny_artifacts.parent / "LATEST").write_text(tiny_artifacts.name)  # as found
    assert bundle.two_tower.user_tower.bag is not None
    assert "refit_retrieval" not in bundle.manifest["metrics"]["steps"]["ran"]
    assert bundle.user_table.items.any()  # the users' latest clicks are kept
    state = build_state(bundle, interests=None)
    user = next(iter(state.users.rows))
    answer = asyncio.run(Pipeline(state, bare_stores(state)).recommend(Request(user_id=user)))
    assert len(answer.items) == 10


def test_large_training_data_gets_fewer_epochs_and_larger_batches() -> None:
    cfg = TrainConfig()
    assert for_data_size(cfg, 1_000_000) == cfg  # small: as configured
    big = for_data_size(cfg, 8_400_000)
    assert (big.two_tower_loop.epochs, big.dlrm_loop.epochs) == cfg.large_epochs
    assert big.two_tower_loop.batch_size == big.dlrm_loop.batch_size == cfg.large_batch_size
    assert big.two_tower_loop.lr == cfg.two_tower_loop.lr
    off = replace(cfg, large_rows=None)
    assert for_data_size(off, 8_400_000) == off
