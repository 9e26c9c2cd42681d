"""The serving state: everything one model version answers from, built once at load and
never changed afterwards. A replica holds one `ServingState` and replaces it in a single
assignment (`Pipeline.swap`), so a request that started on the old version finishes on it.

What is computed here once, so that no request pays for it:
    users     every known user's model-ready columns (vocabulary index, gender index, age
              bucket and normalized age, top category, category shares) and query-tower
              vector: the scikit-learn transforms and the tower run over the whole table at
              load, not once per request
    oov_user  the same columns for a user the version has never seen
    items     the catalog's item features (the array cache ranking gathers from)
    item_pos  item id -> catalog row, for events and the seen filter
    item_vectors  the item tower's vectors, for the Two-Tower signal of candidates that
              another source found
    blend     how the signals make one score (train/blend.py); a version without one is
              ranked by its DLRM alone
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from interests.artifact import FOLDER as INTERESTS
from interests.artifact import Interests, load_interests
from serve.popularity import Demographic
from train.artifacts import Bundle, load_bundle
from train.blend import Blend
from train.encoders import EncoderConfig, item_content
from train.features import OOV
from train.item_item import Histories, ItemItem
from train.scoring import item_vectors, user_vectors

# The columns of one user that the models read (plus `user_pos` for the cross features).
USER_COLUMNS = ("user", "gender", "age_bucket", "age", "top_category", "history",
                "hist_items")


@dataclass(frozen=True)
class UserArrays:
    """Model-ready user columns for every user of the version, one row per user."""

    rows: dict[str, int]  # user_id -> row
    cols: dict[str, np.ndarray]  # USER_COLUMNS, each (U,) or (U, C)
    vectors: np.ndarray  # (U, D) query-tower vectors of those columns

    @classmethod
    def build(cls, bundle: Bundle, chunk: int = 65_536) -> UserArrays:
        ids = np.array(list(bundle.user_table.rows), dtype=object)
        cols = bundle.features.user_features(ids, bundle.user_table)
        cols = {k: np.ascontiguousarray(cols[k]) for k in USER_COLUMNS}
        vectors = [user_vectors(bundle.two_tower, {k: v[s:s + chunk] for k, v in cols.items()})
                   for s in range(0, len(ids), chunk)]
        return cls(rows=dict(bundle.user_table.rows), cols=cols,
                   vectors=np.concatenate(vectors) if vectors else
                   np.zeros((0, bundle.index.d), np.float32))

    def row(self, user_id: str) -> int:
        """The user's row, -1 when the version does not have the user."""
        return self.rows.get(user_id, -1)


@dataclass(frozen=True)
class ServingState:
    version: str
    bundle: Bundle  # the models, fitted features and tables
    item_ids: np.ndarray  # (I,) object str, catalog order = index positions
    item_pos: dict[str, int]
    items: dict[str, np.ndarray]  # the item feature cache, (I, ...) per column
    item_category: np.ndarray  # (I,) category index
    item_labels: np.ndarray  # (I, 2) object: each item's name and category, for answers
    index: faiss.Index
    users: UserArrays
    oov_user: dict[str, np.ndarray]  # USER_COLUMNS of an unknown user, each (1, ...)
    oov_vector: np.ndarray  # (1, D) its query-tower vector
    interests: Interests | None
    popularity: np.ndarray  # (I, D, H) training clicks per item, device and hour bucket
    item_vectors: np.ndarray  # (I, D) item-tower vectors, rows of the index
    demographic: Demographic | None  # popularity per age bucket and gender
    item_item: ItemItem | None
    histories: Histories | None  # each known user's items, rows of users.rows
    blend: Blend
    interest_items: np.ndarray | None  # (I, E) catalog rows in the interests' encoder space

    @property
    def devices(self) -> dict[str, int]:
        return self.bundle.features.devices

    @property
    def n_categories(self) -> int:
        return int(self.bundle.features.cardinalities["category"])

    def history(self, row: int) -> np.ndarray:
        """(H,) catalog rows the version knows user row `row` interacted with."""
        return self.histories.row(row) if self.histories is not None else np.zeros(0, np.int32)


