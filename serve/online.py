"""Online user features: one user's model-ready columns per request, and the recent activity
that events push.

Two backends behind one interface (`OnlineFeatures`):
    feast    the Feast repository in features/ (SQLite by default, Redis/Valkey when
             configured); `materialize` writes a version's users into it once, with the
             version's fitted transforms applied, so a read is a lookup and nothing else.
    memory   arrays built from the version in-process: for tests and `--online memory`.

Each version is its own Feast project (`warmstart_<version>`), tagged with the version: user
indices change between versions, so `open_online` refuses (or, when asked, re-materializes)
a store that was not materialized from the version being served, and a new version can be
materialized beside the one being served without touching its keys.

What a request reads is the registered FeatureService `SERVICE` (the DLRM's user inputs, a
superset of the query tower's, features/definitions.py). A read costs one entity lookup per
feature view of that service through the online store's `online_read` (Feast's interface
every online store implements, reached through the public `FeatureStore.provider`), which
skips the SDK's request planning: `read="sdk"` takes the SDK's `get_online_features` of the
same service instead, which `python -m bench.online` measured at 3.3x the cost on SQLite and
1.24x on Redis (docs/ARCHITECTURE.md, "Stores"). `import feast` costs seconds and imports
torch, so it happens inside `open_online`/`materialize`, never at import.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from serve.stores import StoreUnavailable, no_retry, redis_errors
from train.features import OOV

log = logging.getLogger(__name__)

BACKENDS = ("feast", "memory")
STORES = ("sqlite", "redis")
READS = ("online_read", "sdk")
ONLINE_FOLDER = "online"  # under the artifact root, beside the versions
PROFILE = ("user", "gender", "age_bucket", "age")  # feature view user_profile
ACTIVITY = ("top_category", "category_shares")  # feature view user_activity
PUSH_SOURCE = "user_activity_push"
SERVICE = "dlrm_v1"  # the FeatureService a request reads: every user feature the path uses
VERSION_TAG = "model_version"
PROBE_TAG = "probe_user"  # a materialized user, read back by open_online


@dataclass(frozen=True)
class OnlineConfig:
    backend: str = "feast"  # feast | memory
    store: str = "sqlite"  # sqlite | redis (Feast's online store)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Registry, SQLite db and offline parquet; None: <artifact root>/online.
    path: Path | None = None
    # What open_online does with a store that lacks the served version: False refuses
    # (materialization belongs to publishing, not to each replica's start), True
    # materializes it there and then.
    materialize: bool = False
    read: str = "online_read"  # online_read (the online store's) | sdk (get_online_features)
    timeout_s: float = 0.25  # Redis connect/command timeout: a dead server degrades, not stalls

    def __post_init__(self) -> None:
        for name, value, allowed in (("backend", self.backend, BACKENDS),
                                     ("store", self.store, STORES),
                                     ("read", self.read, READS)):
            if value not in allowed:
                raise ValueError(f"online {name} must be one of {', '.join(allowed)}, "
                                 f"got {value!r}")
        if isinstance(self.path, str):  # from a user_config dict
            object.__setattr__(self, "path", Path(self.path))
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


@dataclass(frozen=True)
class UserOnline:
    """One user's model-ready columns, as `Features.user_features` gives them."""

    user: int  # vocabulary index, OOV = 0
    gender: int
    age_bucket: int
    age: float  # standardized, 0 where unknown
    top_category: int
    history: np.ndarray  # (C,) float32 share of impressions per category index


class OnlineFeatures(Protocol):
    name: str

    def user(self, user_id: str) -> UserOnline | None:
        """The user's features; None for a user the store does not hold (a cold user)."""
        ...

    def push(self, user_id: str, top_category: int, history: np.ndarray) -> None:
        """Replace the user's recent activity (what the next `user` call returns)."""
        ...


class OnlineVersionError(RuntimeError):
    """The online store was not materialized from the version being served."""


# ----- the version's users as model-ready columns ---------------------------------------------


def user_columns(bundle: Any) -> tuple[list[str], dict[str, np.ndarray]]:
    """Every user of the version (its user table's order) and their model-ready columns,
    computed once with the version's transforms."""
    ids = list(bundle.user_table.rows)
    cols = bundle.features.user_features(np.array(ids, dtype=object), bundle.user_table)
    return ids, cols


