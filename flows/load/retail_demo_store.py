"""The Retail Demo Store (aws-samples/retail-demo-store): the catalog products.yaml, the
interactions.csv its generator writes (ITEM_ID, USER_ID, EVENT_TYPE, TIMESTAMP in unix
seconds; DISCOUNT is not kept) and, when present, users.json or users.json.gz (id, age,
gender). Labels follow `LABELS`: a view is 0, any later funnel step is 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flows.generate.catalog import load_catalog
from flows.load import fields
from flows.load.build import (
    Known,
    complete,
    event_columns,
    good_rows,
    unique,
    user_rows,
    user_table,
)
from flows.load.config import EventColumns, LoadConfig, UserColumns
from flows.load.records import Records, Source, json_list, open_table

EVENTS = EventColumns(user="USER_ID", item="ITEM_ID", label="EVENT_TYPE", ts="TIMESTAMP")
# A view is an impression that was not acted on; every later funnel step is a positive. So a
# product viewed and then added to the cart gives two events, labeled 0 and 1.
LABELS = {"ProductViewed": 0, "ProductAdded": 1, "CartViewed": 1, "CheckoutStarted": 1,
          "OrderCompleted": 1}
USERS = UserColumns(id="id", age="age", gender="gender")


def _users(path: Path, src: Source, max_share: float) -> pd.DataFrame:
    """users.json (or .json.gz): a list of objects, of which id, age and gender are kept (the
    generator's persona fields would hand the models the answer). A bad row's `line` is the
    object's 1-based position in the list."""
    recs = json_list(path, USERS.used(), "the Retail Demo Store's users.json, a JSON list of "
                     "objects with id, age and gender")
    return user_table(unique(user_rows(recs, USERS, src, max_share), "user_id", path.name, src,
                             USERS.id))


def _funnel(recs: Records) -> np.ndarray:
    return recs.parse(EVENTS.label, fields.choice(LABELS, np.int8))


def read(cfg: LoadConfig) -> Source:
    assert cfg.src is not None  # LoadConfig requires --src for this preset
    products = cfg.file(cfg.items_file, "products.yaml")
    interactions = cfg.file(cfg.interactions_file, "interactions.csv")
    assert products is not None and interactions is not None
    if not products.is_file():
        raise FileNotFoundError(f"{products} does not exist; --src should hold the Retail Demo "
                                "Store's products.yaml (src/products/data/ in its repository), "
                                "or pass --items")
    if not interactions.is_file():
        raise FileNotFoundError(
            f"{interactions} does not exist, and products.yaml holds no interactions: pass "
            "--interactions FILE (the interactions.csv the Retail Demo Store's generator "
            f"writes), or run `warmstart generate --catalog {products}` for synthetic "
            "interactions over this catalog")
    users_at = cfg.file(cfg.users_file) or next(
        (p for p in (cfg.src / "users.json", cfg.src / "users.json.gz") if p.is_file()), None)
    src = cfg.source("retail-demo-store")
    items = load_catalog(products)  # a bad product stops here, named
    users = _users(users_at, src, cfg.max_bad_share) if users_at else None
    recs = open_table(interactions, EVENTS.used(), cfg.delimiter, cfg.encoding).read()
    columns = event_columns(recs, EVENTS, _funnel, fields.timestamp,
                            Known.of("user", users, users_at), Known.of("item", items, products),
                            src)
    return complete(src, good_rows(recs, src, cfg.max_bad_share, columns), interactions.name,
                    items, products.name, users, users_at.name if users_at else "")
