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
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures' types at
# runtime, and Serve's class-based routes cannot resolve them from strings.
import asyncio
import datetime as dt
import hmac
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from interests.artifact import FOLDER as INTERESTS
from serve import deploy, promotion, ranking
from serve.config import (
    ADMIN_TOKEN_ENV,
    AdminConfig,
    HTTPConfig,
    ReplicaConfig,
    ServeConfig,
    StoresConfig,
)
from serve.metrics import ServeMetrics
from serve.online import ONLINE_FOLDER, open_online
from serve.pipeline import Pipeline, Request, open_stores
from serve.state import ServingState, load_state
from serve.stores import StoreUnavailable
from train import storage
from train.artifacts import Bundle, load_bundle, resolve

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
    score: float = Field(description="the blend of the item's signals, in (0, 1)")
    source: str = Field(description="retrieval sources that found it, '+'-joined: "
                        "two_tower, item_item, interests, popular, demographic")
    name: str = Field("", description="the item's name in the catalog (its id if none)")
    category: str = ""


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


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$",
                         description="a published version's folder name under the artifacts")


class PromotionResponse(BaseModel):
    version: str = Field(description="the version every replica now serves")
    previous: str
    seconds: float = Field(description="from the request to this replica serving it")


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
            "example_users": list(live.state.users.rows)[:8],
            "stores": {"online": getattr(s.online, "name", "off"), "seen": s.seen.name,
                       "popularity": type(s.popularity).__name__,
                       "events": type(s.events.log).__name__ if s.events else "off"},
            "degraded": dict(pipeline.degraded)}


def start_pipeline(artifacts: str | Path, cfg: ServeConfig, stores: StoresConfig) -> Pipeline:
    import torch

    torch.set_num_threads(cfg.torch_threads)
    state = load_state(Path(artifacts))
    return Pipeline(state, open_stores(state, stores), cfg)


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
EVENTS_FILE = "events.jsonl"  # the local event log, beside the versions, unless configured
batch: Any = serve.batch  # its typing does not describe a method with several arguments
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Unavailable, "description": "no or wrong bearer token"},
    404: {"model": Unavailable, "description": "admin routes are off: no token configured"},
    409: {"model": Unavailable, "description": "the version cannot serve (the reason); the "
          "old one keeps serving"},
    503: {"model": Unavailable, "description": "the artifacts' object store could not be "
          "reached (which, and why); nothing switched: retry"}}


# What a replica reads under the artifact root besides its version folder; a URI root
# (s3://...) is mirrored into each replica's local cache (train/storage.py).
SERVED = ("LATEST", promotion.HISTORY, INTERESTS, ONLINE_FOLDER)


def local_root(artifacts: str | Path, version: str | None = None) -> Path:
    """The artifact root to load from: itself when local; for a URI, the local mirror of
    what serving reads (SERVED, and `version`'s folder, by default LATEST's) pulled now."""
    if not storage.is_uri(artifacts):
        return Path(artifacts)
    uri = str(artifacts)
    local = storage.cache_for(uri)
    storage.pull(uri, local, only=SERVED)
    latest = local / "LATEST"
    version = version or (latest.read_text().strip() if latest.exists() else None)
    if version:
        storage.pull(uri, local, only=(version,))
    return local


def prepare_stores(bundle: Bundle, stores: StoresConfig, remote: str | None = None
                   ) -> StoresConfig:
    """Before any replica starts: file paths made absolute (replicas run elsewhere), and the
    version materialized into the Feast online store when that store lacks it. `remote`:
    the URI the artifacts came from, whose replicas may run on any node: the stores must be
    networked, and the Feast registry is uploaded beside the versions."""
    if remote is not None:
        if stores.events.backend == "local" or (stores.online.backend == "feast"
                                                and stores.online.store == "sqlite"):
            raise ValueError(f"artifacts at {remote} are served by replicas on any node, "
                             "which cannot share a local event log or SQLite online store: "
                             "put the stores on Redis/Valkey (--redis redis://host:6379/0)")
        if stores.online.backend == "feast":
            open_online(replace(stores.online, materialize=True), bundle)
            storage.upload(bundle.path.parent / ONLINE_FOLDER,
                           storage.join(remote, ONLINE_FOLDER))
        return stores  # each replica finds the registry in its own mirror
    root = stores.online.path or bundle.path.parent / ONLINE_FOLDER
    online = replace(stores.online, path=Path(root).resolve())
    log_file = stores.events.path or bundle.path.parent / EVENTS_FILE
    events = replace(stores.events, path=Path(log_file).resolve())
    if online.backend == "feast":
        open_online(replace(online, materialize=True), bundle)  # materializes when needed
    return replace(stores, online=online, events=events)


