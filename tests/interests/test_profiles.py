"""Profiles: each user's latest known clicks with their reviews; unknown items counted."""

from __future__ import annotations

import pandas as pd

from interests.profiles import build_profiles
from tests.helpers import SHOES_AND_KITCHEN, clicks


def test_profiles_keep_latest_known_items_with_reviews() -> None:
    seen = clicks([("u1", "b1", 3), ("u1", "k1", 1), ("u1", "zz", 2), ("u1", "b3", 5),
                   ("u2", "nope", 1)])
    reviews = pd.DataFrame({"user_id": ["u1"], "item_id": ["b3"], "text": ["Great for 5k"]})
    p = build_profiles(SHOES_AND_KITCHEN, seen, ["u1", "u2", "u3"], reviews,
                       max_items=2).set_index("user_id")
    assert p.loc["u1", "titles"] == ["Trail Hiking Boot", "Running Sneaker"]  # ts 3, 5
    assert p.loc["u1", "reviews"] == ["", "Great for 5k"]
    assert p.loc["u1", "n_unknown"] == 1 and p.loc["u2", "n_unknown"] == 1
    assert p.loc["u2", "n_history"] == 0 and p.loc["u3", "n_history"] == 0


