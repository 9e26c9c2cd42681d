"""Feature workflows, fitted once on the training days and shared, unchanged, with serving.

What is fitted, and by what:
    categorify   user, item, category, style, device, gender: scikit-learn `OrdinalEncoder`
                 (`min_frequency`, `handle_unknown`); index 0 is OOV, values seen fewer than
                 `min_freq` times share one "infrequent" index.
    age          `StandardScaler` (normalized) and `KBinsDiscretizer` (quantile buckets).
    price        log1p + `StandardScaler`, and `KBinsDiscretizer` quantile buckets.
    hour/weekday cyclical sin/cos (a formula, nothing to fit) and an embedding index.
    content      `PCA` of the item text (and image) embeddings down to `content_dim`.
    history      per known user: share of training impressions in each category and style,
                 the top category by clicks (the user's "neighbourhood"), and the item ids
                 of their latest `HISTORY_ITEMS` training clicks (the query tower's bag).

scikit-learn fits and owns the parameters; its transformers are pickled with the model
(features.joblib, checksummed in the manifest). Categorical lookups use a dict built from
the fitted encoder by running the encoder itself over its own categories (`_codes`), because
`OrdinalEncoder.transform` re-checks the input against every known category on each call:
~20 ms for one user against 300k known users, too slow for a request. `tests/test_models.py`
checks the dict against `OrdinalEncoder.transform` on known, infrequent and unknown values.

Training masks a share of rows to look like cold-start users (`mask_users`) and a separate
share to an unknown device (`mask_devices`), so the OOV indices learn what serving will meet.
Training, evaluation and serving all go through `featurize` / `user_features` /
`item_table` / `context_features`: one code path.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    OrdinalEncoder,
    StandardScaler,
)

OOV = 0
N_AGE_BUCKETS = 6
N_PRICE_BUCKETS = 10

USER_SPARSE = ("user", "age_bucket", "gender", "top_category")  # the user id first
ITEM_SPARSE = ("item", "category", "style", "price_bucket")
CONTEXT_SPARSE = ("device", "hour", "weekday")
# Scalars, stacked into one dense tensor. hist_* are the user's share of training
# impressions in the candidate item's category and style (0 for unknown users).
DENSE = ("age", "price", "hour_sin", "hour_cos", "weekday_sin", "weekday_cos",
         "hist_category", "hist_style")
# Vector-valued inputs: the user's category shares (Two-Tower query tower) and the item's
# content embedding (item tower and the DLRM interaction).
VECTORS = ("history", "content")
# A user's latest clicked items (item codes, OOV = 0 pads), for the query tower's bag.
HISTORY_ITEMS = 50
# What a cold-start user lacks: everything learned from their past.
USER_PAST = ("user", "top_category", "history", "hist_items", "hist_category", "hist_style")
CATEGORICAL = ("user", "item", "category", "style", "device", "gender")


def _keys(values: pd.Series | np.ndarray) -> np.ndarray:
    """Values as an object array of str, the form vocabularies are keyed by."""
    return np.array([str(v) for v in np.asarray(values, dtype=object)], dtype=object)


def _style_keys(items: pd.DataFrame) -> np.ndarray:
    return _keys(items["category"].astype(str) + "/" + items["style"].astype(str))


def fit_categorical(values: pd.Series | np.ndarray, min_freq: int) -> OrdinalEncoder:
    """An OrdinalEncoder over `values`. It is fitted on each distinct value repeated
    min(count, min_freq) times: the same categories and the same infrequent set as fitting on
    every row, at the cost of the distinct values (8M training rows -> 300k)."""
    counts = pd.Series(_keys(values)).value_counts()
    rows = np.repeat(counts.index.to_numpy(dtype=object),
                     np.minimum(counts.to_numpy(), max(min_freq, 1)))
    enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                         min_frequency=min_freq if min_freq > 1 else None, dtype=np.int64)
    return enc.fit(rows[:, None])


def _codes(enc: OrdinalEncoder) -> dict[str, int]:
    """Category -> index (sklearn's code + 1, so that 0 is left for OOV)."""
    cats = enc.categories_[0]
    return dict(zip(cats.tolist(), (enc.transform(cats[:, None])[:, 0] + 1).tolist(),
                    strict=True))


@dataclass
class Features:
    """Fitted transformers (scikit-learn) and the lookups derived from them."""

    encoders: dict[str, OrdinalEncoder]
    age_scaler: StandardScaler
    age_bins: KBinsDiscretizer
    price_scaler: Pipeline
    price_bins: KBinsDiscretizer
    content_pca: PCA | None = None
    content_encoder: dict[str, Any] = field(default_factory=dict)  # how content was embedded
    min_freq: int = 1
    # Whether the training events had times. Data without them (hour -1) taught the models
    # nothing about hours, so serving then answers every request as of an unknown time.
    time_known: bool = True
    vocab: dict[str, dict[str, int]] = field(init=False, repr=False)
    cardinalities: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.vocab = {name: _codes(enc) for name, enc in self.encoders.items()}
        cards = {name: max(v.values(), default=0) + 1 for name, v in self.vocab.items()}
        self.cardinalities = {
            "user": cards["user"], "item": cards["item"], "category": cards["category"],
            "style": cards["style"], "device": cards["device"], "gender": cards["gender"],
            "top_category": cards["category"],
            "age_bucket": int(self.age_bins.n_bins_[0]) + 1,
            "price_bucket": int(self.price_bins.n_bins_[0]) + 1,
            "hour": 24 + 1,
            "weekday": 7 + 1,
            "history": cards["category"],  # width of the category-share vector
            "hist_items": cards["item"],  # the bag of latest clicked items draws from items
            "content": int(self.content_pca.n_components_) if self.content_pca else 0,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["vocab"], state["cardinalities"]  # derived: rebuilt on load
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"time_known": True} | state)  # versions before the field had it
        self.__post_init__()

    @property
    def users(self) -> dict[str, int]:
        return self.vocab["user"]

    @property
    def items(self) -> dict[str, int]:
        return self.vocab["item"]

    @property
    def devices(self) -> dict[str, int]:
        return self.vocab["device"]

    # ----- fitting ---------------------------------------------------------------------------

    @classmethod
    def fit(cls, interactions: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
            min_freq: int = 1, content: np.ndarray | None = None, content_dim: int = 64,
            content_encoder: dict[str, Any] | None = None) -> Features:
        """Fit on training interactions; users/items are the full tables for attributes.

        `content` (I, E) holds raw content embeddings of the catalog rows (text, or text and
        image side by side); PCA reduces them to `content_dim`. An `hour` column in
        `interactions` whose values are all -1 (no times in the data) sets `time_known` off.
        """
        if interactions.empty:
            raise ValueError("no training interactions to fit features on; check the data "
                             "folder and the training day range")
        seen = users[users["user_id"].isin(interactions["user_id"].astype(str).unique())]
        ages = seen["age"].astype(float).dropna().to_numpy()
        ages = ages if len(ages) else np.array([30.0])
        price = items["price"].astype(float).to_numpy()[:, None]
        with warnings.catch_warnings():  # constant or few-valued columns: fewer bins, fine
            warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
            age_bins = KBinsDiscretizer(N_AGE_BUCKETS, encode="ordinal", strategy="quantile",
                                        quantile_method="averaged_inverted_cdf"
                                        ).fit(ages[:, None])
            price_bins = KBinsDiscretizer(N_PRICE_BUCKETS, encode="ordinal",
                                          strategy="quantile",
                                          quantile_method="averaged_inverted_cdf").fit(price)
        pca = None
        if content is not None and len(content):
            n = min(content_dim, content.shape[1], len(content))
            pca = PCA(n_components=n, random_state=0).fit(content)
        return cls(
            encoders={
                "user": fit_categorical(interactions["user_id"], min_freq),
                "item": fit_categorical(interactions["item_id"], min_freq),
                "category": fit_categorical(items["category"], 1),
                "style": fit_categorical(_style_keys(items), 1),
                "device": fit_categorical(interactions["device"], min_freq),
                "gender": fit_categorical(users["gender"].dropna(), 1),
            },
            age_scaler=StandardScaler().fit(ages[:, None]),
            age_bins=age_bins,
            price_scaler=make_pipeline(FunctionTransformer(np.log1p), StandardScaler()
                                       ).fit(price),
            price_bins=price_bins,
            content_pca=pca,
            content_encoder=content_encoder or {},
            min_freq=min_freq,
            time_known="hour" not in interactions or bool((interactions["hour"] >= 0).any()),
        )

    # ----- transforms shared by training and serving -------------------------------------------

    def lookup(self, name: str, values: pd.Series | np.ndarray) -> np.ndarray:
        """Indices of `values` in a vocabulary; unknown or missing values map to OOV."""
        get = self.vocab[name].get
        keys = _keys(values)
        return np.fromiter((get(k, OOV) for k in keys), dtype=np.int64, count=len(keys))

    def age_columns(self, age: np.ndarray) -> dict[str, np.ndarray]:
        """Normalized age (0 where unknown) and its bucket (OOV where unknown)."""
        known = ~np.isnan(age)
        x = np.nan_to_num(age)[:, None]
        return {
            "age_bucket": np.where(known, self.age_bins.transform(x)[:, 0] + 1, OOV
                                   ).astype(np.int64),
            "age": np.where(known, self.age_scaler.transform(x)[:, 0], 0.0).astype(np.float32),
        }

    def user_features(self, user_ids: np.ndarray | pd.Series, table: UserTable
                      ) -> dict[str, np.ndarray]:
        """User inputs for both models, plus `user_pos` (row in `table`, -1 if absent).

        A user absent from the vocabulary gets user=OOV but keeps known attributes (age,
        gender); one absent from the table gets OOV and zeros everywhere.
        """
        ids = _keys(user_ids)
        pos = table.positions(ids)  # N
        found = pos >= 0
        at = np.where(found, pos, 0)
        age = np.where(found, table.age[at], np.nan)
        gender = np.where(found, table.gender[at], "")
        return {
            "user": self.lookup("user", ids),
            "gender": self.lookup("gender", gender),
            "top_category": np.where(found, table.top_category[at], OOV).astype(np.int64),
            "history": np.where(found[:, None], table.history[at], 0).astype(np.float32),
            "hist_items": np.where(found[:, None], table.items[at], OOV).astype(np.int64),
            "user_pos": pos,
        } | self.age_columns(age)

    def content(self, embeddings: np.ndarray) -> np.ndarray:
        """(I, content_dim) item content vectors from raw (I, E) embeddings."""
        if self.content_pca is None:
            return np.zeros((len(embeddings), 0), dtype=np.float32)
        return self.content_pca.transform(embeddings).astype(np.float32)

    def item_table(self, items: pd.DataFrame, content: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
        """Item features for every row of the catalog, in catalog order. `content` holds the
        rows' raw content embeddings (required when the features were fitted with content)."""
        price = items["price"].astype(float).to_numpy()[:, None]
        if self.content_pca is not None and content is None:
            raise ValueError("these features were fitted with item content embeddings; "
                             "pass the catalog's embeddings (artifacts' item_content.npy)")
        if content is not None and len(content) != len(items):
            raise ValueError(f"{len(content)} content embeddings for {len(items)} items")
        return {
            "item": self.lookup("item", items["item_id"]),
            "category": self.lookup("category", items["category"]),
            "style": self.lookup("style", _style_keys(items)),
            "price_bucket": (self.price_bins.transform(price)[:, 0] + 1).astype(np.int64),
            "price": self.price_scaler.transform(price)[:, 0].astype(np.float32),
            "content": self.content(content if content is not None
                                    else np.zeros((len(items), 0), np.float32)),
        }

    def context_features(self, device: np.ndarray | pd.Series, hour: np.ndarray | pd.Series,
                         weekday: np.ndarray | pd.Series) -> dict[str, np.ndarray]:
        """Request context: device (OOV when unknown), hour and weekday, also as sin/cos."""
        return {"device": self.lookup("device", np.asarray(device, dtype=object))
                } | time_columns(np.asarray(hour, dtype=np.int64),
                                 np.asarray(weekday, dtype=np.int64))

    # ----- persistence -----------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """features.joblib (the fitted transformers) and features.json (a readable summary)."""
        joblib.dump(self, folder / "features.joblib")
        (folder / "features.json").write_text(json.dumps({
            "scikit_learn": sklearn.__version__, "min_freq": self.min_freq,
            "cardinalities": self.cardinalities, "content_encoder": self.content_encoder,
        }, indent=1))

    @classmethod
    def load(cls, folder: Path) -> Features:
        summary = json.loads((folder / "features.json").read_text())
        if summary["scikit_learn"] != sklearn.__version__:
            raise RuntimeError(
                f"{folder} was fitted with scikit-learn {summary['scikit_learn']}, this "
                f"environment has {sklearn.__version__}; install that version or retrain")
        features = joblib.load(folder / "features.joblib")
        if not isinstance(features, cls):
            raise RuntimeError(f"{folder / 'features.joblib'} does not hold fitted features")
        return features


def time_columns(hour: np.ndarray, weekday: np.ndarray) -> dict[str, np.ndarray]:
    """Hour and weekday as embedding indices (0 = unknown, for -1) and as sin/cos (0 and 0
    when unknown: no position on the circle)."""
    known_h, known_w = hour >= 0, weekday >= 0
    return {
        "hour": np.where(known_h, hour + 1, OOV),
        "weekday": np.where(known_w, weekday + 1, OOV),
        "hour_sin": np.where(known_h, np.sin(2 * np.pi * hour / 24), 0).astype(np.float32),
        "hour_cos": np.where(known_h, np.cos(2 * np.pi * hour / 24), 0).astype(np.float32),
        "weekday_sin": np.where(known_w, np.sin(2 * np.pi * weekday / 7), 0).astype(np.float32),
        "weekday_cos": np.where(known_w, np.cos(2 * np.pi * weekday / 7), 0).astype(np.float32),
    }


@dataclass
class UserTable:
    """Per-user attributes and training history as arrays keyed by id: looking up N users
    costs O(N) whatever the table's size (serving looks up one user in a table of 300k)."""

    rows: dict[str, int]
    age: np.ndarray  # (U,) float, NaN where unknown
    gender: np.ndarray  # (U,) str, "" where unknown
    top_category: np.ndarray  # (U,) int category index, OOV without history
    history: np.ndarray  # (U, C) float16 share of training impressions per category index
    style_history: np.ndarray  # (U, S) float16 share per style index
    # (U, L) int32 item codes of the latest L training clicks, newest first, OOV-padded;
    # L is 0 in a table saved before the query tower read them
    items: np.ndarray

    @classmethod
    def build(cls, users: pd.DataFrame, features: Features,
              interactions: pd.DataFrame | None = None, items: pd.DataFrame | None = None
              ) -> UserTable:
        """From a user table indexed by user_id (age, gender) and, optionally, the training
        interactions (user_id, item_id, label) with the catalog, for the history columns."""
        rows = {str(u): n for n, u in enumerate(users.index)}
        c, s = features.cardinalities["category"], features.cardinalities["style"]
        top = np.zeros(len(rows), np.int64)
        history = np.zeros((len(rows), c), np.float16)
        style_history = np.zeros((len(rows), s), np.float16)
        latest = np.zeros((len(rows), HISTORY_ITEMS), np.int32)
        if interactions is not None and items is not None and len(interactions):
            cat = pd.Series(features.lookup("category", items["category"]), index=items["item_id"])
            sty = pd.Series(features.lookup("style", _style_keys(items)), index=items["item_id"])
            mapped = pd.Series(interactions["user_id"].astype(str).to_numpy()).map(rows)
            ok = mapped.notna().to_numpy()
            u = mapped.to_numpy()[ok].astype(np.int64)
            iid = interactions["item_id"].astype(str).to_numpy()[ok]
            ic, ist = cat.reindex(iid).fillna(0).to_numpy(np.int64), sty.reindex(iid).fillna(
                0).to_numpy(np.int64)
            n = np.bincount(u, minlength=len(rows)).astype(np.float64)[:, None]  # U, 1
            history[:] = _counts(u, ic, len(rows), c) / np.maximum(n, 1)
            style_history[:] = _counts(u, ist, len(rows), s) / np.maximum(n, 1)
            clicked = interactions["label"].to_numpy()[ok] == 1
            clicks = _counts(u[clicked], ic[clicked], len(rows), c)
            # top category by clicks; by impressions for a user without clicks
            top = np.where(clicks.sum(1) > 0, clicks.argmax(1), history.argmax(1))
            top = np.where(n[:, 0] > 0, top, OOV)
            latest = _latest(u[clicked], features.lookup("item", iid[clicked]),
                             interactions["ts"].to_numpy()[ok][clicked]
                             if "ts" in interactions else None, len(rows))
        return cls(
            rows=rows,
            age=users["age"].to_numpy(dtype=float, na_value=np.nan),
            gender=users["gender"].to_numpy(dtype=object, na_value=""),
            top_category=top.astype(np.int64),
            history=history,
            style_history=style_history,
            items=latest,
        )

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """(N,) row of each id, -1 where the table does not have it."""
        get = self.rows.get
        return np.fromiter((get(k, -1) for k in ids), dtype=np.int64, count=len(ids))

    def save(self, path: Path) -> None:
        np.savez(path, top_category=self.top_category, history=self.history,
                 style_history=self.style_history, items=self.items)

    @classmethod
    def load(cls, users: pd.DataFrame, path: Path) -> UserTable:
        """`users` indexed by user_id, in the order the table was saved in."""
        with np.load(path) as z:
            return cls(rows={str(u): n for n, u in enumerate(users.index)},
                       age=users["age"].to_numpy(dtype=float, na_value=np.nan),
                       gender=users["gender"].to_numpy(dtype=object, na_value=""),
                       top_category=z["top_category"], history=z["history"],
                       style_history=z["style_history"],
                       items=z["items"] if "items" in z.files
                       else np.zeros((len(z["top_category"]), 0), np.int32))


def _latest(users: np.ndarray, codes: np.ndarray, ts: np.ndarray | None, n_users: int,
            width: int = HISTORY_ITEMS) -> np.ndarray:
    """(n_users, width) each user's latest `width` item codes (by `ts`, else by row order),
    newest first, OOV-padded."""
    order = np.lexsort((-np.arange(len(users)) if ts is None else
                        -pd.Series(ts).rank(method="first", na_option="top").to_numpy(), users))
    u, c = users[order], codes[order]
    rank = np.arange(len(u)) - np.searchsorted(u, u)  # position within the user's run
    keep = rank < width
    out = np.full((n_users, width), OOV, np.int32)
    out[u[keep], rank[keep]] = c[keep]
    return out


def _counts(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """(n_rows, n_cols) count of each (row, col) pair."""
    flat = np.bincount(rows * n_cols + cols, minlength=n_rows * n_cols)
    return flat.reshape(n_rows, n_cols).astype(np.float64)


def cross_features(user: dict[str, np.ndarray], item: dict[str, np.ndarray], table: UserTable
                   ) -> dict[str, np.ndarray]:
    """The user's share of training impressions in each row's item category and style."""
    pos = user["user_pos"]
    found = pos >= 0
    at = np.where(found, pos, 0)
    return {
        "hist_category": np.where(found, table.history[at, item["category"]], 0
                                  ).astype(np.float32),
        "hist_style": np.where(found, table.style_history[at, item["style"]], 0
                               ).astype(np.float32),
    }


def featurize(batch: pd.DataFrame, features: Features, users: UserTable,
              item_rows: dict[str, np.ndarray], item_pos: dict[str, int]
              ) -> dict[str, np.ndarray]:
    """Interaction rows -> model inputs (sparse int64, dense and vectors float32, label).

    `item_rows` is `features.item_table(items)` and `item_pos` maps item_id -> its row, so
    item features are gathered from the array cache, as serving does.
    """
    pos = pd.Series(batch["item_id"].astype(str).to_numpy()).map(item_pos)
    if pos.isna().any():
        bad = batch["item_id"].astype(str).to_numpy()[pos.isna().to_numpy()][:3]
        raise ValueError(f"interactions refer to items missing from items.parquet: {list(bad)}")
    rows = pos.to_numpy(np.int64)
    user = features.user_features(batch["user_id"], users)
    item = {k: v[rows] for k, v in item_rows.items()}
    out = user | item | cross_features(user, item, users)
    out |= features.context_features(batch["device"], batch["hour"], batch["weekday"])
    del out["user_pos"]
    out["item_row"] = rows
    out["label"] = batch["label"].to_numpy(np.float32)
    return out


def mask_user_past(batch: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Make `rows` (bool) look like users with no past: id, top category, history -> OOV/0."""
    batch = dict(batch)
    for key in USER_PAST:
        if key in batch:
            m = rows.reshape(-1, *([1] * (batch[key].ndim - 1)))
            batch[key] = np.where(m, np.zeros((), batch[key].dtype), batch[key])
    return batch


def mask_user_attributes(batch: dict[str, np.ndarray], rows: np.ndarray
                         ) -> dict[str, np.ndarray]:
    """Make `rows` look anonymous as well: gender, age bucket and age unknown."""
    batch = dict(batch)
    for key in ("gender", "age_bucket", "age"):
        if key in batch:
            batch[key] = np.where(rows, np.zeros((), batch[key].dtype), batch[key])
    return batch


MASK_KINDS = (0.2, 0.4, 0.4)  # shares of masked rows: id only, no past, anonymous


def mask_users(batch: dict[str, np.ndarray], rate: float, generator: np.random.Generator,
               kinds: tuple[float, float, float] = MASK_KINDS) -> dict[str, np.ndarray]:
    """Mask a `rate` share of rows to look like the users serving meets without an id.

    `kinds` splits the masked rows into three cases, in this order:
      - id only: a user who arrived after the last full training; their history features
        are filled in by daily fine-tuning, their id is not in the vocabulary yet;
      - no past: a new sign-up, gender and age known, no history (id, top category and
        history masked);
      - anonymous: nothing known (also gender, age bucket and age masked).
    `kinds=(0, 0, 1)` masks user id, gender and top category together on every row.
    """
    if rate <= 0:
        return batch
    if len(kinds) != 3 or min(kinds) < 0 or not np.isclose(sum(kinds), 1.0):
        raise ValueError(f"mask kinds must be three shares summing to 1, got {kinds}")
    n = len(batch["user"])
    m = generator.random(n) < rate
    kind = generator.choice(3, size=n, p=np.asarray(kinds, dtype=float))
    batch = dict(batch)
    batch["user"] = np.where(m, OOV, batch["user"])
    return mask_user_attributes(mask_user_past(batch, m & (kind >= 1)), m & (kind == 2))


def mask_devices(batch: dict[str, np.ndarray], rate: float, generator: np.random.Generator
                 ) -> dict[str, np.ndarray]:
    """Replace the device by OOV on a `rate` share of rows, so an unknown or missing device
    at serving time meets a trained embedding rather than its random initialization."""
    if rate <= 0 or "device" not in batch:
        return batch
    batch = dict(batch)
    batch["device"] = np.where(generator.random(len(batch["device"])) < rate, OOV,
                               batch["device"])
    return batch
