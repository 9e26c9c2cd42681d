"""What the models train on: the transforms fitted on the training days, and interaction rows
turned into model inputs, with sampled negatives where the data holds positives only.

    fit_features     scikit-learn transforms, the per-user history and each item's share of
                     clicks (`Fitted`), from the training days' rows
    ModelInputs      interaction rows (a pandas batch) -> the model's featurized columns: the
                     one function a Ray Data batch and an in-process read go through
    Negatives        sampled negatives for the ranker: popular and random items where the
                     data holds positives only, and always the user's own retrieval
                     candidates (`candidate_pool`), the items it will rank in serving
    featurized       rows as arrays in this process, or as a Ray Dataset that Ray Data
                     featurizes batch by batch (`Rows`: what train/loop.py `fit` takes)

Everything here works on pandas frames and NumPy arrays, except `featurized`'s Ray Dataset
branch; the data folder itself is read by the flows (flows/layout.py).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from train.features import OOV, Features, UserTable, featurize
from train.two_tower import CATALOG, ITEM_INPUTS

# Model inputs: featurized columns as arrays (in this process) or a Ray Dataset of them.
Rows = dict[str, np.ndarray] | Any


def click_log_q(interactions: pd.DataFrame, items: pd.DataFrame) -> np.ndarray:
    """(I,) log share of the rows' clicks per catalog row, add-one smoothed."""
    clicked = interactions.loc[interactions["label"] == 1, "item_id"]
    counts = clicked.value_counts().reindex(items["item_id"]).fillna(0).to_numpy() + 1.0
    return np.log(counts / counts.sum())


