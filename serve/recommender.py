"""The online recommendation path, as plain in-process code.

The Serve ingress calls `Recommender.recommend` for each request; tests call it directly.
Every stage here is cheap on a laptop-sized catalog (FAISS flat top-300 ~0.1 ms, item
features from an array cache, DLRM over 300 rows ~1-2 ms), so none earns a DeploymentHandle
hop (docs/ARCHITECTURE.md, "Ray on two cores").
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from index.faiss_index import search
from interests.artifact import FOLDER as INTERESTS
from interests.artifact import Interests, load_interests
from serve.config import ServeConfig
from train.artifacts import Bundle
from train.encoders import EncoderConfig, item_content
from train.features import cross_features
from train.scoring import click_probability, item_vectors, user_vectors

log = logging.getLogger(__name__)


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

    def __init__(self, bundle: Bundle, cfg: ServeConfig | None = None,
                 interests: Interests | None = None) -> None:
        self.bundle = bundle
        self.cfg = cfg or ServeConfig()
        self.item_ids = bundle.items["item_id"].to_numpy()
        self.interests = interests or load_interests(bundle.path.parent / INTERESTS,
                                                     self.item_ids.astype(str))

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
        # 2. Retrieval: query tower -> FAISS top-N over the item-tower vectors; for a user
        # with an LLM interest vector, also its neighbours in the content index.
        _, tt = search(b.index, user_vectors(b.two_tower, user), self.cfg.retrieval_k)
        cand = tt[0][tt[0] >= 0]  # N
        from_interests = self._interest_candidates(user_id)  # M
        from_tt = np.ones(len(cand), bool)
        if len(from_interests):
            cand = np.union1d(cand, from_interests)  # N'
            from_tt = np.isin(cand, tt[0])
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
        interest = np.isin(cand, from_interests)  # N
        top = self._top(scores, interest, k)
        source = np.where(interest & from_tt, "two_tower+interests",
                          np.where(interest, "interests", "two_tower"))
        return {
            "user_id": user_id,
            "known_user": known,
            "device": ctx.device if context["device"][0] != 0 else None,
            "model_version": b.version,
            "items": [{"item_id": str(self.item_ids[cand[t]]), "score": float(scores[t]),
                       "source": str(source[t])} for t in top],
        }

    def _interest_candidates(self, user_id: str) -> np.ndarray:
        """Catalog rows nearest the user's interest vector; empty without one."""
        it = self.interests
        if it is None or user_id not in it.vectors:
            return np.zeros(0, np.int64)
        _, pos = search(it.index, it.vectors[user_id], self.cfg.interest_k)
        return it.rows[pos[0][pos[0] >= 0]]

    def _top(self, scores: np.ndarray, interest: np.ndarray, k: int) -> np.ndarray:
        """Top-k positions by score, with `interest_share` of the slots kept for the best
        interest candidates (when there are any), the rest filled by score."""
        order = np.argsort(-scores, kind="stable")
        reserved = min(math.ceil(k * self.cfg.interest_share), int(interest.sum()))
        if not reserved:
            return order[:k]
        chosen = list(order[interest[order]][:reserved])
        chosen += [t for t in order if t not in set(chosen)][:k - reserved]
        return np.array(sorted(chosen, key=lambda t: -scores[t]), dtype=np.int64)