def open_version(artifacts: str | Path, version: str | None, stores: StoresConfig,
                 keep: Any = None) -> tuple[ServingState, Any]:
    """The serving state of `version` (None: LATEST) under the artifact root (a folder or a
    URI) and its stores (`keep`: the stores of the version it replaces, see `open_stores`)."""
    root = local_root(artifacts, version)
    state = load_state(root / version if version else root)
    return state, open_stores(state, stores, keep)


# Serve serializes the class where the decorator runs: everything its methods call must be
# defined above it.
@serve.deployment  # replicas, CPUs, autoscaling and user_config from the Serve config
@serve.ingress(app)
class Ingress:
    def __init__(self, artifacts: str, stores: dict[str, Any], admin: dict[str, Any]) -> None:
        self.artifacts = artifacts  # a folder or a URI
        self.remote = artifacts if storage.is_uri(artifacts) else None
        self.stores = StoresConfig.from_dict(stores)
        self.admin_token = AdminConfig(**admin).token or os.environ.get(ADMIN_TOKEN_ENV)
        self.pipeline: Pipeline | None = None  # the first reconfigure() loads its version
        self.refused: dict[str, str] | None = None  # the last version that failed to load
        self._refresh: asyncio.Task[None] | None = None  # started by the first request

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """The user_config of the Serve config: ServeConfig and the version to serve. A new
        version is loaded beside the old one and swapped in with one assignment; one that
        fails to load is logged and refused, and the old one keeps serving."""
        import torch

        cfg, version = deploy.split_user_config(user_config)
        torch.set_num_threads(cfg.torch_threads)
        if self.pipeline is None:  # starting: a version that does not load fails the start
            state, stores = await asyncio.to_thread(open_version, self.artifacts, version,
                                                    self.stores)
            self.pipeline = Pipeline(state, stores, cfg, metrics=ServeMetrics())
            log.info("serving version %s", state.version)
        else:
            self.pipeline.cfg = cfg
            if version and version != self.pipeline.live.state.version:
                await self._switch(version)
        self._score.set_max_batch_size(cfg.max_batch_size)
        self._score.set_batch_wait_timeout_s(cfg.batch_wait_s)

    async def _switch(self, version: str) -> None:
        assert self.pipeline is not None
        old = self.pipeline.live
        try:
            state, stores = await asyncio.to_thread(open_version, self.artifacts, version,
                                                    self.stores, old.stores)
        except Exception as e:  # any failure: the replica keeps serving what it served
            log.error("version %s refused, still serving %s: %s", version, old.state.version,
                      e)
            self.refused = {"version": version, "reason": str(e)}
            return
        self.pipeline.swap(state, stores)
        self.refused = None
        log.info("switched from version %s to %s", old.state.version, version)

    @property
    def live(self) -> Pipeline:
        if self.pipeline is None:
            raise HTTPException(503, detail="the replica is still loading its version")
        return self.pipeline

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
            pop = self.live.live.stores.popularity
            await asyncio.sleep(self.stores.popularity.refresh_s)
            try:
                pop.refresh()
            except StoreUnavailable as e:
                log.warning("popularity refresh failed: %s", e)

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, body: RecommendRequest) -> dict[str, Any]:
        if self._refresh is None and self.stores.popularity.backend != "memory":
            self._refresh = asyncio.create_task(self._refresh_popularity())
        return await self.live.recommend(to_request(body), rank=self._score)

    @app.post("/events", response_model=EventResponse, responses=EVENT_ERRORS)
    def events(self, body: EventRequest) -> dict[str, Any]:
        return handle_event(self.live, body)

    @app.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return health(self.live) | ({"refused": self.refused} if self.refused else {})

    def _authorize(self, authorization: str | None) -> None:
        if not self.admin_token:
            raise HTTPException(404, detail="Not Found")  # off: as if the route did not exist
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.admin_token.encode()):
            raise HTTPException(401, detail="unauthorized")

    @app.post("/admin/promote", response_model=PromotionResponse, responses=ADMIN_ERRORS)
    async def promote(self, body: PromoteRequest,
                      authorization: str | None = Header(None)) -> dict[str, Any]:
        self._authorize(authorization)
        return await self._promote(body.version)

    @app.post("/admin/rollback", response_model=PromotionResponse, responses=ADMIN_ERRORS)
    async def rollback(self, authorization: str | None = Header(None)) -> dict[str, Any]:
        self._authorize(authorization)
        current = self.live.live.state.version
        try:
            root = await asyncio.to_thread(local_root, self.artifacts, current)
            version = promotion.previous(root, current)
        except promotion.PromotionError as e:
            raise HTTPException(409, detail=str(e)) from None
        except storage.StorageError as e:
            raise HTTPException(503, detail=str(e)) from None
        return await self._promote(version)

    async def _promote(self, version: str, timeout_s: float = 300.0) -> dict[str, Any]:
        """Verify, materialize the online store, record, then switch every replica through
        the app's own Serve config; answers once every replica serves the version."""
        t0 = time.perf_counter()
        current = self.live.live.state.version
        try:
            root = await asyncio.to_thread(local_root, self.artifacts, version)
            bundle = await asyncio.to_thread(promotion.check, root, version)
            await asyncio.to_thread(prepare_stores, bundle, self.stores, self.remote)
            promotion.record(root, version, current)
            if self.remote is not None:  # the history first: LATEST names a recorded one
                for name in (promotion.HISTORY, "LATEST"):
                    await asyncio.to_thread(storage.upload, root / name,
                                            storage.join(self.remote, name))
        except promotion.PromotionError as e:
            raise HTTPException(409, detail=str(e)) from None
        except storage.StorageError as e:  # the artifacts' store: nothing switched, retry
            raise HTTPException(503, detail=str(e)) from None
        await asyncio.to_thread(deploy.set_version, version)
        while self.live.live.state.version != version:
            if self.refused and self.refused["version"] == version:
                raise HTTPException(409, detail=self.refused["reason"])
            if time.perf_counter() - t0 > timeout_s:
                raise HTTPException(504, detail=f"version {version} not served after "
                                    f"{timeout_s:.0f} s; see the replicas' logs")
            await asyncio.sleep(0.05)
        try:  # this replica serves it: now every other one
            await asyncio.to_thread(deploy.wait_updated, timeout_s)
        except TimeoutError as e:
            raise HTTPException(504, detail=str(e)) from None
        return {"version": version, "previous": current,
                "seconds": time.perf_counter() - t0}


