"""Recent items: the items each user clicked since the version was trained, newest first.

`POST /events` adds a click or purchase here; the next request reads it back and the
item-item source (train/item_item.py) scores the catalog from it, beside the version's own
history of the user. So a brand-new user's first click already shapes their next answer,
hours before any fine-tuning.

Two backends behind one interface (`RecentItems`), picked by `open_recent(RecentConfig)`:

- `MemoryRecent`: a bounded list per user in the replica, the embedded default.
- `RedisRecent`: one Redis/Valkey list per user (`LPUSH`, `LTRIM`, `EXPIRE` in one pipeline
  on write, one `LRANGE` on read), shared by every replica.

Items are kept as ids, not catalog rows: rows change between versions, ids do not.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from serve.stores import connect, unavailable

BACKENDS = ("memory", "redis", "off")


@dataclass(frozen=True)
class RecentConfig:
    backend: str = "memory"  # memory | redis | off
    url: str = "redis://127.0.0.1:6379/0"
    max_items: int = 50  # per user, newest kept
    ttl_s: int = 30 * 86_400  # a user's list lives this long after their latest click
    key_prefix: str = "recent:"
    max_users: int = 200_000  # memory backend: least recently active users dropped first

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"recent backend {self.backend!r} is unknown; pick one of "
                             f"{', '.join(BACKENDS)}")
        if self.max_items < 1 or self.ttl_s < 1 or self.max_users < 1:
            raise ValueError("max_items, ttl_s and max_users must be >= 1")


class RecentItems(Protocol):
    def add(self, user_id: str, item_id: str) -> None:
        """Record a click; raises StoreUnavailable when the store cannot take it."""
        ...

    def items(self, user_id: str) -> list[str]:
        """The user's recent item ids, newest first (repeats kept once); [] for none.
        Raises StoreUnavailable when the store cannot be read."""
        ...


def _dedup(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class MemoryRecent:
    def __init__(self, cfg: RecentConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self._lists: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, user_id: str, item_id: str) -> None:
        with self._lock:
            _, items = self._lists.pop(user_id, (0.0, []))
            self._lists[user_id] = (self.clock(), [item_id, *items][:self.cfg.max_items])
            while len(self._lists) > self.cfg.max_users:
                self._lists.popitem(last=False)

    def items(self, user_id: str) -> list[str]:
        hit = self._lists.get(user_id)
        if hit is None or self.clock() - hit[0] > self.cfg.ttl_s:
            return []
        return _dedup(hit[1])


class RedisRecent:
    def __init__(self, cfg: RecentConfig, client: Any | None = None) -> None:
        self.cfg = cfg
        self.client = client or connect(cfg.url)

    def key(self, user_id: str) -> str:
        return f"{self.cfg.key_prefix}{user_id}"

    def _store(self, what: str) -> AbstractContextManager[None]:
        return unavailable(f"recent items at {self.cfg.url}: {what}")

    def add(self, user_id: str, item_id: str) -> None:
        key = self.key(user_id)
        with self._store("LPUSH"):
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(key, item_id)
            pipe.ltrim(key, 0, self.cfg.max_items - 1)
            pipe.expire(key, self.cfg.ttl_s)
            pipe.execute()

    def items(self, user_id: str) -> list[str]:
        with self._store("LRANGE"):
            raw = self.client.lrange(self.key(user_id), 0, -1)
        return _dedup([r.decode() if isinstance(r, bytes) else str(r) for r in raw])


class NoRecent:
    """Nothing is remembered: the version's history is all the item-item source sees."""

    def add(self, user_id: str, item_id: str) -> None:
        return None

    def items(self, user_id: str) -> list[str]:
        return []


def open_recent(cfg: RecentConfig) -> RecentItems:
    if cfg.backend == "redis":
        return RedisRecent(cfg)
    if cfg.backend == "off":
        return NoRecent()
    return MemoryRecent(cfg)
