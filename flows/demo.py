"""`warmstart demo`: the whole path on one machine, end to end, then shut down.

generate -> train (Ray Train) -> index (FAISS) -> evaluate -> expand a few sparse users'
interests (LLM on Ray Data) -> serve (Ray Serve) -> requests
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from flows.evaluate import format_report
from flows.expand import ExpandConfig, expand
from flows.generate import GenerateConfig, generate
from flows.llm import LLMConfig, smollm2_gguf
from flows.runtime import start_ray
from flows.training import TrainConfig, train


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
    import pandas as pd

    from flows.data import Split, read_interactions

    train = read_interactions(data, Split().train, ("user_id", "label"))
    n = train[train["label"] == 1].groupby("user_id").size()
    sparse = sorted(n.index[(n >= 1) & (n <= 3)])[:users]
    cfg = ExpandConfig(data=data, out=artifacts / "interests", user_ids=tuple(sparse),
                       llm=LLMConfig(batch_size=4))
    s = expand(cfg)
    out = pd.read_parquet(cfg.out / "interests.parquet")
    print(f"[demo]   {s['users']} users: {s['status']['expanded']} expanded; JSON valid "
          f"{s['json_valid_rate']:.0%}, topics surviving grounding {s['topic_survival']:.0%}",
          flush=True)
    for r in out.head(3).itertuples():
        print(f"[demo]     {r.user_id}: {list(r.topics)} -> kept {list(r.kept)} ({r.status})")
    expanded = out.loc[out["status"] == "expanded", "user_id"]
    return str(expanded.iloc[0]) if len(expanded) else None


def demo(workdir: Path, scale: str, port: int, seed: int = 0) -> dict[str, Any]:
    from ray import serve

    from serve.app import run_app

    t0 = time.perf_counter()
    data, artifacts = workdir / "data", workdir / "artifacts"
    with start_ray():
        print(f"[demo] 1/5 generate ({scale})", flush=True)
        # The demo owns its workdir: a rerun replaces the previous run's data.
        stats = generate(GenerateConfig(out=data, scale=scale, seed=seed, overwrite=True))
        print(f"[demo]   {int(stats['impressions']):,} impressions, {int(stats['users']):,} "
              f"users, {int(stats['items']):,} items in {stats['seconds']:.1f} s", flush=True)
        print("[demo] 2/5 train, index and evaluate", flush=True)
        folder = train(TrainConfig(data=data, artifacts=artifacts))
        manifest = json.loads((folder / "manifest.json").read_text())
        print(format_report(manifest["metrics"]["evaluation"]), flush=True)

        print("[demo] 3/5 expand sparse users' interests with the LLM", flush=True)
        sparse_user = expand_some(data, artifacts, users=8)

        print("[demo] 4/5 serve", flush=True)
        url = run_app(artifacts, port=port)
        print(f"[demo]   {url}/healthz -> "
              f"{urllib.request.urlopen(url + '/healthz', timeout=30).read().decode()}")
        print("[demo] 5/5 requests", flush=True)
        import pandas as pd

        known = str(pd.read_parquet(data / "users.parquet")["user_id"].iloc[0])
        catalog = pd.read_parquet(data / "items.parquet").set_index("item_id")
        answers = []
        bodies = [{"user_id": known, "device": "web", "timestamp": "2026-01-19T09:30:00",
                   "k": 5},
                  {"user_id": known, "device": "ios", "timestamp": "2026-01-19T21:30:00",
                   "k": 5},
                  {"user_id": "someone-new", "device": "android", "k": 5}]
        if sparse_user:
            bodies.append({"user_id": sparse_user, "device": "web", "k": 5})
        for body in bodies:
            answer = post(url + "/recommend", body)
            answers.append(answer)
            items = ", ".join(f"{i['item_id']} {catalog.loc[i['item_id'], 'category']}/"
                              f"{catalog.loc[i['item_id'], 'style']} ({i['score']:.2f}, "
                              f"{i['source']})"
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
