"""Feature vocabularies and transforms, fitted on training days and shared with serving.

Every categorical feature reserves index 0 for out-of-vocabulary (OOV): unknown users, new
items, an unseen device. Training masks 5% of rows' user features (and, separately, 5% of
rows' device) to OOV so that index 0 learns what a cold-start user looks like; serving then
maps an unknown user to the same index and gets that learned representation. Training and
serving call the same functions (`user_features`, `item_table`, `context_features`), so
there is one code path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

OOV = 0
AGE_EDGES = (25, 35, 45, 55, 65)  # buckets: OOV, <25, 25-34, ..., 65+
N_PRICE_BUCKETS = 10

USER_SPARSE = ("user", "age_bucket", "gender")  # the user id first: see mask_users
ITEM_SPARSE = ("item", "category", "style", "price_bucket")
CONTEXT_SPARSE = ("device", "hour", "weekday")
DENSE = ("age", "price", "hour_sin", "hour_cos", "weekday_sin", "weekday_cos")


def _vocab(values: pd.Series | np.ndarray, min_freq: int = 1) -> dict[str, int]:
    """Value -> index, most frequent first, index 0 left for OOV."""
    counts = pd.Series(values).astype(str).value_counts(sort=True)
    kept = counts[counts >= min_freq].index
    return {v: n + 1 for n, v in enumerate(sorted(kept, key=lambda v: (-counts[v], v)))}


def _keys(values: pd.Series | np.ndarray) -> np.ndarray:
    """Values as an object array of str, the form vocabularies are keyed by."""
    return np.array([str(v) for v in np.asarray(values, dtype=object)], dtype=object)


@dataclass
class UserTable:
    """User attributes as arrays keyed by id: looking up N users costs O(N) whatever the
    table's size (serving looks up one user per request in a table of 300k)."""

    rows: dict[str, int]
    age: np.ndarray  # (U,) float, NaN where unknown
    gender: np.ndarray  # (U,) str, "" where unknown

    @classmethod
    def from_frame(cls, users: pd.DataFrame) -> UserTable:
        """From a user table indexed by user_id, with age and gender columns."""
        return cls(
            rows={str(u): n for n, u in enumerate(users.index)},
            age=users["age"].to_numpy(dtype=float, na_value=np.nan),
            gender=users["gender"].to_numpy(dtype=object, na_value=""),
        )

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """(N,) row of each id, -1 where the table does not have it."""
        get = self.rows.get
        return np.fromiter((get(k, -1) for k in ids), dtype=np.int64, count=len(ids))


