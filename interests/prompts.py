"""The prompt an LLM sees for one user: a system message and the user's latest items.

Example::

    messages = build_messages([HistoryItem("Trail Boot", "footwear", "boot", "Great grip.")])
    assert messages[0]["role"] == "system" and "Trail Boot" in messages[1]["content"]
"""

from __future__ import annotations

from dataclasses import dataclass

from interests.topics import MAX_TOPICS, MIN_TOPICS

Messages = list[dict[str, str]]

SYSTEM = ("You are a shopping assistant. From what a customer bought, watched or reviewed, "
          f"infer other topics they are likely to enjoy. Answer only with a JSON array of "
          f"{MIN_TOPICS} to {MAX_TOPICS} short topic keywords (1-3 words each), without "
          "repeating the item names.")


@dataclass(frozen=True)
class PromptConfig:
    max_items: int = 5  # newest history items shown
    max_review_chars: int = 300  # each review is cut to this, with "..."

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_review_chars < 1:
            raise ValueError("max_items and max_review_chars must be >= 1")


@dataclass(frozen=True)
class HistoryItem:
    """One thing the user interacted with, as the prompt shows it."""

    title: str
    category: str = ""
    style: str = ""
    review: str = ""


def build_messages(history: list[HistoryItem], cfg: PromptConfig | None = None) -> Messages:
    """The chat prompt for one user: their latest `cfg.max_items` items, newest last, with the
    review text they wrote where there is one (cut to `cfg.max_review_chars`)."""
    cfg = cfg or PromptConfig()
    if not history:
        raise ValueError("a prompt needs at least one history item; users without history "
                         "fall back before prompting")
    lines = []
    for h in history[-cfg.max_items:]:
        kind = ", ".join(p for p in (h.category, h.style) if p and p != "none")
        line = f"- {h.title.strip()}" + (f" ({kind})" if kind else "")
        if h.review.strip():
            text = " ".join(h.review.split())
            if len(text) > cfg.max_review_chars:
                text = text[:cfg.max_review_chars] + "..."
            line += f'; their review: "{text}"'
        lines.append(line)
    user = ("The customer interacted with:\n" + "\n".join(lines)
            + f"\nWhich {MIN_TOPICS} to {MAX_TOPICS} other topics would interest them? "
            "JSON array only.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
