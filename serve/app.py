"""The Ray Serve application: one ingress deployment with the whole path in-process.

    POST /recommend   {user_id, device?, timestamp?, k?} -> ranked items, scores, version
    GET  /healthz     model version and catalog size
    GET  /docs        OpenAPI docs (FastAPI)

A malformed request is answered 422 with FastAPI's description of what is wrong.
"""


import datetime as dt
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from serve.config import HTTPConfig, ServeConfig
from serve.recommender import Recommender, request_context
from train.artifacts import load_bundle

log = logging.getLogger(__name__)

app = FastAPI(
    title="warmstart",
    description="Recommendations for known and brand-new users: Two-Tower retrieval, "
                "DLRM ranking with request context.",
)


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256, description="any id; unknown ids get "
                         "a cold-start answer")
    device: str | None = Field(None, max_length=64, description="web, ios or android; "
                               "anything else is treated as an unknown device")
    timestamp: dt.datetime | None = Field(None, description="ISO 8601 or unix seconds; "
                                          "server time when absent")
    k: int = Field(ServeConfig.default_k, ge=1, le=ServeConfig.max_k,
                   description="number of items to return")


class ScoredItem(BaseModel):
    item_id: str
    score: float
    source: str


class RecommendResponse(BaseModel):
    user_id: str
    known_user: bool
    device: str | None
    model_version: str
    items: list[ScoredItem]


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=100,  # the default of 5 collapses throughput under concurrency
)
@serve.ingress(app)
class Ingress:
    def __init__(self, artifacts: str) -> None:
        bundle = load_bundle(Path(artifacts))
        self.recommender = Recommender(bundle)
        log.info("serving version %s from %s", bundle.version, bundle.path)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.recommender.cfg = ServeConfig(**user_config)

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(self, req: RecommendRequest) -> dict[str, Any]:
        ctx = request_context(req.device, req.timestamp)
        return self.recommender.recommend(req.user_id, ctx, req.k)

    @app.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        b = self.recommender.bundle
        return {"status": "ok", "model_version": b.version, "items": len(b.items)}


def build_app(artifacts: Path, cfg: ServeConfig | None = None) -> serve.Application:
    """The bound application; the artifact folder is verified before anything is deployed."""
    load_bundle(artifacts)  # fail here, with the clear error, not inside a replica
    user_config = asdict(cfg or ServeConfig())
    # `@serve.deployment` turned the class into a Deployment; mypy still sees the class.
    deployment: Any = Ingress
    return deployment.options(user_config=user_config).bind(str(artifacts.resolve()))


def run_app(artifacts: Path, http: HTTPConfig | None = None,
            cfg: ServeConfig | None = None) -> str:
    """Deploy on the running Ray; returns the base URL."""
    http = http or HTTPConfig()
    application = build_app(artifacts, cfg)
    serve.start(http_options={"host": http.host, "port": http.port})
    serve.run(application, name="warmstart", route_prefix="/", blocking=False)
    return f"http://{http.host}:{http.port}"
