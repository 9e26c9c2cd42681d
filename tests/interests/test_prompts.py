"""Prompts: the latest items with their reviews, newest last, in the words the topic limits
set."""

from __future__ import annotations

import pytest

from interests.prompts import (
    DETAILED_SYSTEM,
    SYSTEM,
    HistoryItem,
    PromptConfig,
    build_messages,
    item_details,
)
from interests.topics import MAX_TOPICS, MIN_TOPICS


def test_prompt_holds_the_latest_items_and_cut_reviews() -> None:
    hist = [HistoryItem(f"Book {n}", "books", "travel") for n in range(7)]
    hist[-1] = HistoryItem("Dune", "books", "none", "  A sweeping\nspace opera. " * 40)
    system, user = build_messages(hist, PromptConfig(max_items=3, max_review_chars=50))
    assert system["role"] == "system" and "JSON array" in system["content"]
    text = user["content"]
    assert "Book 3" not in text and "Book 4" in text and "Book 5" in text
    # "none" is not shown as a style; the review is one line, cut to 50 characters + "...".
    assert '- Dune (books); their review: "A sweeping space opera. A sweeping space opera. A ..."' \
        in text
    assert text.index("Book 4") < text.index("Dune")  # newest last


def test_prompt_needs_history() -> None:
    with pytest.raises(ValueError, match="at least one history item"):
        build_messages([])




def test_the_prompt_asks_for_as_many_topics_as_the_schema_allows() -> None:
    ask = f"{MIN_TOPICS} to {MAX_TOPICS}"
    user = build_messages([HistoryItem("Tent")])[1]["content"]
    assert ask in SYSTEM and ask in user


def test_the_detailed_prompt_names_every_kind_and_the_year() -> None:
    item = {"name": "Toy Story", "category": "Animation", "style": "Children's", "year": 1995,
            "categories": "Animation|Children's|Comedy"}
    assert item_details(item) == "1995; Animation, Children's, Comedy"
    assert item_details({"category": "footwear", "style": "none"}) == "footwear"
    assert item_details({"genres": "Drama War", "year": None}) == "Drama, War"
    hist = [HistoryItem("Toy Story", "Animation", "Children's", details=item_details(item))]
    system, user = build_messages(hist)  # detailed by default
    assert system["content"] == DETAILED_SYSTEM
    assert "- Toy Story (1995; Animation, Children's, Comedy)" in user["content"]
    plain = build_messages(hist, PromptConfig(style="plain"))
    assert plain[0]["content"] == SYSTEM
    assert "- Toy Story (Animation, Children's)" in plain[1]["content"]
    with pytest.raises(ValueError, match="prompt style"):
        PromptConfig(style="verbose")
