"""The online recommendation path, as plain in-process code.

The Serve ingress calls `Recommender.recommend` for each request; tests call it directly.
Every stage here is cheap on a laptop-sized catalog (FAISS flat top-300 ~0.1 ms, item
features from an array cache, DLRM over 300 rows ~1-2 ms), so none earns a DeploymentHandle
hop (~10-15 ms of CPU each, see DESIGN.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.faiss_index import search
from train.artifacts import Bundle
from train.scoring import click_probability, user_vectors


@dataclass(frozen=True)
class ServeConfig:
    retrieval_k: int = 300  # candidates fetched from FAISS before ranking
    default_k: int = 10
    max_k: int = 100


@dataclass(frozen=True)
class Context:
    device: str | None
    hour: int
    weekday: int


def request_context(device: str | None, timestamp: dt.datetime | None) -> Context:
    """Fill in what the request left out: server time (UTC) when no timestamp is given."""
    ts = timestamp or dt.datetime.now(dt.UTC)
    return Context(device=device, hour=ts.hour, weekday=ts.weekday())


class Recommender:
    """Retrieval (Two-Tower + FAISS) -> DLRM ranking -> top-k, for one model version."""

    def __init__(self, bundle: Bundle, cfg: ServeConfig | None = None) -> None:
        self.bundle = bundle
        self.cfg = cfg or ServeConfig()
        self.item_ids = bundle.items["item_id"].to_numpy()

    def recommend(self, user_id: str, ctx: Context, k: int) -> dict[str, Any]:
        b = self.bundle
        # 1. User features: an unknown user gets OOV everywhere (the cold-start embedding).
        user = b.features.user_features(np.array([user_id]), b.user_table)
        known = bool(user["user"][0] != 0)
        # 2. Retrieval: query tower -> FAISS top-N over the item-tower vectors.
        _, cand = search(b.index, user_vectors(b.two_tower, user), self.cfg.retrieval_k)
        cand = cand[0][cand[0] >= 0]  # N
        # 3. Item features from the in-process array cache; context for every candidate.
        n = len(cand)
        rows = {key: np.repeat(v, n) for key, v in user.items()}
        rows |= {key: v[cand] for key, v in b.item_rows.items()}
        context = b.features.context_features(np.array([ctx.device] * n, dtype=object),
                                              np.full(n, ctx.hour), np.full(n, ctx.weekday))
        rows |= context
        # 4. DLRM ranking, 5. top-k.
        scores = click_probability(b.dlrm, rows)  # N
        top = np.argsort(-scores, kind="stable")[:k]
        return {
            "user_id": user_id,
            "known_user": known,
            "device": ctx.device if context["device"][0] != 0 else None,
            "model_version": b.version,
            "items": [{"item_id": str(self.item_ids[cand[t]]), "score": float(scores[t]),
                       "source": "two_tower"} for t in top],
        }
