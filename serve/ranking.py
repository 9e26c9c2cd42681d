"""Stages 5-6: the candidates' item features from the in-process array cache, the DLRM's
click probability for each, and the blend of every signal into one score.

`rows` builds one request's model inputs; `score` runs the DLRM over the rows of any number
of requests at once (the Serve ingress batches concurrent requests into one call with
`@serve.batch`; a plain call scores one request). `signals` gathers each candidate's
signals (train/blend.py `SIGNALS`) and `blended` turns them into the answer's scores with
the version's blend, in the user's segment.
"""

from __future__ import annotations

import numpy as np

from serve.candidates import Candidates
from serve.context import Context
from serve.popularity import Popularity
from serve.retrieval import Signals
from serve.state import ServingState
from serve.user_features import User
from train.blend import SIGNALS
from train.features import time_columns
from train.scoring import click_probability

_AT = {name: n for n, name in enumerate(SIGNALS)}


def rows(state: ServingState, user: User, ctx: Context, cands: Candidates
         ) -> dict[str, np.ndarray]:
    """(N, ...) DLRM inputs: the user's columns and the context repeated, the items' gathered
    from the cache, and the user's history share in each item's category and style."""
    n, r = len(cands), cands.rows
    out = {k: np.repeat(v, n, axis=0) for k, v in user.cols.items()}
    out |= {k: v[r] for k, v in state.items.items()}
    category, style = state.items["category"][r], state.items["style"][r]
    out["hist_category"] = user.cols["history"][0, category].astype(np.float32)
    pos = int(user.cols["user_pos"][0])
    out["hist_style"] = (state.bundle.user_table.style_history[pos, style].astype(np.float32)
                         if pos >= 0 else np.zeros(n, np.float32))
    out |= context_columns(ctx, n)
    return out


def context_columns(ctx: Context, n: int) -> dict[str, np.ndarray]:
    """The same columns as `Features.context_features`, for one context repeated n times."""
    one = time_columns(np.array([ctx.hour]), np.array([ctx.weekday]))
    return {"device": np.full(n, ctx.device_index, np.int64)} | {
        k: np.full(n, v[0], v.dtype) for k, v in one.items()}


def score(state: ServingState, batch: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Click probabilities for each request's rows, in one DLRM call for all of them."""
    if len(batch) == 1:
        return [click_probability(state.bundle.dlrm, batch[0])]
    sizes = [len(b["item"]) for b in batch]
    joined = {k: np.concatenate([b[k] for b in batch]) for k in batch[0]}
    return np.split(click_probability(state.bundle.dlrm, joined), np.cumsum(sizes)[:-1])


def score_versions(states: list[ServingState], batch: list[dict[str, np.ndarray]]
                   ) -> list[np.ndarray]:
    """`score` of requests that may come from different versions (a batch that straddles a
    swap): each request is scored by its own version's model."""
    out: list[np.ndarray | None] = [None] * len(batch)
    for state in {id(s): s for s in states}.values():
        at = [n for n, s in enumerate(states) if s is state]
        for n, scores in zip(at, score(state, [batch[n] for n in at]), strict=True):
            out[n] = scores
    return [s for s in out if s is not None]


def signals(state: ServingState, popularity: Popularity, user: User, ctx: Context,
            cands: Candidates, sig: Signals, p_click: np.ndarray) -> np.ndarray:
    """(N, F) each candidate's signals, in `SIGNALS` order; 0 where the user has none (no
    items, no interest vector)."""
    r = cands.rows
    x = np.zeros((len(r), len(SIGNALS)), np.float32)
    x[:, _AT["two_tower"]] = state.item_vectors[r] @ sig.query[0]
    if sig.item_item is not None:
        x[:, _AT["item_item"]] = sig.item_item[r]
    x[:, _AT["popular"]] = np.log1p(popularity.overall_of(r))
    x[:, _AT["context"]] = np.log1p(popularity.scores_of(ctx.device_index, ctx.hour, r))
    if state.demographic is not None:
        x[:, _AT["demographic"]] = np.log1p(state.demographic.scores_of(
            int(user.cols["age_bucket"][0]), int(user.cols["gender"][0]), r))
    it = state.interests
    if it is not None and state.interest_items is not None and user.user_id in it.vectors:
        x[:, _AT["interests"]] = state.interest_items[r] @ it.vectors[user.user_id]
    p = np.clip(p_click.astype(np.float64), 1e-6, 1 - 1e-6)
    x[:, _AT["dlrm"]] = np.log(p / (1 - p))
    return x


def blended(state: ServingState, user: User, x: np.ndarray) -> np.ndarray:
    """(N,) the blend of the signals in the user's segment: a logit, which the answer shows
    through a sigmoid and the diversity re-ranking (serve/sampling.py) scales to [0, 1]."""
    return state.blend.score(x, user.segment)
