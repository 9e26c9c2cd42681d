"""`warmstart serve`: the Ray Serve app (serve/app.py) on a local Ray, until Ctrl-C.

    POST /recommend, POST /events, GET /healthz, POST /admin/promote, /admin/rollback, /docs

It deploys a Serve config (serve/deploy.py) exactly as `serve deploy` would: built from the
flags, or read from `--config FILE`; `--print-config` prints the one it would deploy. Stores
are embedded by default (Feast on SQLite beside the artifacts, in-process seen filters and
popularity, an fsync'd local event log), with one replica; `--redis URL` puts every one of
them on one Redis/Valkey (Bloom commands used when the server has them), and then replicas
autoscale between 1 and `--max-replicas`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from flows.layout import ARTIFACTS, EVENTS
from flows.runtime import RayConfig
from serve.config import (
    ADMIN_TOKEN_ENV,
    AdminConfig,
    AutoscalingSettings,
    HTTPConfig,
    ReplicaConfig,
    StoresConfig,
)
from serve.event_log import EventLogConfig
from serve.online import BACKENDS as ONLINE_BACKENDS
from serve.online import OnlineConfig
from train.storage import location


@dataclass(frozen=True)
class ServeFlowConfig:
    artifacts: str | Path = ARTIFACTS  # a folder or a URI (s3://...; replicas mirror it)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    replicas: ReplicaConfig = field(default_factory=ReplicaConfig)
    stores: StoresConfig = field(default_factory=lambda: StoresConfig(
        events=EventLogConfig(path=EVENTS)))
    admin: AdminConfig = field(default_factory=AdminConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    config_file: Path | None = None  # a Serve config to deploy as it is


def add_args(p: argparse.ArgumentParser) -> None:
    d, r, a = HTTPConfig(), ReplicaConfig(), AutoscalingSettings()
    p.add_argument("--artifacts", type=location, default=ARTIFACTS,
                   help="artifact root (serves LATEST) or a version folder; a URI "
                        "(s3://bucket/artifacts) is read by every replica wherever it runs")
    p.add_argument("--host", default=d.host,
                   help="where to listen (default %(default)s: this machine only; 0.0.0.0 "
                        "opens it to the network)")
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--replicas", type=int, default=r.replicas,
                   help="ingress replicas, fixed (embedded stores: 1)")
    p.add_argument("--max-replicas", type=int, default=None,
                   help="autoscale between 1 and this many replicas (default with --redis: "
                        f"{a.max_replicas}; embedded stores do not autoscale)")
    p.add_argument("--cpus", type=float, default=r.num_cpus, help="logical CPUs per replica")
    p.add_argument("--redis", default=None, metavar="URL",
                   help="put the online store, seen filters, popularity, recent items and the "
                        "event log on this Redis/Valkey (redis://host:port/db); embedded "
                        "stores when absent")
    p.add_argument("--online", choices=ONLINE_BACKENDS, default=OnlineConfig.backend,
                   help="online user features: feast (default) or memory (the version's "
                        "arrays, no store)")
    p.add_argument("--events", type=Path, default=EVENTS,
                   help="the local event log, when not on Redis (default %(default)s)")
    p.add_argument("--admin-token", default=None,
                   help=f"bearer token of the admin routes (else ${ADMIN_TOKEN_ENV}; neither: "
                        "admin routes off)")
    p.add_argument("--haproxy-stats-port", type=int, default=d.haproxy_stats_port,
                   help="HAProxy's stats page (fast mode; default: a free port)")
    p.add_argument("--haproxy-metrics-port", type=int, default=d.haproxy_metrics_port,
                   help="HAProxy's metrics exporter (fast mode; default: a free port)")
    p.add_argument("--metrics-port", type=int, default=RayConfig.metrics_export_port,
                   help="Ray's Prometheus endpoint with the app's metrics (default: Ray's "
                        "choice)")
    p.add_argument("--config", type=Path, default=None,
                   help="deploy this Serve config (YAML, as --print-config writes) instead of "
                        "one built from the flags")
    p.add_argument("--print-config", action="store_true",
                   help="print the Serve config these flags give, and exit")


def config(args: argparse.Namespace) -> ServeFlowConfig:
    local = StoresConfig(online=OnlineConfig(backend=args.online),
                         events=EventLogConfig(path=args.events))
    stores = StoresConfig.redis(args.redis) if args.redis else local
    stores = replace(stores, online=replace(stores.online, backend=args.online))
    most = args.max_replicas or (AutoscalingSettings.max_replicas if args.redis else None)
    replicas = ReplicaConfig(replicas=args.replicas, num_cpus=args.cpus,
                             autoscaling=AutoscalingSettings(max_replicas=most) if most
                             else None)
    http = HTTPConfig(host=args.host, port=args.port,
                      haproxy_stats_port=args.haproxy_stats_port,
                      haproxy_metrics_port=args.haproxy_metrics_port)
    return ServeFlowConfig(
        artifacts=args.artifacts, http=http, replicas=replicas, stores=stores,
        admin=AdminConfig(token=args.admin_token), config_file=args.config,
        ray=RayConfig(haproxy_stats_port=http.haproxy_stats_port,
                      haproxy_metrics_port=http.haproxy_metrics_port,
                      metrics_export_port=args.metrics_port))


def printed_config(cfg: ServeFlowConfig) -> str:
    """The Serve config of `cfg` as YAML, without touching the artifacts (LATEST is read
    when the app starts)."""
    from serve.deploy import serve_config, to_yaml

    return to_yaml(serve_config(cfg.artifacts, cfg.stores, replicas=cfg.replicas,
                                http=cfg.http, admin=cfg.admin))


def serve(cfg: ServeFlowConfig) -> str:
    """Deploy on the running Ray; returns the base URL."""
    from serve.deploy import deploy, run_app

    if cfg.config_file is not None:
        document: dict[str, Any] = yaml.safe_load(cfg.config_file.read_text())
        return deploy(document)
    return run_app(cfg.artifacts, cfg.http, stores=cfg.stores, replicas=cfg.replicas,
                   admin=cfg.admin)


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray
    from serve.versions import local_root
    from train.artifacts import resolve, verify

    cfg = config(args)
    if args.print_config:
        sys.stdout.write(printed_config(cfg))
        return
    if cfg.config_file is None:
        verify(resolve(local_root(cfg.artifacts)))  # a clear error before Ray starts, not after
    if cfg.admin.token:  # replicas read it from their environment, never from the config
        os.environ[ADMIN_TOKEN_ENV] = cfg.admin.token
        cfg = replace(cfg, admin=AdminConfig())
    with start_ray(cfg.ray):
        url = serve(cfg)
        print(f"serving {cfg.config_file or cfg.artifacts} at {url} (POST /recommend, POST "
              "/events, GET /healthz, /docs, the demo page at /); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("serve")
