"""The model registry: every kind names its parts, configs survive a JSON round trip, and a
config saved before a field existed means what it meant then."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.contracts import CARDS
from train.artifacts import load_model, save_model
from train.dlrm import DLRM, DLRMConfig
from train.registry import MODELS, build, config_from_dict, kind_of, spec
from train.two_tower import TwoTower, TwoTowerConfig


def test_every_kind_is_complete_and_named_once() -> None:
    assert set(MODELS) == {"two_tower", "dlrm"}
    files = [s.file for s in MODELS.values()]
    assert len(set(files)) == len(files)
    for kind, s in MODELS.items():
        assert s.kind == kind and dataclasses.is_dataclass(s.config)
        assert set(s.inputs) < set(s.columns) and "label" in s.columns
        model = build(kind, s.config(), CARDS)
        assert isinstance(model, s.model) and kind_of(model) == kind


def test_configs_come_back_from_json_with_their_tuples() -> None:
    cfg = DLRMConfig(embedding_dim=8, bottom=(16, 8), top=(4,))
    again = config_from_dict("dlrm", json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg and isinstance(again.bottom, tuple)
    assert isinstance(build("dlrm", dataclasses.asdict(cfg), CARDS), DLRM)


def test_unknown_kinds_and_fields_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown model kind 'wide_deep'; expected one of "
                                         "two_tower, dlrm"):
        spec("wide_deep")
    with pytest.raises(ValueError, match=r"unknown fields \['layers'\]"):
        config_from_dict("two_tower", {"layers": 3})
    with pytest.raises(TypeError, match="not a registered model"):
        kind_of(TwoTower.__new__(type("Other", (TwoTower,), {})))


def test_a_two_tower_saved_before_the_residuals_loads_without_them(tmp_path: Path) -> None:
    old = TwoTower(TwoTowerConfig(item_residual=False, user_residual=False), CARDS)
    save_model(old, tmp_path, CARDS)
    meta = json.loads((tmp_path / "two_tower.json").read_text())
    for name in ("item_residual", "user_residual"):  # as versions published before them
        del meta["config"][name]
    (tmp_path / "two_tower.json").write_text(json.dumps(meta))
    loaded = load_model("two_tower", tmp_path)
    assert loaded.item_tower.residual is None and loaded.user_tower.residual is None
    new = TwoTowerConfig()  # while new models have both
    assert new.item_residual and new.user_residual
