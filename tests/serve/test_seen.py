"""The seen-items filter: every backend runs one contract (added items are seen, others
mostly not, the false-positive rate at capacity, independent users, expiry), against real
redis-servers with and without the RedisBloom module; then what only one backend does, the
backend `open_seen` picks, hashes that agree across processes, and a killed server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rbloom import Bloom

from bench.redis_server import RedisServer
from serve.seen import (
    BitmapFilter,
    MemoryFilter,
    NoSeenFilter,
    RedisBloomFilter,
    SeenConfig,
    SeenFilter,
    bloom_geometry,
    item_hash,
    open_seen,
)
from serve.stores import StoreUnavailable, connect
from tests.helpers import REPO, free_port


def ids(prefix: str, n: int) -> np.ndarray:
    """(n,) object array of str item ids: prefix0, prefix1, ..."""
    return np.array([f"{prefix}{i}" for i in range(n)], dtype=object)


@pytest.fixture(scope="module")
def bloom_redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = RedisServer(tmp_path_factory.mktemp("redis-bloom"), bloom=True)
    yield server
    server.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SeenContract:
    """What every backend promises. A subclass says how to make one (`make`, with SeenConfig
    fields to override), how to let a filter's ttl_s go by (`pass_ttl`), and the `name` its
    filters report in logs and health."""

    name: str

    def make(self, **fields: Any) -> SeenFilter:
        raise NotImplementedError

    def pass_ttl(self, ttl_s: int) -> None:
        raise NotImplementedError

    def test_added_items_are_seen_and_others_not(self) -> None:
        f = self.make()
        f.add("u1", ["a", "b", "c"])
        # 3 items in a filter sized for 2,000: a false positive has odds of ~1e-15, and
        # the hashes are fixed, so the answer is exact.
        got = f.seen("u1", np.array(["a", "x", "b", "y", "c"], dtype=object))
        assert got.tolist() == [True, False, True, False, True]

    def test_a_user_with_no_filter_has_seen_nothing(self) -> None:
        f = self.make()
        assert f.seen("nobody", ids("i", 300)).tolist() == [False] * 300
        assert f.seen("nobody", ids("i", 0)).shape == (0,)

    def test_adds_accumulate_and_empty_calls_do_nothing(self) -> None:
        f = self.make()
        f.add("u1", ["a"])
        f.add("u1", [])
        f.add("u1", np.array(["b"], dtype=object))
        assert f.seen("u1", np.array(["a", "b", "c"], dtype=object)).tolist() == [
            True, True, False]
        assert f.seen("u1", ids("i", 0)).dtype == bool

    def test_users_are_independent(self) -> None:
        f = self.make()
        f.add("u1", ["a", "b"])
        f.add("u2", ["c"])
        abc = np.array(["a", "b", "c"], dtype=object)
        assert f.seen("u1", abc).tolist() == [True, True, False]
        assert f.seen("u2", abc).tolist() == [False, False, True]

    def test_false_positive_rate_at_capacity_is_near_error_rate(self) -> None:
        f = self.make(capacity=1_000, error_rate=0.01)
        added = ids("seen", 1_000)
        for start in range(0, 1_000, 100):  # as requests add them: a page at a time
            f.add("u1", list(added[start:start + 100]))
        assert f.seen("u1", added).all()  # a Bloom filter has no false negatives
        rate = f.seen("u1", ids("unseen", 20_000)).mean()
        # Expected ~0.01 (about 200 of 20,000). Above 0.02 the filter is undersized or its
        # hashes are correlated; below 0.005 it spends more memory than it was asked to.
        assert 0.005 < rate < 0.02, rate

    def test_an_expired_filter_forgets(self) -> None:
        f = self.make(ttl_s=1)
        f.add("u1", ["a"])
        assert f.seen("u1", np.array(["a"], dtype=object)).tolist() == [True]
        self.pass_ttl(1)
        assert f.seen("u1", np.array(["a"], dtype=object)).tolist() == [False]

    def test_name_names_the_backend(self) -> None:
        assert self.make().name == self.name


class TestMemoryFilter(SeenContract):
    name = "memory"
    @pytest.fixture(autouse=True)
    def _clock(self) -> None:
        self.clock = FakeClock()

    def make(self, **fields: Any) -> MemoryFilter:
        return MemoryFilter(SeenConfig(**fields), clock=self.clock)

    def pass_ttl(self, ttl_s: int) -> None:
        self.clock.now += ttl_s

    def test_a_filter_lives_ttl_after_its_latest_add(self) -> None:
        f = self.make(ttl_s=100)
        f.add("u1", ["a"])
        self.clock.now += 90
        f.add("u1", ["b"])
        self.clock.now += 90  # 180 after the first add, 90 after the latest
        ab = np.array(["a", "b"], dtype=object)
        assert f.seen("u1", ab).tolist() == [True, True]
        self.clock.now += 10
        assert f.seen("u1", ab).tolist() == [False, False]

    def test_expired_users_are_dropped_from_memory(self) -> None:
        f = self.make(ttl_s=100)
        f.add("old1", ["a"])
        f.add("old2", ["a"])
        self.clock.now += 50
        f.add("recent", ["a"])
        self.clock.now += 60  # old1 and old2 expired, recent has 40 s left
        f.add("new", ["b"])
        assert len(f) == 2
        assert f.seen("recent", np.array(["a"], dtype=object)).tolist() == [True]

    def test_an_expired_user_starts_a_fresh_filter(self) -> None:
        f = self.make(ttl_s=100)
        f.add("u1", ["a"])
        self.clock.now += 100
        f.add("u1", ["b"])
        assert f.seen("u1", np.array(["a", "b"], dtype=object)).tolist() == [False, True]

    def test_a_small_hash_cache_gives_the_same_answers(self) -> None:
        f = self.make(hash_cache=2)
        f.add("u1", list(ids("i", 10)))
        assert f.seen("u1", ids("i", 12)).tolist() == [True] * 10 + [False] * 2


class RedisContract(SeenContract):
    """What the networked backends add: the TTL lives on the server, and a dead server is a
    `StoreUnavailable`, raised at once."""

    url: str
    bloom_module: bool

    def make(self, **fields: Any) -> Any:
        fields.setdefault("url", self.url)
        fields.setdefault("key_prefix", f"test-{uuid.uuid4().hex[:8]}:")
        return self.backend(SeenConfig(backend="redis", **fields))

    def backend(self, cfg: SeenConfig) -> Any:
        raise NotImplementedError

    def pass_ttl(self, ttl_s: int) -> None:
        time.sleep(ttl_s + 0.1)  # Redis expires a key on access once its TTL has passed

    def test_ttl_is_set_and_refreshed_on_every_add(self) -> None:
        f = self.make(ttl_s=3_600)
        f.add("u1", ["a"])
        client = connect(self.url)
        assert 0 < client.ttl(f.key("u1")) <= 3_600
        client.expire(f.key("u1"), 5)
        f.add("u1", ["b"])
        assert 5 < client.ttl(f.key("u1")) <= 3_600

    def test_a_killed_server_raises_store_unavailable(self, tmp_path: Path) -> None:
        server = RedisServer(tmp_path, bloom=self.bloom_module)
        try:
            f = self.make(url=server.url)
            f.add("u1", ["a"])
            server.kill()
            with pytest.raises(StoreUnavailable, match="seen filter"):
                f.seen("u1", ids("i", 300))
            with pytest.raises(StoreUnavailable, match="seen filter"):
                f.add("u1", ["b"])
            server.restart()  # the same port, nothing kept: the client reconnects by itself
            assert f.seen("u1", np.array(["a"], dtype=object)).tolist() == [False]
            f.add("u1", ["b"])
            assert f.seen("u1", np.array(["b"], dtype=object)).tolist() == [True]
        finally:
            server.stop()


class TestRedisBloomFilter(RedisContract):
    name = "bloom"
    bloom_module = True

    @pytest.fixture(autouse=True)
    def _server(self, bloom_redis: RedisServer) -> None:
        self.url = bloom_redis.url

    def backend(self, cfg: SeenConfig) -> RedisBloomFilter:
        return RedisBloomFilter(cfg)

    def test_the_filter_is_reserved_at_capacity_and_nonscaling(self) -> None:
        f = self.make(capacity=500, error_rate=0.001)
        f.add("u1", ["a"])
        info = connect(self.url).execute_command("BF.INFO", f.key("u1"))
        info = dict(zip(info[::2], info[1::2], strict=True))
        assert info[b"Capacity"] == 500
        assert info[b"Expansion rate"] is None  # NONSCALING

    def test_a_full_filter_starts_over_with_the_newest_items(self) -> None:
        f = self.make(capacity=10)
        f.add("u1", list(ids("old", 10)))
        f.add("u1", list(ids("new", 5)))
        assert f.seen("u1", ids("new", 5)).all()
        assert f.seen("u1", ids("old", 10)).sum() <= 1  # forgotten, but for a false positive

    def test_a_batch_beyond_capacity_keeps_its_newest_items(self) -> None:
        f = self.make(capacity=10)
        batch = ids("i", 15)
        f.add("u1", list(batch))
        assert f.seen("u1", batch[5:]).all()
        assert f.seen("u1", batch[:5]).sum() <= 1

    def test_a_key_of_another_type_is_a_store_error(self) -> None:
        f = self.make()
        connect(self.url).set(f.key("u1"), b"not a filter")
        with pytest.raises(StoreUnavailable, match="BF.INSERT"):
            f.add("u1", ["a"])


class TestBitmapFilter(RedisContract):
    name = "bitmap"
    bloom_module = False

    @pytest.fixture(autouse=True)
    def _server(self, plain_redis: RedisServer) -> None:
        self.url = plain_redis.url

    def backend(self, cfg: SeenConfig) -> BitmapFilter:
        return BitmapFilter(cfg)

    def test_bits_are_where_redis_numbers_them(self) -> None:
        # GETBIT reads Redis's own bit order, so the NumPy test must agree with it.
        f = self.make()
        f.add("u1", ["a"])
        client = connect(self.url)
        for p in f.positions(["a"])[0].tolist():
            assert client.getbit(f.key("u1"), p) == 1
        assert client.bitcount(f.key("u1")) == len(set(f.positions(["a"])[0].tolist()))

    def test_a_bitmap_shorter_than_m_is_read_as_zeros_beyond_its_end(self) -> None:
        f = self.make()
        low = next(i for i in ids("i", 5_000) if f.positions([i]).max() < f.m // 2)
        f.add("u1", [low])
        assert len(connect(self.url).get(f.key("u1"))) <= f.m // 16
        got = f.seen("u1", np.array([low, *ids("other", 299)], dtype=object))
        assert got[0] and got[1:].sum() == 0

    def test_a_new_geometry_starts_new_keys(self) -> None:
        a = self.make(capacity=2_000)
        b = self.make(capacity=4_000, key_prefix=a.cfg.key_prefix)
        a.add("u1", ["a"])
        assert b.seen("u1", np.array(["a"], dtype=object)).tolist() == [False]
        assert a.key("u1") != b.key("u1")


def test_bloom_geometry_follows_the_standard_formulas() -> None:
    # m = -n ln p / ln(2)^2 = 2000 * 4.6052 / 0.48045 = 19170.1 -> 19171 -> 19176 (whole
    # bytes); k = m / n * ln 2 = 9.588 * 0.6931 = 6.65 -> 7.
    assert bloom_geometry(2_000, 0.01) == (19_176, 7)
    # 1000 * 6.9078 / 0.48045 = 14377.6 -> 14378 -> 14384; 14.384 * 0.6931 = 9.97 -> 10.
    assert bloom_geometry(1_000, 0.001) == (14_384, 10)


@pytest.mark.parametrize(("fields", "message"), [
    ({"backend": "bloomy"}, "pick one of memory, redis"),
    ({"backend": "redis", "url": "localhost:6379"}, "not a Redis URL"),
    ({"capacity": 0}, "capacity is 0"),
    ({"error_rate": 0.0}, "error_rate is 0.0"),
    ({"error_rate": 0.5}, "between 0 and 0.5"),
    ({"ttl_s": 0}, "ttl_s is 0"),
    ({"key_prefix": ""}, "key_prefix is empty"),
    ({"hash_cache": 0}, "hash_cache is 0"),
])
def test_config_rejects_bad_fields_saying_how_to_fix_them(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SeenConfig(**fields)


def test_the_memory_url_is_not_checked() -> None:
    assert SeenConfig(backend="memory", url="unused").url == "unused"


def test_open_seen_uses_the_bloom_commands_when_the_server_has_them(
        bloom_redis: RedisServer, plain_redis: RedisServer) -> None:
    assert isinstance(open_seen(SeenConfig(backend="redis", url=bloom_redis.url)),
                      RedisBloomFilter)
    assert isinstance(open_seen(SeenConfig(backend="bloom", url=bloom_redis.url)),
                      RedisBloomFilter)
    assert isinstance(open_seen(SeenConfig(backend="redis", url=plain_redis.url)), BitmapFilter)
    assert isinstance(open_seen(SeenConfig(backend="bitmap", url=bloom_redis.url)),
                      BitmapFilter)
    with pytest.raises(ValueError, match="no BF.. commands"):
        open_seen(SeenConfig(backend="bloom", url=plain_redis.url))


def test_open_seen_memory_and_off() -> None:
    assert isinstance(open_seen(SeenConfig()), MemoryFilter)
    off = open_seen(SeenConfig(backend="off"))
    assert isinstance(off, NoSeenFilter) and off.name == "off"
    off.add("u1", ["a"])
    assert off.seen("u1", np.array(["a", "b"], dtype=object)).tolist() == [False, False]


def test_open_seen_redis_on_a_dead_server_raises_store_unavailable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        open_seen(SeenConfig(backend="redis", url=url))


def run_child(code: str) -> dict:
    """`code` in a fresh interpreter whose str hash() is salted differently from this one's;
    it prints one JSON object. Returns it, with the child's hash('a') as `hash_a`."""
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
    wrapped = f"import json\nout = {{'hash_a': hash('a')}}\n{code}\nprint(json.dumps(out))"
    done = subprocess.run([sys.executable, "-c", wrapped], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_memory_hashes_agree_across_processes() -> None:
    out = run_child(
        "from rbloom import Bloom\n"
        "from serve.seen import item_hash\n"
        "b = Bloom(100, 0.01, hash_func=int)\n"
        "b.update(item_hash(f'i{n}') for n in range(20))\n"
        "out['bloom'] = b.save_bytes().hex()\n")
    assert out["hash_a"] != hash("a")  # the control: Python's own hash differs between them
    b = Bloom.load_bytes(bytes.fromhex(out["bloom"]), int)
    assert [item_hash(f"i{n}") in b for n in range(22)] == [True] * 20 + [False] * 2


def test_bitmap_hashes_agree_across_processes(plain_redis: RedisServer) -> None:
    cfg = SeenConfig(backend="bitmap", url=plain_redis.url, key_prefix="cross-process:")
    out = run_child(
        "from serve.seen import BitmapFilter, SeenConfig\n"
        f"f = BitmapFilter(SeenConfig(backend='bitmap', url={cfg.url!r}, "
        f"key_prefix={cfg.key_prefix!r}))\n"
        "f.add('u1', [f'i{n}' for n in range(20)])\n")
    assert out["hash_a"] != hash("a")
    assert BitmapFilter(cfg).seen("u1", ids("i", 22)).tolist() == [True] * 20 + [False] * 2
