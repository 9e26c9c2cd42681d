"""The Ray Serve app over HTTP: known, unknown and malformed requests, the request schema's
bounds from ServeConfig, and a damaged version refused before anything is deployed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from serve.config import ServeConfig
from serve.recommender import Context, Recommender
from tests.helpers import free_port
from train.artifacts import ArtifactError, load_bundle

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def server(tiny_artifacts: Path):
    from ray import serve

    from serve.app import run_app
    from serve.config import HTTPConfig

    url = run_app(tiny_artifacts.parent, HTTPConfig(port=free_port()))
    yield url
    serve.delete("warmstart")


def test_http_recommend_known_unknown_and_malformed(server: str, tiny_artifacts: Path) -> None:
    import httpx

    bundle = load_bundle(tiny_artifacts)
    user = str(next(u for u in bundle.users.index if u in bundle.features.users))
    with httpx.Client(base_url=server, timeout=30) as c:
        health = c.get("/healthz").json()
        assert health["model_version"] == bundle.version
        assert health["items"] == len(bundle.items)

        r = c.post("/recommend", json={"user_id": user, "device": "web", "k": 5,
                                        "timestamp": "2026-01-12T09:00:00"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["known_user"] and body["model_version"] == bundle.version
        assert len(body["items"]) == 5
        assert {i["item_id"] for i in body["items"]} <= set(bundle.items["item_id"])
        # Same request in process: the HTTP app serves exactly the recommender's answer.
        direct = Recommender(bundle).recommend(user, Context("web", 9, 0), 5)
        assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in direct["items"]]

        r = c.post("/recommend", json={"user_id": "brand-new", "timestamp": 1768208400})
        assert r.status_code == 200 and not r.json()["known_user"]
        assert len(r.json()["items"]) == 10 and r.json()["device"] is None

        for bad, field in (({"device": "web"}, "user_id"),
                           ({"user_id": "x", "k": 0}, "k"),
                           ({"user_id": "x", "k": 1000}, "k"),
                           ({"user_id": "x", "timestamp": "yesterday"}, "timestamp"),
                           ({"user_id": "x", "colour": "red"}, "colour")):
            r = c.post("/recommend", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert field in json.dumps(r.json()["detail"])
        r = c.post("/recommend", content=b"{not json", headers={"content-type":
                                                                "application/json"})
        assert r.status_code == 422
        assert c.get("/docs").status_code == 200
        assert "/recommend" in c.get("/openapi.json").json()["paths"]


def test_serving_refuses_a_damaged_version(tiny_artifacts: Path, tmp_path: Path) -> None:
    from serve.app import build_app

    copy = tmp_path / "v"
    shutil.copytree(tiny_artifacts, copy)
    (copy / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="index.faiss does not match its checksum"):
        build_app(copy)




def test_the_request_schema_takes_k_from_serve_config() -> None:
    from serve.app import RecommendRequest

    k = RecommendRequest.model_fields["k"]
    bounds = {type(m).__name__: m for m in k.metadata}
    cfg = ServeConfig()
    assert k.default == cfg.default_k
    assert bounds["Ge"].ge == 1 and bounds["Le"].le == cfg.max_k
    with pytest.raises(ValueError, match="default_k must be within"):
        ServeConfig(default_k=200)