def build_state(bundle: Bundle, interests: Interests | None = None,
                hour_buckets: int = 4, users: UserArrays | None = None) -> ServingState:
    item_ids = bundle.items["item_id"].astype(str).to_numpy(dtype=object)
    if interests is None:
        interests = load_interests(bundle.path.parent / INTERESTS, item_ids)
    oov = bundle.features.user_features(np.array([""], dtype=object), bundle.user_table)
    oov_user = {k: oov[k] for k in USER_COLUMNS} | {"user": np.array([OOV])}
    sources = bundle.sources
    popularity = (sources.popularity if sources is not None else  # before sources: no clicks
                  np.zeros((len(item_ids), bundle.features.cardinalities["device"],
                            hour_buckets), np.float32))
    return ServingState(
        version=bundle.version,
        bundle=bundle,
        item_ids=item_ids,
        item_pos={i: n for n, i in enumerate(item_ids)},
        items=bundle.item_rows,
        item_category=bundle.item_rows["category"],
        item_labels=_labels(bundle.items),
        index=bundle.index,
        users=users or UserArrays.build(bundle),
        oov_user=oov_user,
        oov_vector=user_vectors(bundle.two_tower, oov_user),
        interests=interests,
        popularity=popularity.astype(np.float32),
        item_vectors=item_vectors(bundle.two_tower, bundle.item_rows),
        demographic=Demographic(sources.demographic) if sources is not None else None,
        item_item=sources.item_item if sources is not None else None,
        histories=sources.histories if sources is not None else None,
        blend=sources.blend if sources is not None else Blend.single("dlrm"),
        interest_items=_interest_items(interests, len(item_ids)),
    )


def _labels(items: pd.DataFrame) -> np.ndarray:
    """(I, 2) name (the id where there is none) and category of every catalog row."""
    ids = items["item_id"].astype(str)
    names = items["name"].fillna("").astype(str) if "name" in items else ids
    names = names.where(names != "", ids)
    return np.stack([names.to_numpy(object), items["category"].astype(str).to_numpy(object)],
                    axis=1)


def _interest_items(interests: Interests | None, n_items: int) -> np.ndarray | None:
    """(I, E) every catalog row's vector in the interest encoder's space (zeros for items
    the expand run did not embed), for the interest signal of any candidate."""
    if interests is None:
        return None
    vectors = interests.index.reconstruct_n(0, interests.index.ntotal)  # I', E
    out = np.zeros((n_items, vectors.shape[1]), np.float32)
    out[interests.rows] = vectors
    return out


def load_state(path: Path) -> ServingState:
    """The serving state of a version folder, or of LATEST under an artifact root."""
    return build_state(load_bundle(path))


def with_items(state: ServingState, items: pd.DataFrame) -> ServingState:
    """A new state whose catalog and index also hold brand-new `items`, without retraining;
    `state` itself is left as it was (swap the result in). Their vectors come from content
    alone (text through the encoder the model was trained with, category, style, price): the
    item id is OOV, as for any unseen item. New rows continue the catalog's rows."""
    b = state.bundle
    if dup := set(items["item_id"].astype(str)) & set(state.item_pos):
        raise ValueError(f"items {sorted(dup)[:3]} are already in the catalog")
    enc = b.features.content_encoder
    raw = item_content(items, EncoderConfig(**enc["text"]) if enc.get("text") else None,
                       enc.get("image"), use_ray=False)
    new_rows = b.features.item_table(items, raw)
    index = faiss.clone_index(state.index)
    index.add(item_vectors(b.two_tower, new_rows))  # positions continue the catalog's rows
    content = b.item_content
    if raw is not None and content is not None:
        content = np.concatenate([content, raw])
    bundle = replace(b, items=pd.concat([b.items, items], ignore_index=True), index=index,
                     item_content=content,
                     sources=None if b.sources is None else b.sources.grown(len(items)))
    return build_state(bundle, interests=state.interests,
                       hour_buckets=state.popularity.shape[2], users=state.users)
