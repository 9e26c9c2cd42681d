"""Item-item retrieval: what a user's own items say about the rest of the catalog.

A user's score for item k is the sum, over the items j the user interacted with, of a learned
weight B[j, k]:

    s_u = x_u B        x_u (I,) binary history, B (I, I)

B is EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): the closed-form ridge
regression of every item's column on all the others, with a zero diagonal,

    P = (X^T X + l2 I)^-1,    B = -P / diag(P),    diag(B) = 0

It needs one I x I inverse, so it is fitted for catalogs up to `dense_max_items` and kept
dense (B for 2,465 items is 24 MB). Larger catalogs get co-occurrence cosine neighbours
instead, B[j, k] = c(j, k) / sqrt(c(j, j) c(k, k)), keeping each item's `neighbours` largest.

It is a retrieval source beside the Two-Tower (serve/retrieval.py), and it works from the
first click: a brand-new user's clicks arriving as events are a history too. `Histories`
holds each known user's items, in the order of the version's user table.

Shapes: U users, I items (catalog rows), H items in one history.

Example::

    X = interaction_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 3)
    model = fit_item_item(X, ItemItemConfig(l2=1.0))
    assert model.scores(np.array([0])).shape == (3,)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class ItemItemConfig:
    l2: float = 500.0  # EASE's ridge penalty; the train flow picks it on validation days
    # what the train flow picks l2 from: the heavier values suit users with few clicks
    l2_grid: tuple[float, ...] = (50.0, 200.0, 500.0, 1000.0, 3000.0, 10000.0, 30000.0)
    # EASE inverts an I x I matrix: up to this many items (5,000: 100 MB, ~10 s on 2 cores).
    dense_max_items: int = 5_000
    neighbours: int = 400  # kept per item above dense_max_items (co-occurrence cosine)

    def __post_init__(self) -> None:
        if self.l2 <= 0 or any(v <= 0 for v in self.l2_grid):
            raise ValueError(f"l2 must be > 0, got {self.l2} (grid {self.l2_grid})")
        if self.neighbours < 1 or self.dense_max_items < 1:
            raise ValueError("neighbours and dense_max_items must be >= 1")


def interaction_matrix(user_rows: np.ndarray, item_rows: np.ndarray, n_users: int,
                       n_items: int) -> sp.csr_matrix:
    """(U, I) binary CSR: 1 where the user interacted with the item (repeats count once)."""
    x = sp.csr_matrix((np.ones(len(user_rows), np.float32),
                       (np.asarray(user_rows, np.int64), np.asarray(item_rows, np.int64))),
                      shape=(n_users, n_items))
    x.data[:] = 1.0  # duplicates were summed
    return x


def ease(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """(I, I) float32 EASE weights of a binary (U, I) matrix."""
    g = (x.T @ x).toarray().astype(np.float64)  # I, I
    g[np.diag_indices_from(g)] += l2
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def cooccurrence(x: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """(I, I) sparse cosine of item co-occurrence, each row cut to its largest entries."""
    c = (x.T @ x).tocsr().astype(np.float32)  # I, I
    deg = np.sqrt(np.maximum(c.diagonal(), 1.0))
    c = sp.diags(1.0 / deg) @ c @ sp.diags(1.0 / deg)
    c.setdiag(0.0)
    c.eliminate_zeros()
    c = c.tocsr()
    rows, cols, vals = [], [], []
    for j in range(c.shape[0]):
        s, e = c.indptr[j], c.indptr[j + 1]
        if e - s > neighbours:
            keep = s + np.argpartition(-c.data[s:e], neighbours - 1)[:neighbours]
        else:
            keep = np.arange(s, e)
        rows.append(np.full(len(keep), j))
        cols.append(c.indices[keep])
        vals.append(c.data[keep])
    return sp.csr_matrix((np.concatenate(vals or [np.zeros(0)]),
                          (np.concatenate(rows or [np.zeros(0, int)]),
                           np.concatenate(cols or [np.zeros(0, int)]))), shape=c.shape)


@dataclass(frozen=True)
class ItemItem:
    """The fitted weights: dense (I, I) for EASE, sparse CSR for co-occurrence."""

    weights: np.ndarray | sp.csr_matrix
    kind: str  # "ease" or "cooccurrence"
    l2: float

    @property
    def n_items(self) -> int:
        return int(self.weights.shape[0])

    def scores(self, history: np.ndarray) -> np.ndarray:
        """(I,) float32 scores of every item for one user whose items are `history` (H,)
        catalog rows (repeats count once); zeros for an empty history."""
        history = np.unique(np.asarray(history, np.int64))
        if not len(history):
            return np.zeros(self.n_items, np.float32)
        return np.asarray(self.weights[history].sum(axis=0), np.float32).ravel()

    def grown(self, n_new: int) -> ItemItem:
        """The same weights over a catalog with `n_new` more items, which have none yet: a
        new item is found by content (Two-Tower) until interactions reach a refit. Sparse,
        so that a catalog grown far past the one the weights were fitted on costs only the
        weights it has."""
        n = self.n_items + n_new
        w = sp.csr_matrix(self.weights) if isinstance(self.weights, np.ndarray) \
            else self.weights.copy()
        w.resize((n, n))
        return ItemItem(w.tocsr(), self.kind, self.l2)

    def score_matrix(self, x: sp.csr_matrix) -> np.ndarray:
        """(U, I) float32 scores of many users at once from their (U, I) binary histories."""
        out = x @ self.weights
        return np.asarray(out.toarray() if sp.issparse(out) else out, np.float32)

    def save(self, path: Path) -> None:
        if isinstance(self.weights, np.ndarray):
            np.savez(path, kind=self.kind, l2=self.l2, dense=self.weights)
        else:
            w = self.weights
            np.savez(path, kind=self.kind, l2=self.l2, data=w.data, indices=w.indices,
                     indptr=w.indptr, shape=np.array(w.shape))

    @classmethod
    def load(cls, path: Path) -> ItemItem:
        with np.load(path) as z:
            weights: np.ndarray | sp.csr_matrix = (
                z["dense"] if "dense" in z else
                sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"])))
            return cls(weights=weights, kind=str(z["kind"]), l2=float(z["l2"]))


def fit_item_item(x: sp.csr_matrix, cfg: ItemItemConfig, l2: float | None = None
                  ) -> ItemItem:
    """EASE (with `l2`, default `cfg.l2`) up to `cfg.dense_max_items` items, co-occurrence
    cosine neighbours above."""
    n_items = x.shape[1]
    if n_items <= cfg.dense_max_items:
        lam = cfg.l2 if l2 is None else l2
        return ItemItem(ease(x, lam), "ease", lam)
    return ItemItem(cooccurrence(x, cfg.neighbours), "cooccurrence", 0.0)


@dataclass(frozen=True)
class Histories:
    """Each user's items (catalog rows) as CSR rows, in the order of a user table: row u's
    items are `items[indptr[u]:indptr[u + 1]]`, sorted, without repeats."""

    indptr: np.ndarray  # (U + 1,) int64
    items: np.ndarray  # (nnz,) int32

    @classmethod
    def of(cls, x: sp.csr_matrix) -> Histories:
        x = x.tocsr()
        x.sort_indices()
        return cls(indptr=x.indptr.astype(np.int64), items=x.indices.astype(np.int32))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, u: int) -> np.ndarray:
        """(H,) the items of user row `u`; empty for -1 (a user the table lacks)."""
        if u < 0 or u >= len(self):
            return np.zeros(0, np.int32)
        return self.items[self.indptr[u]:self.indptr[u + 1]]

    def counts(self) -> np.ndarray:
        """(U,) how many items each user has."""
        return np.diff(self.indptr)

    def matrix(self, n_items: int) -> sp.csr_matrix:
        data = np.ones(len(self.items), np.float32)
        return sp.csr_matrix((data, self.items, self.indptr), shape=(len(self), n_items))

    def save(self, path: Path) -> None:
        np.savez(path, indptr=self.indptr, items=self.items)

    @classmethod
    def load(cls, path: Path) -> Histories:
        with np.load(path) as z:
            return cls(indptr=z["indptr"], items=z["items"])
