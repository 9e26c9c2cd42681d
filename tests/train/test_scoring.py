"""Scoring: NumPy columns become the tensors each model expects, and each model is handed
exactly the columns its registry entry names, whatever else a row carries."""

from __future__ import annotations

import numpy as np
import torch

from tests.contracts import CARDS
from train.dlrm import DLRM, SPARSE, DLRMConfig
from train.features import DENSE
from train.registry import MODELS
from train.scoring import click_probability, item_vectors, to_tensors, user_vectors
from train.two_tower import TwoTower, TwoTowerConfig


def columns(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {k: rng.integers(0, CARDS[k], n) for k in SPARSE}
    cols |= {k: rng.normal(size=n).astype(np.float32) for k in DENSE}
    cols |= {"history": rng.random((n, CARDS["history"]), np.float32),
             "content": rng.normal(size=(n, CARDS["content"])).astype(np.float32)}
    return cols


def test_to_tensors_stacks_dense_features() -> None:
    b = {n: np.zeros(3, dtype=np.int64) for n in SPARSE}
    b |= {n: np.full(3, k, dtype=np.float32) for k, n in enumerate(DENSE)}
    x = to_tensors(b, torch.device("cpu"))
    assert x["dense"].shape == (3, len(DENSE))
    assert x["dense"][0].tolist() == list(range(len(DENSE)))
    assert x["user"].dtype == torch.int64 and not set(DENSE) & set(x)


def test_extra_columns_do_not_change_scores() -> None:
    """Serving's rows carry `user_pos` and the history vector, which the DLRM does not read;
    evaluation's carry labels. Neither may reach or change a model."""
    torch.manual_seed(0)
    dlrm, tt = DLRM(DLRMConfig(), CARDS).eval(), TwoTower(TwoTowerConfig(), CARDS).eval()
    cols = columns(4)
    extra = cols | {"user_pos": np.arange(4), "label": np.ones(4, np.float32),
                    "item_row": np.arange(4)}
    np.testing.assert_array_equal(click_probability(dlrm, cols), click_probability(dlrm, extra))
    np.testing.assert_array_equal(user_vectors(tt, cols), user_vectors(tt, extra))
    np.testing.assert_array_equal(item_vectors(tt, cols), item_vectors(tt, extra))
    assert "history" not in MODELS["dlrm"].inputs and "content" in MODELS["dlrm"].inputs
    p = click_probability(dlrm, cols)
    assert p.shape == (4,) and ((p > 0) & (p < 1)).all()
