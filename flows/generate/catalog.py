"""The catalog: the Retail Demo Store's categories and styles, a generated catalog shaped
like it, and the reader of its `products.yaml` (used by `--catalog` and by the
retail-demo-store loader)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

# Category -> (share of the Retail Demo Store catalog, styles); counts taken from that catalog.
CATALOG_SHAPE: dict[str, tuple[int, tuple[str, ...]]] = {
    "furniture": (245, ("chairs", "dressers", "sofas", "tables")),
    "apparel": (231, ("jacket", "scarf", "shirt", "socks")),
    "accessories": (228, ("backpack", "bag", "belt", "glasses", "handbag", "watch")),
    "housewares": (217, ("bowls", "consumable", "kitchen", "salon")),
    "seasonal": (217, ("christmas", "easter", "halloween", "valentine")),
    "groceries": (195, ("bakery", "dairy", "fruits", "meat", "seafood", "vegetables")),
    "homedecor": (194, ("bedroom", "clock", "cushion", "decorative", "lighting")),
    "footwear": (188, ("boot", "formal", "sandals", "sneaker")),
    "instruments": (167, ("keys", "microphone", "percussion", "strings", "wind")),
    "floral": (127, ("arrangement", "bouquet", "centerpiece", "plant", "wreath")),
    "electronics": (104, ("cable", "camera", "computer", "headphones", "keyboard", "speaker",
                          "television")),
    "outdoors": (92, ("camping", "fishing", "kayaking", "pet")),
    "jewelry": (90, ("bracelet", "earrings", "necklace")),
    "beauty": (60, ("bathing", "grooming")),
    "tools": (59, ("axe", "drill", "hammer", "knife", "plier", "saw", "screwdriver", "set",
                   "wrench")),
    "books": (35, ("cooking", "travel")),
    "food service": (8, ("nachos", "other cuisine", "pizza", "sandwiches/wraps", "seafood",
                         "soup and salad")),
    "salty snacks": (4, ("nuts/seeds", "potato chips")),
    "cold dispensed": (3, ("fountain-carbonated", "fountain-non-carbonated")),
    "hot dispensed": (1, ("hot chocolate",)),
}
CATEGORIES: tuple[str, ...] = tuple(CATALOG_SHAPE)
GENDERED = frozenset({"apparel", "footwear", "beauty", "jewelry", "accessories"})


ADJECTIVES = ("classic", "modern", "rustic", "sleek", "cozy", "vintage", "bold", "elegant",
              "durable", "lightweight", "handmade", "premium", "compact", "bright", "soft")
COLORS = ("black", "white", "navy", "beige", "red", "green", "grey", "mauve", "teal", "gold")
USES = ("everyday use", "weekend trips", "gifting", "the whole family", "small spaces",
        "special occasions", "the outdoors", "busy mornings", "entertaining guests")


def make_catalog(n_items: int, rng: np.random.Generator) -> pd.DataFrame:
    """A catalog shaped like the Retail Demo Store's: same categories, styles and mix."""
    counts = np.array([c for c, _ in CATALOG_SHAPE.values()], dtype=float)
    per_cat = np.maximum(1, np.round(counts / counts.sum() * n_items)).astype(int)
    per_cat[0] += n_items - per_cat.sum()  # make the total exact
    rows = []
    for (cat, (_, styles)), n in zip(CATALOG_SHAPE.items(), per_cat, strict=True):
        for _ in range(n):
            style = styles[rng.integers(len(styles))]
            adj, color, use = (rng.choice(ADJECTIVES), rng.choice(COLORS), rng.choice(USES))
            gender = rng.choice(["F", "M", ""], p=[0.4, 0.3, 0.3]) if cat in GENDERED else ""
            price = float(np.round(np.exp(rng.normal(3.8 + 0.4 * (cat == "furniture"), 0.8)), 2))
            rows.append({
                "name": f"{adj.title()} {color.title()} {style.title()}",
                "category": cat,
                "style": style,
                "description": f"A {adj} {color} {style} from our {cat} range, made for {use}.",
                "price": max(price, 0.99),
                "gender_affinity": gender,
                "promoted": bool(rng.random() < 0.1),
            })
    items = pd.DataFrame(rows)
    items.insert(0, "item_id", [f"i{n:05d}" for n in range(len(items))])
    return items


def load_catalog(path: Path) -> pd.DataFrame:
    """Read the Retail Demo Store `products.yaml` into the catalog's columns."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read catalog {path}: {e}") from e
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a YAML list of products, got {type(raw).__name__}")
    rows = []
    for n, p in enumerate(raw):
        missing = [k for k in ("id", "name", "category", "style", "price") if k not in p]
        if missing:
            raise ValueError(f"{path}: product #{n} (id={p.get('id')}) lacks {missing}")
        if p["category"] not in CATALOG_SHAPE:
            raise ValueError(f"{path}: product #{n} has unknown category {p['category']!r}; "
                             f"known: {', '.join(CATEGORIES)}")
        rows.append({
            "item_id": str(p["id"]),
            "name": str(p["name"]),
            "category": p["category"],
            "style": str(p["style"]),
            "description": re.sub(r"\s+", " ", str(p.get("description", ""))).strip(),
            "price": float(p["price"]),
            "gender_affinity": str(p.get("gender_affinity") or ""),
            "promoted": bool(p.get("promoted", False)),
        })
    return pd.DataFrame(rows)
