"""`warmstart serve`: the Ray Serve app (serve/app.py) on a local Ray, until Ctrl-C.

    POST /recommend, GET /healthz, GET /docs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from flows.layout import ARTIFACTS
from serve.config import HTTPConfig


def add_args(p: argparse.ArgumentParser) -> None:
    d = HTTPConfig()
    p.add_argument("--artifacts", type=Path, default=ARTIFACTS,
                   help="artifact root (serves LATEST) or a version folder")
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)


def config(args: argparse.Namespace) -> HTTPConfig:
    return HTTPConfig(host=args.host, port=args.port)


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray
    from serve.app import run_app
    from train.artifacts import resolve, verify

    verify(resolve(args.artifacts))  # a clear error before Ray starts, not after
    with start_ray():
        url = run_app(args.artifacts, config(args))
        print(f"serving {args.artifacts} at {url} (POST /recommend, GET /healthz, /docs); "
              "Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("serve")
