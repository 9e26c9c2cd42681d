"""Stage 2: one user's model-ready features.

The online store holds them (one entity read per request): the version's columns as
materialized, with `top_category` and the category shares moved by the user's events since.
When the store has no entry the version's own arrays answer (computed once at load); a user
the version has never seen gets the out-of-vocabulary row, the cold-start answer. A store that
cannot be reached degrades to the version's arrays: the answer is still personal, only the
last events' shift is missing.

The user's items are the version's history of them (train/item_item.py `Histories`) and the
items they clicked since (serve/recent.py), which feed the item-item source; how many there
are picks the user's segment of the blend (train/blend.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from serve.online import OnlineFeatures
from serve.recent import RecentItems
from serve.state import ServingState
from serve.stores import StoreUnavailable
from train.blend import segment

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class User:
    user_id: str | None
    cols: dict[str, np.ndarray]  # state.USER_COLUMNS, each (1, ...), plus user_pos (1,)
    known: bool  # in the version's vocabulary
    has_history: bool  # any interaction known, from training or from events
    vector: np.ndarray | None  # (1, D) query-tower vector when precomputed, else None
    items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (H,) clicked rows

    @property
    def top_category(self) -> int:
        return int(self.cols["top_category"][0])

    @property
    def n_known(self) -> int:
        """Clicks known of the user (the version's and their events since)."""
        return len(self.items)

    @property
    def segment(self) -> str:
        """The blend's segment the user is ranked in (train/blend.py)."""
        return segment(self.n_known, self.known or self.has_history)


def user_features(state: ServingState, online: OnlineFeatures | None, user_id: str | None,
                  degraded: list[str], recent: RecentItems | None = None) -> User:
    row = state.users.row(user_id) if user_id is not None else -1
    vector: np.ndarray | None
    if row >= 0:
        cols = {k: v[row:row + 1] for k, v in state.users.cols.items()}
        vector = state.users.vectors[row:row + 1]
    else:
        cols = dict(state.oov_user)
        vector = state.oov_vector
    if user_id is not None and online is not None:
        got = _read(lambda: online.user(user_id), None, "user_features", degraded)
        if got is not None:
            history = np.asarray(got.history, np.float32)[None, :]
            if got.top_category != cols["top_category"][0] or not np.array_equal(
                    history, cols["history"]):  # moved by events: the tower runs on it
                cols["top_category"] = np.array([got.top_category], np.int64)
                cols["history"] = history
                vector = None
    cols["user_pos"] = np.array([row], np.int64)
    items = state.history(row).astype(np.int64)
    if user_id is not None and recent is not None:
        none: list[str] = []
        clicked = _read(lambda: recent.items(user_id), none, "recent_items", degraded)
        rows = [state.item_pos[i] for i in clicked if i in state.item_pos]
        if rows:
            items = np.union1d(items, np.asarray(rows, np.int64))
    any_history = bool(cols["history"].any()) or len(items) > 0
    return User(user_id=user_id, cols=cols, known=bool(cols["user"][0] != 0),
                has_history=any_history, vector=vector, items=items)


def _read(read: Callable[[], T], default: T, stage: str, degraded: list[str]) -> T:
    """`read()`, or `default` when its store is unavailable: the stage is then named in
    `degraded` and logged, and the answer goes on with the version's own data."""
    try:
        return read()
    except StoreUnavailable as e:
        log.warning("%s unavailable, answering with the version's data: %s", stage, e)
        degraded.append(stage)
        return default
