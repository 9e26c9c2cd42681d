"""Batch scoring with trained models: the one path used by evaluation and serving. Each
function hands a model exactly the columns its registry entry says it reads."""

from __future__ import annotations

import numpy as np
import torch

from train.dlrm import DLRM
from train.features import DENSE, VECTORS
from train.registry import MODELS
from train.two_tower import ITEM_INPUTS, USER_INPUTS, TwoTower


def to_tensors(cols: dict[str, np.ndarray], device: torch.device | None = None
               ) -> dict[str, torch.Tensor]:
    """NumPy columns -> model inputs: sparse as int64, vector inputs as float32, and the
    dense scalars stacked into one (B, N) `dense` tensor when all of them are present."""
    out: dict[str, torch.Tensor] = {}
    for k, v in cols.items():
        if k in DENSE:
            continue
        dtype = np.float32 if (k in VECTORS or k == "label") else np.int64
        out[k] = torch.from_numpy(np.require(v, dtype=dtype, requirements=("C", "W")))
    if all(k in cols for k in DENSE):
        dense = np.stack([cols[k] for k in DENSE], axis=1).astype(np.float32)  # B, N
        out["dense"] = torch.from_numpy(dense)
    return {k: t.to(device) for k, t in out.items()} if device is not None else out


def _pick(cols: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {k: cols[k] for k in names if k in cols}


@torch.no_grad()
def item_vectors(model: TwoTower, item_rows: dict[str, np.ndarray]) -> np.ndarray:
    """(I, D) item-tower vectors for every catalog row (or any rows of item features)."""
    return model.item_embedding(to_tensors(_pick(item_rows, ITEM_INPUTS))).numpy()


@torch.no_grad()
def user_vectors(model: TwoTower, user_cols: dict[str, np.ndarray]) -> np.ndarray:
    """(B, D) query-tower vectors."""
    return model.user_embedding(to_tensors(_pick(user_cols, USER_INPUTS))).numpy()


@torch.no_grad()
def click_probability(model: DLRM, rows: dict[str, np.ndarray]) -> np.ndarray:
    """(B,) DLRM click probabilities; `rows` holds user, item and context columns."""
    return torch.sigmoid(model(to_tensors(_pick(rows, MODELS["dlrm"].inputs)))).numpy()
