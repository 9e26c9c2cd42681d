"""`warmstart demo`: the whole path on one machine, end to end, then shut down.

generate -> train (Ray Train) -> index (FAISS) -> evaluate -> serve (Ray Serve) -> requests
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from flows.evaluate import format_report
from flows.generate import GenerateConfig, generate
from flows.runtime import start_ray
from flows.training import TrainConfig, train


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def demo(workdir: Path, scale: str, port: int, seed: int = 0) -> dict[str, Any]:
    from ray import serve

    from serve.app import run_app

    t0 = time.perf_counter()
    data, artifacts = workdir / "data", workdir / "artifacts"
    with start_ray():
        print(f"[demo] 1/4 generate ({scale})", flush=True)
        # The demo owns its workdir: a rerun replaces the previous run's data.
        stats = generate(GenerateConfig(out=data, scale=scale, seed=seed, overwrite=True))
        print(f"[demo]   {int(stats['impressions']):,} impressions, {int(stats['users']):,} "
              f"users, {int(stats['items']):,} items in {stats['seconds']:.1f} s", flush=True)
        print("[demo] 2/4 train, index and evaluate", flush=True)
        folder = train(TrainConfig(data=data, artifacts=artifacts))
        manifest = json.loads((folder / "manifest.json").read_text())
        print(format_report(manifest["metrics"]["evaluation"]), flush=True)

        print("[demo] 3/4 serve", flush=True)
        url = run_app(artifacts, port=port)
        print(f"[demo]   {url}/healthz -> "
              f"{urllib.request.urlopen(url + '/healthz', timeout=30).read().decode()}")
        print("[demo] 4/4 requests", flush=True)
        import pandas as pd

        known = str(pd.read_parquet(data / "users.parquet")["user_id"].iloc[0])
        catalog = pd.read_parquet(data / "items.parquet").set_index("item_id")
        answers = []
        for body in ({"user_id": known, "device": "web", "timestamp": "2026-01-19T09:30:00",
                      "k": 5},
                     {"user_id": known, "device": "ios", "timestamp": "2026-01-19T21:30:00",
                      "k": 5},
                     {"user_id": "someone-new", "device": "android", "k": 5}):
            answer = post(url + "/recommend", body)
            answers.append(answer)
            items = ", ".join(f"{i['item_id']} {catalog.loc[i['item_id'], 'category']}/"
                              f"{catalog.loc[i['item_id'], 'style']} ({i['score']:.2f})"
                              for i in answer["items"])
            print(f"[demo]   {json.dumps(body)}\n[demo]     known_user={answer['known_user']} "
                  f"version={answer['model_version']}: {items}", flush=True)
        serve.delete("warmstart")
    print(f"[demo] done in {time.perf_counter() - t0:.0f} s; data in {data}, models in "
          f"{artifacts}")
    return {"answers": answers, "seconds": time.perf_counter() - t0}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path, default=Path("warmstart-demo"),
                   help="folder for the demo's data and artifacts")
    p.add_argument("--scale", choices=["tiny", "small"], default="small")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    demo(args.workdir, args.scale, args.port, args.seed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m flows.demo")
    add_args(parser)
    run(parser.parse_args())
