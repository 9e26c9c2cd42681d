"""The HTTP surface: one Ray Serve ingress deployment with the whole path in-process
(serve/pipeline.py), and the same routes as a plain FastAPI app for uvicorn.

    POST /recommend   {user_id?, device?, timestamp?, k?, diversity?} -> items, scores,
                      sources, model version, degraded stages, warnings
    POST /events      {user_id, item_id, event, device?, timestamp?} -> the event's effects
    GET  /healthz     model version, catalog size, stores in use, degraded-stage counts
    GET  /docs        OpenAPI docs (FastAPI)

A malformed request is answered 422 naming the field; an event for an item the catalog lacks
404; an event the log could not take 503 (nothing was acknowledged: retry). A store that is
down degrades the answer and is named in `degraded`; it never turns into a 5xx.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures' types at
# runtime, and Serve's class-based routes cannot resolve them from strings.
import asyncio
import datetime as dt
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from serve import ranking
from serve.config import HTTPConfig, ReplicaConfig, ServeConfig, StoresConfig
from serve.online import ONLINE_FOLDER, open_online
from serve.pipeline import Pipeline, Request, open_stores
from serve.state import ServingState, load_state
from serve.stores import StoreUnavailable
from train.artifacts import Bundle, load_bundle

log = logging.getLogger(__name__)

DESCRIPTION = ("Recommendations for known and brand-new users: Two-Tower, LLM-interest and "
               "popularity retrieval, a seen-items filter, DLRM ranking with request context, "
               "diversity sampling, and real-time events.")


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, min_length=1, max_length=256, description="any id; "
                                "absent or unknown ids get a cold-start answer")
    device: str | None = Field(None, max_length=64, description="web, ios or android; "
                               "anything else is answered as an unknown device, with a warning")
    timestamp: dt.datetime | None = Field(None, description="ISO 8601 or unix seconds; "
                                          "server time when absent")
    k: int = Field(ServeConfig.default_k, ge=1, le=ServeConfig.max_k,
                   description="number of items to return")
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="0: the top k by score; "
                             "above 0: sampled by score, more varied as it grows")


class ScoredItem(BaseModel):
    item_id: str
    score: float
    source: str = Field(description="retrieval sources that found it, '+'-joined: "
                        "two_tower, interests, popular")


class RecommendResponse(BaseModel):
    user_id: str | None
    known_user: bool
    device: str | None
    model_version: str
    items: list[ScoredItem]
    degraded: list[str] = Field(description="stages answered without their store")
    warnings: list[str]


class EventRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256)
    item_id: str = Field(min_length=1, max_length=256)
    event: Literal["view", "click", "purchase"]
    device: str | None = Field(None, max_length=64)
    timestamp: dt.datetime | None = Field(None, description="when it happened; server time "
                                          "when absent, or when more than a day away from it")


class EventResponse(BaseModel):
    id: str = Field(description="the event's id in the durable log")
    degraded: list[str]
    warnings: list[str]


class Unavailable(BaseModel):  # the body of a 404 or 503
    detail: str


EVENT_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Unavailable, "description": "the item is not in the served catalog: "
          "nothing was recorded"},
    503: {"model": Unavailable, "description": "the event log is unavailable: nothing was "
          "recorded, retry"}}


def to_request(body: RecommendRequest) -> Request:
    return Request(user_id=body.user_id, device=body.device, timestamp=body.timestamp,
                   k=body.k, diversity=body.diversity)


def handle_event(pipeline: Pipeline, body: EventRequest) -> dict[str, Any]:
    try:
        out = pipeline.event(body.user_id, body.item_id, body.event, body.device,
                             body.timestamp)
    except ValueError as e:  # an item the served catalog lacks
        raise HTTPException(404, detail=f"item_id: {e}") from None
    except StoreUnavailable as e:
        log.error("event log unavailable: %s", e)
        raise HTTPException(503, detail=f"the event log is unavailable ({e}); nothing was "
                            "recorded, retry") from None
    return {"id": str(out["id"]), "degraded": list(out.get("degraded", [])),
            "warnings": list(out.get("warnings", []))}


def health(pipeline: Pipeline) -> dict[str, Any]:
    live = pipeline.live
    s = live.stores
    return {"status": "ok", "model_version": live.state.version,
            "items": len(live.state.item_ids), "requests": pipeline.requests,
            "stores": {"online": getattr(s.online, "name", "off"), "seen": s.seen.name,
                       "popularity": type(s.popularity).__name__,
                       "events": type(s.events.log).__name__ if s.events else "off"},
            "degraded": dict(pipeline.degraded)}


def start_pipeline(artifacts: str | Path, cfg: ServeConfig, stores: StoresConfig) -> Pipeline:
    import torch

    torch.set_num_threads(cfg.torch_threads)
    state = load_state(Path(artifacts))
    return Pipeline(state, open_stores(state, stores), cfg)


app = FastAPI(title="warmstart", description=DESCRIPTION)
EVENTS_FILE = "events.jsonl"  # the local event log, beside the versions, unless configured
batch: Any = serve.batch  # its typing does not describe a method with several arguments


@serve.deployment  # replicas, CPUs and concurrency from ReplicaConfig in build_app
@serve.ingress(app)
class Ingress:
    def __init__(self, artifacts: str, stores: dict[str, Any]) -> None:
        self.stores = StoresConfig.from_dict(stores)
        self.pipeline = start_pipeline(artifacts, ServeConfig(), self.stores)
        self._refresh: asyncio.Task[None] | None = None  # started by the first request
        log.info("serving version %s", self.pipeline.live.state.version)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        cfg = ServeConfig(**user_config)
        self.pipeline.cfg = cfg
        self._score.set_max_batch_size(cfg.max_batch_size)
        self._score.set_batch_wait_timeout_s(cfg.batch_wait_s)

    @batch(max_batch_size=ServeConfig.max_batch_size,
                 batch_wait_timeout_s=ServeConfig.batch_wait_s)
    async def _score(self, states: list[ServingState], xs: list[dict[str, np.ndarray]]
                     ) -> list[np.ndarray]:
        # A batch may straddle a swap: score each version's requests with its own model.
        out: list[np.ndarray | None] = [None] * len(xs)
        for state in {id(s): s for s in states}.values():
            at = [n for n, s in enumerate(states) if s is state]
            for n, scores in zip(at, ranking.score(state, [xs[n] for n in at]), strict=True):
                out[n] = scores
        return [s for s in out if s is not None]

    async def _refresh_popularity(self) -> None:
        """Other replicas' events into this replica's popularity, every `refresh_s`."""
        while True:
            pop = self.pipeline.live.stores.popularity
            await asyncio.sleep(self.stores.popularity.refresh_s)
            try:
                pop.refresh()
            except StoreUnavailable as e:
                log.warning("popularity refresh failed: %s", e)

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, body: RecommendRequest) -> dict[str, Any]:
        if self._refresh is None and self.stores.popularity.backend != "memory":
            self._refresh = asyncio.create_task(self._refresh_popularity())
        return await self.pipeline.recommend(to_request(body), rank=self._score)

    @app.post("/events", response_model=EventResponse, responses=EVENT_ERRORS)
    def events(self, body: EventRequest) -> dict[str, Any]:
        return handle_event(self.pipeline, body)

    @app.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return health(self.pipeline)


def plain_app(pipeline: Pipeline) -> FastAPI:
    """The same routes around one in-process pipeline, without Ray (for uvicorn)."""
    api = FastAPI(title="warmstart", description=DESCRIPTION)

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest) -> dict[str, Any]:
        return await pipeline.recommend(to_request(body))

    @api.post("/events", response_model=EventResponse, responses=EVENT_ERRORS)
    def events(body: EventRequest) -> dict[str, Any]:
        return handle_event(pipeline, body)

    @api.get("/healthz")
    def healthz() -> dict[str, Any]:
        return health(pipeline)

    return api


def prepare_stores(bundle: Bundle, stores: StoresConfig) -> StoresConfig:
    """Before any replica starts: file paths made absolute (replicas run elsewhere), and the
    version materialized into the Feast online store when that store lacks it."""
    root = stores.online.path or bundle.path.parent / ONLINE_FOLDER
    online = replace(stores.online, path=Path(root).resolve())
    log_file = stores.events.path or bundle.path.parent / EVENTS_FILE
    events = replace(stores.events, path=Path(log_file).resolve())
    if online.backend == "feast":
        open_online(replace(online, materialize=True), bundle)  # materializes when needed
    return replace(stores, online=online, events=events)


def build_app(artifacts: Path, cfg: ServeConfig | None = None,
              stores: StoresConfig | None = None,
              replicas: ReplicaConfig | None = None) -> serve.Application:
    """The bound application; the artifact folder is verified, and the stores prepared,
    before anything is deployed."""
    bundle = load_bundle(artifacts)  # fail here, with the clear error, not inside a replica
    user_config = asdict(cfg or ServeConfig())
    stores = prepare_stores(bundle, stores or StoresConfig())
    stores_dict = json.loads(json.dumps(asdict(stores), default=str))
    # `@serve.deployment` turned the class into a Deployment; mypy still sees the class.
    deployment: Any = Ingress
    r = replicas or ReplicaConfig()
    if r.replicas > 1 and "memory" in (stores.seen.backend, stores.popularity.backend):
        log.warning("%d replicas with in-process seen filters or popularity: each replica "
                    "sees only the events it took; put the stores on Redis/Valkey (--redis)",
                    r.replicas)
    return deployment.options(
        user_config=user_config, num_replicas=r.replicas,
        ray_actor_options={"num_cpus": r.num_cpus},
        max_ongoing_requests=r.max_ongoing_requests,
    ).bind(str(artifacts.resolve()), stores_dict)


def run_app(artifacts: Path, http: HTTPConfig | None = None, cfg: ServeConfig | None = None,
            stores: StoresConfig | None = None, replicas: ReplicaConfig | None = None) -> str:
    """Deploy on the running Ray; returns the base URL."""
    http = http or HTTPConfig()
    application = build_app(artifacts, cfg, stores, replicas)
    serve.start(http_options={"host": http.host, "port": http.port})
    serve.run(application, name="warmstart", route_prefix="/", blocking=False)
    return f"http://{http.host}:{http.port}"
