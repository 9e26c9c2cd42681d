"""Stage 3: candidates from every source that has something to say about this user.

    query tower -> FAISS top-`retrieval_k` (over-fetch: ranking and the seen filter cut it)
    the user's items (the version's history and their clicks since) -> the `item_item_k`
        best items by item-item score (train/item_item.py)
    the user's LLM interest vector -> its `interest_k` nearest items by content, when present
    popularity overall, and in the request's context (device, hour bucket; within the user's
        top category when known): the query tower's OOV answer is one list for every new
        user, popularity at least follows the context
    popularity in the user's demographic cell (age bucket, gender)

Beside the candidates it returns the `Signals` ranking needs to score candidates a source
did not find (the query vector, the item-item scores). A version whose users never return to
an item (`Blend.exclude_history`) leaves the user's own items out at the next stage
(serve/seen.py `unseen`).

`fill` tops up with popularity when a later stage left fewer than k (a store gone, a user
who has seen everything).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.faiss_index import search
from serve.candidates import DEMOGRAPHIC, INTERESTS, ITEM_ITEM, POPULAR, TWO_TOWER, Candidates
from serve.config import ServeConfig
from serve.context import Context
from serve.popularity import Popularity
from serve.state import ServingState
from serve.user_features import User
from train.features import OOV
from train.scoring import user_vectors


@dataclass(frozen=True)
class Signals:
    """What retrieval computed that ranking scores every candidate with."""

    query: np.ndarray  # (1, D) the query tower's vector
    item_item: np.ndarray | None  # (I,) item-item scores of the user's items; None: no items


def retrieve(state: ServingState, popularity: Popularity, user: User, ctx: Context,
             cfg: ServeConfig) -> tuple[Candidates, Signals]:
    query = user.vector if user.vector is not None else user_vectors(state.bundle.two_tower,
                                                                      user.cols)
    _, pos = search(state.index, query, cfg.retrieval_k)
    cands = Candidates.of(pos[0][pos[0] >= 0], TWO_TOWER)
    item_item = None
    if state.item_item is not None and len(user.items) and cfg.item_item_k:
        item_item = state.item_item.scores(user.items)  # I
        cands = cands.merge(Candidates.of(
            best_rows(item_item, cfg.item_item_k, user.items), ITEM_ITEM))
    if user.user_id is not None:
        cands = cands.merge(interest_candidates(state, user.user_id, cfg.interest_k))
    category = user.top_category if user.top_category != OOV else None
    cands = cands.merge(Candidates.of(np.union1d(
        popularity.top(ctx.device_index, ctx.hour, category, cfg.popular_k),
        popularity.top_overall(cfg.popular_k)), POPULAR))
    if state.demographic is not None and cfg.demographic_k:
        cands = cands.merge(Candidates.of(state.demographic.top(
            int(user.cols["age_bucket"][0]), int(user.cols["gender"][0]), cfg.demographic_k),
            DEMOGRAPHIC))
    return cands, Signals(query=query, item_item=item_item)


def best_rows(scores: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
    """(<= k,) catalog rows of the k highest `scores`, best first, `exclude` left out."""
    s = scores.copy()
    s[exclude] = -np.inf
    k = min(k, len(s))
    top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
    top = top[np.isfinite(s[top])]
    return top[np.argsort(-s[top], kind="stable")]


def interest_candidates(state: ServingState, user_id: str, k: int) -> Candidates:
    """Catalog rows nearest the user's interest vector; none without one."""
    it = state.interests
    if it is None or user_id not in it.vectors:
        return Candidates.empty()
    _, pos = search(it.index, it.vectors[user_id], k)
    return Candidates.of(it.rows[pos[0][pos[0] >= 0]], INTERESTS)


def fill(cands: Candidates, popularity: Popularity, ctx: Context, k: int,
         exclude: np.ndarray | None = None) -> Candidates:
    """`cands` topped up to at least k with the context's most popular items, skipping
    `exclude` (rows already filtered out)."""
    if len(cands) >= k:
        return cands
    top = popularity.top(ctx.device_index, ctx.hour, None, 4 * k)
    top = top[~np.isin(top, cands.rows)]
    if exclude is not None:
        top = top[~np.isin(top, exclude)]
    return cands.merge(Candidates.of(top[:k - len(cands)], POPULAR))
