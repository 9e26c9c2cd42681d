"""Batch scoring with trained models: the one path used by evaluation and serving."""

from __future__ import annotations

import numpy as np
import torch

from train.dlrm import DLRM
from train.features import DENSE, ITEM_SPARSE, USER_SPARSE, VECTORS
from train.two_tower import TwoTower


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


@torch.no_grad()
def item_vectors(model: TwoTower, item_rows: dict[str, np.ndarray]) -> np.ndarray:
    """(I, D) item-tower vectors for every catalog row (or any rows of item features)."""
    return model.item_embedding(to_tensors({k: item_rows[k] for k in (*ITEM_SPARSE, "content")
                                            if k in item_rows})).numpy()


@torch.no_grad()
def user_vectors(model: TwoTower, user_cols: dict[str, np.ndarray]) -> np.ndarray:
    """(B, D) query-tower vectors."""
    return model.user_embedding(to_tensors({k: user_cols[k] for k in (*USER_SPARSE, "history")
                                            if k in user_cols})).numpy()


@torch.no_grad()
def click_probability(model: DLRM, rows: dict[str, np.ndarray]) -> np.ndarray:
    """(B,) DLRM click probabilities; `rows` holds user, item and context columns."""
    x = to_tensors({k: v for k, v in rows.items() if k not in ("user_pos", "history")})
    return torch.sigmoid(model(x)).numpy()
