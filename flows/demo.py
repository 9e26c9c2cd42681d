"""`warmstart demo`: the whole path on one machine, end to end, then shut down.

generate -> train (Ray Train) -> index (FAISS) -> evaluate -> expand a few sparse users'
interests (LLM on Ray Data) -> serve (Ray Serve) -> requests -> a click -> the answer after it
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from flows.evaluate import EvalReport, format_report
from flows.expand import ExpandConfig, expand
from flows.generate import GenerateConfig, generate
from flows.layout import DEMO, EVENTS, ITEMS, USERS, Split, read_interactions
from flows.runtime import start_ray
from flows.train import TrainConfig, train
from interests.artifact import FOLDER, read_results
from interests.backends import LLMConfig, smollm2_gguf
from serve.config import HTTPConfig, StoresConfig
from serve.event_log import EventLogConfig

DEMO_SCALES = ("tiny", "small")  # of flows.generate.SCALES: the ones that run in minutes


@dataclass(frozen=True)
class DemoConfig:
    workdir: Path = DEMO  # the demo's data/ and artifacts/ go here
    scale: str = "small"  # one of DEMO_SCALES
    port: int = HTTPConfig.port
    seed: int = 0
    expand_users: int = 8  # sparse users whose interests the LLM expands
    keep_serving: bool = False  # leave the app (and its page at /) running until Ctrl-C


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def expand_some(data: Path, artifacts: Path, users: int) -> str | None:
    """LLM interests for the first `users` users with one to three clicks; returns one
    expanded user's id, or None when the SmolLM2 wheel is missing (the demo goes on)."""
    try:
        smollm2_gguf()
    except FileNotFoundError as e:
        print(f"[demo]   skipped: {e}", flush=True)
        return None
    train = read_interactions(data, Split().train, ("user_id", "label"))
    n = train[train["label"] == 1].groupby("user_id").size()
    cfg = ExpandConfig(data=data, out=artifacts / FOLDER, llm=LLMConfig(batch_size=4))
    sparse = sorted(n.index[(n >= 1) & (n <= cfg.max_history)])[:users]
    cfg = replace(cfg, user_ids=tuple(sparse))
    s = expand(cfg)
    out = read_results(cfg.out)
    print(f"[demo]   {s['users']} users: {s['status']['expanded']} expanded; JSON valid "
          f"{s['json_valid_rate']:.0%}, topics surviving grounding {s['topic_survival']:.0%}",
          flush=True)
    for r in out.head(3).itertuples():
        print(f"[demo]     {r.user_id}: {list(r.topics)} -> kept {list(r.kept)} ({r.status})")
    expanded = out.loc[out["status"] == "expanded", "user_id"]
    return str(expanded.iloc[0]) if len(expanded) else None