@dataclass
class Fitted:
    """The transforms fitted on the training days, the user history built with them, each
    catalog row's log click share (the Two-Tower's logQ correction) and the raw content
    embeddings the content PCA was fitted on."""

    features: Features
    table: UserTable
    log_q: np.ndarray  # (I,)
    content: np.ndarray | None  # (I, E)

    def save(self, folder: Path) -> None:
        joblib.dump(self.features, folder / "features.joblib")
        self.table.save(folder / "user_history.npz")
        np.save(folder / "log_q.npy", self.log_q)
        if self.content is not None:
            np.save(folder / "item_content.npy", self.content)

    def two_tower_task(self, items: pd.DataFrame, full_softmax_items: int,
                       seen: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
        """The Two-Tower training wrapper's arrays: the logQ correction, and every catalog
        row's item inputs when the catalog has at most `full_softmax_items` rows, so that
        the softmax runs over the whole catalog (train/two_tower.py `TwoTowerTrain`); then
        also `seen` (user_id, item_id: the clicks training learns from) as a CSR of each
        user code's catalog rows, which the validation loss leaves out."""
        task = {"log_q": self.log_q}
        if len(items) <= full_softmax_items:
            table = self.features.item_table(items, self.content)
            task |= {CATALOG + n: table[n] for n in ITEM_INPUTS}
            if seen is not None:
                task |= self.seen_csr(items, seen)
        return task

    def seen_csr(self, items: pd.DataFrame, seen: pd.DataFrame) -> dict[str, np.ndarray]:
        """`seen_indptr` (users + 1,) and `seen_rows`: each user code's distinct catalog
        rows among `seen`'s items; users the vocabulary does not know (OOV) and items not in
        the catalog are left out."""
        n_users = self.features.cardinalities["user"]
        user = self.features.lookup("user", seen["user_id"])
        row = pd.Index(items["item_id"]).get_indexer(seen["item_id"])
        pairs = np.unique(np.stack([user, row])[:, (user != OOV) & (row >= 0)], axis=1)
        indptr = np.zeros(n_users + 1, np.int64)
        np.cumsum(np.bincount(pairs[0], minlength=n_users), out=indptr[1:])
        return {"seen_indptr": indptr, "seen_rows": pairs[1].astype(np.int64)}

    @classmethod
    def load(cls, folder: Path, users: pd.DataFrame) -> Fitted:
        content = folder / "item_content.npy"
        return cls(features=joblib.load(folder / "features.joblib"),
                   table=UserTable.load(users, folder / "user_history.npz"),
                   log_q=np.load(folder / "log_q.npy"),
                   content=np.load(content) if content.exists() else None)


def fit_features(rows: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
                 content: np.ndarray | None, min_freq: int = 1, content_dim: int = 64,
                 encoders: dict[str, Any] | None = None) -> Fitted:
    """Fit every transformer on `rows` (the training days: user_id, item_id, device, hour,
    label) and build the user history. `encoders` records which encoders made `content`
    (serving embeds a new item's text with the same one)."""
    features = Features.fit(rows, users.reset_index(), items, min_freq, content, content_dim,
                            encoders or {})
    table = UserTable.build(users, features, rows, items)
    return Fitted(features, table, click_log_q(rows, items), content)


def negatives_per_positive(labels: np.ndarray, configured: int | None = None) -> int:
    """Sampled negatives per positive for the ranker: `configured`, or when None, 4 for rows
    that hold (almost) no negative, else 0 (the data's own negatives)."""
    if configured is not None:
        return configured
    return 4 if (np.asarray(labels) == 0).mean() < 0.01 else 0


def candidate_pool(two_tower: Any, index: Any, fitted: Fitted, clicked: pd.DataFrame,
                   items: pd.DataFrame, depth: int, chunk: int = 65_536) -> np.ndarray:
    """(U, depth) int32 catalog rows of each user's (UserTable row's) top retrieval
    candidates, the query tower's nearest items in `index` less the user's own clicks
    (`clicked`: user_id, item_id), -1 where fewer: the items the ranker will meet in serving
    beside what the user chose."""
    from index.faiss_index import search
    from train.scoring import user_vectors

    ids = np.array(list(fitted.table.rows), dtype=object)
    cols = fitted.features.user_features(ids, fitted.table)
    pos = {iid: n for n, iid in enumerate(items["item_id"].astype(str))}
    found = [search(index, user_vectors(two_tower, {k: v[s:s + chunk] for k, v in cols.items()}),
                    depth + 1)[1] for s in range(0, len(ids), chunk)]
    pool = (np.concatenate(found) if found else np.zeros((0, depth + 1), np.int64)
            ).astype(np.int32)
    users = fitted.table.positions(clicked["user_id"].astype(str).to_numpy(object))
    rows = clicked["item_id"].astype(str).map(pos).fillna(-1).to_numpy(np.int64)
    ok = (users >= 0) & (rows >= 0)
    own = np.unique(users[ok] * len(items) + rows[ok])
    flat = np.arange(len(pool), dtype=np.int64)[:, None] * len(items) + pool
    pool = np.where(np.isin(flat, own) | (pool < 0), -1, pool)
    order = np.argsort(pool < 0, axis=1, kind="stable")  # the user's own clicks out, kept in order
    return np.take_along_axis(pool, order, 1)[:, :depth]


@dataclass(frozen=True)
class Negatives:
    """Sampled negatives for the DLRM, labelled 0, added beside each positive row.

    - `per_positive` copies with an item drawn half in proportion to its training clicks to
      the 0.75 (as word2vec samples words), half uniformly: for data that holds positives
      only (every rating an implicit positive), without which the model would learn that
      everything is clicked;
    - `from_candidates` copies with an item drawn from the user's own retrieval candidates
      (`candidates`, by UserTable row): the items serving will ask the ranker to order, so
      that it learns to tell the chosen one from the others retrieval found, instead of
      from popular items only (a user without candidates draws popular ones instead).
    """

    per_positive: int
    item_ids: np.ndarray  # (I,) object
    probs: np.ndarray  # (I,)
    from_candidates: int = 0
    candidates: np.ndarray | None = None  # (U, N) catalog rows, -1 pads
    user_rows: dict[str, int] | None = None  # user_id -> row of `candidates`

    @classmethod
    def of(cls, per_positive: int, log_q: np.ndarray, items: pd.DataFrame,
           from_candidates: int = 0, candidates: np.ndarray | None = None,
           user_rows: dict[str, int] | None = None) -> Negatives:
        w = np.exp(log_q) ** 0.75  # log_q: add-one smoothed log click share
        p = 0.5 * w / w.sum() + 0.5 / len(w)
        return cls(per_positive, items["item_id"].astype(str).to_numpy(object), p,
                   from_candidates if candidates is not None else 0, candidates, user_rows)

    def add(self, batch: pd.DataFrame, seed: int) -> pd.DataFrame:
        pos = batch[batch["label"] == 1]
        # A batch's own seed: the same rows draw the same negatives in every run.
        rng = np.random.default_rng([seed, zlib.crc32("".join(pos["user_id"].astype(str)[:64])
                                                      .encode())])
        neg = pos.loc[pos.index.repeat(self.per_positive + self.from_candidates)].copy()
        drawn = rng.choice(len(self.item_ids), len(neg), p=self.probs)
        if self.from_candidates and self.candidates is not None and self.user_rows is not None:
            get = self.user_rows.get
            users = np.fromiter((get(u, -1) for u in pos["user_id"].astype(str)), np.int64,
                                len(pos))
            users = np.repeat(users, self.per_positive + self.from_candidates)
            slot = np.tile(np.arange(self.per_positive + self.from_candidates), len(pos))
            pool = self.candidates[np.maximum(users, 0)]  # n, N
            width = (pool >= 0).sum(1)
            pick = pool[np.arange(len(pool)), (rng.random(len(pool)) * np.maximum(width, 1)
                                               ).astype(np.int64)]
            take = (slot >= self.per_positive) & (users >= 0) & (width > 0)
            drawn = np.where(take, pick, drawn)
        neg["item_id"] = self.item_ids[drawn]
        neg["label"] = 0
        return pd.concat([batch, neg], ignore_index=True)


class ModelInputs:
    """Interaction rows (a pandas batch) -> the model's featurized columns, sampled negatives
    added first when given: the one function a Ray Data batch and an in-process read go
    through."""

    def __init__(self, fitted: Fitted, items: pd.DataFrame, columns: tuple[str, ...],
                 negatives: Negatives | None = None, seed: int = 0) -> None:
        self.features, self.table, self.columns = fitted.features, fitted.table, columns
        self.negatives, self.seed = negatives, seed
        self.item_rows = fitted.features.item_table(items, fitted.content)
        self.item_pos = {iid: n for n, iid in enumerate(items["item_id"])}

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        if self.negatives is not None:
            batch = self.negatives.add(batch, self.seed)
        out = featurize(batch, self.features, self.table, self.item_rows, self.item_pos)
        return {k: out[k] for k in self.columns}


def featurized_frame(rows: pd.DataFrame, fn: ModelInputs, clicks_only: bool,
                     sample: float | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """`rows` as model inputs in this process: a `sample` share of them (drawn before
    featurizing), clicks only when asked."""
    if sample is not None:
        rows = rows[np.random.default_rng(seed).random(len(rows)) < sample]
    if clicks_only:
        rows = rows[rows["label"] == 1]
    return fn(rows.reset_index(drop=True))


def featurized_dataset(ds: Any, fn: ModelInputs, clicks_only: bool, materialize: bool,
                       sample: float | None = None, seed: int = 0) -> Any:
    """The Ray Dataset `ds` of interaction rows as model inputs, featurized by Ray Data
    batch by batch: streamed, or materialized once (`materialize`: the rows fit in the
    object store, so epochs after the first skip reading and featurizing). `sample` keeps
    that share of the rows, drawn before featurizing so the rest cost only their reading."""
    from ray.data.expressions import col

    if sample is not None:
        ds = ds.random_sample(sample, seed=seed)
    if clicks_only:
        ds = ds.filter(expr=col("label") == 1)
    ds = ds.map_batches(fn, batch_format="pandas", batch_size=8192, num_cpus=0.5)
    return ds.materialize() if materialize else ds


def joined(a: Rows, b: Rows) -> Rows:
    """Two sets of model inputs as one: arrays concatenated, Ray Datasets united (streamed:
    one epoch reads each row once)."""
    if isinstance(a, dict):
        return {k: np.concatenate([a[k], b[k]]) for k in a}
    return a.union(b)
