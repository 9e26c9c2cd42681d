"""The Ray Serve app with every store on one real Redis (Feast's online store, RedisBloom
filters, shared popularity, the event stream), killed and restarted under load."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.redis_server import RedisServer
from serve.config import StoresConfig
from serve.online import OnlineConfig
from tests.serve.helpers import deploy, known_user
from train.artifacts import load_bundle

pytestmark = pytest.mark.ray



def test_redis_killed_mid_load_degrades_and_loses_no_acknowledged_event(
        tiny_artifacts: Path, serve_port: int, tmp_path: Path) -> None:
    """Every store on one durable Redis with the Bloom module. Load runs while the server is
    killed and restarted: no 5xx on /recommend (answers say what degraded), /events answers
    503 while the log is down, and every event acknowledged with a 200 is in the stream after
    the restart."""
    import threading

    import httpx
    import redis
    from ray import serve

    from serve.event_log import RedisStreamLog

    srv = RedisServer(tmp_path / "redis", bloom=True, durable=True)
    try:
        url = deploy(tiny_artifacts.parent, serve_port, StoresConfig.redis(
            srv.url, online=OnlineConfig(path=tmp_path / "online")))
        user = known_user(tiny_artifacts)
        statuses: list[int] = []
        degraded: set[str] = set()
        acked: list[str] = []
        stop = threading.Event()
        items = load_bundle(tiny_artifacts).items["item_id"].tolist()

        def load() -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                n = 0
                while not stop.is_set():
                    r = c.post("/recommend", json={"user_id": user, "k": 5})
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        degraded.update(r.json()["degraded"])
                    e = c.post("/events", json={"user_id": f"u{n}", "item_id": items[n % 50],
                                                "event": "view"})
                    statuses.append(e.status_code)
                    if e.status_code == 200:
                        acked.append(e.json()["id"])
                    n += 1

        with httpx.Client(base_url=url, timeout=30) as c:
            health = c.get("/healthz").json()
        assert health["stores"]["seen"] == "bloom", health
        thread = threading.Thread(target=load)
        thread.start()
        time.sleep(3)
        srv.kill()
        time.sleep(3)
        srv.start()
        time.sleep(3)
        stop.set()
        thread.join(60)
        assert statuses and not [s for s in statuses if s >= 500 and s != 503], statuses
        assert 503 in statuses  # events refused while the log was down: not acknowledged
        assert {"seen_filter", "user_features"} <= degraded
        assert len(acked) > 10
        logged = {i for i, _ in RedisStreamLog(srv.url).read(None, 1_000_000)}
        assert set(acked) <= logged
        assert redis.Redis.from_url(srv.url).ping()
    finally:
        serve.delete("warmstart")
        srv.stop()
