"""`warmstart serve`: the Ray Serve app (serve/app.py) on a local Ray, until Ctrl-C.

    POST /recommend, POST /events, GET /healthz, GET /docs

Stores are embedded by default (Feast on SQLite beside the artifacts, in-process seen
filters and popularity, an fsync'd local event log); `--redis URL` puts every one of them on
one Redis/Valkey (Bloom commands used when the server has them).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from flows.layout import ARTIFACTS, EVENTS
from serve.config import HTTPConfig, ReplicaConfig, StoresConfig
from serve.event_log import EventLogConfig
from serve.online import BACKENDS as ONLINE_BACKENDS
from serve.online import OnlineConfig


@dataclass(frozen=True)
class ServeFlowConfig:
    http: HTTPConfig = field(default_factory=HTTPConfig)
    replicas: ReplicaConfig = field(default_factory=ReplicaConfig)
    stores: StoresConfig = field(default_factory=lambda: StoresConfig(
        events=EventLogConfig(path=EVENTS)))


def add_args(p: argparse.ArgumentParser) -> None:
    d = HTTPConfig()
    p.add_argument("--artifacts", type=Path, default=ARTIFACTS,
                   help="artifact root (serves LATEST) or a version folder")
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    r = ReplicaConfig()
    p.add_argument("--replicas", type=int, default=r.replicas, help="ingress replicas")
    p.add_argument("--cpus", type=float, default=r.num_cpus, help="logical CPUs per replica")
    p.add_argument("--redis", default=None, metavar="URL",
                   help="put the online store, seen filters, popularity and the event log on "
                        "this Redis/Valkey (redis://host:port/db); embedded stores when absent")
    p.add_argument("--online", choices=ONLINE_BACKENDS, default=OnlineConfig.backend,
                   help="online user features: feast (default) or memory (the version's "
                        "arrays, no store)")
    p.add_argument("--events", type=Path, default=EVENTS,
                   help="the local event log, when not on Redis (default %(default)s)")


def config(args: argparse.Namespace) -> ServeFlowConfig:
    local = StoresConfig(online=OnlineConfig(backend=args.online),
                         events=EventLogConfig(path=args.events))
    stores = StoresConfig.redis(args.redis) if args.redis else local
    stores = replace(stores, online=replace(stores.online, backend=args.online))
    return ServeFlowConfig(http=HTTPConfig(host=args.host, port=args.port),
                           replicas=ReplicaConfig(replicas=args.replicas, num_cpus=args.cpus),
                           stores=stores)


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray
    from serve.app import run_app
    from train.artifacts import resolve, verify

    verify(resolve(args.artifacts))  # a clear error before Ray starts, not after
    cfg = config(args)
    with start_ray():
        url = run_app(args.artifacts, cfg.http, stores=cfg.stores, replicas=cfg.replicas)
        print(f"serving {args.artifacts} at {url} (POST /recommend, POST /events, "
              "GET /healthz, /docs); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("serve")
