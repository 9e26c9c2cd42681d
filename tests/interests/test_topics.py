"""Topic checks on fixed strings: the schema's bounds, parsing, and every drop reason."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from interests.topics import (
    TOPICS_SCHEMA,
    clean_topics,
    drop_reason,
    parse_topics,
)


def test_schema_bounds_the_array_and_its_strings() -> None:
    assert (TOPICS_SCHEMA["minItems"], TOPICS_SCHEMA["maxItems"]) == (3, 5)
    pattern = re.compile(TOPICS_SCHEMA["items"]["pattern"])
    assert pattern.match("trail running") and pattern.match("ab")
    assert not pattern.match("a") and not pattern.match("x" * 31)
    assert not pattern.match(", ") and not pattern.match("route 66") and pattern.match("x" * 30)


def test_parse_counts_what_is_not_a_list_of_strings() -> None:
    assert parse_topics('["a", "b"]') == (["a", "b"], True, Counter())
    assert parse_topics('["a", 3, null]') == (["a"], True, Counter(not_a_string=2))
    assert parse_topics('{"topics": ["a"]}') == ([], False, Counter(not_a_list=1))
    assert parse_topics('["unterminated') == ([], False, Counter(invalid_json=1))
    assert parse_topics("") == ([], False, Counter(invalid_json=1))


@pytest.mark.parametrize(("topic", "reason"), [
    ("", "empty"),
    ("a very long topic that goes on and on", "too_long"),
    ("one two three four five", "too_long"),
    ("1234", "number"),
    ("$19.99", "number"),
    ("2024-01-05", "date"),
    ("12/25/2023", "date"),
    ("march 2021", "date"),
    ("1990s", "date"),
    ("https://example.org", "path_or_url"),
    ("www.shop", "path_or_url"),
    ("products/boots", "path_or_url"),
    ("boots.json", "path_or_url"),
    ("hiking boots", None),
    ("rock & roll", None),
])
def test_drop_reasons(topic: str, reason: str | None) -> None:
    assert drop_reason(topic) == reason


def test_clean_normalizes_dedupes_and_counts() -> None:
    kept, drops = clean_topics(["Hiking  Boots.", "hiking boots", " ", "2024-01-01",
                                '"Trail Running"', "https://x.io"])
    assert kept == ["hiking boots", "trail running"]
    assert drops == Counter(duplicate=1, empty=1, date=1, path_or_url=1)




def test_a_topic_of_stopwords_alone_is_dropped() -> None:
    topics, drops = clean_topics(["The", "theres", "the end", "out-of-the-box"])
    assert topics == ["the end", "out-of-the-box"] and drops == {"stopword": 2}
