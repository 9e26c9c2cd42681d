"""Helpers for the serving tests that deploy the app."""

from __future__ import annotations

from pathlib import Path

from serve.config import HTTPConfig, StoresConfig
from train.artifacts import load_bundle


def deploy(artifacts: Path, port: int, stores: StoresConfig) -> str:
    """The app on the running Ray (Serve app "warmstart" at "/"); returns the base URL."""
    from serve.deploy import run_app

    return run_app(artifacts, HTTPConfig(port=port), stores=stores)


def embedded_stores(tmp: Path) -> StoresConfig:
    """The default stores (Feast on SQLite, in-process filter and popularity, a local log),
    kept under `tmp`."""
    from serve.event_log import EventLogConfig
    from serve.online import OnlineConfig

    return StoresConfig(online=OnlineConfig(path=tmp / "online"),
                        events=EventLogConfig(path=tmp / "events.jsonl"))


def known_user(artifacts: Path) -> str:
    """A user the version has in its vocabulary."""
    bundle = load_bundle(artifacts)
    return str(next(u for u in bundle.users.index if u in bundle.features.users))
