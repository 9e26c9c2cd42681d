"""`warmstart promote VERSION`: make a published version the one that serves.

    with --url   the running app does it (POST /admin/promote, bearer token): verifies the
                 version, materializes its online store, records it, and switches every
                 replica through its Serve config (reconfigure(), no restart); the answer
                 comes once the version serves
    without      the same here for the next start: verified, online store materialized,
                 LATEST and the promotion history (serve/versions.py) written

A version that fails verification is refused with the reason, and nothing changes.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.layout import ARTIFACTS
from serve.config import ADMIN_TOKEN_ENV, StoresConfig
from train.storage import location


@dataclass(frozen=True)
class PromoteConfig:
    version: str | None = None  # None: the rollback's, the version before the current one
    artifacts: Path = ARTIFACTS
    url: str | None = None  # the running app's base URL
    token: str | None = None  # its admin token (else $WARMSTART_ADMIN_TOKEN)
    redis: str | None = None  # the online store is on this Redis/Valkey (else SQLite)
    timeout_s: float = 300.0


# A URI artifact root is mirrored locally and uploaded after (train/storage.py).
LOCATIONS = {"artifacts": "write"}


def add_common(p: argparse.ArgumentParser) -> None:
    d = PromoteConfig()
    p.add_argument("--artifacts", type=location, default=d.artifacts,
                   help="the artifact root (a folder or a URI)")
    p.add_argument("--url", default=None,
                   help="the running app (http://127.0.0.1:8000): switch it now; without, "
                        "LATEST changes for the next start")
    p.add_argument("--token", default=None,
                   help=f"the app's admin token (default ${ADMIN_TOKEN_ENV})")
    p.add_argument("--redis", default=None, metavar="URL",
                   help="the online store is on this Redis/Valkey (without --url)")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("version", help="a version folder's name under --artifacts")
    add_common(p)


def config(args: argparse.Namespace) -> PromoteConfig:
    return PromoteConfig(version=getattr(args, "version", None), artifacts=args.artifacts,
                         url=args.url, token=args.token or os.environ.get(ADMIN_TOKEN_ENV),
                         redis=args.redis)


def promote(cfg: PromoteConfig) -> dict[str, Any]:
    """Switch to `cfg.version` (None: the one before the current); returns what was done."""
    if cfg.url:
        return _remote(cfg)
    from serve.versions import previous, stage
    from train.artifacts import resolve

    root = cfg.artifacts
    current = resolve(root).name if (root / "LATEST").exists() else None
    version = cfg.version or previous(root, current or "")
    stage(root, version, StoresConfig.redis(cfg.redis) if cfg.redis else StoresConfig(),
          current)
    return {"version": version, "previous": current, "where": f"{root}/LATEST"}


def _remote(cfg: PromoteConfig) -> dict[str, Any]:
    import httpx

    if not cfg.token:
        raise ValueError(f"--url needs the app's admin token: pass --token or set "
                         f"${ADMIN_TOKEN_ENV}")
    route = "/admin/promote" if cfg.version else "/admin/rollback"
    body = {"version": cfg.version} if cfg.version else None
    r = httpx.post(f"{cfg.url.rstrip('/')}{route}", json=body, timeout=cfg.timeout_s,
                   headers={"Authorization": f"Bearer {cfg.token}"})
    if r.status_code != 200:
        detail = r.json().get("detail", r.text) if r.headers.get(
            "content-type", "").startswith("application/json") else r.text
        raise ValueError(f"{cfg.url}{route} answered {r.status_code}: {detail}")
    return dict(r.json()) | {"where": cfg.url}


def run(args: argparse.Namespace) -> None:
    out = promote(config(args))
    print(f"{out['where']}: serving {out['version']} (was {out['previous']})"
          + (f" after {out['seconds']:.1f} s" if "seconds" in out else ""))


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("promote")
