"""Per-request online feature reads: the Feast SDK's `get_online_features` beside the online
store's own `online_read`, on SQLite and on Redis, for one entity (one request's user).

    python -m bench.online [--users 10000] [--reads 2000] [--artifacts DIR] [--redis-url URL]

Without --artifacts a synthetic version of --users users is built in memory (the read cost
does not depend on how the features were trained). Without --redis-url a private
redis-server is started on a free port for the run. Push latency (an event's activity
update through the push source) is printed beside the reads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from bench.redis_server import redis_server
from serve.online import OnlineConfig, materialize, open_online
from train.features import Features, UserTable


def synthetic_bundle(root: Path, n_users: int, n_categories: int = 20, seed: int = 0) -> Any:
    """A version-like object with `n_users` users who each saw a few items."""
    rng = np.random.default_rng(seed)
    n_items = n_categories * 10
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "category": [f"c{i % n_categories}" for i in range(n_items)],
                          "style": [f"s{i % 7}" for i in range(n_items)],
                          "price": rng.uniform(1, 100, n_items)})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)],
                          "age": rng.uniform(18, 80, n_users),
                          "gender": rng.choice(["f", "m"], n_users)})
    n = n_users * 5
    interactions = pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, n_users, n)],
                                 "item_id": [f"i{i}" for i in rng.integers(0, n_items, n)],
                                 "label": rng.integers(0, 2, n), "device": "web"})
    features = Features.fit(interactions, users, items)
    table = UserTable.build(users.set_index("user_id"), features, interactions, items)
    (root / "bench").mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(version="bench", path=root / "bench", features=features,
                           user_table=table, items=items, item_rows=features.item_table(items))



def timed(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """(median, p99) in ms of `fn(i)` over n calls, after 50 warm-up calls."""
    for i in range(50):
        fn(i)
    ms = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        ms[i] = (time.perf_counter() - t0) * 1000
    return float(np.median(ms)), float(np.percentile(ms, 99))


def run(bundle: Any, cfg: OnlineConfig, reads: int) -> list[tuple[str, float, float]]:
    ids = list(bundle.user_table.rows)
    rng = np.random.default_rng(1)
    order = [ids[i] for i in rng.integers(0, len(ids), reads + 50)]
    stats = materialize(bundle, cfg)
    print(f"  materialized {stats.users} users into {cfg.store} in {stats.seconds:.2f} s")
    rows = []
    for read in ("sdk", "online_read"):
        online = open_online(replace(cfg, read=read), bundle)
        rows.append((f"{cfg.store:6} {read:12} read",
                     *timed(lambda i, o=online: o.user(order[i]), reads)))
    width = bundle.features.cardinalities["history"]
    shares = np.full(width, 1.0 / width, np.float32)
    rows.append((f"{cfg.store:6} push (PushSource)",
                 *timed(lambda i: online.push(order[i], 1, shares), max(reads // 10, 50))))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--reads", type=int, default=2000)
    p.add_argument("--artifacts", type=Path, default=None,
                   help="a version folder or artifact root (default: a synthetic version)")
    p.add_argument("--redis-url", default=None,
                   help="an existing Redis/Valkey (default: a private redis-server)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.artifacts is not None:
            from train.artifacts import load_bundle

            bundle = load_bundle(args.artifacts)
        else:
            bundle = synthetic_bundle(root / "artifacts", args.users)
        print(f"version {bundle.version}: {len(bundle.user_table.rows)} users, "
              f"{bundle.features.cardinalities['history']} categories; {args.reads} reads "
              "of 1 entity each")
        rows = run(bundle, OnlineConfig(path=root / "sqlite"), args.reads)
        if args.redis_url:
            rows += run(bundle, OnlineConfig(store="redis", redis_url=args.redis_url,
                                             path=root / "redis"), args.reads)
        else:
            with redis_server(root) as url:
                rows += run(bundle, OnlineConfig(store="redis", redis_url=url,
                                                 path=root / "redis"), args.reads)
    print(f"\n{'path':34} {'median ms':>10} {'p99 ms':>8}")
    for name, median, p99 in rows:
        print(f"{name:34} {median:10.3f} {p99:8.3f}")


if __name__ == "__main__":
    main()
