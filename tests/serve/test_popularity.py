"""Popularity as served: rankings per context and
category with the global blend worked out by hand, clicks shared between replicas through
Redis, and answers kept while Redis is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.redis_server import RedisServer
from serve.popularity import Popularity, PopularityConfig, open_popularity
from serve.stores import StoreUnavailable
from train.popularity import counts

# Five items, categories [0, 0, 1, 1, 1]; two devices, four hour buckets (6 hours each).
CATEGORY = np.array([0, 0, 1, 1, 1])
#            (item, device, hour, label)
ROWS = ([(3, 1, 9, 1)] * 3 + [(1, 1, 9, 1), (0, 1, 9, 0)]  # device 1, morning (bucket 1)
        + [(0, 0, 20, 1)] * 4 + [(2, 0, 20, 1)] * 2  # device 0, evening (bucket 3)
        + [(4, 1, 22, 1)])  # device 1, evening: one click only
# Clicks per item overall: [4, 1, 2, 3, 1], 11 in all. With smoothing 11 the global blend
# adds exactly those counts to every cell: score = cell + 11 * global / 11.


def base() -> np.ndarray:
    item, device, hour, label = (np.array(c) for c in zip(*ROWS, strict=True))
    return counts(item, device, hour, label, n_items=5, n_devices=2)


def pop(smoothing: float = 11.0, rebuild_s: float = 0.0) -> Popularity:
    return Popularity(base(), CATEGORY, PopularityConfig(smoothing=smoothing,
                                                         rebuild_s=rebuild_s))


def test_a_click_at_an_unknown_hour_counts_a_quarter_in_every_bucket() -> None:
    c = counts(np.array([2, 2, 1]), np.array([0, 0, 1]), np.array([-1, 13, -1]),
               np.array([1, 1, 0]), n_items=3, n_devices=2)
    # item 2: 1/4 in each bucket of device 0 plus one at 13:00 (bucket 2); the view of
    # item 1 at an unknown hour is not a click
    np.testing.assert_allclose(c[2, 0], [0.25, 0.25, 1.25, 0.25])
    assert c.sum() == pytest.approx(2.0) and c[1].sum() == 0
    p = Popularity(c, np.zeros(3, np.int64), PopularityConfig(smoothing=0.0))
    # an unknown hour asks the whole day of the device: item 2 has 2 clicks there
    np.testing.assert_allclose(p.scores(0, -1), [0, 0, 2.0])
    p.record(0, 0, -1, weight=4.0)  # an event at an unknown hour spreads the same way
    np.testing.assert_allclose(p.scores(0, 9), [1.0, 0, 0.25])
    assert p.top(0, -1, None, 1).tolist() == [0]


def test_top_ranks_the_context_cell_blended_with_the_global_counts() -> None:
    p = pop()
    # device 1, 09:00: cell [0, 1, 0, 3, 0] + global [4, 1, 2, 3, 1] = [4, 2, 2, 6, 1]
    np.testing.assert_allclose(p.scores(1, 9), [4, 2, 2, 6, 1])
    assert p.top(1, 9, None, 3).tolist() == [3, 0, 1]  # 1 before 2 on the tie: lower row
    # device 1, 22:00, one click on item 4: [4, 1, 2, 3, 2], the global order answers
    assert p.top(1, 22, None, 5).tolist() == [0, 3, 2, 4, 1]
    # an unknown device index is device 0 (unknown): 20:00 cell [4, 0, 2, 0, 0]
    assert p.top(7, 20, None, 2).tolist() == p.top(0, 20, None, 2).tolist() == [0, 2]


def test_without_smoothing_a_sparse_cell_ranks_by_its_own_clicks() -> None:
    p = pop(smoothing=0.0, rebuild_s=0.0)
    assert p.top(1, 22, None, 2).tolist() == [4, 0]  # cell [0, 0, 0, 0, 1], ties by row


def test_a_category_restricts_the_ranking_and_a_small_one_is_filled_with_the_rest() -> None:
    p = pop()
    assert p.top(1, 9, 0, 2).tolist() == [0, 1]  # category 0 = items 0, 1: scores 4, 2
    assert p.top(1, 9, 1, 2).tolist() == [3, 2]  # category 1 = items 2, 3, 4: scores 2, 6, 1
    assert p.top(1, 9, 0, 3).tolist() == [0, 1, 3]  # two items, then the best other
    assert p.top(1, 9, 9, 2).tolist() == [3, 0]  # a category without items: all items


def test_a_recorded_click_changes_the_ranking_at_once() -> None:
    p = pop()
    assert p.top(1, 9, None, 3).tolist() == [3, 0, 1]  # now cached
    p.record(1, device=1, hour=9, weight=3.0)
    # cell [0, 4, 0, 3, 0], global [4, 4, 2, 3, 1] of 14: + 11/14 * global
    np.testing.assert_allclose(p.scores(1, 9), np.array([0, 4, 0, 3, 0])
                               + 11 / 14 * np.array([4, 4, 2, 3, 1]))
    assert p.top(1, 9, None, 3).tolist() == [1, 3, 0]  # 7.14, 5.36, 3.14


def test_a_cached_ranking_is_kept_until_the_rebuild_interval_has_passed() -> None:
    p = pop(smoothing=11.0, rebuild_s=1e9)
    assert p.top(1, 9, None, 3).tolist() == [3, 0, 1]
    p.record(1, device=1, hour=9, weight=3.0)
    assert p.top(1, 9, None, 3).tolist() == [3, 0, 1]  # the cached answer
    assert p.top(1, 9, None, 4).tolist() == [1, 3, 0, 2]  # longer than cached: rebuilt


@pytest.fixture()
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


def shared(server: RedisServer, version: str) -> Popularity:
    cfg = PopularityConfig(backend="redis", url=server.url, smoothing=11.0, rebuild_s=0.0)
    return open_popularity(cfg, base(), CATEGORY, version)


def test_a_click_recorded_on_one_replica_reaches_another_after_refresh(
        redis: RedisServer) -> None:
    a, b, other = shared(redis, "v1"), shared(redis, "v1"), shared(redis, "v2")
    assert b.top(1, 9, None, 3).tolist() == [3, 0, 1]
    a.record(1, device=1, hour=9, weight=3.0)
    assert a.top(1, 9, None, 3).tolist() == [1, 3, 0]
    assert b.top(1, 9, None, 3).tolist() == [3, 0, 1]  # not pulled yet
    b.refresh()
    assert b.top(1, 9, None, 3).tolist() == [1, 3, 0]
    b.record(4, device=1, hour=22)
    a.refresh()
    b.refresh()  # its own click is not counted twice
    for hour in (9, 22):
        np.testing.assert_allclose(a.scores(1, hour), b.scores(1, hour))
    np.testing.assert_allclose(b.scores(1, 22), np.array([0, 0, 0, 0, 2])
                               + 11 / 15 * np.array([4, 4, 2, 3, 2]))
    other.refresh()  # another version's hash
    assert other.top(1, 9, None, 3).tolist() == [3, 0, 1]


def test_with_redis_down_record_and_refresh_raise_and_top_keeps_answering(
        redis: RedisServer) -> None:
    a = shared(redis, "v1")
    redis.kill()
    with pytest.raises(StoreUnavailable, match="check that the Redis/Valkey server is up"):
        a.record(1, device=1, hour=9, weight=3.0)
    with pytest.raises(StoreUnavailable):
        a.refresh()
    assert a.top(1, 9, None, 3).tolist() == [1, 3, 0]  # counted here, not shared
    redis.start()
    a.refresh()  # the unshared click is not taken back
    assert a.top(1, 9, None, 3).tolist() == [1, 3, 0]
