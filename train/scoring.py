"""Batch scoring with trained models: the one path used by evaluation and serving."""

from __future__ import annotations

import numpy as np
import torch

from train.dlrm import DLRM
from train.features import DENSE, ITEM_SPARSE, USER_SPARSE
from train.two_tower import TwoTower


def _tensors(cols: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {n: torch.from_numpy(np.array(cols[n], dtype=np.int64)) for n in names}


@torch.no_grad()
def item_vectors(model: TwoTower, item_rows: dict[str, np.ndarray]) -> np.ndarray:
    """(I, D) item-tower vectors for every catalog row."""
    return model.item_embedding(_tensors(item_rows, ITEM_SPARSE)).numpy()


@torch.no_grad()
def user_vectors(model: TwoTower, user_cols: dict[str, np.ndarray]) -> np.ndarray:
    """(B, D) query-tower vectors."""
    return model.user_embedding(_tensors(user_cols, USER_SPARSE)).numpy()


@torch.no_grad()
def click_probability(model: DLRM, rows: dict[str, np.ndarray]) -> np.ndarray:
    """(B,) DLRM click probabilities; `rows` holds user, item and context columns."""
    x = {k: torch.from_numpy(np.array(v, dtype=np.int64)) for k, v in rows.items()
         if k not in DENSE and k not in ("label", "item_row")}
    x["dense"] = torch.from_numpy(np.stack([rows[k] for k in DENSE], axis=1).astype(np.float32))
    return torch.sigmoid(model(x)).numpy()
