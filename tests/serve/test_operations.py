"""Operating the app: the committed Serve config is the one `warmstart serve` prints; a
promotion under load fails no request and every answer names its version; a damaged version
is refused while the old one keeps serving; rollback; the admin routes' token; autoscaling
adds a replica under load and removes it after; the app's metrics reach Ray's Prometheus
endpoint."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bench.redis_server import RedisServer
from flows.cli import module_parser
from flows.serve import config as serve_flow_config
from flows.serve import printed_config
from serve.config import (
    AdminConfig,
    AutoscalingSettings,
    HTTPConfig,
    ReplicaConfig,
    StoresConfig,
)
from serve.event_log import EventLogConfig
from serve.online import OnlineConfig
from tests.helpers import REPO
from tests.serve.helpers import known_user

TOKEN = "s3cret-token"


def test_the_committed_serve_config_is_the_printed_one() -> None:
    from ray.serve.schema import ServeDeploySchema

    flags = ["--host", "0.0.0.0", "--artifacts", "s3://warmstart/artifacts", "--redis",
             "redis://redis:6379/0"]
    printed = printed_config(serve_flow_config(module_parser("serve").parse_args(flags)))
    committed = (REPO / "serve" / "config.yaml").read_text()
    assert committed == printed, (f"regenerate: warmstart serve --print-config {' '.join(flags)}"
                                  " > serve/config.yaml, then python -m cluster.render")
    doc = yaml.safe_load(committed)
    ServeDeploySchema.model_validate(doc)  # what `serve deploy` reads
    (dep,) = doc["applications"][0]["deployments"]
    assert dep["autoscaling_config"]["max_replicas"] == 2 and "num_replicas" not in dep
    assert dep["ray_actor_options"]["num_cpus"] == 0.5 and dep["user_config"]["version"] is None
    assert doc["http_options"]["host"] == "0.0.0.0"  # behind the RayService's Service
    assert doc["applications"][0]["args"]["admin"] == {"token": None}  # never a secret
    # by default: this machine only, and embedded stores, which do not autoscale
    local = yaml.safe_load(printed_config(serve_flow_config(
        module_parser("serve").parse_args([]))))
    assert local["http_options"]["host"] == "127.0.0.1"
    assert local["applications"][0]["deployments"][0]["num_replicas"] == 1


def republish(src: Path, root: Path, version: str) -> Path:
    """A copy of version folder `src` under `root` as `version` (its manifest renamed)."""
    dst = root / version
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps(manifest | {"version": version}))
    return dst


@pytest.fixture
def two_versions(tiny_artifacts: Path, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    root = tmp_path / "artifacts"
    root.mkdir()
    v1, v2 = "v1-serving", "v2-candidate"
    republish(tiny_artifacts, root, v1)
    republish(tiny_artifacts, root, v2)
    (root / "LATEST").write_text(v1)
    yield root, v1, v2


@pytest.mark.ray
@pytest.mark.parametrize("replicas", [1, 2])
def test_promotion_under_load_fails_no_request(two_versions: tuple[Path, str, str],
                                                tiny_artifacts: Path, serve_port: int,
                                                tmp_path: Path, replicas: int) -> None:
    """One replica on the embedded stores, or two on Redis: the promotion answers once every
    replica serves the new version."""
    import httpx
    from ray import serve

    from serve.deploy import run_app

    root, v1, v2 = two_versions
    redis = RedisServer(tmp_path / "redis") if replicas > 1 else None
    stores = StoresConfig.redis(redis.url, online=OnlineConfig(path=tmp_path / "online")) \
        if redis else StoresConfig(online=OnlineConfig(path=tmp_path / "online"),
                                   events=EventLogConfig(path=tmp_path / "events.jsonl"))
    url = run_app(root, HTTPConfig(port=serve_port), stores=stores,
                  replicas=ReplicaConfig(replicas=replicas), admin=AdminConfig(token=TOKEN))
    user = known_user(tiny_artifacts)
    answers: list[tuple[float, float, int, str]] = []  # (start, seconds, status, version)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                r = c.post("/recommend", json={"user_id": user, "k": 10})
                answers.append((t0, time.perf_counter() - t0, r.status_code,
                                r.json().get("model_version", "") if r.status_code == 200
                                else r.text))

    try:
        with httpx.Client(base_url=url, timeout=300) as admin:
            # the token: none, a wrong one -> 401 that says nothing more
            assert admin.post("/admin/promote", json={"version": v2}).status_code == 401
            bad = admin.post("/admin/promote", json={"version": v2},
                             headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401 and bad.json() == {"detail": "unauthorized"}
            auth = {"Authorization": f"Bearer {TOKEN}"}
            threads = [threading.Thread(target=load) for _ in range(8)]
            for t in threads:
                t.start()
            time.sleep(4)
            t_promote = time.perf_counter()
            r = admin.post("/admin/promote", json={"version": v2}, headers=auth)
            t_served = time.perf_counter()
            assert r.status_code == 200, r.text
            assert r.json()["version"] == v2 and r.json()["previous"] == v1
            time.sleep(4)
            stop.set()
            for t in threads:
                t.join()

            # Zero failed requests, every answer names a version, and after the promotion
            # answered, every request that started then was answered by the new version.
            assert answers and all(s == 200 for _, _, s, _ in answers), \
                [a for a in answers if a[2] != 200][:3]
            assert {v for *_, v in answers} == {v1, v2}
            assert all(v == v2 for t0, _, _, v in answers if t0 > t_served)
            before = [d for t0, d, _, _ in answers if t0 + d < t_promote]
            during = [d for t0, d, _, _ in answers if t_promote <= t0 <= t_served]
            print(f"\npromotion, {replicas} replica(s): {len(answers)} requests from 8 "
                  "clients, 0 failed; "
                  f"p99 {1000 * np.percentile(before, 99):.1f} ms before, "
                  f"{1000 * np.percentile(during or [0], 99):.1f} ms during the swap "
                  f"({len(during)} requests); promote -> served in "
                  f"{t_served - t_promote:.2f} s (the app says {r.json()['seconds']:.2f} s)")
            assert (root / "LATEST").read_text() == v2

            # A damaged version is refused with the reason; the old one keeps serving.
            broken = republish(root / v1, root, "v3-broken")
            (broken / "index.faiss").write_bytes(b"garbage")
            refused = admin.post("/admin/promote", json={"version": "v3-broken"}, headers=auth)
            assert refused.status_code == 409 and "checksum" in refused.json()["detail"]
            assert admin.get("/healthz").json()["model_version"] == v2
            missing = admin.post("/admin/promote", json={"version": "nope"}, headers=auth)
            assert missing.status_code == 409 and "not a published version" in \
                missing.json()["detail"]

            # Rollback: the version served before
            back = admin.post("/admin/rollback", headers=auth)
            assert back.status_code == 200 and back.json()["version"] == v1, back.text
            assert admin.get("/healthz").json()["model_version"] == v1
    finally:
        stop.set()
        serve.delete("warmstart")
        if redis:
            redis.stop()


def test_admin_routes_are_off_without_a_token(two_versions: tuple[Path, str, str]) -> None:
    """No token configured: the routes answer 404, as if they did not exist (checked on the
    handler itself; the deployed app's 401s are checked above)."""
    from fastapi import HTTPException

    from serve.app import Ingress

    ingress: Any = Ingress.func_or_class.__new__(Ingress.func_or_class)  # type: ignore[attr-defined]
    ingress.admin_token = None
    with pytest.raises(HTTPException) as off:
        ingress._authorize(f"Bearer {TOKEN}")
    assert off.value.status_code == 404
    ingress.admin_token = TOKEN
    ingress._authorize(f"Bearer {TOKEN}")
    with pytest.raises(HTTPException) as wrong:
        ingress._authorize(f"Bearer {TOKEN}x")
    assert wrong.value.status_code == 401


@pytest.mark.ray
def test_autoscaling_adds_a_replica_under_load_and_removes_it_after(
        tiny_artifacts: Path, serve_port: int, tmp_path: Path) -> None:
    """The same config `warmstart serve --redis` deploys, with delays shortened: 16 clients
    push the requests in flight past the target, a second replica starts; once the load
    stops, it goes."""
    import httpx
    from ray import serve

    from serve.deploy import run_app

    srv = RedisServer(tmp_path / "redis")
    counts: list[tuple[float, int]] = []
    try:
        stores = StoresConfig.redis(srv.url, online=OnlineConfig(path=tmp_path / "online"))
        scaling = AutoscalingSettings(min_replicas=1, max_replicas=2,
                                      target_ongoing_requests=2, upscale_delay_s=1,
                                      downscale_delay_s=4)
        url = run_app(tiny_artifacts.parent, HTTPConfig(port=serve_port), stores=stores,
                      replicas=ReplicaConfig(autoscaling=scaling))
        t0 = time.perf_counter()
        stop = threading.Event()

        def running() -> int:
            dep = serve.status().applications["warmstart"].deployments["Ingress"]
            return int(dep.replica_states.get("RUNNING", 0))

        def load() -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                while not stop.is_set():
                    c.post("/recommend", json={"user_id": "u000001", "k": 50})

        threads = [threading.Thread(target=load) for _ in range(16)]
        for t in threads:
            t.start()
        deadline = time.perf_counter() + 90
        while time.perf_counter() < deadline:
            counts.append((time.perf_counter() - t0, running()))
            if counts[-1][1] >= 2:
                break
            time.sleep(0.5)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        t_stop = time.perf_counter() - t0
        deadline = time.perf_counter() + 90
        while time.perf_counter() < deadline:
            counts.append((time.perf_counter() - t0, running()))
            if counts[-1][1] == 1 and counts[-1][0] > t_stop:
                break
            time.sleep(0.5)
        timeline = [(round(t, 1), n) for t, n in counts if n != counts[0][1] or t < 1]
        print(f"\nautoscaling: load from 0 s to {t_stop:.1f} s; replicas running over time "
              f"{timeline[:3]} ... {counts[-1]}")
        assert max(n for _, n in counts) == 2, counts
        assert counts[-1][1] == 1 and counts[-1][0] > t_stop, counts
    finally:
        serve.delete("warmstart")
        srv.stop()


@pytest.mark.ray
def test_the_apps_metrics_reach_rays_prometheus_endpoint(tiny_artifacts: Path, serve_port: int,
                                                         metrics_port: int,
                                                         tmp_path: Path) -> None:
    import httpx
    from ray import serve

    from serve.deploy import run_app

    stores = StoresConfig(online=OnlineConfig(path=tmp_path / "online"),
                          events=EventLogConfig(path=tmp_path / "events.jsonl"))
    try:
        url = run_app(tiny_artifacts.parent, HTTPConfig(port=serve_port), stores=stores)
        with httpx.Client(base_url=url, timeout=60) as c:
            first = c.post("/recommend", json={"user_id": known_user(tiny_artifacts)}).json()
            c.post("/recommend", json={"user_id": "someone-new"})
            c.post("/events", json={"user_id": "someone-new", "event": "click",
                                    "item_id": first["items"][0]["item_id"]})
        wanted = ("ray_warmstart_stage_seconds", "ray_warmstart_requests",
                  "ray_warmstart_cold_start_share", "ray_warmstart_candidates",
                  "ray_warmstart_events", "ray_warmstart_model_version")
        text, deadline = "", time.monotonic() + 90
        while time.monotonic() < deadline:  # exported every few seconds
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            if all(w in text for w in wanted):
                break
            time.sleep(2)
        missing = [w for w in wanted if w not in text]
        assert not missing, (missing, [line for line in text.splitlines()
                                       if "warmstart" in line][:10])
        lines = [line for line in text.splitlines() if line.startswith("ray_warmstart_")]
        assert any('segment="new"' in line for line in lines)
        assert any('stage="ranking"' in line for line in lines)
        assert any('source="two_tower"' in line for line in lines)
        assert any('event="click"' in line for line in lines)
    finally:
        serve.delete("warmstart")


def test_the_grafana_dashboard_queries_the_metrics_the_app_exports() -> None:
    import re

    defined = set(re.findall(r'm\.\w+\("(warmstart_\w+)"', (REPO / "serve" / "metrics.py")
                             .read_text()))
    assert len(defined) == 9
    dash = json.loads((REPO / "serve" / "grafana" / "warmstart.json").read_text())
    used = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"ray_(warmstart_\w+)", target["expr"]):
                used.add(re.sub(r"_(total|bucket|sum|count)$", "", name))
    assert used == defined, (used ^ defined)
