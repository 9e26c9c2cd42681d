"""A version's life in serving: found, verified, its stores made ready, recorded, switched to
while traffic flows, and waited for on every replica. The ingress (serve/app.py), the
deploy-time config (serve/deploy.py) and the promote and rollback jobs all go through here.

    local_root(artifacts, v)   the artifact root to load from: itself, or the local mirror of
                               a URI (s3://...) holding what serving reads (`SERVED`)
    check(root, v)             load and verify the version before anything changes: manifest
                               checksums (load_bundle), one index vector per catalog item, the
                               feature schema it was fitted with; PromotionError says why not
    prepare_stores(b, stores)  its online features materialized (Feast keeps one project per
                               version), file stores made absolute, before any replica loads it
    record(root, v, previous)  LATEST points at it, and one line joins `promotions.jsonl`, the
                               history rollback reads (`previous`)
    stage(...)                 the four above, and the record uploaded to a URI root: a
                               version ready to switch to
    open_version(...)          one replica's serving state and stores for a version
    open_pipeline(...)         the same in a pipeline of this process (uvicorn, benchmarks)
    switch(v)                  the running app's Serve config gets the version in its
                               user_config: every replica's reconfigure() loads it and swaps it
                               in with one assignment (serve/pipeline.py `Pipeline.swap`)
    promote(...)               stage, switch, then wait until this replica and every other one
                               serves it (`Promoted`), or say why not

A request that started on the old version finishes on it; a version that fails to load on a
replica leaves that replica on the old one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from interests.artifact import FOLDER as INTERESTS
from serve.config import APP, DEPLOYMENT, ServeConfig, StoresConfig
from serve.online import ONLINE_FOLDER, open_online
from serve.pipeline import Pipeline, Refusal, Stores, open_stores
from serve.state import ServingState, load_state
from train import storage
from train.artifacts import MANIFEST, ArtifactError, Bundle, load_bundle

HISTORY = "promotions.jsonl"  # under the artifact root, beside LATEST
EVENTS_FILE = "events.jsonl"  # the local event log, beside the versions, unless configured
# What a replica reads under the artifact root besides its version folder; a URI root
# (s3://...) is mirrored into each replica's local cache (train/storage.py).
SERVED = ("LATEST", HISTORY, INTERESTS, ONLINE_FOLDER)


class PromotionError(ValueError):
    """A version that cannot be served: the reason, and the old version keeps serving."""


class NotServed(RuntimeError):
    """A version that was switched to and is not served: `refused` when a replica could not
    load it (the reason; that replica keeps the old one), else it took too long."""

    def __init__(self, message: str, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Promoted:
    version: str  # what every replica now serves
    previous: str | None
    seconds: float  # from the request until every replica served it


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


def check(root: Path, version: str) -> Bundle:
    """The verified bundle of `root/version`, or a PromotionError naming what is wrong."""
    folder = root / version
    if not (folder / MANIFEST).exists():
        known = sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}"))[-5:]
        raise PromotionError(f"{folder} is not a published version (no {MANIFEST}); the "
                             f"newest under {root}: {known}")
    try:
        bundle = load_bundle(folder)  # every file against its checksum, tables against schema
    except (ArtifactError, ValueError, OSError) as e:
        raise PromotionError(f"version {version} fails verification: {e}") from None
    if bundle.index.ntotal != len(bundle.items):
        raise PromotionError(f"version {version}: its index holds {bundle.index.ntotal} "
                             f"vectors for {len(bundle.items)} catalog items")
    ids = bundle.items["item_id"].astype(str)
    if ids.duplicated().any():
        raise PromotionError(f"version {version}: item ids repeat in its catalog "
                             f"(e.g. {ids[ids.duplicated()].iloc[0]!r})")
    missing = set(bundle.features.vocab["item"]) - set(ids)
    if missing:
        raise PromotionError(f"version {version}: {len(missing)} items of its vocabulary are "
                             f"not in its catalog (e.g. {sorted(missing)[:3]})")
    return bundle


def prepare_stores(bundle: Bundle, stores: StoresConfig, remote: str | None = None
                   ) -> StoresConfig:
    """Before any replica loads `bundle`: file paths made absolute (replicas run elsewhere),
    and the version materialized into the Feast online store when that store lacks it.
    `remote`: the URI the artifacts came from, whose replicas may run on any node: the stores
    must be networked, and the Feast registry is uploaded beside the versions."""
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


def record(root: Path, version: str, previous: str | None) -> None:
    """LATEST -> `version`, atomically, and one line of history."""
    tmp = root / ".LATEST.tmp"
    tmp.write_text(version)
    os.replace(tmp, root / "LATEST")
    with (root / HISTORY).open("a") as f:
        f.write(json.dumps({"version": version, "previous": previous,
                            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
                + "\n")


def history(root: Path) -> list[dict[str, str | None]]:
    path = root / HISTORY
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def previous(root: Path, current: str) -> str:
    """The version that served before `current` (the last promotion away from it)."""
    for entry in reversed(history(root)):
        if entry["version"] == current and entry["previous"]:
            return str(entry["previous"])
    raise PromotionError(f"no version served before {current} under {root} "
                         f"({HISTORY} has no promotion to it); promote a version by name")


def stage(artifacts: str | Path, version: str, stores: StoresConfig, current: str | None
          ) -> Bundle:
    """`version` made ready to serve: mirrored (a URI root), verified, its stores prepared,
    recorded as LATEST with a history line, and the record uploaded to a URI root (history
    first, so LATEST always names a recorded version). Raises PromotionError when it cannot
    serve and storage.StorageError when the object store cannot be reached: then nothing
    changed."""
    remote = str(artifacts) if storage.is_uri(artifacts) else None
    root = local_root(artifacts, version)
    bundle = check(root, version)
    prepare_stores(bundle, stores, remote)
    record(root, version, current)
    if remote is not None:
        for name in (HISTORY, "LATEST"):
            storage.upload(root / name, storage.join(remote, name))
    return bundle


def open_version(artifacts: str | Path, version: str | None, stores: StoresConfig,
                 keep: Stores | None = None) -> tuple[ServingState, Stores]:
    """The serving state of `version` (None: LATEST) under the artifact root (a folder or a
    URI) and its stores (`keep`: the stores of the version it replaces, see `open_stores`)."""
    root = local_root(artifacts, version)
    state = load_state(root / version if version else root)
    return state, open_stores(state, stores, keep)


def deployed_config() -> dict[str, Any]:  # Ray Serve's ServeDeploySchema, as a document
    """The config the running app was deployed with (the one serve/deploy.py applied)."""
    from ray.serve._private.api import serve_start

    details = serve_start().get_serve_details()
    app = details["applications"].get(APP)
    if not app or not app.get("deployed_app_config"):
        raise RuntimeError(f"no {APP} app deployed from a config is running; start it with "
                           "`warmstart serve`")
    return {"proxy_location": details.get("proxy_location") or "HeadOnly",
            "http_options": {k: details["http_options"][k] for k in ("host", "port")},
            "applications": [app["deployed_app_config"]]}


def switch(version: str) -> None:
    """Redeploy the running app's own config with `version` in its user_config: every
    replica's reconfigure() loads it and swaps it in, none restarts."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    config = deployed_config()
    (dep,) = [d for d in config["applications"][0]["deployments"] if d["name"] == DEPLOYMENT]
    dep["user_config"] = dict(dep.get("user_config") or {}) | {"version": version}
    serve_start().deploy_apps(ServeDeploySchema.model_validate(config))


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


