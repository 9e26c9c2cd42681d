"""The prompt an LLM sees for one user: a system message and the user's latest items.

Example::

    messages = build_messages([HistoryItem("Trail Boot", "footwear", "boot", "Great grip.")])
    assert messages[0]["role"] == "system" and "Trail Boot" in messages[1]["content"]
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from interests.topics import MAX_TOPICS, MIN_TOPICS

Messages = list[dict[str, str]]

SYSTEM = ("You are a shopping assistant. From what a customer bought, watched or reviewed, "
          f"infer other topics they are likely to enjoy. Answer only with a JSON array of "
          f"{MIN_TOPICS} to {MAX_TOPICS} short topic keywords (1-3 words each), without "
          "repeating the item names.")
# The detailed prompt names every item's kinds (all its genres or categories) and year, and
# asks for kinds of items rather than items: a small model given one title alone answered
# most MovieLens users with the same topics (27% distinct topic sets).
DETAILED_SYSTEM = (
    "You recommend products, films and books. From the items a person chose, with their "
    "genres or categories, infer what else they would enjoy. Answer only with a JSON array "
    f"of {MIN_TOPICS} to {MAX_TOPICS} short topics (1-3 words each): genres, themes, styles "
    "or kinds of item that fit this person, not the item names.")
PROMPTS = ("plain", "detailed")


@dataclass(frozen=True)
class PromptConfig:
    max_items: int = 5  # newest history items shown
    max_review_chars: int = 300  # each review is cut to this, with "..."
    # "detailed": each item with all its genres or categories and its year (`details`);
    # "plain": category and style only, as before the detailed prompt existed
    style: str = "detailed"

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_review_chars < 1:
            raise ValueError("max_items and max_review_chars must be >= 1")
        if self.style not in PROMPTS:
            raise ValueError(f"prompt style must be one of {', '.join(PROMPTS)}, got "
                             f"{self.style!r}")


@dataclass(frozen=True)
class HistoryItem:
    """One thing the user interacted with, as the prompt shows it."""

    title: str
    category: str = ""
    style: str = ""
    review: str = ""
    details: str = ""  # every genre or category, and the year: "1995; Animation, Comedy"


def build_messages(history: list[HistoryItem], cfg: PromptConfig | None = None) -> Messages:
    """The chat prompt for one user: their latest `cfg.max_items` items, newest last, with the
    review text they wrote where there is one (cut to `cfg.max_review_chars`)."""
    cfg = cfg or PromptConfig()
    if not history:
        raise ValueError("a prompt needs at least one history item; users without history "
                         "fall back before prompting")
    detailed = cfg.style == "detailed"
    lines = []
    for h in history[-cfg.max_items:]:
        kind = (h.details if detailed and h.details else
                ", ".join(p for p in (h.category, h.style) if p and p not in ("none", "unknown")))
        line = f"- {h.title.strip()}" + (f" ({kind})" if kind else "")
        if h.review.strip():
            text = " ".join(h.review.split())
            if len(text) > cfg.max_review_chars:
                text = text[:cfg.max_review_chars] + "..."
            line += f'; their review: "{text}"'
        lines.append(line)
    if detailed:
        user = ("They chose:\n" + "\n".join(lines)
                + f"\nWhich {MIN_TOPICS} to {MAX_TOPICS} genres, themes or kinds of item would "
                "they enjoy next? JSON array only.")
        return [{"role": "system", "content": DETAILED_SYSTEM},
                {"role": "user", "content": user}]
    user = ("The customer interacted with:\n" + "\n".join(lines)
            + f"\nWhich {MIN_TOPICS} to {MAX_TOPICS} other topics would interest them? "
            "JSON array only.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def item_details(item: dict | pd.Series) -> str:
    """What the detailed prompt says of an item besides its title: its year, then every
    genre or category it has (`categories` "A|B", or `genres` "A B"), or category and style
    when it has no list."""
    year = item.get("year")
    kinds = str(item.get("categories") or "").split("|")
    if len([k for k in kinds if k.strip()]) < 1 and item.get("genres"):
        kinds = str(item.get("genres")).split()
    if not any(k.strip() for k in kinds):
        kinds = [str(item.get("category") or ""), str(item.get("style") or "")]
    kinds = [k.strip() for k in kinds if k.strip() and k.strip() not in ("none", "unknown")]
    parts = ([str(int(year))] if year is not None and not pd.isna(year) else []) + \
        ([", ".join(dict.fromkeys(kinds))] if kinds else [])
    return "; ".join(parts)
