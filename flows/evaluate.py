"""`warmstart evaluate`: test-day quality beside popularity and the generator's oracle.

Retrieval: recall@K of each test user's clicked items in the Two-Tower top-K (FAISS),
beside the K most-clicked training items and the oracle's top-K (items ranked by expected
clicks under the true model). Ranking: AUC and log loss of the DLRM on test impressions,
beside item click-through rate from training and the true click probability. Each overall
and for cold-start users (no training interactions). Oracle figures need the `truth/`
folder that `warmstart generate` writes; for other data they are left out.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows.data import Split, read_interactions
from flows.synthetic import World
from index.faiss_index import search
from train.artifacts import Bundle, load_bundle
from train.features import featurize
from train.metrics import auc, log_loss, recall_at_k
from train.scoring import click_probability, user_vectors


@dataclass(frozen=True)
class EvalConfig:
    split: Split = field(default_factory=Split)
    k: int = 100
    max_users: int = 1000  # test users sampled for recall (the oracle costs ~10 ms a user)
    max_impressions: int = 300_000  # test impressions sampled for AUC
    seed: int = 0


def evaluate(bundle: Bundle, data: Path, cfg: EvalConfig | None = None) -> dict[str, Any]:
    cfg = cfg or EvalConfig()
    rng = np.random.default_rng(cfg.seed)
    items = bundle.items
    item_pos = {iid: n for n, iid in enumerate(items["item_id"])}
    test = read_interactions(data, cfg.split.test,
                             ("user_id", "item_id", "hour", "weekday", "device", "label",
                              "p_click"))
    if test.empty:
        raise ValueError(f"no test interactions on days {cfg.split.test} in {data}")
    train = read_interactions(data, cfg.split.train, ("item_id", "label"))
    world = _world(data, items)
    known = set(bundle.features.users)
    test["cold"] = ~test["user_id"].isin(known)

    # Popularity from training: clicks per item, and smoothed click-through rate.
    pos = train["item_id"].map(item_pos).to_numpy()
    clicks = np.bincount(pos, weights=train["label"], minlength=len(items))
    shows = np.bincount(pos, minlength=len(items))
    prior = clicks.sum() / max(shows.sum(), 1)
    ctr = (clicks + 20 * prior) / (shows + 20)

    return {
        "retrieval": _retrieval(bundle, test, world, clicks, item_pos, cfg, rng),
        "ranking": _ranking(bundle, test, ctr, item_pos, cfg, rng),
        "test_days": list(cfg.split.test),
        "oracle": world is not None,
    }


def _world(data: Path, items: pd.DataFrame) -> World | None:
    try:
        return World.load(data / "truth", items)
    except FileNotFoundError:
        return None


def _retrieval(bundle: Bundle, test: pd.DataFrame, world: World | None, clicks: np.ndarray,
               item_pos: dict[str, int], cfg: EvalConfig, rng: np.random.Generator
               ) -> dict[str, Any]:
    clicked = test[test["label"] == 1]
    per_user = clicked.groupby("user_id")["item_id"].agg(lambda s: np.unique(s.map(item_pos)))
    cold_of = test.groupby("user_id")["cold"].first()
    users = per_user.index.to_numpy()
    if len(users) > cfg.max_users:
        users = np.sort(rng.choice(users, cfg.max_users, replace=False))
    relevant = [per_user[u] for u in users]
    cold = cold_of.reindex(users).to_numpy(bool)
    k = cfg.k

    u_cols = bundle.features.user_features(users, bundle.user_table)
    _, model_top = search(bundle.index, user_vectors(bundle.two_tower, u_cols), k)
    pop_top = np.tile(np.argsort(-clicks, kind="stable")[:k], (len(users), 1))
    scores = {"two_tower": recall_at_k(model_top, relevant, k),
              "popularity": recall_at_k(pop_top, relevant, k)}
    if world is not None:
        uidx = pd.Series(np.arange(world.n_users), index=world.user_ids).reindex(users)
        if uidx.isna().any():
            raise ValueError("test users are missing from the ground truth; was the data "
                             "folder regenerated after training?")
        expected = world.expected_clicks(uidx.to_numpy(np.int64))  # U, I
        oracle_top = np.argsort(-expected, axis=1)[:, :k]
        scores["oracle"] = recall_at_k(oracle_top, relevant, k)
    out: dict[str, Any] = {"k": k, "users": int(len(users)), "cold_users": int(cold.sum())}
    for name, r in scores.items():
        out[name] = {"overall": float(np.nanmean(r)),
                     "cold": float(np.nanmean(r[cold])) if cold.any() else float("nan")}
    return out


def _ranking(bundle: Bundle, test: pd.DataFrame, ctr: np.ndarray, item_pos: dict[str, int],
             cfg: EvalConfig, rng: np.random.Generator) -> dict[str, Any]:
    if len(test) > cfg.max_impressions:
        test = test.iloc[np.sort(rng.choice(len(test), cfg.max_impressions, replace=False))]
    rows = featurize(test, bundle.features, bundle.user_table, bundle.item_rows,
                     item_pos)
    probs = np.concatenate([
        click_probability(bundle.dlrm, {k: v[s:s + 65536] for k, v in rows.items()})
        for s in range(0, len(test), 65536)])
    y = test["label"].to_numpy()
    cold = test["cold"].to_numpy(bool)
    scores = {"dlrm": probs, "popularity": ctr[rows["item_row"]]}
    if "p_click" in test:
        scores["oracle"] = test["p_click"].to_numpy()
    out: dict[str, Any] = {"impressions": int(len(test)), "cold_impressions": int(cold.sum())}
    for name, s in scores.items():
        out[name] = {
            "auc": auc(y, s),
            "cold_auc": auc(y[cold], s[cold]) if cold.any() else float("nan"),
            "log_loss": log_loss(y, s),
        }
    return out


def format_report(report: dict[str, Any]) -> str:
    r, k = report["retrieval"], report["retrieval"]["k"]
    lines = [f"retrieval recall@{k} on {r['users']} test users ({r['cold_users']} cold):",
             f"  {'model':<12}{'overall':>10}{'cold':>10}{'of oracle':>12}"]
    for name in ("two_tower", "popularity", "oracle"):
        if name in r:
            frac = (f"{r[name]['overall'] / r['oracle']['overall']:>11.0%}" if "oracle" in r
                    else "")
            lines.append(f"  {name:<12}{r[name]['overall']:>10.3f}{r[name]['cold']:>10.3f} {frac}")
    g = report["ranking"]
    lines += [f"ranking AUC on {g['impressions']:,} test impressions "
              f"({g['cold_impressions']:,} from cold users):",
              f"  {'model':<12}{'AUC':>10}{'cold AUC':>10}{'log loss':>10}"]
    for name in ("dlrm", "popularity", "oracle"):
        if name in g:
            s = g[name]
            lines.append(f"  {name:<12}{s['auc']:>10.4f}{s['cold_auc']:>10.4f}"
                         f"{s['log_loss']:>10.4f}")
    return "\n".join(lines)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="artifact root (uses LATEST) or a version folder")
    p.add_argument("--users", type=int, default=EvalConfig.max_users,
                   help="test users sampled for recall")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")


def run(args: argparse.Namespace) -> None:
    bundle = load_bundle(args.artifacts)
    report = evaluate(bundle, args.data, EvalConfig(max_users=args.users))
    print(f"version {bundle.version}")
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m flows.evaluate")
    add_args(parser)
    run(parser.parse_args())
