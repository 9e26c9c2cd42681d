"""The answers of one version to a fixed sequence of requests and events, written as JSON:
run it from two checkouts on the same version and compare the files to see whether a change
to the request path changed any answer.

    python -m bench.answers --artifacts warmstart-demo/artifacts --out answers.json [--n 1000]

Requests come from a seeded draw over 300 known users and 60 strangers, four devices (one
unknown), three test days and every hour, a quarter of them with diversity 0.5; after every
third request the user views or clicks one of the items answered. Stores are in process
(memory online features, seen filter, popularity; a temporary event log). Prints how many
answers differ from `--compare FILE` and the time spent answering.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from serve.config import StoresConfig
from serve.event_log import EventLogConfig
from serve.online import OnlineConfig
from serve.pipeline import Pipeline, Request, open_stores
from serve.state import load_state


async def answers(p: Pipeline, known: list[str], n: int, seed: int = 0) -> list[list[Any]]:
    """[user, device, time, diversity, [(item, score to 6 places, sources)]] per request,
    drawn over users of `known` (the version's) and strangers."""
    rng = np.random.default_rng(seed)
    users = [known[i] for i in rng.choice(len(known), min(300, len(known)), replace=False)]
    users += [f"new{i}" for i in range(60)]
    rows: list[list[Any]] = []
    for k in range(n):
        user = users[int(rng.integers(len(users)))]
        device = str(rng.choice(["web", "ios", "android", "fridge"]))
        ts = dt.datetime(2026, 1, 12 + int(rng.integers(0, 3)), int(rng.integers(0, 24)), 30)
        diversity = float(rng.choice([0.0, 0.0, 0.0, 0.5]))
        a = await p.recommend(Request(user_id=user, device=device, timestamp=ts, k=10,
                                      diversity=diversity))
        # Before 2026-12-07 (788d130) an answer was a dict: comparing with those checkouts
        items = a["items"] if isinstance(a, dict) else [vars(i) for i in a.items]
        got = [(i["item_id"], round(i["score"], 6), i["source"]) for i in items]
        rows.append([user, device, str(ts), diversity, [list(g) for g in got]])
        if k % 3 == 0 and got:  # a fixed time near now: the event is recorded as sent
            p.event(user, got[int(rng.integers(len(got)))][0], "click" if k % 2 else "view",
                    device, dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=Path, required=True,
                    help="a version folder or an artifact root (LATEST)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--compare", type=Path, default=None, help="answers.json of another run")
    args = ap.parse_args(argv)
    state = load_state(args.artifacts)
    with tempfile.TemporaryDirectory() as tmp:
        stores = open_stores(state, StoresConfig(
            online=OnlineConfig(backend="memory"),
            events=EventLogConfig(path=Path(tmp) / "events.jsonl")))
        t0 = time.perf_counter()
        rows = asyncio.run(answers(Pipeline(state, stores), list(state.users.rows),
                                   args.n))
        seconds = time.perf_counter() - t0
    args.out.write_text(json.dumps(rows))
    print(f"version {state.version}: {len(rows)} answers in {seconds:.2f} s")
    if args.compare:
        other = json.loads(args.compare.read_text())
        pairs = list(zip(rows, other, strict=True))
        lists = sum([i[0] for i in a[4]] == [i[0] for i in b[4]] for a, b in pairs)
        whole = sum(a == b for a, b in pairs)
        print(f"against {args.compare}: item lists equal in {lists} of {len(rows)}, items, "
              f"scores and sources equal in {whole}")


if __name__ == "__main__":
    main()
