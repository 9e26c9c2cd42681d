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
import pandas as pd

from index.faiss_index import search
from train.artifacts import Bundle
from train.encoders import EncoderConfig, item_content
from train.features import cross_features
from train.scoring import click_probability, item_vectors, user_vectors


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

    def add_items(self, items: pd.DataFrame) -> np.ndarray:
        """Add brand-new items to the catalog and the index without retraining; returns their
        rows. Their vectors come from content alone (text through the encoder the model was
        trained with, category, style, price): the item id is OOV, as for any unseen item.
        """
        b = self.bundle
        if dup := set(items["item_id"].astype(str)) & set(self.item_ids.astype(str)):
            raise ValueError(f"items {sorted(dup)[:3]} are already in the catalog")
        enc = b.features.content_encoder
        raw = item_content(items, EncoderConfig(**enc["text"]) if enc.get("text") else None,
                           enc.get("image"), use_ray=False)
        rows = b.features.item_table(items, raw)
        b.index.add(item_vectors(b.two_tower, rows))  # positions continue the catalog's rows
        start = len(b.items)
        b.items = pd.concat([b.items, items], ignore_index=True)
        b.item_rows = {k: np.concatenate([b.item_rows[k], v]) for k, v in rows.items()}
        if raw is not None and b.item_content is not None:
            b.item_content = np.concatenate([b.item_content, raw])
        self.item_ids = b.items["item_id"].astype(str).to_numpy()
        return np.arange(start, len(b.items))

    def recommend(self, user_id: str, ctx: Context, k: int) -> dict[str, Any]:
        b = self.bundle
        # 1. User features: an unknown user gets OOV everywhere (the cold-start embedding).
        user = b.features.user_features(np.array([user_id]), b.user_table)
        known = bool(user["user"][0] != 0)
        # 2. Retrieval: query tower -> FAISS top-N over the item-tower vectors.
        _, cand = search(b.index, user_vectors(b.two_tower, user), self.cfg.retrieval_k)
        cand = cand[0][cand[0] >= 0]  # N
        # 3. Item features from the in-process array cache; the user's history in each
        # candidate's category and style; context for every candidate.
        n = len(cand)
        rows = {key: np.repeat(v, n, axis=0) for key, v in user.items()}
        rows |= {key: v[cand] for key, v in b.item_rows.items()}
        rows |= cross_features(rows, rows, b.user_table)
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
