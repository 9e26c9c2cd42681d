"""Stages 5-6: the candidates' item features from the in-process array cache, and the DLRM's
click probability for each.

`rows` builds one request's model inputs; `score` runs the DLRM over the rows of any number
of requests at once (the Serve ingress batches concurrent requests into one call with
`@serve.batch`; a plain call scores one request).
"""

from __future__ import annotations

import numpy as np

from serve.candidates import Candidates
from serve.context import Context
from serve.state import ServingState
from serve.user_features import User
from train.features import time_columns
from train.scoring import click_probability


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
