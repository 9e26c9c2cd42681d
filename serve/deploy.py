"""The Serve config: one document that `serve deploy`, `serve run`, `warmstart serve` and a
RayService's `serveConfigV2` all read, and deploying it the way `serve deploy` does.

    serve_config(...)   the config as a dict (Ray Serve's ServeDeploySchema): HTTP options,
                        the application (`import_path: serve.app:build` with its args), and
                        its one deployment: autoscaling, fractional CPUs, max_ongoing_requests,
                        and a `user_config` holding the model version and ServeConfig
    to_yaml(config)     the same as YAML (`warmstart serve --print-config`, serve/config.yaml)
    deploy(config)      what `serve deploy` does, in process: start Serve with the HTTP
                        options and apply the config declaratively, so that a later change of
                        `user_config` alone is an in-place update (`reconfigure()` on every
                        replica, none restarted)
    set_version(v)      the running app's config with another model version: a promotion

Declarative, not `serve.run`: an application deployed from Python gets a new code version
on every deploy, so each redeploy restarts its replicas; one deployed from a config keeps its
code version while only `user_config` changes (Ray Serve's "lightweight config update").
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from serve.config import (
    AdminConfig,
    AutoscalingSettings,
    HTTPConfig,
    ReplicaConfig,
    ServeConfig,
    StoresConfig,
)

APP = "warmstart"
DEPLOYMENT = "Ingress"
IMPORT_PATH = "serve.app:build"
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


def user_config(cfg: ServeConfig, version: str | None) -> dict[str, Any]:
    """The deployment's user_config: ServeConfig's fields and the version to serve (None:
    the artifact root's LATEST)."""
    return {"version": version} | asdict(cfg)


def split_user_config(values: dict[str, Any]) -> tuple[ServeConfig, str | None]:
    values = dict(values)
    version = values.pop("version", None)
    return ServeConfig(**values), version


def deployment_config(replicas: ReplicaConfig, cfg: ServeConfig, version: str | None
                      ) -> dict[str, Any]:
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
                 version: str | None = None) -> dict[str, Any]:
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


def wait_updated(timeout_s: float = 300.0) -> None:
    """Until every replica of the ingress runs the config last applied (Serve reports the
    deployment HEALTHY once no replica is left on an older one)."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(APP)
        dep = app.deployments.get(DEPLOYMENT) if app else None
        state = str(dep.status) if dep else "missing"
        if state.endswith("HEALTHY") and not state.endswith("UNHEALTHY"):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {DEPLOYMENT} replicas are still {state} after "
                               f"{timeout_s:.0f} s: {dep.message if dep else ''}")
        time.sleep(0.05)


def deployed_config() -> dict[str, Any]:
    """The config the running app was deployed with (the one `deploy` applied)."""
    from ray.serve._private.api import serve_start

    details = serve_start().get_serve_details()
    app = details["applications"].get(APP)
    if not app or not app.get("deployed_app_config"):
        raise RuntimeError(f"no {APP} app deployed from a config is running; start it with "
                           "`warmstart serve`")
    return {"proxy_location": details.get("proxy_location") or "HeadOnly",
            "http_options": {k: details["http_options"][k] for k in ("host", "port")},
            "applications": [app["deployed_app_config"]]}


def set_version(version: str) -> dict[str, Any]:
    """Redeploy the running app's own config with `version` in its user_config: every
    replica's reconfigure() loads it and swaps it in; returns the config applied."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    config = deployed_config()
    (dep,) = [d for d in config["applications"][0]["deployments"] if d["name"] == DEPLOYMENT]
    dep["user_config"] = dict(dep.get("user_config") or {}) | {"version": version}
    serve_start().deploy_apps(ServeDeploySchema.model_validate(config))
    return config