async def promote(artifacts: str | Path, version: str, stores: StoresConfig,
                  serving: Callable[[], tuple[str, Refusal | None]], timeout_s: float = 300.0
                  ) -> Promoted:
    """Stage `version`, switch the running app to it, and answer once this replica
    (`serving()`: the version it serves and its last refusal) and every other one serve it.
    Raises PromotionError or storage.StorageError before anything switched, NotServed
    after."""
    t0 = time.perf_counter()
    current, _ = serving()
    await asyncio.to_thread(stage, artifacts, version, stores, current)
    await asyncio.to_thread(switch, version)
    while (now := serving())[0] != version:
        refused = now[1]
        if refused is not None and refused.version == version:
            raise NotServed(refused.reason, refused=True)
        if time.perf_counter() - t0 > timeout_s:
            raise NotServed(f"version {version} not served after {timeout_s:.0f} s; see the "
                            "replicas' logs", refused=False)
        await asyncio.sleep(0.05)
    try:  # this replica serves it: now every other one
        await asyncio.to_thread(wait_updated, timeout_s)
    except TimeoutError as e:
        raise NotServed(str(e), refused=False) from None
    return Promoted(version=version, previous=current, seconds=time.perf_counter() - t0)


def open_pipeline(artifacts: str | Path, cfg: ServeConfig, stores: StoresConfig) -> Pipeline:
    """The LATEST version under `artifacts` in a pipeline of this process (no Ray): for plain
    uvicorn and benchmarks."""
    import torch

    torch.set_num_threads(cfg.torch_threads)
    return Pipeline(*open_version(artifacts, None, stores), cfg)