@dataclass
class Features:
    """Fitted vocabularies and normalizers. Serialized with the model as features.json."""

    users: dict[str, int]
    items: dict[str, int]
    categories: dict[str, int]
    styles: dict[str, int]
    devices: dict[str, int]
    genders: dict[str, int]
    price_edges: list[float]
    age_mean: float
    age_std: float
    log_price_mean: float
    log_price_std: float
    min_freq: int = 1
    cardinalities: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cardinalities = {
            "user": len(self.users) + 1,
            "item": len(self.items) + 1,
            "category": len(self.categories) + 1,
            "style": len(self.styles) + 1,
            "price_bucket": len(self.price_edges) + 2,
            "age_bucket": len(AGE_EDGES) + 2,
            "gender": len(self.genders) + 1,
            "device": len(self.devices) + 1,
            "hour": 24 + 1,
            "weekday": 7 + 1,
        }

    # ----- fitting ---------------------------------------------------------------------------

    @classmethod
    def fit(cls, interactions: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
            min_freq: int = 1) -> Features:
        """Fit on training interactions only; users/items are the full tables for attributes."""
        if interactions.empty:
            raise ValueError("no training interactions to fit features on; check the data "
                             "folder and the training day range")
        seen_users = users[users["user_id"].isin(interactions["user_id"].astype(str).unique())]
        ages = seen_users["age"].astype(float) if len(seen_users) else pd.Series([30.0])
        log_price = np.log1p(items["price"].astype(float))
        edges = np.unique(np.quantile(items["price"].astype(float),
                                      np.linspace(0, 1, N_PRICE_BUCKETS + 1)[1:-1]))
        return cls(
            users=_vocab(interactions["user_id"], min_freq),
            items=_vocab(interactions["item_id"], min_freq),
            categories=_vocab(items["category"]),
            styles=_vocab(items["category"].astype(str) + "/" + items["style"].astype(str)),
            devices=_vocab(interactions["device"], min_freq),
            genders=_vocab(users["gender"].dropna()),
            price_edges=[float(e) for e in edges],
            age_mean=float(ages.mean()),
            age_std=float(ages.std() or 1.0),
            log_price_mean=float(log_price.mean()),
            log_price_std=float(log_price.std() or 1.0),
            min_freq=min_freq,
        )

    # ----- transforms shared by training and serving -------------------------------------------

    def _lookup(self, vocab: str, values: pd.Series | np.ndarray) -> np.ndarray:
        """Indices of `values` in a vocabulary; unknown or missing values map to OOV."""
        get = getattr(self, vocab).get
        keys = _keys(values)
        return np.fromiter((get(k, OOV) for k in keys), dtype=np.int64, count=len(keys))

    def user_features(self, user_ids: np.ndarray | pd.Series, users: UserTable | pd.DataFrame
                      ) -> dict[str, np.ndarray]:
        """Sparse and dense user features; `users` is a UserTable (or a frame indexed by id).

        A user absent from the vocabulary gets user=OOV but keeps known attributes (age,
        gender) from the user table; one absent from the table gets OOV everywhere.
        """
        table = users if isinstance(users, UserTable) else UserTable.from_frame(users)
        ids = _keys(user_ids)
        pos = table.positions(ids)  # N
        found = pos >= 0
        age = np.where(found, table.age[np.where(found, pos, 0)], np.nan)
        gender = np.where(found, table.gender[np.where(found, pos, 0)], "")
        known_age = ~np.isnan(age)
        bucket = np.where(known_age, np.digitize(np.nan_to_num(age), AGE_EDGES) + 1, OOV)
        return {
            "user": self._lookup("users", ids),
            "age_bucket": bucket.astype(np.int64),
            "gender": self._lookup("genders", gender),
            "age": np.where(known_age, (age - self.age_mean) / self.age_std, 0.0
                            ).astype(np.float32),
        }

    def item_table(self, items: pd.DataFrame) -> dict[str, np.ndarray]:
        """Item features for every row of the catalog, in catalog order."""
        price = items["price"].astype(float).to_numpy()
        style_key = items["category"].astype(str) + "/" + items["style"].astype(str)
        return {
            "item": self._lookup("items", items["item_id"]),
            "category": self._lookup("categories", items["category"]),
            "style": self._lookup("styles", style_key),
            "price_bucket": (np.digitize(price, self.price_edges) + 1).astype(np.int64),
            "price": ((np.log1p(price) - self.log_price_mean) / self.log_price_std
                      ).astype(np.float32),
        }

    def context_features(self, device: np.ndarray | pd.Series, hour: np.ndarray | pd.Series,
                         weekday: np.ndarray | pd.Series) -> dict[str, np.ndarray]:
        """Request context: device (OOV when unknown), hour and weekday, also as sin/cos."""
        hour = np.asarray(hour, dtype=np.int64)
        weekday = np.asarray(weekday, dtype=np.int64)
        return {
            "device": self._lookup("devices", np.asarray(device, dtype=object)),
            "hour": hour + 1,
            "weekday": weekday + 1,
            "hour_sin": np.sin(2 * np.pi * hour / 24).astype(np.float32),
            "hour_cos": np.cos(2 * np.pi * hour / 24).astype(np.float32),
            "weekday_sin": np.sin(2 * np.pi * weekday / 7).astype(np.float32),
            "weekday_cos": np.cos(2 * np.pi * weekday / 7).astype(np.float32),
        }

    # ----- persistence -----------------------------------------------------------------------

    def save(self, path: Path) -> None:
        d = asdict(self)
        d.pop("cardinalities")
        path.write_text(json.dumps(d))

    @classmethod
    def load(cls, path: Path) -> Features:
        return cls(**json.loads(path.read_text()))


def featurize(batch: pd.DataFrame, features: Features, users: UserTable,
              item_rows: dict[str, np.ndarray], item_pos: dict[str, int]
              ) -> dict[str, np.ndarray]:
    """Interaction rows -> model inputs (sparse int64, dense float32, label float32).

    `item_rows` is `features.item_table(items)` and `item_pos` maps item_id -> its row, so
    item features are gathered from the array cache, as serving does.
    """
    pos = pd.Series(batch["item_id"].astype(str).to_numpy()).map(item_pos)
    if pos.isna().any():
        bad = batch["item_id"].astype(str).to_numpy()[pos.isna().to_numpy()][:3]
        raise ValueError(f"interactions refer to items missing from items.parquet: {list(bad)}")
    rows = pos.to_numpy(np.int64)
    out = features.user_features(batch["user_id"], users)
    out |= {k: v[rows] for k, v in item_rows.items()}
    out |= features.context_features(batch["device"], batch["hour"], batch["weekday"])
    out["item_row"] = rows
    out["label"] = batch["label"].to_numpy(np.float32)
    return out


def mask_users(batch: dict, rate: float, generator: np.random.Generator) -> dict:
    """Mask a `rate` share of rows to look like cold-start users.

    Serving meets two kinds of cold user: a new sign-up (id unknown, age and gender known)
    and an anonymous visitor (everything unknown). Masked rows always lose the user id; half
    of them also lose age and gender, so both kinds are seen in training.
    """
    if rate <= 0:
        return batch
    n = len(batch["user"])
    m = generator.random(n) < rate
    anonymous = m & (generator.random(n) < 0.5)
    batch = dict(batch)
    batch["user"] = np.where(m, OOV, batch["user"])
    for key in USER_SPARSE[1:]:
        batch[key] = np.where(anonymous, OOV, batch[key])
    batch["age"] = np.where(anonymous, 0.0, batch["age"]).astype(np.float32)
    return batch


def mask_devices(batch: dict, rate: float, generator: np.random.Generator) -> dict:
    """Replace the device by OOV on a `rate` share of rows, so an unknown or missing device
    at serving time meets a trained embedding rather than its random initialization."""
    if rate <= 0 or "device" not in batch:
        return batch
    batch = dict(batch)
    batch["device"] = np.where(generator.random(len(batch["device"])) < rate, OOV,
                               batch["device"])
    return batch
