"""New users: what warmstart answers a user it has never trained on, before any click and
after their first 1, 2 or 3 clicks arrive through `POST /events`, beside popularity.

    python -m bench.coldstart --save                      # MovieLens-100K (every rating a click)
    python -m bench.coldstart --data runs/small/data --save   # any data folder

The protocol ("strong generalization": the evaluated users are in no training day):
    - users are split at random (seeded): 70% "known", 15% validation users, 15% test users;
    - each validation or test user's clicks in time order: the first n (n drawn from 1-3 per
      validation user) are what serving will know of them, the rest are the truth;
    - the data folder: every known user's rows on training days 0-8, each validation user's
      first n clicks there too and the rest of their rows on validation days 9-11 (so the
      blend's "few" segment is fitted on exactly such users, flows/sources.py); test users
      are on no day at all;
    - warmstart trains on that folder as on any data (`warmstart train`);
    - each test user is asked for before any click (the answer to a stranger), then their
      first clicks are sent one at a time through the serving path's event handling (the
      durable log, seen filter, recent items, popularity: what `POST /events` does), and
      after each the answer is scored on the clicks after the first 3 (the same truth for
      every n);
    - baselines on the same users and truth: popularity over the training days, and the
      version's own popularity variants (decayed, in the request's context).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bench import movielens_args, report
from bench.train import load_line, machine
from flows.layout import (
    ITEMS,
    USERS,
    Split,
    available_days,
    read_interactions,
    write_day_file,
)
from flows.load import load
from flows.load.config import LoadConfig
from train.metrics import ndcg_at_k, recall_at_k

K = 100
MAX_CLICKS = 3


def user_split(users: np.ndarray, seed: int) -> dict[str, str]:
    """user_id -> "known", "val" or "test" (70/15/15, seeded)."""
    u = np.sort(np.unique(users))
    draw = np.random.default_rng(seed).random(len(u))
    return dict(zip(u, np.where(draw < 0.7, "known", np.where(draw < 0.85, "val", "test")),
                    strict=True))


def write_folder(src: Path, out: Path, rows: pd.DataFrame, role: dict[str, str], seed: int
                 ) -> pd.DataFrame:
    """The data folder described in the module docstring; returns the test users' rows."""
    rng = np.random.default_rng(seed)
    split = Split()
    rows = rows.sort_values("ts", kind="stable").reset_index(drop=True)
    r = rows["user_id"].map(role).to_numpy()
    clicks_before = rows.groupby("user_id")["label"].cumsum().to_numpy() - rows["label"]
    reveal = {u: int(n) for u, n in zip(
        rows["user_id"].unique(), rng.integers(1, MAX_CLICKS + 1, rows["user_id"].nunique()),
        strict=True)}
    shown = clicks_before.to_numpy() < rows["user_id"].map(reveal).to_numpy()  # N
    train = (r == "known") | ((r == "val") & shown)
    val = (r == "val") & ~shown
    day = np.where(train, rng.choice(split.train, len(rows)), rng.choice(split.val, len(rows)))
    out.mkdir(parents=True)
    for name in (ITEMS, USERS):
        shutil.copy(src / name, out / name)
    for d in range(14):
        on = rows[(train | val) & (day == d)]
        write_day_file(out, d, "part-0.parquet", pa.Table.from_pandas(on, preserve_index=False))
    return rows[r == "test"]


