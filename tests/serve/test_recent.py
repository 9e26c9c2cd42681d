"""Recent items: both backends run one contract (newest first, repeats once, bounded, per
user, expiry) against a real redis-server for the shared one; a killed server raises
StoreUnavailable; `open_recent` picks the backend."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bench.redis_server import RedisServer
from serve.recent import MemoryRecent, NoRecent, RecentConfig, RecentItems, RedisRecent, open_recent
from serve.stores import StoreUnavailable


class RecentContract:
    def make(self, **fields: Any) -> RecentItems:
        raise NotImplementedError

    def expire(self, store: RecentItems, user: str) -> None:
        raise NotImplementedError

    def test_newest_first_each_item_once(self) -> None:
        r = self.make()
        for item in ("a", "b", "a", "c"):
            r.add("u1", item)
        assert r.items("u1") == ["c", "a", "b"]
        assert r.items("nobody") == []

    def test_users_are_apart_and_lists_bounded(self) -> None:
        r = self.make(max_items=3)
        for n in range(5):
            r.add("u1", f"i{n}")
        r.add("u2", "x")
        assert r.items("u1") == ["i4", "i3", "i2"] and r.items("u2") == ["x"]

    def test_a_list_expires_after_its_ttl(self) -> None:
        r = self.make(ttl_s=60)
        r.add("u1", "a")
        self.expire(r, "u1")
        assert r.items("u1") == []


class TestMemoryRecent(RecentContract):
    def setup_method(self) -> None:
        self.now = 0.0

    def make(self, **fields: Any) -> RecentItems:
        return MemoryRecent(RecentConfig(**fields), clock=lambda: self.now)

    def expire(self, store: RecentItems, user: str) -> None:
        self.now += 61

    def test_the_least_recently_active_users_go_first(self) -> None:
        r = self.make(max_users=2)
        for user in ("u1", "u2", "u3"):
            r.add(user, "a")
        assert r.items("u1") == [] and r.items("u3") == ["a"]


class TestRedisRecent(RecentContract):
    @pytest.fixture(autouse=True)
    def _server(self, plain_redis: RedisServer) -> None:
        self.server = plain_redis
        self.prefix = f"recent-{uuid.uuid4().hex[:8]}:"

    def make(self, **fields: Any) -> RecentItems:
        return open_recent(RecentConfig(backend="redis", url=self.server.url,
                                        key_prefix=self.prefix, **fields))

    def expire(self, store: RecentItems, user: str) -> None:
        assert isinstance(store, RedisRecent)
        ttl = store.client.ttl(store.key(user))
        assert 0 < ttl <= 60  # set by the write
        store.client.delete(store.key(user))  # what the server does when the TTL ends

    def test_a_killed_server_raises_store_unavailable(self) -> None:
        r = self.make()
        r.add("u1", "a")
        self.server.kill()
        try:
            with pytest.raises(StoreUnavailable, match="recent items"):
                r.items("u1")
            with pytest.raises(StoreUnavailable):
                r.add("u1", "b")
        finally:
            self.server.restart()


def test_open_recent_picks_the_backend() -> None:
    assert isinstance(open_recent(RecentConfig()), MemoryRecent)
    off = open_recent(RecentConfig(backend="off"))
    assert isinstance(off, NoRecent)
    off.add("u", "a")
    assert off.items("u") == []
    with pytest.raises(ValueError, match="unknown"):
        RecentConfig(backend="mongo")