def demo(cfg: DemoConfig) -> dict[str, Any]:
    from ray import serve

    if cfg.scale not in DEMO_SCALES:
        raise ValueError(f"the demo runs at scale {' or '.join(DEMO_SCALES)}, not {cfg.scale!r}")
    t0 = time.perf_counter()
    data, artifacts = cfg.workdir / "data", cfg.workdir / "artifacts"
    with start_ray():
        generate_data(cfg, data)  # 1
        train_and_evaluate(data, artifacts)  # 2
        print("[demo] 3/5 expand sparse users' interests with the LLM", flush=True)
        sparse_user = expand_some(data, artifacts, users=cfg.expand_users)
        url = serve_app(cfg, artifacts)  # 4
        answers = requests(url, data, sparse_user)  # 5
        print(f"[demo] the demo page: {url}/ (API docs: {url}/docs)", flush=True)
        if cfg.keep_serving:
            print("[demo] serving until Ctrl-C", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        serve.delete("warmstart")
    print(f"[demo] done in {time.perf_counter() - t0:.0f} s; data in {data}, models in "
          f"{artifacts}")
    return {"answers": answers, "seconds": time.perf_counter() - t0}


def generate_data(cfg: DemoConfig, data: Path) -> None:
    print(f"[demo] 1/5 generate ({cfg.scale})", flush=True)
    # The demo owns its workdir: a rerun replaces the previous run's data.
    stats = generate(GenerateConfig(out=data, scale=cfg.scale, seed=cfg.seed, overwrite=True))
    print(f"[demo]   {int(stats['impressions']):,} impressions, {int(stats['users']):,} "
          f"users, {int(stats['items']):,} items in {stats['seconds']:.1f} s", flush=True)


def train_and_evaluate(data: Path, artifacts: Path) -> None:
    print("[demo] 2/5 train, index and evaluate", flush=True)
    folder = train(TrainConfig(data=data, artifacts=artifacts))
    manifest = json.loads((folder / "manifest.json").read_text())
    print(format_report(EvalReport.from_dict(manifest["metrics"]["evaluation"])), flush=True)


def serve_app(cfg: DemoConfig, artifacts: Path) -> str:
    from serve.deploy import run_app

    print("[demo] 4/5 serve", flush=True)
    stores = StoresConfig(events=EventLogConfig(path=cfg.workdir / EVENTS))
    url = run_app(artifacts, HTTPConfig(port=cfg.port), stores=stores)
    print(f"[demo]   {url}/healthz -> "
          f"{urllib.request.urlopen(url + '/healthz', timeout=30).read().decode()}")
    return url


def requests(url: str, data: Path, sparse_user: str | None) -> list[dict[str, Any]]:
    """5. A known user on two devices, a stranger and an expanded user; then a click, the
    answer after it, and the same user with diversity sampling."""
    print("[demo] 5/5 requests", flush=True)
    known = str(pd.read_parquet(data / USERS)["user_id"].iloc[0])
    catalog = pd.read_parquet(data / ITEMS).set_index("item_id")
    bodies = [{"user_id": known, "device": "web", "timestamp": "2026-01-19T09:30:00", "k": 5},
              {"user_id": known, "device": "ios", "timestamp": "2026-01-19T21:30:00", "k": 5},
              {"user_id": "someone-new", "device": "android", "k": 5}]
    if sparse_user:
        bodies.append({"user_id": sparse_user, "device": "web", "k": 5})
    answers = [show(url, catalog, body) for body in bodies]
    # A click: the clicked item leaves the answer and the user's interests shift to its
    # category, from the very next request.
    clicked = answers[0]["items"][0]["item_id"]
    t_click = time.perf_counter()
    ack = post(url + "/events", {"user_id": known, "item_id": clicked, "event": "click",
                                 "device": "web"})
    print(f"[demo]   POST /events click {clicked} ({catalog.loc[clicked, 'category']}) -> "
          f"logged as {ack['id']}", flush=True)
    answers.append(show(url, catalog, bodies[0]))
    after = [i["item_id"] for i in answers[-1]["items"]]
    print(f"[demo]   event to changed answer: {1000 * (time.perf_counter() - t_click):.0f} "
          f"ms; {clicked} is {'still there' if clicked in after else 'gone'}", flush=True)
    # Diversity: the same user, sampled from the ranked candidates instead of the top 5.
    answers.append(show(url, catalog, bodies[0] | {"diversity": 0.5}))
    return answers


def show(url: str, catalog: pd.DataFrame, body: dict[str, Any]) -> dict[str, Any]:
    """POST /recommend, the answer printed with each item's category and style."""
    answer = post(url + "/recommend", body)
    items = ", ".join(f"{i['item_id']} {catalog.loc[i['item_id'], 'category']}/"
                      f"{catalog.loc[i['item_id'], 'style']} ({i['score']:.2f}, {i['source']})"
                      for i in answer["items"])
    print(f"[demo]   {json.dumps(body)}\n[demo]     known_user={answer['known_user']} "
          f"version={answer['model_version']}: {items}", flush=True)
    return answer


def add_args(p: argparse.ArgumentParser) -> None:
    d = DemoConfig()
    p.add_argument("--workdir", type=Path, default=d.workdir,
                   help="folder for the demo's data and artifacts (default %(default)s)")
    p.add_argument("--scale", choices=DEMO_SCALES, default=d.scale)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--keep-serving", action="store_true",
                   help="leave the app running at the end: open its page in a browser")


def config(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(workdir=args.workdir, scale=args.scale, port=args.port, seed=args.seed,
                      keep_serving=args.keep_serving)


def run(args: argparse.Namespace) -> None:
    demo(config(args))


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("demo")
