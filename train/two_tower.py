"""Two-Tower retrieval model: a query (user) tower and a candidate (item) tower.

Both towers end in L2-normalized D-dim vectors, so a user's score for an item is a cosine
similarity and the item vectors go straight into an inner-product FAISS index. The loss
(in-batch softmax) lives in `TwoTowerTrain`; serving imports only `TwoTower`.

Each tower also takes one vector input beside its embeddings: the query tower the user's
category shares from training history (zeros for a cold user), the item tower the item's
content embedding (PCA of its text embedding), which is what lets a brand-new item with no
interactions get a useful vector. With `item_history`, the query tower also reads the mean
embedding of the user's latest clicked items (`hist_items`, OOV-padded; an empty bag is
zeros): a user is then described by what they clicked as well as by their id, so the tower
generalizes across users the way item-to-item models do. Training leaves each row's own item
out of its user's bag, or the tower would learn to find the items already in it.

Shapes: B batch, D output dimension, E embedding dimension, V vector input width.

Example::

    cards = {"user": 10, "age_bucket": 7, "gender": 3, "top_category": 5, "history": 5,
             "item": 20, "category": 5, "style": 9, "price_bucket": 12, "content": 16}
    model = TwoTower(TwoTowerConfig(), cards)
    x = {k: torch.zeros(4, dtype=torch.long) for k in USER_SPARSE}
    u = model.user_embedding(x | {"history": torch.zeros(4, 5)})
    assert u.shape == (4, 64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from train.features import ITEM_SPARSE, USER_SPARSE

USER_INPUTS = (*USER_SPARSE, "history", "hist_items")  # what the query tower reads
ITEM_INPUTS = (*ITEM_SPARSE, "content")  # what the item tower reads
# Training also needs each row's catalog row (for logQ and duplicate positives) and label.
TRAIN_COLUMNS = (*USER_INPUTS, *ITEM_INPUTS, "item_row", "label")


@dataclass(frozen=True)
class TwoTowerConfig:
    id_dim: int = 32  # user and item id embeddings
    attr_dim: int = 8  # every other categorical attribute
    hidden: int = 128
    out_dim: int = 64
    # Fixed: with the softmax over the catalog a learned temperature fell to ~0.08 and the
    # tower ranked no better; 0.2-0.3 ranked best on MovieLens-100K's validation split.
    temperature: float = 0.25  # the initial value when learned
    learn_temperature: bool = False
    min_temperature: float = 0.01
    # The bag of the user's latest clicked items in the query tower (train/features.py
    # `HISTORY_ITEMS`); off by default, see flows/train.py TrainConfig.two_tower.
    item_history: bool = False
    # Each item's own vector added to the item tower's output (`Tower`'s `residual`).
    item_residual: bool = True
    # What a config saved before a field existed meant (train/registry.py
    # `config_from_dict`): versions published before the residual have none.
    SAVED_BEFORE: ClassVar[dict[str, Any]] = {"item_residual": False}


class Tower(nn.Module):
    """Embeds a fixed set of categorical features, concatenates them with one vector input
    (skipped when its width is 0) and the mean embedding of one bag of ids (`bag`, when
    given; id 0 pads), and projects with an MLP. With `residual` (an id feature's name), an
    embedding of that id in the output space is added to the MLP's output: each id gets a
    free vector of its own beside what its features say, which a shared MLP alone learns
    poorly (on MovieLens-100K the item MLP alone cost the Two-Tower a tenth of its NDCG@10).
    An unseen id's residual is the OOV row's, so a new item is still placed by its content."""

    def __init__(self, names: tuple[str, ...], vector: str, cards: dict[str, int],
                 id_dim: int, attr_dim: int, hidden: int, out_dim: int,
                 bag: str | None = None, residual: str | None = None) -> None:
        super().__init__()
        self.names, self.bag_name = names, bag or ""
        self.vector = vector if cards.get(vector, 0) else None
        dims = {n: id_dim if n in ("user", "item") else attr_dim for n in names}
        self.embeddings = nn.ModuleDict({n: nn.Embedding(cards[n], dims[n]) for n in names})
        self.bag = (nn.EmbeddingBag(cards[bag], id_dim, mode="mean", padding_idx=0)
                    if bag else None)
        width = (sum(dims.values()) + (cards[vector] if self.vector else 0)
                 + (id_dim if bag else 0))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        self.residual_name = residual or ""
        self.residual = nn.Embedding(cards[residual], out_dim) if residual else None
        if self.residual is not None:  # the scale of the MLP's output at the start
            nn.init.normal_(self.residual.weight, std=0.1)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        h = [self.embeddings[n](x[n]) for n in self.names]  # F x (B, E)
        if self.vector:
            h.append(x[self.vector].float())  # B, V
        if self.bag is not None:
            h.append(self.bag(x[self.bag_name]))  # B, E: mean over the non-pad ids
        out = self.mlp(torch.cat(h, dim=1))  # B, D
        if self.residual is not None:
            out = out + self.residual(x[self.residual_name])
        return F.normalize(out, dim=1)  # B, D


class TwoTower(nn.Module):
    def __init__(self, cfg: TwoTowerConfig, cards: dict[str, int]) -> None:
        super().__init__()
        self.cfg = cfg
        self.user_tower = Tower(USER_SPARSE, "history", cards, cfg.id_dim, cfg.attr_dim,
                                cfg.hidden, cfg.out_dim,
                                bag="hist_items" if cfg.item_history else None)
        self.item_tower = Tower(ITEM_SPARSE, "content", cards, cfg.id_dim, cfg.attr_dim,
                                cfg.hidden, cfg.out_dim,
                                residual="item" if cfg.item_residual else None)
        # log(1 / temperature), learned like CLIP's logit scale when cfg says so; only the
        # training loss uses it (retrieval ranks by cosine, which it does not change).
        self.log_inv_temperature = nn.Parameter(torch.tensor(-math.log(cfg.temperature)),
                                                requires_grad=cfg.learn_temperature)

    @property
    def temperature(self) -> torch.Tensor:
        max_scale = -math.log(self.cfg.min_temperature)
        return torch.exp(-self.log_inv_temperature.clamp(max=max_scale))

    def user_embedding(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user_tower(x)  # B, D

    def item_embedding(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.item_tower(x)  # B, D

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Score of each row's user for the same row's item."""
        return (self.user_embedding(x) * self.item_embedding(x)).sum(dim=1)  # B


CATALOG = "catalog_"  # prefix of the task inputs that hold every catalog row's item inputs


class TwoTowerTrain(nn.Module):
    """Softmax over items: each user's positive item against the other items.

    With the catalog's item inputs (`catalog_<column>` for each of `ITEM_INPUTS`, one row per
    catalog row), the softmax runs over the whole catalog: every step embeds every item, and
    the loss is the exact log-likelihood of the clicked item. On a catalog of a few thousand
    items that costs less than the batch itself, and it is what lets the tower match the
    matrix factorizations on MovieLens (flows/train.py `TrainConfig.full_softmax_items`).

    Without them, the softmax is in-batch: the batch's other items are the negatives. Those
    are sampled in proportion to popularity, which teaches the model to demote popular items;
    subtracting log q(item), the item's share of training clicks, from each logit corrects
    for that (sampled softmax "logQ" correction, Yi et al. 2019). Rows whose item equals the
    positive item are not counted as negatives.
    """

    log_q: torch.Tensor  # (I,) registered buffer; empty when no correction is applied

    def __init__(self, model: TwoTower, log_q: torch.Tensor | None = None,
                 **catalog: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("log_q", log_q.float() if log_q is not None else torch.zeros(0),
                             persistent=False)
        names = {CATALOG + n for n in ITEM_INPUTS}
        if unknown := set(catalog) - names:
            raise TypeError(f"unknown Two-Tower task inputs {sorted(unknown)}; the catalog's "
                            f"are {sorted(names)}")
        self.catalog_columns = tuple(n for n in ITEM_INPUTS if CATALOG + n in catalog)
        for n in self.catalog_columns:  # buffers: they move to the worker's device with it
            t = catalog[CATALOG + n]
            self.register_buffer(CATALOG + n, t.float() if n == "content" else t.long(),
                                 persistent=False)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        if "hist_items" in x:  # each row's own item out of its user's bag
            x = x | {"hist_items": x["hist_items"].masked_fill(
                x["hist_items"] == x["item"][:, None], 0)}
        u = self.model.user_embedding(x)  # B, D
        if self.catalog_columns:
            items = {n: getattr(self, CATALOG + n) for n in self.catalog_columns}
            v = self.model.item_embedding(items)  # I, D
            return F.cross_entropy(u @ v.T / self.model.temperature, x["item_row"])  # B, I
        v = self.model.item_embedding(x)  # B, D
        logits = u @ v.T / self.model.temperature  # B, B
        if len(self.log_q):
            logits = logits - self.log_q[x["item_row"]][None, :]
        same = x["item_row"][:, None] == x["item_row"][None, :]  # B, B
        eye = torch.eye(len(u), dtype=torch.bool, device=u.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
        target = torch.arange(len(u), device=u.device)
        return F.cross_entropy(logits, target)
