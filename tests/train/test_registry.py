"""The model registry: every kind names its parts, and configs survive a JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.contracts import CARDS
from train.dlrm import DLRM, DLRMConfig
from train.registry import MODELS, build, config_from_dict, kind_of, spec
from train.two_tower import TwoTower


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
