"""The HTTP surface: one Ray Serve ingress deployment with the whole path in-process
(serve/pipeline.py), and the same routes as a plain FastAPI app for uvicorn.

    POST /recommend       {user_id?, device?, timestamp?, k?, diversity?} -> items, scores,
                          sources, model version, degraded stages, warnings
    POST /events          {user_id, item_id, event, device?, timestamp?} -> the event's effects
    GET  /healthz         model version, catalog size, stores in use, degraded-stage counts
    POST /admin/promote   {version} -> every replica switched to that version (bearer token)
    POST /admin/rollback  -> back to the version served before the current one (bearer token)
    GET  /docs            OpenAPI docs (FastAPI)

A malformed request is answered 422 naming the field; an event for an item the catalog lacks
404; an event the log could not take 503 (nothing was acknowledged: retry). A store that is
down degrades the answer and is named in `degraded`; it never turns into a 5xx.

The app is built by `build` from a Serve config (serve/deploy.py): the version to serve is
in the deployment's `user_config`, and `reconfigure()` switches to another one in place.
Routes answer with the serving path's values: `Answer` and `EventReceipt` through the
response models here, their views (the same fields, with the descriptions /docs shows), and
`Health` and `Promoted` (serve/versions.py) as they are.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures' types at
# runtime, and Serve's class-based routes cannot resolve them from strings.
import asyncio
import datetime as dt
import hmac
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from serve import deploy, ranking, versions
from serve.config import ADMIN_TOKEN_ENV, AdminConfig, ServeConfig, StoresConfig
from serve.events import EventReceipt
from serve.metrics import ServeMetrics
from serve.pipeline import Answer, Health, Pipeline, Request
from serve.state import ServingState
from serve.stores import StoreUnavailable
from train import storage
from train.artifacts import resolve

log = logging.getLogger(__name__)

DESCRIPTION = ("Recommendations for known and brand-new users: Two-Tower, LLM-interest and "
               "popularity retrieval, a seen-items filter, DLRM ranking with request context, "
               "a re-ranking that covers each user's categories, and real-time events.")


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
    diversity: float | None = Field(
        None, ge=0.0, le=1.0, description="0: the top k by score; above 0: re-ranked to cover "
        "the user's categories in proportion to their shares, more closely as it grows; "
        f"absent: the server's default ({ServeConfig.diversity} unless configured)")

    def request(self) -> Request:
        return Request(user_id=self.user_id, device=self.device, timestamp=self.timestamp,
                       k=self.k, diversity=self.diversity)


class ScoredItem(BaseModel):  # a view of serve/pipeline.py AnsweredItem
    item_id: str
    score: float = Field(description="the blend of the item's signals, in (0, 1)")
    source: str = Field(description="retrieval sources that found it, '+'-joined: "
                        "two_tower, item_item, interests, popular, demographic")
    name: str = Field(description="the item's name in the catalog (its id if none)")
    category: str


class RecommendResponse(BaseModel):  # a view of serve/pipeline.py Answer
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


class EventResponse(BaseModel):  # a view of serve/events.py EventReceipt
    id: str = Field(description="the event's id in the durable log")
    degraded: list[str] = Field(description="effects skipped: their store was unavailable")
    warnings: list[str]


class Unavailable(BaseModel):  # the body of a 404 or 503
    detail: str


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$",
                         description="a published version's folder name under the artifacts")


EVENT_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Unavailable, "description": "the item is not in the served catalog: "
          "nothing was recorded"},
    503: {"model": Unavailable, "description": "the event log is unavailable: nothing was "
          "recorded, retry"}}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Unavailable, "description": "no or wrong bearer token"},
    404: {"model": Unavailable, "description": "admin routes are off: no token configured"},
    409: {"model": Unavailable, "description": "the version cannot serve (the reason); the "
          "old one keeps serving"},
    503: {"model": Unavailable, "description": "the artifacts' object store could not be "
          "reached (which, and why); nothing switched: retry"},
    504: {"model": Unavailable, "description": "the replicas did not all serve it in time"}}


def handle_event(pipeline: Pipeline, body: EventRequest) -> EventReceipt:
    try:
        return pipeline.event(body.user_id, body.item_id, body.event, body.device,
                              body.timestamp)
    except ValueError as e:  # an item the served catalog lacks
        raise HTTPException(404, detail=f"item_id: {e}") from None
    except StoreUnavailable as e:
        log.error("event log unavailable: %s", e)
        raise HTTPException(503, detail=f"the event log is unavailable ({e}); nothing was "
                            "recorded, retry") from None


STATIC = Path(__file__).parent / "static"  # the demo page


def add_page(api: FastAPI) -> FastAPI:
    """The demo page at / and its assets at /static: plain HTML and a small script that
    talk to /recommend, /events and /healthz on the same origin."""
    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    @api.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return api


# FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the fastapi-offline
# package, not from a CDN that a firewalled network cannot reach.
app = add_page(FastAPIOffline(title="warmstart", description=DESCRIPTION))
batch: Any = serve.batch  # its typing does not describe a method with several arguments


# Serve serializes the class where the decorator runs: everything its methods call must be
# defined above it.
@serve.deployment  # replicas, CPUs, autoscaling and user_config from the Serve config
@serve.ingress(app)
class Ingress:
    def __init__(self, artifacts: str, stores: dict[str, Any], admin: dict[str, Any]) -> None:
        self.artifacts = artifacts  # a folder or a URI
        self.stores = StoresConfig.from_dict(stores)
        self.admin_token = AdminConfig(**admin).token or os.environ.get(ADMIN_TOKEN_ENV)
        self.pipeline: Pipeline | None = None  # the first reconfigure() loads its version
        self._refresh: asyncio.Task[None] | None = None  # started by the first request

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """The user_config of the Serve config: ServeConfig and the version to serve. A new
        version is loaded beside the old one and swapped in with one assignment; one that
        fails to load is logged and refused, and the old one keeps serving."""
        import torch

        cfg, version = deploy.split_user_config(user_config)
        torch.set_num_threads(cfg.torch_threads)
        if self.pipeline is None:  # starting: a version that does not load fails the start
            state, stores = await asyncio.to_thread(versions.open_version, self.artifacts,
                                                    version, self.stores)
            self.pipeline = Pipeline(state, stores, cfg, metrics=ServeMetrics())
            log.info("serving version %s", state.version)
        else:
            self.pipeline.cfg = cfg
            if version and version != self.pipeline.version:
                await self._switch(self.pipeline, version)
        self._score.set_max_batch_size(cfg.max_batch_size)
        self._score.set_batch_wait_timeout_s(cfg.batch_wait_s)

    async def _switch(self, pipeline: Pipeline, version: str) -> None:
        old = pipeline.serving
        try:
            state, stores = await asyncio.to_thread(versions.open_version, self.artifacts,
                                                    version, self.stores, old.stores)
        except Exception as e:  # any failure: the replica keeps serving what it served
            log.error("version %s refused, still serving %s: %s", version, old.state.version,
                      e)
            pipeline.refuse(version, str(e))
            return
        pipeline.swap(state, stores)
        log.info("switched from version %s to %s", old.state.version, version)

    def ready(self) -> Pipeline:
        if self.pipeline is None:
            raise HTTPException(503, detail="the replica is still loading its version")
        return self.pipeline

    @batch(max_batch_size=ServeConfig.max_batch_size,
           batch_wait_timeout_s=ServeConfig.batch_wait_s)
    async def _score(self, states: list[ServingState], xs: list[dict[str, np.ndarray]]
                     ) -> list[np.ndarray]:
        return ranking.score_versions(states, xs)

    async def _refresh_popularity(self) -> None:
        """Other replicas' events into this replica's popularity, every `refresh_s`."""
        while True:
            popularity = self.ready().serving.stores.popularity
            await asyncio.sleep(self.stores.popularity.refresh_s)
            try:
                popularity.refresh()
            except StoreUnavailable as e:
                log.warning("popularity refresh failed: %s", e)

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, body: RecommendRequest) -> Answer:
        if self._refresh is None and self.stores.popularity.backend != "memory":
            self._refresh = asyncio.create_task(self._refresh_popularity())
        return await self.ready().recommend(body.request(), rank=self._score)

    @app.post("/events", response_model=EventResponse, responses=EVENT_ERRORS)
    def events(self, body: EventRequest) -> EventReceipt:
        return handle_event(self.ready(), body)

    @app.get("/healthz")
    def healthz(self) -> Health:
        return self.ready().health()

    def _authorize(self, authorization: str | None) -> None:
        if not self.admin_token:
            raise HTTPException(404, detail="Not Found")  # off: as if the route did not exist
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.admin_token.encode()):
            raise HTTPException(401, detail="unauthorized")

    @app.post("/admin/promote", responses=ADMIN_ERRORS)
    async def promote(self, body: PromoteRequest,
                      authorization: str | None = Header(None)) -> versions.Promoted:
        self._authorize(authorization)
        return await self._promote(body.version)

    @app.post("/admin/rollback", responses=ADMIN_ERRORS)
    async def rollback(self, authorization: str | None = Header(None)) -> versions.Promoted:
        self._authorize(authorization)
        current = self.ready().version
        try:
            root = await asyncio.to_thread(versions.local_root, self.artifacts, current)
            version = versions.previous(root, current)
        except versions.PromotionError as e:
            raise HTTPException(409, detail=str(e)) from None
        except storage.StorageError as e:
            raise HTTPException(503, detail=str(e)) from None
        return await self._promote(version)

    async def _promote(self, version: str) -> versions.Promoted:
        """The version lifecycle (serve/versions.py `promote`), its failures as HTTP."""
        pipeline = self.ready()
        try:
            return await versions.promote(self.artifacts, version, self.stores,
                                          lambda: (pipeline.version, pipeline.refused))
        except versions.PromotionError as e:  # nothing switched
            raise HTTPException(409, detail=str(e)) from None
        except storage.StorageError as e:  # the artifacts' store: nothing switched, retry
            raise HTTPException(503, detail=str(e)) from None
        except versions.NotServed as e:
            raise HTTPException(409 if e.refused else 504, detail=str(e)) from None


def build(args: dict[str, Any]) -> serve.Application:
    """The application of a Serve config (`import_path: serve.app:build`, `args` as in
    serve/deploy.py `AppSpec`). The artifact root must hold a version already: a clear error
    at deploy time rather than in every replica."""
    spec = deploy.AppSpec(**args)
    resolve(versions.local_root(spec.artifacts))
    deployment: Any = Ingress  # `@serve.deployment` made it a Deployment; mypy sees the class
    return deployment.bind(spec.artifacts, spec.stores, spec.admin)


def plain_app(pipeline: Pipeline) -> FastAPI:
    """The same routes around one in-process pipeline, without Ray (for uvicorn)."""
    api = add_page(FastAPIOffline(title="warmstart", description=DESCRIPTION))

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest) -> Answer:
        return await pipeline.recommend(body.request())

    @api.post("/events", response_model=EventResponse, responses=EVENT_ERRORS)
    def events(body: EventRequest) -> EventReceipt:
        return handle_event(pipeline, body)

    @api.get("/healthz")
    def healthz() -> Health:
        return pipeline.health()

    return api
