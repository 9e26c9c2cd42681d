"""The closed-form sources of a version, as one value: popularity in context and per
demographic cell, item-item weights, each user's items, and the blend of every signal.
They are fitted on the training and validation days beside the two trained models
(flows/sources.py), published with them (`Bundle.sources`, train/artifacts.py) and read by
serving (serve/state.py).

    popularity.npy    (I, D, H) clicks per item, device and hour bucket, decayed by age
    demographic.npy   (I, A, G) clicks per item, age bucket and gender
    item_item.npz     the item-item weights (EASE or co-occurrence, train/item_item.py)
    user_items.npz    each user's items (catalog rows), rows in the user table's order
    blend.json        the blend of every signal, per user segment (train/blend.py)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from train.blend import Blend
from train.item_item import Histories, ItemItem

FILES = ("popularity.npy", "demographic.npy", "item_item.npz", "user_items.npz", "blend.json")


@dataclass(frozen=True)
class Sources:
    popularity: np.ndarray  # (I, D, H) float32
    demographic: np.ndarray  # (I, A, G) float32
    item_item: ItemItem
    histories: Histories  # rows in the user table's order
    blend: Blend

    def check(self, n_items: int, n_users: int) -> None:
        """Raise ValueError unless every part covers `n_items` catalog rows and `n_users`
        users (the version's tables)."""
        sizes = {"popularity": self.popularity.shape[0], "demographic": self.demographic.shape[0],
                 "item-item weights": self.item_item.n_items}
        fix = ("fit the sources on this version's own tables (flows/sources.py fit_sources), or "
               "grow them with Sources.grown for items added since")
        for name, n in sizes.items():
            if n != n_items:
                raise ValueError(f"{name} cover {n} items, the catalog has {n_items}: {fix}")
        if len(self.histories) != n_users:
            raise ValueError(f"{len(self.histories)} histories for {n_users} users in the user "
                             f"table: {fix}")

    def save(self, folder: Path) -> None:
        np.save(folder / "popularity.npy", self.popularity.astype(np.float32))
        np.save(folder / "demographic.npy", self.demographic.astype(np.float32))
        self.item_item.save(folder / "item_item.npz")
        self.histories.save(folder / "user_items.npz")
        self.blend.save(folder / "blend.json")

    @classmethod
    def load(cls, folder: Path) -> Sources | None:
        """The sources saved in `folder`; None when it holds none (a version published
        before them: its DLRM alone ranks)."""
        if not any((folder / f).exists() for f in FILES):
            return None
        if missing := [f for f in FILES if not (folder / f).exists()]:
            raise FileNotFoundError(f"{folder} holds some sources but not {missing}; publish "
                                    "the version again")
        return cls(popularity=np.load(folder / "popularity.npy"),
                   demographic=np.load(folder / "demographic.npy"),
                   item_item=ItemItem.load(folder / "item_item.npz"),
                   histories=Histories.load(folder / "user_items.npz"),
                   blend=Blend.load(folder / "blend.json"))

    def grown(self, n_new: int) -> Sources:
        """The same sources over a catalog with `n_new` more items, which have no clicks and
        no item-item weights yet (they are found by content until the next refit)."""
        def zeros_after(counts: np.ndarray) -> np.ndarray:
            return np.concatenate([counts, np.zeros((n_new, *counts.shape[1:]), counts.dtype)])

        return replace(self, popularity=zeros_after(self.popularity),
                       demographic=zeros_after(self.demographic),
                       item_item=self.item_item.grown(n_new))
