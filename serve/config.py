"""Serving settings, typed and in one place. `ServeConfig` reaches every replica through
Serve's `user_config` (and `reconfigure()`); `HTTPConfig` is where the app listens;
`StoresConfig` says which backend each store uses (embedded defaults, or Redis/Valkey) and is
fixed for a replica's life. The request schema in serve/app.py takes its default and bounds for
`k` from here; a request without `diversity` gets this one's."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from serve.event_log import EventLogConfig
from serve.events import ActivityConfig
from serve.online import OnlineConfig
from serve.popularity import PopularityConfig
from serve.recent import RecentConfig
from serve.seen import SeenConfig

# The Serve application, its one deployment (the ingress) and where Serve imports it from.
APP = "warmstart"
DEPLOYMENT = "Ingress"
IMPORT_PATH = "serve.app:build"


@dataclass(frozen=True)
class ServeConfig:
    retrieval_k: int = 200  # candidates fetched from FAISS before ranking
    default_k: int = 10  # items answered when a request does not say
    max_k: int = 100  # the most a request may ask for
    item_item_k: int = 150  # candidates from the user's items (item-item), when they have any
    interest_k: int = 50  # candidates from a cold user's interest vector
    popular_k: int = 100  # popularity candidates in the request's context
    demographic_k: int = 50  # popularity candidates in the user's age bucket and gender
    # Share of the top-k kept for interest candidates: the DLRM knows little of a cold user
    # and would otherwise rank popular two-tower items above everything the LLM found.
    interest_share: float = 0.5
    # The `diversity` of a request that does not say (0: top k by score; d > 0: the top k
    # re-ranked to cover the user's categories in proportion to their shares, serve/sampling.py).
    # The largest setting of `warmstart evaluate`'s curve that costs at most 5% of NDCG@10, on
    # `small` (1,000 test users, 2026-12-07): 0.2 keeps 96.8% of NDCG@10 (0.2415 of 0.2496) and
    # shows 3.65 categories per top 10 instead of 2.06; 0.25 would keep 94.7% (4.10). A top 100
    # pays too: recall@100 0.679 instead of 0.697 on 1,000 users.
    diversity: float = 0.2
    # Ranking batched across concurrent requests (@serve.batch in the Serve ingress).
    max_batch_size: int = 16
    batch_wait_s: float = 0.0  # 0: run as soon as one request waits; concurrency fills batches
    torch_threads: int = 1  # per replica: more threads contend with concurrent requests

    def __post_init__(self) -> None:
        if not 1 <= self.default_k <= self.max_k:
            raise ValueError(f"default_k must be within 1..max_k, got {self.default_k} "
                             f"with max_k {self.max_k}")
        if not 0.0 <= self.interest_share <= 1.0:
            raise ValueError(f"interest_share must be in [0, 1], got {self.interest_share}")
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], got {self.diversity}")
        if self.max_batch_size < 1 or self.batch_wait_s < 0 or self.torch_threads < 1:
            raise ValueError("max_batch_size and torch_threads must be >= 1 and batch_wait_s "
                             f">= 0, got {self.max_batch_size}, {self.torch_threads}, "
                             f"{self.batch_wait_s}")


@dataclass(frozen=True)
class StoresConfig:
    """Where the online features, seen-items filters, popularity and events live. The
    defaults are embedded (SQLite through Feast, in-process filters and counters, an fsync'd
    local event log); `redis(url)` points every networked part at one Redis/Valkey."""

    online: OnlineConfig = field(default_factory=OnlineConfig)
    seen: SeenConfig = field(default_factory=SeenConfig)
    popularity: PopularityConfig = field(default_factory=PopularityConfig)
    events: EventLogConfig = field(default_factory=EventLogConfig)
    activity: ActivityConfig = field(default_factory=ActivityConfig)
    recent: RecentConfig = field(default_factory=RecentConfig)

    @classmethod
    def redis(cls, url: str, **kw: Any) -> StoresConfig:
        from dataclasses import replace

        d = cls(**kw)
        return cls(online=replace(d.online, store="redis", redis_url=url),
                   seen=replace(d.seen, backend="redis", url=url),
                   popularity=replace(d.popularity, backend="redis", url=url),
                   events=replace(d.events, backend="redis", url=url),
                   activity=d.activity,
                   recent=replace(d.recent, backend="redis", url=url))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StoresConfig:
        """From a user_config-style dict of dicts (the inverse of `dataclasses.asdict`)."""
        parts = {f.name: f for f in fields(cls)}
        if unknown := set(values) - set(parts):
            raise ValueError(f"unknown store sections {sorted(unknown)}; expected "
                             f"{sorted(parts)}")
        made: dict[str, Any] = {}
        for name, value in values.items():
            default = getattr(cls(), name)
            made[name] = type(default)(**value)
        return cls(**made)


@dataclass(frozen=True)
class AutoscalingSettings:
    """Ray Serve's autoscaling_config for the ingress: replicas follow the requests in flight
    per replica. The delays keep a short burst from starting a replica that takes seconds to
    load a version, and a lull from stopping one that is about to be needed again."""

    min_replicas: int = 1
    max_replicas: int = 2  # 2 cores: two 0.5-CPU replicas already saturate them
    initial_replicas: int | None = None
    target_ongoing_requests: float = 32.0  # per replica
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                             f"got {self.min_replicas} and {self.max_replicas}")
        if self.target_ongoing_requests <= 0 or min(self.upscale_delay_s,
                                                    self.downscale_delay_s) < 0:
            raise ValueError("target_ongoing_requests must be > 0 and the delays >= 0")


@dataclass(frozen=True)
class ReplicaConfig:
    """How many ingress replicas, and what each holds: part of the Serve config (a change of
    these is a redeploy), unlike ServeConfig. Fractional CPUs: Ray's default of one CPU per
    replica deadlocks a 2-core machine (docs/ARCHITECTURE.md, "Ray on two cores").
    `autoscaling` set: replicas between its bounds instead of a fixed `replicas`."""

    replicas: int = 1
    num_cpus: float = 0.5
    max_ongoing_requests: int = 100  # the default of 5 collapses throughput under concurrency
    # None: `replicas` fixed. Embedded stores (in-process filters and popularity) belong to
    # one replica, so `warmstart serve` autoscales only with its stores on Redis/Valkey.
    autoscaling: AutoscalingSettings | None = None

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.num_cpus <= 0 or self.max_ongoing_requests < 1:
            raise ValueError(f"replicas and max_ongoing_requests must be >= 1 and num_cpus > 0, "
                             f"got {self.replicas}, {self.max_ongoing_requests}, "
                             f"{self.num_cpus}")


@dataclass(frozen=True)
class HTTPConfig:
    """Where the app listens. Loopback by default: `--host 0.0.0.0` opens it to the network.
    Serve's high-throughput mode also runs HAProxy's stats page and metrics exporter, on all
    interfaces at fixed ports (8404, 9101) unless told otherwise: here each is a free port
    chosen at start (0) or the port given, so two apps share one machine."""

    host: str = "127.0.0.1"
    port: int = 8000
    haproxy_stats_port: int = 0
    haproxy_metrics_port: int = 0


# The environment variable an admin token may come from instead of the config.
ADMIN_TOKEN_ENV = "WARMSTART_ADMIN_TOKEN"


@dataclass(frozen=True)
class AdminConfig:
    """The admin routes (`POST /admin/promote`, `/admin/rollback`): on only with a token,
    from here or from the replica's environment (`WARMSTART_ADMIN_TOKEN`); a request without
    the right `Authorization: Bearer <token>` is a 401 that says nothing more."""

    token: str | None = None
