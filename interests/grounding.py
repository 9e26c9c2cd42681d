"""Grounding LLM topics in the catalog: each topic is kept only when a catalog term (a
category, a style, a frequent description word) is within `threshold` cosine similarity of
it under the same text encoder, and the kept topics' mean embedding is the user's interest
vector.

Example::

    grounder = Grounder(load_encoder(EncoderConfig()), catalog_vocabulary(items))
    kept, terms, vectors, n_dropped = grounder.ground(["hiking boots", "quantum physics"])
    vector = interest_vector(vectors)  # (D,), unit length

Shapes: T topics, V catalog terms, D encoder dimension.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from interests.topics import STOPWORDS, normalize
from train.encoders import TextEncoder


@dataclass(frozen=True)
class GroundingConfig:
    threshold: float = 0.5  # cosine similarity of a topic to its nearest catalog term
    min_items: int = 3  # a description word must occur in this many items to be a term
    max_terms: int = 2000
    # Also every full name in the items' category lists ("film-noir", "sci-fi") and every
    # item title ("star wars"): a topic can then ground on a named kind or a named item, not
    # only on single frequent words. Off: categories, styles and frequent words alone.
    titles_and_kinds: bool = True


def catalog_vocabulary(items: pd.DataFrame, cfg: GroundingConfig | None = None) -> list[str]:
    """What topics are grounded against: categories, styles (and any `categories` or `genres`
    column's words), description words that occur in at least `cfg.min_items` items, and with
    `cfg.titles_and_kinds` every category name and item title.

    Words common to most of the catalog ("made", "range") say nothing about interests, so
    words in more than half the items are left out, as are stopwords.
    """
    cfg = cfg or GroundingConfig()
    min_items = cfg.min_items
    terms: dict[str, None] = {}  # ordered set
    for col in ("category", "style"):
        if col in items:
            for v in items[col].dropna().astype(str):
                t = normalize(v)
                if t and t not in ("none", "unknown"):
                    terms[t] = None
    if cfg.titles_and_kinds:
        for col, sep in (("categories", "|"), ("genres", None)):
            if col in items:
                for v in items[col].dropna().astype(str):
                    for part in (v.split(sep) if sep else v.split()):
                        t = normalize(part)
                        if t and t not in ("none", "unknown"):
                            terms[t] = None
        if "name" in items:
            for v in items["name"].dropna().astype(str):
                t = normalize(v)
                if 2 < len(t) <= 60:
                    terms.setdefault(t, None)
    text_cols = [c for c in ("name", "description", "categories", "genres") if c in items]
    if text_cols:
        docs = items[text_cols].fillna("").astype(str).agg(" ".join, axis=1)
        words = docs.str.lower().str.findall(r"[a-z][a-z'&-]{2,}")
        df = Counter(w for ws in words for w in set(ws))
        n = len(items)
        common = [w for w, c in df.most_common() if c >= min_items and c <= max(n // 2, min_items)
                  and w not in STOPWORDS]
        for w in common[:cfg.max_terms]:
            terms.setdefault(w, None)
    if not terms:
        raise ValueError("the catalog has no category, style or text to ground topics on; "
                         "load items with a category or description column")
    return list(terms)


class Grounder:
    """Maps topics to their nearest catalog term with one encoder, and keeps those close
    enough. The vocabulary is embedded once per grounder (a few thousand terms: ~5 s)."""

    def __init__(self, encoder: TextEncoder, vocabulary: list[str],
                 cfg: GroundingConfig | None = None) -> None:
        self.encoder, self.cfg = encoder, cfg or GroundingConfig()
        self.terms = np.array(vocabulary, dtype=object)  # V
        self.term_vectors = encoder.encode(list(vocabulary))  # V, D

    def ground(self, topics: list[str]) -> tuple[list[str], list[str], np.ndarray, int]:
        """(kept topics, their nearest terms, (len(kept), D) topic vectors, number dropped)."""
        if not topics:
            return [], [], np.zeros((0, self.encoder.dim), np.float32), 0
        v = self.encoder.encode(topics)  # T, D
        sim = v @ self.term_vectors.T  # T, V
        best = sim.argmax(axis=1)  # T
        ok = sim[np.arange(len(topics)), best] >= self.cfg.threshold  # T
        kept = [t for t, k in zip(topics, ok, strict=True) if k]
        terms = [str(self.terms[b]) for b, k in zip(best, ok, strict=True) if k]
        return kept, terms, v[ok], int((~ok).sum())


def interest_vector(vectors: np.ndarray) -> np.ndarray:
    """(D,) unit-length mean of (T, D) unit vectors: one query for the content index."""
    m = vectors.mean(axis=0)
    return (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)
