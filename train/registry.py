"""Every model kind in one table: its scoring module, config, training wrapper, file name and
inputs. Training, the artifact folder and scoring look a kind up here instead of choosing by
string or by file name, so a new model is one entry (and one test class, see
tests/contracts.py).

Example::

    spec = MODELS["dlrm"]
    model = build("dlrm", DLRMConfig(), cards)
    loss = spec.task(model)(batch)  # the training wrapper holds the loss
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from train import dlrm, two_tower


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    model: type[nn.Module]  # what serving imports: scores, no loss
    config: type  # its frozen dataclass
    task: type[nn.Module]  # the training wrapper: model in, loss out
    file: str  # <file>.pt (weights) and <file>.json (config) in a version folder
    inputs: tuple[str, ...]  # featurized columns the model reads when scoring
    columns: tuple[str, ...]  # featurized columns training carries (inputs and labels)


MODELS: dict[str, ModelSpec] = {
    "two_tower": ModelSpec("two_tower", two_tower.TwoTower, two_tower.TwoTowerConfig,
                           two_tower.TwoTowerTrain, "two_tower",
                           two_tower.USER_INPUTS + two_tower.ITEM_INPUTS,
                           two_tower.TRAIN_COLUMNS),
    "dlrm": ModelSpec("dlrm", dlrm.DLRM, dlrm.DLRMConfig, dlrm.DLRMTrain, "dlrm", dlrm.INPUTS,
                      dlrm.TRAIN_COLUMNS),
}


def spec(kind: str) -> ModelSpec:
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODELS)}")
    return MODELS[kind]


def kind_of(model: nn.Module) -> str:
    """The registry's name for a model instance."""
    for s in MODELS.values():
        if type(model) is s.model:
            return s.kind
    raise TypeError(f"{type(model).__name__} is not a registered model; add it to MODELS")


def config_from_dict(kind: str, values: dict[str, Any]) -> Any:
    """The kind's config from JSON, where tuples come back as lists."""
    cls = spec(kind).config
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := set(values) - names:
        raise ValueError(f"{kind} config has unknown fields {sorted(unknown)}")
    # A field absent from an older saved config takes the value it had then, not its default.
    values = getattr(cls, "SAVED_BEFORE", {}) | values
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def build(kind: str, config: Any, cards: dict[str, int]) -> nn.Module:
    """A fresh model of `kind`; `config` is its dataclass or that dataclass as a dict."""
    if isinstance(config, dict):
        config = config_from_dict(kind, config)
    return spec(kind).model(config, cards)
