"""What an LLM topic is: the limits, the JSON schema decoding is constrained to, and the
checks every decoded topic goes through.

Constrained decoding guarantees the shape of the output, not its sense: a 135M model repeats
itself, echoes item names and makes up words. So every topic goes through the same checks,
and every drop is counted by reason:

    parse      invalid_json, not_a_list, not_a_string
    clean      empty, too_long, number, date, path_or_url, stopword, duplicate
    ground     ungrounded (interests/grounding.py): no catalog term is close enough

Example::

    topics, drops = clean_topics(parse_topics('["Hiking", "hiking", "2024-01-01"]')[0])
    assert topics == ["hiking"] and drops == {"duplicate": 1, "date": 1}
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

PARSE_REASONS = ("invalid_json", "not_a_list", "not_a_string")
CLEAN_REASONS = ("empty", "too_long", "number", "date", "path_or_url", "stopword", "duplicate")
# Words that say nothing of an interest. A topic made of them alone ("the", "theres") is
# dropped: with a catalog's titles among the grounding terms, it could otherwise ground on
# a title that holds it.
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or our that the their "
    "there theres this to was with your you made make range use uses used very more most "
    "all any each every one two three new just also into over under out up down off".split())
DROP_REASONS = PARSE_REASONS + CLEAN_REASONS + ("ungrounded",)

MIN_TOPICS, MAX_TOPICS = 3, 5  # per answer
MAX_CHARS = 30  # per topic
MAX_WORDS = 4  # per topic; the prompt asks for 1-3, a fourth is tolerated

TOPICS_SCHEMA: dict[str, Any] = {
    "type": "array",
    # Lower-case words of 2 to MAX_CHARS characters: without the pattern SmolLM2-135M fills
    # every slot with ", "; with it, the same prompts give topic-like phrases. (The pattern
    # carries the length: xgrammar ignores minLength/maxLength beside a pattern.) Validation
    # still checks every string.
    "items": {"type": "string", "pattern": f"^[a-z][a-z '&-]{{0,{MAX_CHARS - 2}}}[a-z]$"},
    "minItems": MIN_TOPICS,
    "maxItems": MAX_TOPICS,
}

_NUMBER = re.compile(r"^[\d\s.,%$€£+\-/:x#]+$")
_DATE = re.compile(
    r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b|"
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,4}\b|"
    r"\b\d{1,2} (jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b|"
    r"^(19|20)\d{2}s?$")
_PATH_OR_URL = re.compile(r"://|^www\.|\.(com|org|net|io|html?|json|png|jpe?g)\b|[/\\]|^~|@")

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
    if all(w.strip("'") in STOPWORDS for w in re.split(r"[\s-]+", topic)):
        return "stopword"
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