def _history(history: np.ndarray, width: int) -> np.ndarray:
    h = np.asarray(history, dtype=np.float32)
    if h.shape != (width,):
        raise ValueError(f"history has shape {h.shape}; this version has {width} categories, "
                         "so pass a ({width},) share per category index")
    return h


def _check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str):
        raise TypeError(f"user ids are strings (the id requests carry), got "
                        f"{type(user_id).__name__}")
    return user_id


class MemoryOnline:
    """The version's users in arrays, and pushed activity in a dict: the same answers as the
    Feast backend without a store."""

    name = "memory"

    def __init__(self, ids: list[str], cols: dict[str, np.ndarray]) -> None:
        self._rows = {u: n for n, u in enumerate(ids)}
        self._cols = cols
        self._width = cols["history"].shape[1]
        self._pushed: dict[str, tuple[int, np.ndarray]] = {}

    @classmethod
    def from_bundle(cls, bundle: Any) -> MemoryOnline:
        return cls(*user_columns(bundle))

    def user(self, user_id: str) -> UserOnline | None:
        row = self._rows.get(_check_user_id(user_id))
        pushed = self._pushed.get(user_id)
        if row is None and pushed is None:
            return None
        c = self._cols
        profile = ((int(c["user"][row]), int(c["gender"][row]), int(c["age_bucket"][row]),
                    float(c["age"][row])) if row is not None else (OOV, OOV, OOV, 0.0))
        top, history = pushed if pushed is not None else (int(c["top_category"][row]),
                                                          c["history"][row])
        return UserOnline(*profile, top_category=top, history=history.copy())

    def push(self, user_id: str, top_category: int, history: np.ndarray) -> None:
        self._pushed[_check_user_id(user_id)] = (int(top_category),
                                                 _history(history, self._width).copy())


# ----- the Feast backend ----------------------------------------------------------------------


def project_name(version: str) -> str:
    """Feast project of a version: project names allow letters, digits and underscores."""
    return "warmstart_" + re.sub(r"[^A-Za-z0-9_]", "_", version)


def folder(cfg: OnlineConfig, bundle: Any) -> Path:
    """Where the registry, the SQLite db and the offline parquet live."""
    return cfg.path if cfg.path is not None else Path(bundle.path).parent / ONLINE_FOLDER


def redis_connection_string(url: str, timeout_s: float) -> str:
    """redis://[:password@]host:port/db -> Feast's "host:port,db=N,..." with short timeouts."""
    u = urlparse(url)
    if u.scheme not in ("redis", "rediss") or not u.hostname:
        raise ValueError(f"redis_url must look like redis://host:port/0, got {url!r}")
    parts = [f"{u.hostname}:{u.port or 6379}", f"db={int(u.path.strip('/') or 0)}",
             f"socket_timeout={timeout_s}", f"socket_connect_timeout={timeout_s}"]
    if u.username:
        parts.append(f"username={unquote(u.username)}")
    if u.password:
        parts.append(f"password={unquote(u.password)}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def online_store_settings(cfg: OnlineConfig, root: Path
                          ) -> dict[str, Any]:  # Feast's `online_store` config section
    """The `online_store` section of the repo config (also what feature_store.yaml gets)."""
    if cfg.store == "redis":
        return {"type": "redis",
                "connection_string": redis_connection_string(cfg.redis_url, cfg.timeout_s)}
    return {"type": "sqlite", "path": str(root / "online.db")}


def environment(cfg: OnlineConfig, version: str, root: Path) -> dict[str, str]:
    """The variables features/feature_store.yaml reads, for the `feast` CLI."""
    import json

    return {"WARMSTART_FEAST_PROJECT": project_name(version),
            "WARMSTART_ONLINE_PATH": str(root),
            # JSON is YAML: the mapping lands in the file as a flow mapping
            "WARMSTART_ONLINE_STORE": json.dumps(online_store_settings(cfg, root))}


def repo_config(cfg: OnlineConfig, version: str, root: Path) -> Any:
    """Feast's RepoConfig for one version: the same store feature_store.yaml describes."""
    from feast.repo_config import RepoConfig

    return RepoConfig(project=project_name(version), registry=str(root / "registry.db"),
                      provider="local", online_store=online_store_settings(cfg, root),
                      offline_store={"type": "file"}, entity_key_serialization_version=3,
                      repo_path=root)


