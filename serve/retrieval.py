"""Stage 3: candidates from every source that has something to say about this user.

    query tower -> FAISS top-`retrieval_k` (over-fetch: ranking and the seen filter cut it)
    the user's LLM interest vector -> its `interest_k` nearest items by content, when present
    popularity in the request's context (device, hour bucket; the user's top category when
        known), for a user without history: the query tower's OOV answer is one list for
        everyone, popularity at least follows the context

`fill` tops up with popularity when a later stage left fewer than k (a store gone, a user
who has seen everything).
"""

from __future__ import annotations

import numpy as np

from index.faiss_index import search
from serve.candidates import INTERESTS, POPULAR, TWO_TOWER, Candidates
from serve.config import ServeConfig
from serve.context import Context
from serve.popularity import Popularity
from serve.state import ServingState
from serve.user_features import User
from train.features import OOV
from train.scoring import user_vectors


def retrieve(state: ServingState, popularity: Popularity, user: User, ctx: Context,
             cfg: ServeConfig) -> Candidates:
    query = user.vector if user.vector is not None else user_vectors(state.bundle.two_tower,
                                                                      user.cols)
    _, pos = search(state.index, query, cfg.retrieval_k)
    cands = Candidates.of(pos[0][pos[0] >= 0], TWO_TOWER)
    if user.user_id is not None:
        cands = cands.merge(interest_candidates(state, user.user_id, cfg.interest_k))
    if not user.has_history:
        category = user.top_category if user.top_category != OOV else None
        cands = cands.merge(Candidates.of(
            popularity.top(ctx.device_index, ctx.hour, category, cfg.popular_k), POPULAR))
    return cands


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
