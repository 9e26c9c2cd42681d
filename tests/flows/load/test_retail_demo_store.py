"""Loading the Retail Demo Store: its catalog, its funnel events labeled, its users.json,
and the real 2,465-product catalog when the shared datasets are present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from flows.generate.catalog import load_catalog
from flows.layout import read_interactions, read_items, read_users
from flows.load import load
from flows.load.config import LoadConfig
from flows.load.retail_demo_store import LABELS
from tests.helpers import DATASETS

REAL_RDS = DATASETS / "retail-demo-store" / "products.yaml"


PRODUCTS = [
    {"id": "p1", "name": "Trail Boot", "category": "footwear", "style": "boot",
     "description": "Sturdy.", "price": 89.5, "gender_affinity": "M"},
    {"id": "p2", "name": "Pasta Book", "category": "books", "style": "cooking",
     "description": "Recipes.", "price": 20.0},
    {"id": "p3", "name": "Claw Hammer", "category": "tools", "style": "hammer",
     "description": "Heavy.", "price": 15.0},
]
INTERACTIONS = """ITEM_ID,USER_ID,EVENT_TYPE,TIMESTAMP,DISCOUNT
p1,1,ProductViewed,1600000000,No
p1,1,ProductAdded,1600000010,No
p2,2,ProductViewed,1600000020,Yes
p2,2,OrderCompleted,1600000030,Yes
p3,1,ProductClicked,1600000040,No
p9,2,ProductViewed,1600000050,No
p3,3,ProductViewed,1600000060,No
p3,2,CheckoutStarted,1600000070,No
"""


def test_retail_demo_store_labels_the_funnel(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "data"
    src.mkdir()
    (src / "products.yaml").write_text(yaml.safe_dump(PRODUCTS))
    with pytest.raises(FileNotFoundError, match=r"pass --interactions FILE .* run `warmstart "
                                                r"generate --catalog .*products.yaml`"):
        load(LoadConfig(src=src, out=out, preset="retail-demo-store"))
    (src / "interactions.csv").write_text(INTERACTIONS)
    (src / "users.json").write_text(json.dumps([
        {"id": 1, "age": 25, "gender": "F", "persona": "footwear_apparel_outdoors"},
        {"id": "2", "age": None, "gender": "M"}]))
    report = load(LoadConfig(src=src, out=out, preset="retail-demo-store", max_bad_share=0.5))

    assert [(b["line"], b["column"], b["reason"]) for b in report["bad"]] == [
        (6, "EVENT_TYPE", f"'ProductClicked' is not one of {', '.join(LABELS)}")]
    # An item or user the catalog or users.json lacks keeps its events.
    assert [(c["line"], c["column"], c["reason"].split(":")[0]) for c in report["created"]] == [
        (7, "item_id", "item 'p9' is not in products.yaml"),
        (8, "user_id", "user '3' is not in users.json")]
    ev = read_interactions(out, tuple(range(14)))
    assert list(zip(ev["item_id"], ev["label"], strict=True)) == [
        ("p1", 0), ("p1", 1), ("p2", 0), ("p2", 1), ("p9", 0), ("p3", 0), ("p3", 1)]
    items = read_items(out)  # a view is 0, the rest 1
    assert list(items["item_id"]) == ["p1", "p2", "p3", "p9"] and items["price"].tolist() == [
        89.5, 20.0, 15.0, 0.0]
    users = read_users(out)
    assert users.loc["1", ["age", "gender"]].tolist() == [25, "F"]
    assert pd.isna(users.loc["2", "age"]) and "persona" not in users
    assert pd.isna(users.loc["3", "age"]) and users.loc["3", "gender"] == ""


@pytest.mark.skipif(not REAL_RDS.exists(), reason=f"no Retail Demo Store catalog at {REAL_RDS}")
def test_real_retail_demo_store_catalog(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "data"
    src.mkdir()
    (src / "products.yaml").write_bytes(REAL_RDS.read_bytes())
    ids = load_catalog(REAL_RDS)["item_id"].to_numpy()
    rng = np.random.default_rng(3)
    kinds = rng.choice(list(LABELS), size=300, p=[0.8, 0.1, 0.04, 0.03, 0.03])
    frame = pd.DataFrame({"ITEM_ID": rng.choice(ids, 300), "USER_ID": rng.integers(1, 41, 300),
                          "EVENT_TYPE": kinds, "TIMESTAMP": 1_600_000_000 + 60 * np.arange(300)})
    frame.to_csv(src / "interactions.csv", index=False)
    report = load(LoadConfig(src=src, out=out, preset="retail-demo-store"))

    assert report["bad"] == [] and report["items"] == len(ids) == 2465
    ev = read_interactions(out, tuple(range(14)))
    assert len(ev) == 300 and ev["label"].sum() == (kinds != "ProductViewed").sum()
    assert sum(report["per_day"]) == 300 and max(report["per_day"]) <= 22
    assert len(read_items(out)) == 2465
    assert read_users(out)["age"].isna().all()  # no users.json: attributes unknown