def _feature_store(cfg: OnlineConfig, version: str, root: Path) -> Any:
    from feast import FeatureStore

    root.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(cfg, version, root))


def _store_errors() -> tuple[type[BaseException], ...]:
    return (*redis_errors(), sqlite3.Error)


def _frames(bundle: Any, at: dt.datetime) -> dict[str, pd.DataFrame]:
    """The offline tables of a version: user_profile, user_activity, item_attributes."""
    ids, c = user_columns(bundle)
    profile = pd.DataFrame({"user_id": ids, **{k: c[k] for k in PROFILE}, "event_timestamp": at})
    activity = pd.DataFrame({"user_id": ids, "top_category": c["top_category"],
                             "category_shares": list(c["history"].astype(np.float32)),
                             "event_timestamp": at})
    rows = bundle.item_rows
    items = pd.DataFrame({"item_id": bundle.items["item_id"].astype(str).to_numpy(),
                          **{k: rows[k] for k in ("category", "style", "price_bucket",
                                                  "price")},
                          "event_timestamp": at})
    return {"user_profile": profile, "user_activity": activity, "item_attributes": items}


@dataclass(frozen=True)
class Materialized:
    """One version written to the online store."""

    version: str
    project: str  # its Feast project
    store: str  # sqlite or redis
    users: int
    items: int
    seconds: float


def materialize(bundle: Any, cfg: OnlineConfig) -> Materialized:
    """Write the version's users (model-ready, transforms applied once) to the offline
    parquet and the online store, as the Feast project of that version.

    The project's tags name the version and a probe user only after every row is written, so
    a materialization that stopped half-way is not taken for a complete one.
    """
    from feast import Project

    from features import definitions as d

    start = time.perf_counter()
    root = folder(cfg, bundle)
    store = _feature_store(cfg, bundle.version, root)
    at = dt.datetime.now(dt.UTC)
    frames = _frames(bundle, at)
    for name, frame in frames.items():
        frame.to_parquet(root / f"{name}.parquet", index=False)
    name = project_name(bundle.version)
    try:
        store.apply([Project(name=name, description=f"online features of {bundle.version}"),
                     *d.ENTITIES, *d.SOURCES, *d.FEATURE_VIEWS, *d.FEATURE_SERVICES])
        for view in ("user_profile", "user_activity"):
            store.write_to_online_store(view, frames[view])
        probe = frames["user_profile"]["user_id"].iloc[0] if len(frames["user_profile"]) else ""
        store.apply(Project(name=name, description=f"online features of {bundle.version}",
                            tags={VERSION_TAG: bundle.version, PROBE_TAG: probe}))
    except _store_errors() as e:
        raise StoreUnavailable(f"materializing {bundle.version} into the {cfg.store} online "
                               f"store failed: {e}; check that the store is reachable") from e
    stats = Materialized(version=bundle.version, project=name, store=cfg.store,
                         users=len(frames["user_profile"]),
                         items=len(frames["item_attributes"]),
                         seconds=round(time.perf_counter() - start, 3))
    log.info("materialized online features: %s", stats)
    return stats


