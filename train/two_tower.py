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

from train.blend import OBJECTIVE, metric
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
    # Each user's own vector added to the query tower's output; a user the vocabulary does not
    # know (or a row masked as cold-start in training) gets the OOV row's.
    user_residual: bool = True
    # What a config saved before a field existed meant (train/registry.py
    # `config_from_dict`): versions published before the residual have none.
    SAVED_BEFORE: ClassVar[dict[str, Any]] = {"item_residual": False, "user_residual": False}


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
                                bag="hist_items" if cfg.item_history else None,
                                residual="user" if cfg.user_residual else None)
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


def ranking_score(rank: torch.Tensor) -> torch.Tensor:
    """(B,) each validation row's share of the blend's objective (train/blend.py
    `OBJECTIVE`: NDCG@10 and recall@100) from its item's 0-based `rank` (B,), the row's one
    relevant item: the mean over the objective's metrics of 1/log2(rank + 2) within NDCG's
    cut and 1 within recall's, 0 below the cut."""
    out = torch.zeros(len(rank), dtype=torch.float32, device=rank.device)
    for spec in OBJECTIVE:
        name, k = metric(spec)
        hit = rank < k
        out += torch.where(hit, 1 / torch.log2(rank.float() + 2), 0.0) if name == "ndcg" \
            else hit.float()
    return out / len(OBJECTIVE)


class TwoTowerTrain(nn.Module):
    """Softmax over items: each user's positive item against the other items.

    With the catalog's item inputs (`catalog_<column>` for each of `ITEM_INPUTS`, one row per
    catalog row), the softmax runs over the whole catalog: every step embeds every item, and
    the loss is the exact log-likelihood of the clicked item. On a catalog of a few thousand
    items that costs less than the batch itself, and it is what lets the tower match the
    matrix factorizations on MovieLens (flows/train.py `TrainConfig.full_softmax_items`).

    With `seen_indptr` and `seen_rows` as well (each user code's catalog rows clicked in the
    training days, as CSR), the validation loss leaves out of each row's softmax the other
    items its user clicked in training, as serving leaves them out of its answers. Without
    that, the loss rewards placing a user's old clicks above their new ones, and on
    MovieLens-100K its lowest point came epochs before the ranking's best (NDCG@10 of the
    unseen items). Training itself keeps every item in the softmax.

    Without them, the softmax is in-batch: the batch's other items are the negatives. Those
    are sampled in proportion to popularity, which teaches the model to demote popular items;
    subtracting log q(item), the item's share of training clicks, from each logit corrects
    for that (sampled softmax "logQ" correction, Yi et al. 2019). Rows whose item equals the
    positive item are not counted as negatives.
    """

    log_q: torch.Tensor  # (I,) registered buffer; empty when no correction is applied
    seen_indptr: torch.Tensor  # (users + 1,) buffers, empty without the seen CSR
    seen_rows: torch.Tensor

    def __init__(self, model: TwoTower, log_q: torch.Tensor | None = None,
                 seen_indptr: torch.Tensor | None = None, seen_rows: torch.Tensor | None = None,
                 **catalog: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("log_q", log_q.float() if log_q is not None else torch.zeros(0),
                             persistent=False)
        if (seen_indptr is None) != (seen_rows is None):
            raise TypeError("seen_indptr and seen_rows come together (a CSR of each user's "
                            "clicked catalog rows)")
        for name, t in (("seen_indptr", seen_indptr), ("seen_rows", seen_rows)):
            self.register_buffer(name, (t if t is not None else torch.zeros(0)).long(),
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
        return self.validation(x)[0]

    def validation(self, x: dict[str, torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss, and with the catalog each row's ranking score (`ranking_score`: how
        high its item ranks among the items its user has not clicked in training); None
        without the catalog. train/loop.py chooses the epochs by the ranking score when
        there is one: on MovieLens-100K the loss bottoms out while the ranking still gains,
        most with the MLP towers, which fit the loss faster than they learn to rank."""
        if "hist_items" in x:  # each row's own item out of its user's bag
            x = x | {"hist_items": x["hist_items"].masked_fill(
                x["hist_items"] == x["item"][:, None], 0)}
        u = self.model.user_embedding(x)  # B, D
        if self.catalog_columns:
            items = {n: getattr(self, CATALOG + n) for n in self.catalog_columns}
            v = self.model.item_embedding(items)  # I, D
            logits = u @ v.T / self.model.temperature  # B, I
            if not self.training and len(self.seen_indptr):
                logits = self.without_seen(logits, x["user"], x["item_row"])
            loss = F.cross_entropy(logits, x["item_row"])
            if self.training:
                return loss, None
            target = logits.gather(1, x["item_row"][:, None])  # B, 1
            return loss, ranking_score((logits > target).sum(1))
        v = self.model.item_embedding(x)  # B, D
        logits = u @ v.T / self.model.temperature  # B, B
        if len(self.log_q):
            logits = logits - self.log_q[x["item_row"]][None, :]
        same = x["item_row"][:, None] == x["item_row"][None, :]  # B, B
        eye = torch.eye(len(u), dtype=torch.bool, device=u.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
        target = torch.arange(len(u), device=u.device)
        return F.cross_entropy(logits, target), None

    def without_seen(self, logits: torch.Tensor, users: torch.Tensor, target: torch.Tensor
                     ) -> torch.Tensor:
        """(B, I) `logits` with -inf at each row's user's clicked catalog rows, except the
        row's own `target`."""
        start = self.seen_indptr[users]  # B
        n = self.seen_indptr[users + 1] - start  # B
        rows = torch.repeat_interleave(torch.arange(len(users), device=logits.device), n)
        first = torch.repeat_interleave(start - (torch.cumsum(n, 0) - n), n)
        cols = self.seen_rows[first + torch.arange(len(rows), device=logits.device)]
        keep = cols != target[rows]
        return logits.index_put((rows[keep], cols[keep]),
                                torch.tensor(float("-inf"), device=logits.device))
