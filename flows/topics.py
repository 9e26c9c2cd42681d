"""Validating and grounding LLM topics: from a decoded JSON text to catalog-backed interests.

Constrained decoding guarantees the shape of the output, not its sense: a 135M model repeats
itself, echoes item names and makes up words. So every topic goes through the same checks,
and every drop is counted by reason:

    parse      invalid_json, not_a_list, not_a_string
    clean      empty, too_long, number, date, path_or_url, duplicate
    ground     ungrounded: no catalog term (category, style, frequent description word)
               is within `threshold` cosine similarity of the topic

A user whose topics all drop falls back to the text of their own items (counted too).

Example::

    topics, drops = clean_topics(parse_topics('["Hiking", "hiking", "2024-01-01"]')[0])
    assert topics == ["hiking"] and drops == {"duplicate": 1, "date": 1}
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from train.encoders import TextEncoder

PARSE_REASONS = ("invalid_json", "not_a_list", "not_a_string")
CLEAN_REASONS = ("empty", "too_long", "number", "date", "path_or_url", "duplicate")
DROP_REASONS = PARSE_REASONS + CLEAN_REASONS + ("ungrounded",)

MAX_CHARS = 30
MAX_WORDS = 4
_NUMBER = re.compile(r"^[\d\s.,%$€£+\-/:x#]+$")
_DATE = re.compile(
    r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b|"
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,4}\b|"
    r"\b\d{1,2} (jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b|"
    r"^(19|20)\d{2}s?$")
_PATH_OR_URL = re.compile(r"://|^www\.|\.(com|org|net|io|html?|json|png|jpe?g)\b|[/\\]|^~|@")
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or our that the their this "
    "to was with your you made make range use uses used very more most all any each every one "
    "two three new just also into over under out up down off".split())


def parse_topics(text: str) -> tuple[list[str], bool, Counter[str]]:
    """(strings, json_valid, drops) from one decoded output.

    `json_valid` is True when the text is a JSON array, whatever its items; items that are
    not strings are dropped as `not_a_string`.
    """
    drops: Counter[str] = Counter()
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        drops["invalid_json"] += 1
        return [], False, drops
    if not isinstance(value, list):
        drops["not_a_list"] += 1
        return [], False, drops
    out = []
    for v in value:
        if isinstance(v, str):
            out.append(v)
        else:
            drops["not_a_string"] += 1
    return out, True, drops


def normalize(topic: str) -> str:
    """Lower-case, single spaces, no surrounding punctuation or quotes."""
    t = " ".join(topic.lower().split())
    return t.strip(" \t.,;:!?\"'`()[]{}<>-_*")


def drop_reason(topic: str) -> str | None:
    """Why a normalized topic is not an interest, or None when it may be one."""
    if not topic:
        return "empty"
    if len(topic) > MAX_CHARS or len(topic.split()) > MAX_WORDS:
        return "too_long"
    if _DATE.search(topic):  # before paths: 12/25/2023 is a date, not a path
        return "date"
    if _PATH_OR_URL.search(topic):
        return "path_or_url"
    if _NUMBER.match(topic) or not re.search(r"[a-z]{2}", topic):
        return "number"
    return None


def clean_topics(raw: list[str]) -> tuple[list[str], Counter[str]]:
    """Normalized, deduplicated topics in their original order, and what was dropped why."""
    kept: list[str] = []
    drops: Counter[str] = Counter()
    for r in raw:
        t = normalize(r)
        reason = drop_reason(t)
        if reason is None and t in kept:
            reason = "duplicate"
        if reason:
            drops[reason] += 1
        else:
            kept.append(t)
    return kept, drops


def catalog_vocabulary(items: pd.DataFrame, min_items: int = 3, max_terms: int = 2000,
                       ) -> list[str]:
    """What topics are grounded against: categories, styles (and any `categories` or `genres`
    column's words), and description words that occur in at least `min_items` items.

    Words common to most of the catalog ("made", "range") say nothing about interests, so
    words in more than half the items are left out, as are stopwords.
    """
    terms: dict[str, None] = {}  # ordered set
    for col in ("category", "style"):
        if col in items:
            for v in items[col].dropna().astype(str):
                t = normalize(v)
                if t and t not in ("none", "unknown"):
                    terms[t] = None
    text_cols = [c for c in ("name", "description", "categories", "genres") if c in items]
    if text_cols:
        docs = items[text_cols].fillna("").astype(str).agg(" ".join, axis=1)
        words = docs.str.lower().str.findall(r"[a-z][a-z'&-]{2,}")
        df = Counter(w for ws in words for w in set(ws))
        n = len(items)
        common = [w for w, c in df.most_common() if c >= min_items and c <= max(n // 2, min_items)
                  and w not in STOPWORDS]
        for w in common[:max_terms]:
            terms.setdefault(w, None)
    if not terms:
        raise ValueError("the catalog has no category, style or text to ground topics on; "
                         "load items with a category or description column")
    return list(terms)


@dataclass(frozen=True)
class GroundingConfig:
    threshold: float = 0.5  # cosine similarity of a topic to its nearest catalog term
    min_items: int = 3  # a description word must occur in this many items to be a term
    max_terms: int = 2000


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