class FeastOnline:
    """Reads and pushes through one version's Feast project."""

    name = "feast"

    def __init__(self, store: Any, width: int, read: str = "online_read") -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._store = store
        self._config = store.config
        self._width = width
        self._read = read
        self._key, self._value = EntityKey, Value
        self._online = store.provider.online_store  # the online store's own reads
        if hasattr(self._online, "_get_client"):
            # Redis: fail at once when the server is gone. redis-py retries a failed command
            # (three times with backoff) and Feast's connection string has no setting for
            # it: the client's retry is set on the client Feast made.
            self._online._get_client(self._config.online_store).set_retry(no_retry())
        self._service = store.get_feature_service(SERVICE)
        self._views = [(store.get_feature_view(p.name), tuple(f.name for f in p.features))
                       for p in self._service.feature_view_projections]
        if lacking := set(PROFILE + ACTIVITY) - {f for _, fs in self._views for f in fs}:
            raise OnlineVersionError(f"feature service {SERVICE} of {store.project} lacks "
                                     f"{sorted(lacking)}; materialize the version again")

    def _values(self, user_id: str) -> dict[str, Any]:
        """feature -> python value, only for the views that hold the user."""
        if self._read == "sdk":
            got = self._store.get_online_features(features=self._service,
                                                  entity_rows=[{"user_id": user_id}]).to_dict()
            return {k: v[0] for k, v in got.items() if k != "user_id" and v[0] is not None}
        key = self._key(join_keys=["user_id"], entity_values=[self._value(string_val=user_id)])
        out: dict[str, Any] = {}
        for view, features in self._views:
            # a fresh list each call: Redis's online_read appends its timestamp key to it
            _, values = self._online.online_read(self._config, view, [key], list(features))[0]
            for name, v in (values or {}).items():
                kind = v.WhichOneof("val")
                if kind is not None:
                    out[name] = (list(v.float_list_val.val) if kind == "float_list_val"
                                 else getattr(v, kind))
        return out

    def user(self, user_id: str) -> UserOnline | None:
        _check_user_id(user_id)
        try:
            v = self._values(user_id)
        except _store_errors() as e:
            raise StoreUnavailable(f"online features of {user_id!r}: {e}") from e
        if not v:
            return None
        shares = v.get("category_shares")
        return UserOnline(user=int(v.get("user", OOV)), gender=int(v.get("gender", OOV)),
                          age_bucket=int(v.get("age_bucket", OOV)), age=float(v.get("age", 0.0)),
                          top_category=int(v.get("top_category", OOV)),
                          history=(np.asarray(shares, dtype=np.float32) if shares is not None
                                   else np.zeros(self._width, np.float32)))

    def push(self, user_id: str, top_category: int, history: np.ndarray) -> None:
        from feast.data_source import PushMode

        row = pd.DataFrame({"user_id": [_check_user_id(user_id)],
                            "top_category": [int(top_category)],
                            "category_shares": [_history(history, self._width)],
                            "event_timestamp": [dt.datetime.now(dt.UTC)]})
        try:  # online only: the event log, not the parquet, is the record of events
            self._store.push(PUSH_SOURCE, row, to=PushMode.ONLINE)
        except _store_errors() as e:
            raise StoreUnavailable(f"pushing the activity of {user_id!r}: {e}") from e


def _materialized(store: Any, version: str) -> str | None:
    """Why the store cannot serve `version` (None when it can)."""
    name = project_name(version)
    try:
        projects = {p.name: p for p in store.list_projects(allow_cache=False)}
    except FileNotFoundError:
        projects = {}
    if name not in projects or projects[name].tags.get(VERSION_TAG) != version:
        held = sorted(p.tags.get(VERSION_TAG, f"{n} (incomplete)") for n, p in projects.items())
        return (f"it holds {', '.join(held)}" if held else "it holds no version") + (
            f", not {version}")
    probe = projects[name].tags.get(PROBE_TAG, "")
    online = FeastOnline(store, 0)
    if probe and online.user(probe) is None:
        return (f"its registry lists {version} but the online store has no rows for it "
                "(a flushed or different Redis?)")
    return None


def open_online(cfg: OnlineConfig, bundle: Any) -> OnlineFeatures:
    """The online features of `bundle`'s version, from the configured backend.

    Raises OnlineVersionError when the Feast store was not materialized from this version
    (unless `cfg.materialize`), StoreUnavailable when the store cannot be reached.
    """
    if cfg.backend == "memory":
        return MemoryOnline.from_bundle(bundle)
    root = folder(cfg, bundle)
    store = _feature_store(cfg, bundle.version, root)
    try:
        problem = _materialized(store, bundle.version)
    except _store_errors() as e:
        raise StoreUnavailable(f"the {cfg.store} online store at {root}: {e}") from e
    if problem is not None:
        message = f"the {cfg.store} online store at {root} cannot serve this version: {problem}"
        if not cfg.materialize:
            raise OnlineVersionError(f"{message}; run serve.online.materialize(bundle, cfg) "
                                     "after publishing, or set OnlineConfig(materialize=True)")
        log.warning("%s; materializing %s now", message, bundle.version)
        materialize(bundle, cfg)
        store = _feature_store(cfg, bundle.version, root)
    return FeastOnline(store, bundle.features.cardinalities["history"], cfg.read)
