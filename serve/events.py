"""Applying one event (`POST /events`): log it durably, then let it change what the next
request sees.

    1 the item id is checked against the catalog (unknown -> ValueError, which the app
      answers 404; nothing is written)
    2 the event is appended to the durable log: only now is it acknowledged; a failure here
      is raised, so the client gets a 503 and retries
    3 effects, each allowed to degrade (logged, counted, reported, never raised):
        seen     the item joins the user's seen-items filter
        interest the user's recent category shares shift toward the item's category,
                 and the new top category is pushed to the online store
        popularity a click or purchase counts toward the item's popularity in its context
        recent   a click or purchase joins the user's recent items, which the item-item
                 source reads on the next request
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from serve.event_log import Event, EventLog
from serve.popularity import Popularity
from serve.recent import NoRecent, RecentItems
from serve.stores import StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivityConfig:
    """How far one event moves a user's category shares toward the item's category:
    shares = (1 - w) * shares + w * onehot(category)."""

    weight: float = 0.2  # a click or purchase
    view_weight: float = 0.05  # a view: seen, not chosen

    def __post_init__(self) -> None:
        if not (0 <= self.weight <= 1 and 0 <= self.view_weight <= 1):
            raise ValueError(f"activity weights must be in [0, 1], got weight={self.weight}, "
                             f"view_weight={self.view_weight}")


def shift_interest(history: np.ndarray, category: int, label: int, cfg: ActivityConfig
                   ) -> tuple[np.ndarray, int]:
    """(C,) category shares after one event on an item of `category`, and the new top
    category (the largest share; the lowest index on a tie)."""
    (c,) = history.shape
    if not 0 <= category < c:
        raise ValueError(f"category {category} is outside the user's {c} category shares; the "
                         "item categories and the online store must come from one version")
    w = cfg.weight if label else cfg.view_weight
    shares = (1 - w) * np.asarray(history, np.float64)  # C
    shares[category] += w
    return shares.astype(np.float32), int(shares.argmax())


class SeenFilter(Protocol):
    def add(self, user_id: str, item_ids: Sequence[str]) -> Any: ...


class OnlineUser(Protocol):
    @property
    def history(self) -> np.ndarray: ...

    @property
    def top_category(self) -> int: ...


class OnlineStore(Protocol):
    def user(self, user_id: str) -> OnlineUser | None: ...

    def push(self, user_id: str, top_category: int, history: np.ndarray) -> Any: ...


@dataclass(frozen=True)
class EventReceipt:
    """What the client is told of its event (the HTTP answer is a view of it, serve/app.py)."""

    id: str  # the event's id in the durable log
    degraded: tuple[str, ...] = ()  # effects skipped: their store was unavailable
    warnings: tuple[str, ...] = ()  # what was changed of the event (its time, its device)


class EventSink:
    """Where the ingress hands each event. `degraded` counts, per effect, the events whose
    effect was skipped because its store was unavailable (the event itself is in the log)."""

    def __init__(self, log: EventLog, seen: SeenFilter, online: OnlineStore,
                 popularity: Popularity, item_pos: Mapping[str, int], item_category: np.ndarray,
                 activity: ActivityConfig | None = None, n_categories: int | None = None,
                 recent: RecentItems | None = None) -> None:
        self.log = log
        self.recent = recent or NoRecent()
        self.seen = seen
        self.online = online
        self.popularity = popularity
        self.item_pos = item_pos
        self.item_category = np.asarray(item_category, np.int64)  # I
        self.activity = activity or ActivityConfig()
        # Width of a new user's shares: the online store's, which is the version's category
        # vocabulary (OOV included), at least every item's category.
        self.n_categories = n_categories or int(self.item_category.max()) + 1
        self.degraded: Counter[str] = Counter()

    def handle(self, event: Event, device: int, hour: int) -> EventReceipt:
        """The log's id of the event and the effects skipped. Raises ValueError for an item
        outside the catalog (the app's 404) and StoreUnavailable when the log cannot take the
        event (503: nothing was acknowledged)."""
        # 1. Known item, before anything is written.
        row = self.item_pos.get(event.item_id)
        if row is None:
            raise ValueError(f"item_id {event.item_id!r} is not in the catalog of the served "
                             "version; send an id from /recommend's items")
        # 2. Durable first: an effect without a logged event would never reach training.
        event_id = self.log.append(event)
        # 3. Effects, each on its own.
        effects: dict[str, Callable[[], Any]] = {
            "seen": lambda: self.seen.add(event.user_id, [event.item_id]),
            "interest": lambda: self._shift(event, row),
            "popularity": lambda: self._count(event, row, device, hour),
            "recent": lambda: self._remember(event),
        }
        degraded = tuple(name for name, effect in effects.items()
                         if not self._applied(name, effect, event))
        return EventReceipt(id=str(event_id), degraded=degraded)

    def _applied(self, name: str, effect: Callable[[], Any], event: Event) -> bool:
        try:
            effect()
            return True
        except StoreUnavailable as e:
            self.degraded[name] += 1
            log.warning("event %s/%s: %s effect skipped: %s", event.user_id, event.item_id,
                        name, e)
            return False

    def _shift(self, event: Event, row: int) -> None:
        user = self.online.user(event.user_id)
        history = (np.asarray(user.history, np.float64) if user is not None
                   else np.zeros(self.n_categories))
        shares, top = shift_interest(history, int(self.item_category[row]), event.label,
                                     self.activity)
        self.online.push(event.user_id, top, shares)

    def _remember(self, event: Event) -> None:
        if event.label:  # the item-item source reads what the user chose, not what they saw
            self.recent.add(event.user_id, event.item_id)

    def _count(self, event: Event, row: int, device: int, hour: int) -> None:
        if event.label:  # popularity counts clicks and purchases
            self.popularity.record(row, device, hour)
