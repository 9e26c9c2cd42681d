"""Profiles: what a prompt is built from. One row per user, their latest clicked items as
parallel lists (titles, categories, styles, reviews, texts), built from the catalog and the
clicks of the days a flow chooses.

Example::

    profiles = build_profiles(items, clicks, ["u1", "u2"])
    messages = build_messages(history(profiles.iloc[0]))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from interests.prompts import HistoryItem, PromptConfig, item_details
from train.encoders import item_texts

PROFILE_COLUMNS = ("user_id", "titles", "categories", "styles", "reviews", "texts",
                   "details", "n_history", "n_unknown")


def build_profiles(items: pd.DataFrame, clicks: pd.DataFrame, user_ids: list[str],
                   reviews: pd.DataFrame | None = None,
                   max_items: int = PromptConfig.max_items) -> pd.DataFrame:
    """One row per user in `user_ids` (in that order), with their latest `max_items` clicked
    items as parallel lists. Clicks on item ids missing from `items` are counted in
    `n_unknown` and left out; a user with nothing left has empty lists.

    `clicks`: user_id, item_id, ts (positives only). `reviews`: user_id, item_id, text
    (optional), joined to the clicks they belong to.
    """
    cat = items.set_index(items["item_id"].astype(str))
    known = clicks["item_id"].isin(cat.index)
    n_unknown = clicks.loc[~known].groupby("user_id").size()
    c = clicks.loc[known].sort_values(["user_id", "ts"], kind="stable")
    c = c.groupby("user_id", sort=False).tail(max_items)
    review: dict[tuple[str, str], str] = {}
    if reviews is not None and len(reviews):
        given = reviews.dropna(subset=["text"])
        review = dict(zip(zip(given["user_id"].astype(str), given["item_id"].astype(str),
                              strict=True), given["text"].astype(str), strict=True))
    texts = pd.Series(item_texts(cat), index=cat.index)
    rows: dict[str, dict[str, list[str]]] = {
        u: {"titles": [], "categories": [], "styles": [], "reviews": [], "texts": [],
            "details": []}
        for u in user_ids}
    for u, i in zip(c["user_id"].to_numpy(), c["item_id"].to_numpy(), strict=True):
        if u not in rows:
            continue
        it = cat.loc[i]
        r = rows[u]
        r["titles"].append(str(it.get("name", i)))
        r["categories"].append(str(it.get("category", "")))
        r["styles"].append(str(it.get("style", "")))
        r["reviews"].append(review.get((u, i), ""))
        r["texts"].append(str(texts[i]))
        r["details"].append(item_details(it))
    out = pd.DataFrame([{"user_id": u, **r} for u, r in rows.items()],
                       columns=list(PROFILE_COLUMNS[:7]))
    out["n_history"] = out["titles"].map(len).astype(np.int64)
    out["n_unknown"] = out["user_id"].map(n_unknown).fillna(0).astype(np.int64)
    return out


def history(row: Any) -> list[HistoryItem]:
    details = row["details"] if "details" in row else [""] * len(row["titles"])
    return [HistoryItem(t, c, s, r, d) for t, c, s, r, d in
            zip(row["titles"], row["categories"], row["styles"], row["reviews"], details,
                strict=True)]
