"""The synthetic retail world: users, their contexts and the true click model.

The generator samples interactions from this world, and evaluation scores models against it:
the same `World` answers "how likely is this click" (the AUC oracle) and "how many clicks do
we expect on each item from this user" (the recall oracle). Modeled on the Retail Demo Store
generator: a persona of three categories (0.6/0.25/0.15), a preferred style per category (the
"neighbourhood" of similar products), sessions that cluster at midday, and a device and time
of day that shift which categories a user clicks.

Shapes: U users, I items, C categories, S sessions, D devices (3), T time slots (4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.generate.catalog import CATALOG_SHAPE, CATEGORIES

# Plausible persona triples (strongest, medium, latent).
PERSONAS: tuple[tuple[str, str, str], ...] = (
    ("furniture", "homedecor", "housewares"),
    ("apparel", "footwear", "accessories"),
    ("footwear", "apparel", "outdoors"),
    ("electronics", "instruments", "books"),
    ("instruments", "electronics", "books"),
    ("outdoors", "tools", "footwear"),
    ("tools", "outdoors", "electronics"),
    ("beauty", "jewelry", "accessories"),
    ("jewelry", "accessories", "beauty"),
    ("groceries", "housewares", "floral"),
    ("seasonal", "floral", "homedecor"),
    ("floral", "seasonal", "groceries"),
    ("homedecor", "furniture", "seasonal"),
    ("housewares", "groceries", "homedecor"),
    ("books", "homedecor", "electronics"),
    ("accessories", "apparel", "jewelry"),
    ("groceries", "salty snacks", "food service"),
)
PERSONA_WEIGHTS = np.array([0.6, 0.25, 0.15])
DEVICES: tuple[str, ...] = ("web", "ios", "android")
SLOTS: tuple[str, ...] = ("night", "morning", "afternoon", "evening")  # hours 0-5, 6-11, ...
GENDERS: tuple[str, ...] = ("F", "M")


@dataclass(frozen=True)
class ClickModel:
    """Coefficients of the true click logit; see `World.click_logit`."""

    bias: float = -3.2
    category: float = 0.9  # x log(20 * contextual category affinity)
    style: float = 1.2  # the item is in the user's preferred style for its category
    quality: float = 0.5  # x item quality (standard normal)
    promoted: float = 0.8  # promoted item shown to a discount-seeking user
    gender_mismatch: float = -2.0
    explore: float = 0.3  # share of impressions drawn from popularity, not from interest
    preferred_style_share: float = 0.6  # share of interest impressions in the preferred style


@dataclass
class World:
    """Everything the generator knows and the models must learn.

    Arrays are indexed by position (user_index, item_index); `user_ids` and `item_ids` give
    the public string ids.
    """

    seed: int
    items: pd.DataFrame  # item_id, name, category, style, price, gender_affinity, promoted, ...
    item_category: np.ndarray  # (I,) int category index
    item_style: np.ndarray  # (I,) int style index within the category
    item_quality: np.ndarray  # (I,) float
    item_popularity: np.ndarray  # (I,) float, sums to 1
    item_gender: np.ndarray  # (I,) int: -1 none, 0 F, 1 M
    item_promoted: np.ndarray  # (I,) bool
    user_ids: np.ndarray  # (U,) str
    user_age: np.ndarray  # (U,) int
    user_gender: np.ndarray  # (U,) int 0 F, 1 M
    user_affinity: np.ndarray  # (U, C) float, rows sum to 1
    user_persona: np.ndarray  # (U, 3) int category indices
    user_pref_style: np.ndarray  # (U, C) int preferred style per category
    user_device: np.ndarray  # (U,) int primary device
    user_discount: np.ndarray  # (U,) bool discount-seeking persona
    user_activity: np.ndarray  # (U,) float relative session rate
    user_signup_day: np.ndarray  # (U,) int first day the user can appear
    device_mult: np.ndarray  # (D, C) category multipliers by device
    slot_mult: np.ndarray  # (T, C) category multipliers by time slot
    weekend_mult: np.ndarray  # (2, C) category multipliers weekday / weekend
    hour_probs: np.ndarray  # (D, 24) hour-of-day distribution per device
    click: ClickModel = field(default_factory=ClickModel)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_category)

    # ----- the true model -----------------------------------------------------------------

    def category_affinity(
        self, users: np.ndarray, device: np.ndarray, slot: np.ndarray, weekend: np.ndarray
    ) -> np.ndarray:
        """(S, C) category affinity of each user in each context, rows summing to 1."""
        a = self.user_affinity[users]  # S, C
        a = a * self.device_mult[device] * self.slot_mult[slot] * self.weekend_mult[weekend]
        return a / a.sum(axis=1, keepdims=True)

    def click_logit(
        self,
        users: np.ndarray,
        items: np.ndarray,
        device: np.ndarray,
        slot: np.ndarray,
        weekend: np.ndarray,
    ) -> np.ndarray:
        """(N,) true click logit of user `users[n]` shown item `items[n]` in that context."""
        cm = self.click
        cat = self.item_category[items]
        aff = self.category_affinity(users, device, slot, weekend)[np.arange(len(users)), cat]
        style_match = self.user_pref_style[users, cat] == self.item_style[items]
        gender = self.item_gender[items]
        mismatch = (gender >= 0) & (gender != self.user_gender[users])
        promo = self.item_promoted[items] & self.user_discount[users]
        return (
            cm.bias
            + cm.category * np.log(len(CATEGORIES) * aff)
            + cm.style * style_match
            + cm.quality * self.item_quality[items]
            + cm.promoted * promo
            + cm.gender_mismatch * mismatch
        )

    def _within_category(self, users: np.ndarray) -> np.ndarray:
        """(U, I) probability of each item given its category was picked for the user."""
        cm = self.click
        pop, cat = self.item_popularity, self.item_category
        n_cat = len(CATEGORIES)
        in_cat = pop / np.bincount(cat, weights=pop, minlength=n_cat)[cat]  # I
        pref = self.item_style[None, :] == self.user_pref_style[users][:, cat]  # U, I
        pref_mass = np.stack([np.bincount(cat, weights=pop * row, minlength=n_cat)
                              for row in pref])[:, cat]  # U, I
        in_style = np.where(pref, pop / np.maximum(pref_mass, 1e-12), 0.0)
        share = np.where(pref_mass > 0, cm.preferred_style_share, 0.0)
        return share * in_style + (1 - share) * in_cat[None, :]

    def exposure(self, users: np.ndarray, device: int, slot: int, weekend: int) -> np.ndarray:
        """(U, I) probability that one impression of each user in this context shows each
        item: what `flows.generate` samples from."""
        cm = self.click
        n = len(users)
        ctx = [np.full(n, v) for v in (device, slot, weekend)]
        cat_p = self.category_affinity(users, *ctx)[:, self.item_category]  # U, I
        return (cm.explore * self.item_popularity[None, :]
                + (1 - cm.explore) * cat_p * self._within_category(users))

    def expected_clicks(self, users: np.ndarray, batch: int = 64) -> np.ndarray:
        """(len(users), I) expected clicks per impression, averaged over each user's contexts.

        This is the retrieval oracle: ranking items by it is the best any model can do
        without knowing the future contexts.
        """
        n_dev, n_items = len(DEVICES), self.n_items
        slot_p = np.stack([np.bincount(np.arange(24) // 6, weights=self.hour_probs[k],
                                       minlength=len(SLOTS)) for k in range(n_dev)])  # D, T
        out = np.zeros((len(users), n_items))
        for s in range(0, len(users), batch):
            u = np.asarray(users[s:s + batch])
            dev_p = np.full((len(u), n_dev), 0.25 / (n_dev - 1))
            dev_p[np.arange(len(u)), self.user_device[u]] = 0.75  # as in `sample_day`
            uu = np.repeat(u, n_items)  # U*I
            ii = np.tile(np.arange(n_items), len(u))
            for d in range(n_dev):
                for t in range(len(SLOTS)):
                    for w, pw in enumerate((5 / 7, 2 / 7)):
                        ctx = [np.full(len(uu), v) for v in (d, t, w)]
                        p_click = 1 / (1 + np.exp(-self.click_logit(uu, ii, *ctx)))
                        p = (dev_p[:, d] * slot_p[d, t] * pw)[:, None]  # U, 1
                        out[s:s + batch] += p * self.exposure(u, d, t, w) * p_click.reshape(
                            len(u), n_items)
        return out

    # ----- persistence -----------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the ground truth: users' true affinities, item latents, the world's tables."""
        folder.mkdir(parents=True, exist_ok=True)
        users = pa.table({
            "user_id": self.user_ids,
            "age": self.user_age.astype(np.int16),
            "gender": self.user_gender.astype(np.int8),
            "affinity": pa.FixedSizeListArray.from_arrays(
                self.user_affinity.astype(np.float32).ravel(), len(CATEGORIES)),
            "persona": pa.FixedSizeListArray.from_arrays(self.user_persona.ravel(), 3),
            "pref_style": pa.FixedSizeListArray.from_arrays(
                self.user_pref_style.astype(np.int8).ravel(), len(CATEGORIES)),
            "device": self.user_device.astype(np.int8),
            "discount": self.user_discount,
            "activity": self.user_activity.astype(np.float32),
            "signup_day": self.user_signup_day.astype(np.int8),
        })
        pq.write_table(users, folder / "users.parquet")
        items = pa.table({
            "item_id": self.items["item_id"].to_numpy(),
            "category": self.item_category.astype(np.int8),
            "style": self.item_style.astype(np.int8),
            "quality": self.item_quality.astype(np.float32),
            "popularity": self.item_popularity,
            "gender": self.item_gender.astype(np.int8),
            "promoted": self.item_promoted,
        })
        pq.write_table(items, folder / "items.parquet")
        tables = {
            "seed": self.seed,
            "categories": list(CATEGORIES),
            "devices": list(DEVICES),
            "device_mult": self.device_mult.tolist(),
            "slot_mult": self.slot_mult.tolist(),
            "weekend_mult": self.weekend_mult.tolist(),
            "hour_probs": self.hour_probs.tolist(),
            "click": self.click.__dict__,
        }
        (folder / "world.json").write_text(json.dumps(tables, indent=1))

    @classmethod
    def load(cls, folder: Path, items: pd.DataFrame) -> World:
        """Read a world written by `save`; `items` is the public item table of the same run."""
        if not (folder / "world.json").exists():
            raise FileNotFoundError(
                f"no ground truth in {folder}; run `warmstart generate` to create data with it"
            )
        t = json.loads((folder / "world.json").read_text())
        u = pq.read_table(folder / "users.parquet")
        i = pq.read_table(folder / "items.parquet").to_pandas()

        def mat(col: str) -> np.ndarray:
            arr = u.column(col).combine_chunks()
            return arr.values.to_numpy().reshape(len(arr), -1)

        return cls(
            seed=t["seed"],
            items=items,
            item_category=i["category"].to_numpy(np.int64),
            item_style=i["style"].to_numpy(np.int64),
            item_quality=i["quality"].to_numpy(np.float64),
            item_popularity=i["popularity"].to_numpy(np.float64),
            item_gender=i["gender"].to_numpy(np.int64),
            item_promoted=i["promoted"].to_numpy(bool),
            user_ids=u.column("user_id").to_numpy(),
            user_age=u.column("age").to_numpy().astype(np.int64),
            user_gender=u.column("gender").to_numpy().astype(np.int64),
            user_affinity=mat("affinity").astype(np.float64),
            user_persona=mat("persona").astype(np.int64),
            user_pref_style=mat("pref_style").astype(np.int64),
            user_device=u.column("device").to_numpy().astype(np.int64),
            user_discount=u.column("discount").to_numpy(zero_copy_only=False),
            user_activity=u.column("activity").to_numpy().astype(np.float64),
            user_signup_day=u.column("signup_day").to_numpy().astype(np.int64),
            device_mult=np.array(t["device_mult"]),
            slot_mult=np.array(t["slot_mult"]),
            weekend_mult=np.array(t["weekend_mult"]),
            hour_probs=np.array(t["hour_probs"]),
            click=ClickModel(**t["click"]),
        )


