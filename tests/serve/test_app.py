"""The Ray Serve app over HTTP with the default stores (Feast on SQLite, in-process filter
and popularity, a local event log): known, unknown and malformed requests, events that take
effect at once, the request schema's bounds from ServeConfig, a damaged version refused
before anything is deployed, and a schema fuzz of the OpenAPI spec."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.config import ServeConfig
from tests.serve.helpers import deploy, embedded_stores, known_user
from train.artifacts import ArtifactError, load_bundle

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def server(tiny_artifacts: Path, serve_port: int, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    """The default stores: Feast on SQLite, in-process filter and popularity, a local log."""
    from ray import serve

    yield deploy(tiny_artifacts.parent, serve_port,
                 embedded_stores(tmp_path_factory.mktemp("serve")))
    serve.delete("warmstart")



def test_http_recommend_known_unknown_and_malformed(server: str, tiny_artifacts: Path) -> None:
    import httpx

    from serve.pipeline import Pipeline, Request, bare_stores
    from serve.state import build_state

    bundle = load_bundle(tiny_artifacts)
    user = known_user(tiny_artifacts)
    with httpx.Client(base_url=server, timeout=30) as c:
        health = c.get("/healthz").json()
        assert health["model_version"] == bundle.version
        assert health["items"] == len(bundle.items)
        assert health["stores"]["online"].startswith("feast")

        r = c.post("/recommend", json={"user_id": user, "device": "web", "k": 5,
                                        "timestamp": "2026-01-12T09:00:00"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["known_user"] and body["model_version"] == bundle.version
        assert len(body["items"]) == 5 and body["degraded"] == []
        assert {i["item_id"] for i in body["items"]} <= set(bundle.items["item_id"])
        # Same request in process: the HTTP app serves exactly the pipeline's answer.
        import asyncio
        import datetime as dt

        state = build_state(bundle)
        direct = asyncio.run(Pipeline(state, bare_stores(state)).recommend(Request(
            user_id=user, device="web", timestamp=dt.datetime(2026, 1, 12, 9), k=5)))
        assert [i["item_id"] for i in body["items"]] == [i.item_id for i in direct.items]

        r = c.post("/recommend", json={"user_id": "brand-new", "timestamp": 1768208400})
        assert r.status_code == 200 and not r.json()["known_user"]
        assert len(r.json()["items"]) == 10 and r.json()["device"] is None
        r = c.post("/recommend", json={})  # no id at all: the cold-start answer
        assert r.status_code == 200 and len(r.json()["items"]) == 10
        r = c.post("/recommend", json={"user_id": user, "device": "toaster"})
        assert r.status_code == 200 and "toaster" in r.json()["warnings"][0]
        # Any valid date-time is answered: only its UTC hour and weekday are used.
        r = c.post("/recommend", json={"timestamp": "0001-01-01T02:00:00+05:00"})
        assert r.status_code == 200, r.text

        for bad, field in (({"user_id": ""}, "user_id"),
                           ({"user_id": "x", "k": 0}, "k"),
                           ({"user_id": "x", "k": 1000}, "k"),
                           ({"user_id": "x", "diversity": 2}, "diversity"),
                           ({"user_id": "x", "timestamp": "yesterday"}, "timestamp"),
                           ({"user_id": "x", "colour": "red"}, "colour")):
            r = c.post("/recommend", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert field in json.dumps(r.json()["detail"])
        r = c.post("/recommend", content=b"{not json", headers={"content-type":
                                                                "application/json"})
        assert r.status_code == 422
        r = c.post("/events", json={"user_id": "u", "item_id": "x", "event": "like"})
        assert r.status_code == 422 and "event" in json.dumps(r.json()["detail"])
        r = c.post("/events", json={"user_id": "u", "item_id": "nope", "event": "click"})
        assert r.status_code == 404 and "'nope' is not in the catalog" in r.json()["detail"]
        assert c.get("/docs").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/recommend", "/events", "/healthz"} <= set(paths)


def test_a_click_is_hidden_and_reflected_in_the_next_answer(server: str,
                                                            tiny_artifacts: Path) -> None:
    import httpx

    user = known_user(tiny_artifacts)
    ask = {"user_id": user, "device": "ios", "k": 10, "timestamp": "2026-01-12T20:00:00"}
    with httpx.Client(base_url=server, timeout=30) as c:
        before = [i["item_id"] for i in c.post("/recommend", json=ask).json()["items"]]
        r = c.post("/events", json={"user_id": user, "item_id": before[0], "event": "click",
                                    "device": "ios"})
        assert r.status_code == 200 and r.json()["degraded"] == [], r.text
        assert r.json()["warnings"] == []
        after = c.post("/recommend", json=ask).json()
        assert before[0] not in [i["item_id"] for i in after["items"]]
        assert after["degraded"] == []


def test_serving_refuses_a_damaged_version(tiny_artifacts: Path, tmp_path: Path) -> None:
    from serve.deploy import app_config

    copy = tmp_path / "v"
    shutil.copytree(tiny_artifacts, copy)
    (copy / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="index.faiss does not match its checksum"):
        app_config(copy)


def test_the_response_models_are_views_of_the_serving_values() -> None:
    """Each response model has its value's fields, in its order, and reads the value as it
    is: a field added to one and not the other fails here, not in a client."""
    import dataclasses
    import re
    import typing

    from serve.app import EventResponse, RecommendResponse, ScoredItem
    from serve.events import EventReceipt
    from serve.pipeline import Answer, AnsweredItem

    for view, value in ((RecommendResponse, Answer), (ScoredItem, AnsweredItem),
                        (EventResponse, EventReceipt)):
        assert list(view.model_fields) == [f.name for f in dataclasses.fields(value)], view
        hints = typing.get_type_hints(value)

        def plain(t: object) -> str:
            """A type without module paths; a view's list is its value's tuple."""
            name = re.sub(r"[\w.]+\.(\w+)", r"\1", str(t)).replace("ScoredItem", "AnsweredItem")
            return name.replace("list[", "tuple[").replace(", ...]", "]")

        for name, field in view.model_fields.items():
            assert plain(field.annotation) == plain(hints[name]), (view, name)
    answer = Answer(user_id=None, known_user=False, device=None, model_version="v",
                    items=(AnsweredItem("i1", 0.5, "popular", "Boot", "shoes"),),
                    degraded=("seen_filter",), warnings=())
    read = RecommendResponse.model_validate(dataclasses.asdict(answer))
    assert read.model_dump() == dataclasses.asdict(answer) | {
        "items": [dataclasses.asdict(answer.items[0])], "degraded": ["seen_filter"],
        "warnings": []}


def test_the_request_schema_takes_k_from_serve_config() -> None:
    from serve.app import RecommendRequest

    k = RecommendRequest.model_fields["k"]
    bounds = {type(m).__name__: m for m in k.metadata}
    cfg = ServeConfig()
    assert k.default == cfg.default_k
    assert bounds["Ge"].ge == 1 and bounds["Le"].le == cfg.max_k
    with pytest.raises(ValueError, match="default_k must be within"):
        ServeConfig(default_k=200)


def test_the_openapi_spec_fuzzed_finds_no_5xx_and_no_schema_violation(server: str) -> None:
    """schemathesis generates requests from the app's own OpenAPI spec (valid and invalid
    bodies) and checks each answer: never a 5xx, always the documented status and schema."""
    import schemathesis
    from hypothesis import HealthCheck, settings

    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    failures = []
    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=server)

        test = operation.as_strategy()
        from hypothesis import given

        try:
            given(test)(check)()
        except Exception as e:  # noqa: BLE001 - collected and reported below
            failures.append(f"{operation.method.upper()} {operation.path}: {e}")
    assert not failures, "\n\n".join(failures)
