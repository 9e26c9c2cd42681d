"""Serving throughput and latency: the warmstart app beside a no-op Serve ingress.

    python -m bench.serve --artifacts warmstart-demo/artifacts

Both apps run in the same Ray, one after the other, under the same load: a bounded number
of POST requests from 1 and from 16 concurrent clients on this machine. The no-op ingress is
the floor that Ray Serve's HTTP path costs; the difference is what retrieval and ranking add.
The in-process line times `Recommender.recommend` with no HTTP at all.
"""


import argparse
import asyncio
import datetime as dt
import platform
import time
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI
from ray import serve

from bench import report
from flows.layout import DEMO
from flows.runtime import start_ray
from serve.app import run_app
from serve.config import HTTPConfig
from serve.recommender import Context, Recommender
from train.artifacts import load_bundle

noop = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=100)
@serve.ingress(noop)
class NoOp:
    @noop.post("/recommend")
    def recommend(self, body: dict) -> dict:
        return {"items": []}


async def load(url: str, bodies: list[dict], clients: int) -> tuple[float, list[float]]:
    """Send every body once, `clients` at a time; returns (requests/s, latencies in ms)."""
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            r = await client.post(url, json=body)
            r.raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return len(bodies) / wall, latencies


def row(name: str, clients: int, rps: float, lat: list[float]) -> str:
    q = np.percentile(lat, [50, 99])
    return f"  {name:<22}{clients:>8}{rps:>10.0f}{q[0]:>10.1f}{q[1]:>10.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, default=DEMO / "artifacts")
    p.add_argument("--requests", type=int, default=400, help="requests per measurement")
    p.add_argument("--port", type=int, default=8031)
    p.add_argument("--save", action="store_true", help="write the figures to bench/results/")
    args = p.parse_args()
    bundle = load_bundle(args.artifacts)  # a clear error before Ray starts
    rng = np.random.default_rng(0)
    known = bundle.users.index.to_numpy()
    bodies = [{"user_id": str(rng.choice(known)) if rng.random() < 0.8 else f"new-{n}",
               "device": str(rng.choice(["web", "ios", "android"])), "k": 10}
              for n in range(args.requests)]

    rec = Recommender(bundle)
    t0 = time.perf_counter()
    for b in bodies:
        rec.recommend(b["user_id"], Context(b["device"], 12, 2), b["k"])
    in_process_ms = (time.perf_counter() - t0) * 1000 / len(bodies)
    # Users with an LLM interest vector (`warmstart expand` output beside the versions) add a
    # content-index search and more candidates to rank.
    interest_ms = None
    if rec.interests is not None:
        users = sorted(rec.interests.vectors)
        t0 = time.perf_counter()
        for n in range(len(bodies)):
            rec.recommend(users[n % len(users)], Context("web", 12, 2), 10)
        interest_ms = (time.perf_counter() - t0) * 1000 / len(bodies)

    lines = [f"serving, {len(bodies)} requests per row ({dt.date.today()}, {platform.node()}, "
             f"version {bundle.version}, {len(bundle.items):,} items)",
             f"  {'app':<22}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"]
    with start_ray():
        for name in ("no-op ingress", "warmstart /recommend"):
            if name == "no-op ingress":
                serve.start(http_options={"host": "127.0.0.1", "port": args.port})
                serve.run(NoOp.bind(), name="noop", route_prefix="/", blocking=False)
                url = f"http://127.0.0.1:{args.port}/recommend"
            else:
                serve.delete("noop")
                url = run_app(args.artifacts, HTTPConfig(port=args.port)) + "/recommend"
            asyncio.run(load(url, bodies[:20], 1))  # warm-up
            for clients in (1, 16):
                rps, lat = asyncio.run(load(url, bodies, clients))
                lines.append(row(name, clients, rps, lat))
                print(lines[-1], flush=True)
    lines.append(f"  in-process Recommender.recommend, no HTTP: {in_process_ms:.2f} ms a request "
                 f"(mean over {len(bodies)}, one thread)")
    if interest_ms is not None:
        lines.append(f"  in-process, users with an interest vector ({len(rec.interests.vectors)} "
                     f"of them): {interest_ms:.2f} ms a request")
    report(lines, "serve", args.save)

if __name__ == "__main__":
    main()