# ----- building a world ------------------------------------------------------------------------


def make_world(items: pd.DataFrame, n_users: int, n_days: int, seed: int) -> World:
    """Draw users and the context tables for a catalog; deterministic for a seed."""
    rng = np.random.default_rng([seed, 1])
    n_cat = len(CATEGORIES)
    cat_index = {c: k for k, c in enumerate(CATEGORIES)}
    item_category = items["category"].map(cat_index).to_numpy(np.int64)
    style_index = {c: {s: k for k, s in enumerate(st)} for c, (_, st) in CATALOG_SHAPE.items()}
    item_style = np.array([style_index[c].get(s, 0) for c, s in
                           zip(items["category"], items["style"], strict=True)], dtype=np.int64)
    pop = np.exp(rng.normal(0, 1.0, len(items)))
    gender_code = {"F": 0, "M": 1}
    item_gender = items["gender_affinity"].map(lambda g: gender_code.get(g, -1)).to_numpy(np.int64)

    persona = np.array(PERSONAS)[rng.integers(len(PERSONAS), size=n_users)]
    persona_idx = np.vectorize(cat_index.__getitem__)(persona)  # U, 3
    affinity = np.full((n_users, n_cat), 0.01)
    np.put_along_axis(affinity, persona_idx, PERSONA_WEIGHTS, axis=1)
    affinity /= affinity.sum(axis=1, keepdims=True)
    n_styles = np.array([len(st) for _, st in CATALOG_SHAPE.values()])
    pref_style = (rng.random((n_users, n_cat)) * n_styles).astype(np.int64)
    age = np.clip(np.round(rng.normal(32, 15, n_users)), 18, 100).astype(np.int64)
    # Younger users lean to mobile, older to web.
    young = age < 35
    device = np.where(young, rng.choice(3, n_users, p=[0.2, 0.4, 0.4]),
                      rng.choice(3, n_users, p=[0.6, 0.2, 0.2]))
    signup = np.where(rng.random(n_users) < 0.8, 0, rng.integers(1, n_days, n_users))

    hours = np.arange(24)
    base = 0.2 + np.exp(-0.5 * ((hours - 13) / 2.5) ** 2) + 0.6 * np.exp(
        -0.5 * ((hours - 20) / 2.0) ** 2)
    mobile = base * (1 + 0.8 * ((hours >= 18) | (hours <= 1)))  # phones peak in the evening
    hour_probs = np.stack([base, mobile, mobile]) / np.stack([base, mobile, mobile]).sum(1)[:, None]

    return World(
        seed=seed,
        items=items,
        item_category=item_category,
        item_style=item_style,
        item_quality=rng.normal(0, 1, len(items)),
        item_popularity=pop / pop.sum(),
        item_gender=item_gender,
        item_promoted=items["promoted"].to_numpy(bool),
        user_ids=np.array([f"u{n:06d}" for n in range(n_users)]),
        user_age=age,
        user_gender=rng.integers(2, size=n_users),
        user_affinity=affinity,
        user_persona=persona_idx,
        user_pref_style=pref_style,
        user_device=device,
        user_discount=rng.random(n_users) < 0.3,
        user_activity=np.exp(rng.normal(0, 0.8, n_users)),
        user_signup_day=signup,
        device_mult=np.exp(rng.normal(0, 0.6, (len(DEVICES), n_cat))),
        slot_mult=np.exp(rng.normal(0, 0.6, (len(SLOTS), n_cat))),
        weekend_mult=np.exp(rng.normal(0, 0.4, (2, n_cat))),
        hour_probs=hour_probs,
    )
