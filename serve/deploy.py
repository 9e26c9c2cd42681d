"""The Serve config: one document that `serve deploy`, `serve run`, `warmstart serve` and a
RayService's `serveConfigV2` all read, and deploying it the way `serve deploy` does.

    serve_config(...)   the config as a dict (Ray Serve's ServeDeploySchema): HTTP options,
                        the application (`import_path: serve.app:build` with its args), and
                        its one deployment: autoscaling, fractional CPUs, max_ongoing_requests,
                        and a `user_config` holding the model version and ServeConfig
    to_yaml(config)     the same as YAML (`warmstart serve --print-config`, serve/config.yaml)
    app_config(...)     the config for an artifact root, after its version is verified and
                        its stores prepared here (serve/versions.py), not in every replica
    deploy(config)      what `serve deploy` does, in process: start Serve with the HTTP
                        options and apply the config declaratively, so that a later change of
                        `user_config` alone is an in-place update (`reconfigure()` on every
                        replica, none restarted); serve/versions.py `switch` makes that change
    run_app(...)        app_config, then deploy

Declarative, not `serve.run`: an application deployed from Python gets a new code version
on every deploy, so each redeploy restarts its replicas; one deployed from a config keeps its
code version while only `user_config` changes (Ray Serve's "lightweight config update").
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from serve.config import (
    APP,
    DEPLOYMENT,
    IMPORT_PATH,
    AdminConfig,
    AutoscalingSettings,
    HTTPConfig,
    ReplicaConfig,
    ServeConfig,
    StoresConfig,
)
from serve.versions import local_root, prepare_stores
from train import storage
from train.artifacts import load_bundle, resolve

log = logging.getLogger(__name__)
# Serve's high-throughput mode (docs/ARCHITECTURE.md, "Ray on two cores"). It must be in the
# environment of every Ray process before Ray starts (flows/runtime.py sets it for a local
# Ray; a RayService sets it on its containers); the app's runtime_env repeats it so that a
# config read alone says which mode it was written for.
FAST_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
HEADER = """\
# The warmstart Serve application, as `warmstart serve --print-config [flags]` writes it
# (serve/config.yaml, the cluster's: `--host 0.0.0.0 --artifacts s3://warmstart/artifacts
# --redis redis://redis:6379/0`, every store on Redis, autoscaling, artifacts on S3).
# `serve deploy` or `serve run` deploy it on a running Ray, `warmstart serve --config` deploys
# the same document, and a RayService can embed it. A change of `user_config` alone (the
# model `version`, the ServeConfig settings) is applied in place by reconfigure(): no replica
# restarts.
# Serve's high-throughput mode needs RAY_SERVE_ENABLE_HA_PROXY=1 and
# RAY_SERVE_THROUGHPUT_OPTIMIZED=1 in the environment of every Ray process before Ray starts.
"""


@dataclass(frozen=True)
class AppSpec:
    """What the application is built from (its `args`): where the versions are, which one
    to serve first, the stores, and the admin token (None: admin routes off, unless the
    replica's environment has WARMSTART_ADMIN_TOKEN)."""

    artifacts: str
    stores: dict[str, Any]
    admin: dict[str, Any]


def user_config(cfg: ServeConfig, version: str | None
                ) -> dict[str, Any]:  # the deployment's user_config: Serve sends a dict
    """The deployment's user_config: ServeConfig's fields and the version to serve (None:
    the artifact root's LATEST)."""
    return {"version": version} | asdict(cfg)


def split_user_config(values: dict[str, Any]) -> tuple[ServeConfig, str | None]:
    values = dict(values)
    version = values.pop("version", None)
    return ServeConfig(**values), version


def deployment_config(replicas: ReplicaConfig, cfg: ServeConfig, version: str | None
                      ) -> dict[str, Any]:  # one deployment of Ray Serve's schema
    out: dict[str, Any] = {
        "name": DEPLOYMENT,
        "max_ongoing_requests": replicas.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": replicas.num_cpus},
        "user_config": user_config(cfg, version),
    }
    a: AutoscalingSettings | None = replicas.autoscaling
    if a is None:
        out["num_replicas"] = replicas.replicas
    else:
        out["autoscaling_config"] = {k: v for k, v in asdict(a).items() if v is not None}
    return out


def serve_config(artifacts: Path | str, stores: StoresConfig, *,
                 cfg: ServeConfig | None = None, replicas: ReplicaConfig | None = None,
                 http: HTTPConfig | None = None, admin: AdminConfig | None = None,
                 version: str | None = None
                 ) -> dict[str, Any]:  # Ray Serve's ServeDeploySchema, as a document
    """The Serve config of the app (a dict in Ray Serve's ServeDeploySchema)."""
    http = http or HTTPConfig()
    spec = AppSpec(artifacts=str(artifacts), stores=_plain(asdict(stores)),
                   admin=_plain(asdict(admin or AdminConfig())))
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": http.host, "port": http.port},
        "applications": [{
            "name": APP,
            "route_prefix": "/",
            "import_path": IMPORT_PATH,
            "args": asdict(spec),
            "runtime_env": {"env_vars": dict(FAST_ENV)},
            "deployments": [deployment_config(replicas or ReplicaConfig(),
                                              cfg or ServeConfig(), version)],
        }],
    }


def _plain(value: Any) -> Any:
    """Paths as strings, tuples as lists: what YAML and JSON hold."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def to_yaml(config: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(config, sort_keys=False)


def deploy(config: dict[str, Any], timeout_s: float = 300.0) -> str:
    """Apply `config` on the running Ray as `serve deploy` does, wait until the app runs,
    and return its base URL."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    client = serve_start(http_options=config["http_options"])
    client.deploy_apps(ServeDeploySchema.model_validate(config))
    wait_running(timeout_s)
    http = config["http_options"]
    return f"http://{http['host']}:{http['port']}"


def wait_running(timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(APP)
        state = str(status.status) if status else "NOT_STARTED"
        if state.endswith("RUNNING"):
            return
        if state.endswith(("DEPLOY_FAILED", "UNHEALTHY")) or time.monotonic() > deadline:
            message = status.message if status else "no such application"
            raise RuntimeError(f"the {APP} app did not start: {state}: {message}")
        time.sleep(0.5)


def app_config(artifacts: str | Path, cfg: ServeConfig | None = None,
               stores: StoresConfig | None = None, replicas: ReplicaConfig | None = None,
               http: HTTPConfig | None = None, admin: AdminConfig | None = None
               ) -> dict[str, Any]:  # Ray Serve's ServeDeploySchema, as a document
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
    return serve_config(remote or folder.parent.resolve(), stores, cfg=cfg, replicas=r,
                        http=http, admin=admin, version=bundle.version)


def run_app(artifacts: str | Path, http: HTTPConfig | None = None, cfg: ServeConfig | None = None,
            stores: StoresConfig | None = None, replicas: ReplicaConfig | None = None,
            admin: AdminConfig | None = None) -> str:
    """Deploy on the running Ray, as `serve deploy` would deploy the same config; returns
    the base URL."""
    return deploy(app_config(artifacts, cfg, stores, replicas, http, admin))
