"""Starting and stopping the local Ray that every flow runs on.

On a laptop-sized machine Ray's defaults deadlock or crawl (docs/ARCHITECTURE.md, "Ray on two
cores"):
actors asking for whole CPUs starve Ray Data, `/tmp/ray` may be shared with other users, and
Serve is much faster in its throughput-optimized mode. This is the one place those choices
are made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Serve's high-throughput mode (HAProxy ingress, gRPC between replicas): must be in the
# environment of every Ray process, so it is set before Ray starts.
SERVE_FAST_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


@dataclass(frozen=True)
class RayConfig:
    # An existing cluster ("auto", "10.0.0.5:6379", "ray://..."). None: $RAY_ADDRESS when set
    # (`ray job submit` sets it for the job's driver, KubeRay for its pods), else a local Ray
    # is started.
    address: str | None = None
    num_cpus: int | None = None  # logical CPUs of a local Ray; None = physical cores x 2
    fast_serve: bool = True
    temp_dir: str | None = None  # None: a private folder under the system temp dir
    worker_logs: bool = False  # print Ray workers' logs in this terminal
    # Ray starts workers at nice 15, below every other process on the machine. On 2 cores the
    # driver's Ray Data executor and Ray's own daemons then take the workers' CPU: LLM
    # generation in a Ray Data actor ran 15-23% slower than the same call in the driver at 15,
    # and as fast at 0 (bench.expand). Local Ray only; a cluster keeps its own setting.
    worker_niceness: int = 0
    # Serve's HAProxy stats page and metrics exporter (fast mode): 0 picks a free port, so
    # that two apps (a test run, a demo, a served app) share one machine; they listen on all
    # interfaces (Ray's HAProxy template), so give them firewalled ports in production.
    haproxy_stats_port: int = 0
    haproxy_metrics_port: int = 0
    # The port of Ray's Prometheus metrics endpoint on this node (0: Ray picks one), where
    # the app's metrics (serve/metrics.py) are scraped.
    metrics_export_port: int = 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start_ray(cfg: RayConfig | None = None) -> Iterator[None]:
    """Start (or join) Ray for the duration of a `with` block, and shut it down after."""
    import ray

    cfg = cfg or RayConfig()
    if ray.is_initialized():  # nested flows (demo -> train) share the running Ray
        yield
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    # A cluster's processes got their environment (Serve's mode, HAProxy's ports) when they
    # started; only a Ray started here takes it from this process.
    if cfg.fast_serve and not address:
        os.environ.update(SERVE_FAST_ENV)
        # HAProxy's stats and metrics ports default to 8404 and 9101: a second Serve on the
        # machine (another session, a test run beside `warmstart serve`) would find them
        # taken and its proxy would exit at start. The configured ports, else free ones
        # (unless the environment already names them).
        for name, port in (("RAY_SERVE_HAPROXY_STATS_PORT", cfg.haproxy_stats_port),
                           ("RAY_SERVE_HAPROXY_METRICS_PORT", cfg.haproxy_metrics_port)):
            if port:
                os.environ[name] = str(port)
            else:
                os.environ.setdefault(name, str(free_port()))
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "0")
    # Ray Train's V2 API is the default in 2.60; keep logs quiet enough to read progress.
    # The dashboard process also serves the State API that Ray Train's controller polls.
    kwargs: dict = {"include_dashboard": True, "log_to_driver": cfg.worker_logs,
                    "configure_logging": True, "logging_level": logging.WARNING}
    if address:
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, **kwargs)
    else:
        os.environ["RAY_worker_niceness"] = str(cfg.worker_niceness)  # read by the raylet
        ncpu = cfg.num_cpus or 2 * (os.cpu_count() or 1)
        temp = cfg.temp_dir or tempfile.mkdtemp(prefix="warmstart-ray-")
        metrics = {"_metrics_export_port": cfg.metrics_export_port} \
            if cfg.metrics_export_port else {}
        ray.init(num_cpus=ncpu, _temp_dir=temp, **metrics, **kwargs)
    # Ray Data logs a progress table every few seconds at INFO; the flows print their own.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()
