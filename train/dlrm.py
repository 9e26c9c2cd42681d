"""DLRM ranker: click probability of a user for an item in a request context.

Sparse features (user, item, their attributes, device, hour, weekday) become E-dim vectors;
dense features go through a bottom MLP to one more E-dim vector; the interaction layer takes
every pairwise dot product; a top MLP turns them into a logit. The loss lives in `DLRMTrain`.

The item's pretrained content embedding (PCA of its text embedding, fixed during training)
is projected to one more E-dim vector that takes part in the interaction beside the learned
embeddings, so a new item's content is compared with the user and the context directly.

When the training data held positives only and the negatives were sampled (train/inputs.py
`Negatives`), the trained logit estimates log p(item | user) / (k q(item)), with q the
sampling distribution and k the negatives per positive: it demotes every item the sampler
drew often, popular ones most. `item_offset` (I,) holds log(k q(item)) per item id, set by the
training flow after training (zeros otherwise); scoring adds it back, so that the DLRM ranks
by how likely the user is to pick each item. Training never reads it (`DLRMTrain`).

Shapes: B batch, F interacting vectors from features, E embedding dimension, N dense
features, V content width.

Example::

    cards = {n: 5 for n in SPARSE} | {"content": 16}
    model = DLRM(DLRMConfig(), cards)
    x = {n: torch.zeros(3, dtype=torch.long) for n in SPARSE}
    x["dense"] = torch.zeros(3, len(DENSE))
    x["content"] = torch.zeros(3, 16)
    assert model(x).shape == (3,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from train.features import CONTEXT_SPARSE, DENSE, ITEM_SPARSE, USER_SPARSE

SPARSE = USER_SPARSE + ITEM_SPARSE + CONTEXT_SPARSE
INPUTS = (*SPARSE, *DENSE, "content")  # the featurized columns one score reads
TRAIN_COLUMNS = (*INPUTS, "label")


@dataclass(frozen=True)
class DLRMConfig:
    embedding_dim: int = 32
    bottom: tuple[int, ...] = (32,)
    top: tuple[int, ...] = (64, 32)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class SparseArch(nn.Module):
    """Learned embeddings of the named categorical features, and the projected content
    vector (left out when its width in `cards` is 0)."""

    def __init__(self, names: tuple[str, ...], cards: dict[str, int], dim: int) -> None:
        super().__init__()
        self.names = names
        self.embeddings = nn.ModuleDict({n: nn.Embedding(cards[n], dim) for n in names})
        width = cards.get("content", 0)
        self.content = nn.Linear(width, dim) if width else None
        self.n_vectors = len(names) + (1 if width else 0)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        v = [self.embeddings[n](x[n]) for n in self.names]  # F x (B, E)
        if self.content is not None:
            v.append(self.content(x["content"].float()))  # B, E
        return torch.stack(v, dim=1)  # B, F, E


class DenseArch(nn.Module):
    def __init__(self, n_dense: int, hidden: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.mlp = mlp([n_dense, *hidden, dim])

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        return self.mlp(dense)  # B, E


class InteractionArch(nn.Module):
    """Pairwise dot products of the dense vector and every sparse embedding."""

    rows: torch.Tensor  # upper-triangle pair indices, registered as buffers
    cols: torch.Tensor

    def __init__(self, n_sparse: int) -> None:
        super().__init__()
        rows, cols = torch.triu_indices(n_sparse + 1, n_sparse + 1, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        z = torch.cat([dense.unsqueeze(1), sparse], dim=1)  # B, F+1, E
        dots = z @ z.transpose(1, 2)  # B, F+1, F+1
        return torch.cat([dense, dots[:, self.rows, self.cols]], dim=1)  # B, E + (F+1)F/2


class OverArch(nn.Module):
    def __init__(self, in_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.mlp = mlp([in_dim, *hidden])
        self.out = nn.Linear(hidden[-1] if hidden else in_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(x)).squeeze(1)  # B


class DLRM(nn.Module):
    item_offset: torch.Tensor  # (I,) added to the logit when scoring (module docstring)

    def __init__(self, cfg: DLRMConfig, cards: dict[str, int]) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("item_offset", torch.zeros(cards["item"]))
        # Weights saved before the offset existed load with none.
        self._register_load_state_dict_pre_hook(_offset_or_zeros)
        e = cfg.embedding_dim
        self.sparse_arch = SparseArch(SPARSE, cards, e)
        f = self.sparse_arch.n_vectors
        self.dense_arch = DenseArch(len(DENSE), cfg.bottom, e)
        self.interaction_arch = InteractionArch(f)
        self.over_arch = OverArch(e + (f + 1) * f // 2, cfg.top)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Click logit per row, with the item's sampling offset."""
        return self.logit(x) + self.item_offset[x["item"]]  # B

    def logit(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """The network's logit per row, as trained."""
        sparse = self.sparse_arch(x)  # B, F, E
        dense = self.dense_arch(x["dense"])  # B, E
        return self.over_arch(self.interaction_arch(dense, sparse))  # B


class DLRMTrain(nn.Module):
    """Binary cross-entropy on the click label."""

    def __init__(self, model: DLRM) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.model.logit(x), x["label"])


def _offset_or_zeros(state: dict[str, Any], prefix: str, *args: Any) -> None:
    state.setdefault(prefix + "item_offset", torch.zeros(len(state[prefix + "sparse_arch."
                                                                    "embeddings.item.weight"])))


def sampling_offset(item_index: np.ndarray, probs: np.ndarray, per_positive: int,
                    n_ids: int) -> np.ndarray:
    """(n_ids,) log(k q(item)) per item id: `item_index` (I,) each catalog row's id, `probs`
    (I,) the chance the sampler draws it, `per_positive` k. Ids that stand for several
    catalog rows (the OOV id of unseen items) get the least likely row's."""
    out = np.full(n_ids, np.log(per_positive * probs.min()), np.float32)
    seen = np.bincount(item_index, minlength=n_ids) == 1
    keep = seen[item_index]
    out[item_index[keep]] = np.log(per_positive * probs[keep])
    return out
