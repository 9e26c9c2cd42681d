"""Online user features: both backends run one contract on a hand-made version of three users
whose model-ready columns `Features.user_features` gives; then what only the Feast backend
has: Redis, a dead store, the version check, the yaml, and a lazy `import feast`."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.redis_server import RedisServer
from serve.online import (
    ACTIVITY,
    PROFILE,
    PUSH_SOURCE,
    MemoryOnline,
    OnlineConfig,
    OnlineFeatures,
    OnlineVersionError,
    UserOnline,
    environment,
    materialize,
    open_online,
    repo_config,
)
from serve.stores import StoreUnavailable
from tests.helpers import REPO
from train.features import Features, UserTable

USERS = ["u1", "u2", "u3"]


def tiny_bundle(root: Path, version: str = "v1") -> Any:
    """Three users: u1 and u2 with history, u3 with attributes only (no interactions, so its
    id is OOV in the vocabulary), in a version folder under `root`."""
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i4"],
                          "category": ["shoes", "shoes", "hats", "bags"],
                          "style": ["a", "b", "a", "c"], "price": [10.0, 20.0, 5.0, 80.0]})
    users = pd.DataFrame({"user_id": USERS, "age": [25.0, np.nan, 60.0],
                          "gender": ["f", "m", None]})
    interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u2"],
                                 "item_id": ["i1", "i3", "i3", "i4", "i2"],
                                 "label": [1, 0, 1, 0, 0], "device": ["ios"] * 5})
    features = Features.fit(interactions, users, items)
    table = UserTable.build(users.set_index("user_id"), features, interactions, items)
    (root / version).mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(version=version, path=root / version, features=features,
                           user_table=table, items=items,
                           item_rows=features.item_table(items))


def expected(bundle: Any, user_id: str) -> UserOnline:
    """What `Features.user_features` gives for one user, as a UserOnline."""
    c = bundle.features.user_features(np.array([user_id], dtype=object), bundle.user_table)
    return UserOnline(user=int(c["user"][0]), gender=int(c["gender"][0]),
                      age_bucket=int(c["age_bucket"][0]), age=float(c["age"][0]),
                      top_category=int(c["top_category"][0]), history=c["history"][0])


def assert_same(got: UserOnline | None, want: UserOnline) -> None:
    assert got is not None
    assert (got.user, got.gender, got.age_bucket, got.top_category) == (
        want.user, want.gender, want.age_bucket, want.top_category)
    assert got.age == want.age
    assert got.history.dtype == np.float32
    np.testing.assert_array_equal(got.history, want.history)


@pytest.fixture
def bundle(tmp_path: Path) -> Any:
    return tiny_bundle(tmp_path / "artifacts")


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "sqlite-sdk", "redis"])
def online(request: pytest.FixtureRequest, bundle: Any, tmp_path: Path) -> OnlineFeatures:
    kind = request.param
    if kind == "memory":
        return open_online(OnlineConfig(backend="memory"), bundle)
    cfg = OnlineConfig(read="sdk" if kind.endswith("sdk") else "online_read")
    if kind == "redis":
        server = RedisServer(tmp_path / "redis")
        request.addfinalizer(server.stop)
        cfg = replace(cfg, store="redis", redis_url=server.url)
    materialize(bundle, cfg)
    return open_online(cfg, bundle)


class TestContract:
    def test_materialized_users_read_back_their_model_ready_values(
            self, online: OnlineFeatures, bundle: Any) -> None:
        for u in USERS:
            assert_same(online.user(u), expected(bundle, u))
        # the hand-made version has the cases a store must keep apart
        assert online.user("u3").user == 0 and online.user("u1").user != 0  # type: ignore
        assert online.user("u2").age_bucket == 0  # unknown age  # type: ignore

    def test_an_unknown_user_is_none(self, online: OnlineFeatures) -> None:
        assert online.user("nobody") is None

    def test_a_push_changes_what_the_next_read_returns(self, online: OnlineFeatures,
                                                       bundle: Any) -> None:
        c = bundle.features.cardinalities["history"]
        shares = np.zeros(c, np.float32)
        shares[1] = 0.25
        shares[2] = 0.75
        online.push("u1", 2, shares)
        got = online.user("u1")
        assert got is not None and got.top_category == 2
        np.testing.assert_array_equal(got.history, shares)
        # the profile is untouched by an activity push
        assert (got.user, got.gender, got.age) == (expected(bundle, "u1").user,
                                                  expected(bundle, "u1").gender,
                                                  expected(bundle, "u1").age)
        assert_same(online.user("u2"), expected(bundle, "u2"))

    def test_a_push_for_a_new_user_gives_activity_without_a_profile(
            self, online: OnlineFeatures, bundle: Any) -> None:
        shares = np.full(bundle.features.cardinalities["history"], 0.0, np.float32)
        shares[3] = 1.0
        online.push("newcomer", 3, shares)
        got = online.user("newcomer")
        assert got is not None
        assert (got.user, got.gender, got.age_bucket, got.age, got.top_category) == (
            0, 0, 0, 0.0, 3)
        np.testing.assert_array_equal(got.history, shares)

    def test_a_history_of_the_wrong_width_is_refused(self, online: OnlineFeatures) -> None:
        with pytest.raises(ValueError, match="categories"):
            online.push("u1", 1, np.zeros(99, np.float32))


def test_memory_backend_from_bundle_needs_no_store(bundle: Any) -> None:
    online = MemoryOnline.from_bundle(bundle)
    assert online.name == "memory"
    assert_same(online.user("u2"), expected(bundle, "u2"))


def test_feast_push_goes_through_the_push_source(bundle: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import feast

    cfg = OnlineConfig()
    materialize(bundle, cfg)
    online = open_online(cfg, bundle)
    pushed = []
    push = feast.FeatureStore.push

    def spy(self: Any, name: str, df: pd.DataFrame, *a: Any, **kw: Any) -> None:
        pushed.append(name)
        push(self, name, df, *a, **kw)

    monkeypatch.setattr(feast.FeatureStore, "push", spy)
    online.push("u2", 1, np.eye(bundle.features.cardinalities["history"], dtype=np.float32)[1])
    assert pushed == [PUSH_SOURCE]
    assert online.user("u2").top_category == 1  # type: ignore[union-attr]


def test_materialize_writes_the_offline_parquet_and_reports(bundle: Any) -> None:
    stats = materialize(bundle, OnlineConfig())
    assert stats.users == 3 and stats.items == 4 and stats.version == "v1"
    assert stats.seconds >= 0
    root = bundle.path.parent / "online"  # the default: beside the versions
    profile = pd.read_parquet(root / "user_profile.parquet").set_index("user_id")
    assert list(profile.columns[:len(PROFILE)]) == list(PROFILE)
    assert profile.loc["u1", "user"] == expected(bundle, "u1").user
    activity = pd.read_parquet(root / "user_activity.parquet").set_index("user_id")
    np.testing.assert_array_equal(np.asarray(activity.loc["u2", "category_shares"], np.float32),
                                  expected(bundle, "u2").history)
    items = pd.read_parquet(root / "item_attributes.parquet")
    assert items["category"].tolist() == bundle.item_rows["category"].tolist()


def test_a_killed_redis_is_store_unavailable(bundle: Any, redis: RedisServer) -> None:
    cfg = OnlineConfig(store="redis", redis_url=redis.url)
    materialize(bundle, cfg)
    online = open_online(cfg, bundle)
    assert online.user("u1") is not None
    redis.kill()
    with pytest.raises(StoreUnavailable):
        online.user("u1")
    with pytest.raises(StoreUnavailable):
        online.push("u1", 1, np.zeros(bundle.features.cardinalities["history"], np.float32))
    with pytest.raises(StoreUnavailable):
        open_online(cfg, bundle)


def test_redis_reads_do_not_grow_the_feature_list(bundle: Any, redis: RedisServer) -> None:
    """Regression: Redis's online_read appends its timestamp key to the list of requested
    features it is given; a list kept across requests grew by one key per read (2 ms per
    read after a few thousand)."""
    cfg = OnlineConfig(store="redis", redis_url=redis.url)
    materialize(bundle, cfg)
    online: Any = open_online(cfg, bundle)
    asked: list[int] = []
    read = online._online.online_read

    def spy(config: Any, table: Any, keys: Any, features: list[str]) -> Any:
        asked.append(len(features))
        return read(config, table, keys, features)

    online._online.online_read = spy
    for _ in range(3):
        assert_same(online.user("u1"), expected(bundle, "u1"))
    assert asked == [len(PROFILE), len(ACTIVITY)] * 3


def test_a_store_of_another_version_is_refused(bundle: Any, tmp_path: Path) -> None:
    cfg = OnlineConfig()
    materialize(bundle, cfg)
    newer = tiny_bundle(tmp_path / "artifacts", version="v2")
    with pytest.raises(OnlineVersionError, match="holds v1, not v2.*materialize"):
        open_online(cfg, newer)


def test_a_store_of_another_version_is_rematerialized_when_asked(
        bundle: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    materialize(bundle, OnlineConfig())
    newer = tiny_bundle(tmp_path / "artifacts", version="v2")
    with caplog.at_level(logging.WARNING, logger="serve.online"):
        online = open_online(OnlineConfig(materialize=True), newer)
    assert "holds v1, not v2" in caplog.text and "materializing v2" in caplog.text
    assert_same(online.user("u1"), expected(newer, "u1"))
    # the served version's project is untouched: both open side by side
    assert_same(open_online(OnlineConfig(), bundle).user("u1"), expected(bundle, "u1"))


def test_a_flushed_redis_is_detected(bundle: Any, redis: RedisServer) -> None:
    import redis as redis_py

    cfg = OnlineConfig(store="redis", redis_url=redis.url)
    materialize(bundle, cfg)
    redis_py.Redis.from_url(redis.url).flushall()
    with pytest.raises(OnlineVersionError, match="no rows"):
        open_online(cfg, bundle)


def test_feature_store_yaml_describes_the_repo_config(bundle: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from feast.repo_config import load_repo_config

    root = tmp_path / "online"
    for cfg in (OnlineConfig(), OnlineConfig(store="redis", redis_url="redis://h:7000/2")):
        for name, value in environment(cfg, "v1", root).items():
            monkeypatch.setenv(name, value)
        from_yaml = load_repo_config(root, REPO / "features" / "feature_store.yaml")
        in_code = repo_config(cfg, "v1", root)
        assert from_yaml.project == in_code.project == "warmstart_v1"
        assert from_yaml.registry.path == in_code.registry.path
        assert from_yaml.online_store == in_code.online_store
        assert from_yaml.online_store.type == cfg.store
        assert (from_yaml.offline_store.type, from_yaml.entity_key_serialization_version) == (
            in_code.offline_store.type, in_code.entity_key_serialization_version)


def test_redis_url_becomes_a_connection_string_with_short_timeouts() -> None:
    from serve.online import redis_connection_string

    assert redis_connection_string("redis://:s%40cret@cache:6380/3", 0.25) == (
        "cache:6380,db=3,socket_timeout=0.25,socket_connect_timeout=0.25,password=s@cret")
    with pytest.raises(ValueError, match="redis://host:port/0"):
        redis_connection_string("cache:6379", 0.25)


def test_feature_services_list_exactly_what_each_model_reads() -> None:
    from features import definitions as d
    from train import dlrm, two_tower

    def names(service: Any) -> set[str]:
        return {f.name for p in service.feature_view_projections for f in p.features}

    # category_shares is the `history` input; the DLRM reads it as hist_category. The bag of
    # latest clicked items (`hist_items`) comes from the version's arrays, not the store.
    online = {*PROFILE, *ACTIVITY} - {"category_shares"}
    assert names(d.two_tower_v1) == {*two_tower.USER_INPUTS} - {"history", "hist_items"} | {
        "category_shares"}
    assert names(d.dlrm_v1) == (set(dlrm.INPUTS) & online) | {"category_shares"}
    assert not d.item_attributes.online


def test_config_rejects_unknown_choices_and_takes_a_path_string() -> None:
    with pytest.raises(ValueError, match="sqlite, redis"):
        OnlineConfig(store="postgres")
    assert OnlineConfig(path="/x/online").path == Path("/x/online")  # type: ignore[arg-type]


def test_import_serve_online_does_not_import_feast() -> None:
    code = "import sys, serve.online; print('feast' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.ray
def test_materialize_a_trained_version(tiny_artifacts: Path) -> None:
    from train.artifacts import load_bundle

    b = load_bundle(tiny_artifacts)
    cfg = OnlineConfig()
    stats = materialize(b, cfg)
    assert stats.users == len(b.users)
    online = open_online(cfg, b)
    ids = list(b.user_table.rows)[:50]
    for u in ids:
        assert_same(online.user(u), expected(b, u))
    assert online.user("not-a-user") is None
