"""The daily fine-tuning flow: day planning, the promotion rule, and one run on tiny data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from flows.finetune import FinetuneConfig, finetune, plan_days, should_promote
from train.artifacts import load_bundle


def fake_bundle(train_days: list[int], val_days: list[int]) -> SimpleNamespace:
    return SimpleNamespace(version="v1", manifest={"data_window": {
        "train_days": train_days, "val_days": val_days}})


def test_days_default_to_the_next_day_and_later_validation_days() -> None:
    b = fake_bundle(list(range(9)), [9, 10, 11])
    assert plan_days(b, FinetuneConfig(), list(range(14))) == (tuple(range(9)), (9,), (10, 11))
    cfg = FinetuneConfig(new_days=(9, 10), val_days=(11,))
    assert plan_days(b, cfg, list(range(14)))[1:] == ((9, 10), (11,))


def test_bad_day_choices_say_what_to_do() -> None:
    b = fake_bundle(list(range(9)), [9, 10, 11])
    with pytest.raises(ValueError, match="already in version v1's training window"):
        plan_days(b, FinetuneConfig(new_days=(8,)), list(range(14)))
    with pytest.raises(ValueError, match="no day\\(s\\) \\[10, 11\\]"):
        plan_days(b, FinetuneConfig(), list(range(10)))
    with pytest.raises(ValueError, match="pass --val-days"):
        plan_days(b, FinetuneConfig(new_days=(11,)), list(range(14)))


def test_promotion_allows_drops_within_the_margin_only() -> None:
    assert should_promote({"auc": (0.70, 0.697), "recall": (0.5, 0.52)}, margin=0.005)
    assert not should_promote({"auc": (0.70, 0.69), "recall": (0.5, 0.52)}, margin=0.005)
    assert not should_promote({"auc": (0.70, 0.70)}, margin=-0.01)  # must improve by 0.01


@pytest.mark.ray
def test_finetune_keeps_items_fixed_and_moves_the_query_side(
        tiny_data: Path, tiny_artifacts: Path, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts.parent, root)  # the shared fixture stays untouched
    before = load_bundle(root)
    out = finetune(FinetuneConfig(data=tiny_data, artifacts=root, margin=float("inf")))
    after = load_bundle(root / out.version)
    assert out.promoted and (root / "LATEST").read_text() == out.version

    # Item side frozen: same index, same item-tower weights.
    np.testing.assert_array_equal(after.index.reconstruct_n(0, after.index.ntotal),
                                  before.index.reconstruct_n(0, before.index.ntotal))
    item_old = before.two_tower.item_tower.state_dict()
    for name, w in after.two_tower.item_tower.state_dict().items():
        torch.testing.assert_close(w, item_old[name], rtol=0, atol=0)
    # Query side and ranker moved.
    user_old = before.two_tower.user_tower.state_dict()
    assert any(not torch.equal(w, user_old[n])
               for n, w in after.two_tower.user_tower.state_dict().items())
    dlrm_old = before.dlrm.state_dict()
    assert any(not torch.equal(w, dlrm_old[n]) for n, w in after.dlrm.state_dict().items())

    # A user first seen on the new day: still OOV by id, but now has a history.
    window = after.manifest["data_window"]
    assert window["train_days"] == list(range(10)) and window["val_days"] == [10, 11]
    import pandas as pd

    day9 = pd.read_parquet(tiny_data / "interactions" / "day=09")
    newcomers = sorted(set(day9["user_id"]) - set(before.features.users))
    assert newcomers, "tiny data should have users who sign up on day 9"
    row = after.user_table.rows[newcomers[0]]
    assert after.user_table.history[row].sum() > 0.99
    assert before.user_table.history[before.user_table.rows[newcomers[0]]].sum() == 0

    ft = after.manifest["metrics"]["finetune"]
    assert ft["from_version"] == before.version and ft["item_embedding_drift"] <= 1e-5
    assert set(ft["before_after"]) == {"recall@100", "auc"}
    assert json.loads((root / out.version / "manifest.json").read_text())["version"] == \
        out.version