def build(args: dict[str, Any]) -> serve.Application:
    """The application of a Serve config (`import_path: serve.app:build`, `args` as in
    serve/deploy.py `AppSpec`). The artifact root must hold a version already: a clear error
    at deploy time rather than in every replica."""
    spec = deploy.AppSpec(**args)
    resolve(local_root(spec.artifacts))
    deployment: Any = Ingress  # `@serve.deployment` made it a Deployment; mypy sees the class
    return deployment.bind(spec.artifacts, spec.stores, spec.admin)


def plain_app(pipeline: Pipeline) -> FastAPI:
    """The same routes around one in-process pipeline, without Ray (for uvicorn)."""
    api = add_page(FastAPIOffline(title="warmstart", description=DESCRIPTION))

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


def app_config(artifacts: str | Path, cfg: ServeConfig | None = None,
               stores: StoresConfig | None = None, replicas: ReplicaConfig | None = None,
               http: HTTPConfig | None = None, admin: AdminConfig | None = None
               ) -> dict[str, Any]:
    """The Serve config for `artifacts` (a root, or a version folder: then its root with that
    version), after the version is verified and the stores prepared in this process."""
    remote = str(artifacts) if storage.is_uri(artifacts) else None
    folder = resolve(local_root(artifacts))
    bundle = load_bundle(folder)  # fail here, with the clear error, not inside a replica
    stores = prepare_stores(bundle, stores or StoresConfig(), remote)
    r = replicas or ReplicaConfig()
    if (r.replicas > 1 or r.autoscaling) and "memory" in (stores.seen.backend,
                                                           stores.popularity.backend):
        log.warning("several replicas with in-process seen filters or popularity: each "
                    "replica sees only the events it took; put the stores on Redis/Valkey "
                    "(--redis)")
    return deploy.serve_config(remote or folder.parent.resolve(), stores, cfg=cfg, replicas=r,
                               http=http, admin=admin, version=bundle.version)


def run_app(artifacts: str | Path, http: HTTPConfig | None = None, cfg: ServeConfig | None = None,
            stores: StoresConfig | None = None, replicas: ReplicaConfig | None = None,
            admin: AdminConfig | None = None) -> str:
    """Deploy on the running Ray, as `serve deploy` would deploy the same config; returns
    the base URL."""
    return deploy.deploy(app_config(artifacts, cfg, stores, replicas, http, admin))