def ask(version: Path, tests: pd.DataFrame, workdir: Path) -> dict[str, Any]:
    """Scores of the served answers to each test user after 0..3 clicks, and of the
    popularity baselines, on the clicks after their first 3."""
    from serve.config import StoresConfig
    from serve.event_log import EventLogConfig
    from serve.online import OnlineConfig
    from serve.pipeline import Pipeline, Request, open_stores
    from serve.state import build_state
    from train.artifacts import load_bundle

    bundle = load_bundle(version)
    state = build_state(bundle, interests=None)
    stores = open_stores(state, StoresConfig(
        online=OnlineConfig(backend="memory"),
        events=EventLogConfig(path=workdir / "events.jsonl")))
    pipeline = Pipeline(state, stores)
    clicks = tests[tests["label"] == 1]
    firsts, truth, users = [], [], []
    for user, c in clicks.groupby("user_id", sort=True):
        rest = c.iloc[MAX_CLICKS:]
        rel = np.unique([state.item_pos[i] for i in rest["item_id"] if i in state.item_pos])
        if len(c) <= MAX_CLICKS or not len(rel):
            continue  # nothing left to score after the first 3
        users.append(user)
        firsts.append(c.iloc[:MAX_CLICKS])
        truth.append(rel)

    async def answers() -> dict[int, np.ndarray]:
        out = {n: np.full((len(users), K), -1, np.int64) for n in range(MAX_CLICKS + 1)}
        for u, (user, first) in enumerate(zip(users, firsts, strict=True)):
            when = pd.Timestamp(first["ts"].iloc[0]).to_pydatetime()
            device = first["device"].iloc[0]
            for n in range(MAX_CLICKS + 1):
                if n:
                    click = first.iloc[n - 1]
                    pipeline.event(user, str(click["item_id"]), "click", click["device"],
                                   None)
                got = await pipeline.recommend(Request(user_id=user, device=device,
                                                       timestamp=when, k=K))
                rows = [state.item_pos[i.item_id] for i in got.items]
                out[n][u, :len(rows)] = rows
        return out

    t0 = time.perf_counter()
    served = asyncio.run(answers())
    seconds = time.perf_counter() - t0
    train = read_interactions(Path(bundle.manifest["data_window"]["data"]),
                              tuple(bundle.manifest["data_window"]["train_days"]),
                              ("item_id", "label"))
    counts = np.bincount(train.loc[train["label"] == 1, "item_id"].map(state.item_pos),
                         minlength=len(state.item_ids))
    sources = bundle.sources
    recent = sources.popularity.sum(axis=(1, 2)) if sources is not None else counts

    def excluding_firsts(ranking: np.ndarray, n: int) -> np.ndarray:
        out = np.full((len(users), K), -1, np.int64)
        for u, first in enumerate(firsts):
            seen = [state.item_pos[i] for i in first["item_id"].iloc[:n]]
            kept = ranking[~np.isin(ranking, seen)][:K]
            out[u, :len(kept)] = kept
        return out

    def scores(top: np.ndarray) -> dict[str, float]:
        return {"recall@100": float(np.nanmean(recall_at_k(top, truth, K))),
                "ndcg@10": float(np.nanmean(ndcg_at_k(top, truth, 10)))}

    result: dict[str, Any] = {"users": len(users), "serve_s": seconds, "rows": {}}
    for n in range(MAX_CLICKS + 1):
        result["rows"][n] = {
            "served": scores(served[n]),
            "popularity": scores(excluding_firsts(np.argsort(-counts, kind="stable")[:K + 3],
                                                  n)),
            "popularity_recent": scores(excluding_firsts(
                np.argsort(-recent, kind="stable")[:K + 3], n)),
        }
    result["blend"] = {k: v.chosen for k, v in sources.blend.segments.items()} \
        if sources is not None else {}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None,
                   help="a data folder (default: MovieLens-100K, every rating a click)")
    movielens_args(p, seed=0)
    args = p.parse_args()
    from flows.runtime import start_ray
    from flows.train import TrainConfig, train

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-coldstart-"))
    load_avg = os.getloadavg()
    src = args.data
    name = "movielens" if src is None else src.name
    if src is None:
        src = workdir / "loaded"
        load(LoadConfig(src=args.src, out=src, preset="movielens", like_threshold=1.0,
                        overwrite=True))
    rows = read_interactions(src, tuple(available_days(src)))
    role = user_split(rows["user_id"].to_numpy(object), args.seed)
    shutil.rmtree(workdir / "data", ignore_errors=True)
    shutil.rmtree(workdir / "artifacts", ignore_errors=True)
    tests = write_folder(src, workdir / "data", rows, role, args.seed)
    t0 = time.perf_counter()
    with start_ray():
        version = train(TrainConfig(data=workdir / "data", artifacts=workdir / "artifacts",
                                    reuse_steps=False))
    train_s = time.perf_counter() - t0
    (workdir / "events.jsonl").unlink(missing_ok=True)
    r = ask(version, tests, workdir)
    roles = pd.Series(role).value_counts()
    lines = [f"new users on {name}: never in training, their first clicks sent as events "
             f"({machine()})",
             f"  users {roles.get('known', 0)} known / {roles.get('val', 0)} validation / "
             f"{roles.get('test', 0)} test; {r['users']} test users with more than "
             f"{MAX_CLICKS} clicks, scored on their clicks after the first {MAX_CLICKS}; "
             f"trained in {train_s:.0f} s, {r['users'] * (MAX_CLICKS + 1)} answers in "
             f"{r['serve_s']:.1f} s",
             f"  {'clicks known':<14}{'method':<22}{'recall@100':>11}{'NDCG@10':>9}"
             f"{'x popularity':>14}{'x best popularity':>19}"]
    for n, row in r["rows"].items():
        best = {m: max(row["popularity"][m], row["popularity_recent"][m])
                for m in ("recall@100", "ndcg@10")}
        for method, q in row.items():
            ratio = "  ".join(f"{q[m] / max(row['popularity'][m], 1e-9):.2f}"
                              for m in ("recall@100", "ndcg@10"))
            vs_best = "  ".join(f"{q[m] / max(best[m], 1e-9):.2f}"
                                for m in ("recall@100", "ndcg@10"))
            lines.append(f"  {n:<14}{method:<22}{q['recall@100']:>11.4f}{q['ndcg@10']:>9.4f}"
                         f"{ratio:>14}{vs_best:>19}")
    lines += [f"  blend per segment: {r['blend']} (version {version.name})",
              f"  {load_line(load_avg)}"]
    report(lines, f"coldstart-{name}", args.save)


if __name__ == "__main__":
    main()
