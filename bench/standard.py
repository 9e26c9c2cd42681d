"""MovieLens-100K under the protocol of Microsoft Recommenders' published benchmark table,
with every baseline run on the same split in the same run.

    python -m bench.standard --save

The protocol (as that library's `python_stratified_split` and `python_evaluation` define it):
    - every rating is an implicit positive;
    - a random per-user stratified split, 75% of each user's ratings to train, 25% to test
      (seeded);
    - each user's top 10 with their training items removed;
    - precision@10 = hits / 10; recall@10 = hits / the user's test items; NDCG@10 with
      binary gains, the ideal DCG over min(test items, 10); MAP = the precision at each
      hit's rank, summed over the top 10 and divided by the user's test items (the
      library's `map`); each averaged over the test users (train/metrics.py, with hand
      examples in tests/train/test_metrics.py).

Tuning never sees the test set: the 75% is split again per user (80/20) into an inner
training and validation set; every method picks its settings on that validation set, then
the baselines are refitted on the whole 75% with them. warmstart trains on the inner set,
its flow fits its sources and blend on the validation days, and refits its closed-form
sources (item-item, popularity) on the whole 75% (flows/sources.py), as it does on any data.

Rows: popularity; implicit's ALS and BPR (the `implicit` package, each tuned over a grid);
EASE (closed form, l2 tuned); warmstart's retrieval sources alone (Two-Tower, item-item),
its DLRM alone over its candidates, and its served answer (every source blended); beside
the published figures, which are printed, not rerun. Wall time is each method's final fit
and its predictions; tuning is timed apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from bench import movielens_args, report
from bench.train import load_line, machine
from flows.layout import ITEMS, USERS, Split, available_days, read_interactions, write_day_file
from flows.load import load
from flows.load.config import LoadConfig
from train.item_item import ease
from train.metrics import average_precision, ndcg_at_k, precision_at_k, recall_at_k

K = 10
# Microsoft Recommenders' benchmark table for MovieLens-100K (top 10, stratified 75/25).
PUBLISHED = {"BiVAE": {"ndcg": 0.469, "precision": 0.408, "recall": 0.221},
             "BPR": {"ndcg": 0.445, "precision": 0.389, "recall": 0.217},
             "NCF": {"ndcg": 0.369}}
ALS_GRID = {"factors": (16, 32, 64, 128), "regularization": (0.01, 0.1, 1.0),
            "alpha": (1.0, 5.0, 20.0, 40.0)}
BPR_GRID = {"factors": (64, 128, 200), "learning_rate": (0.001, 0.005, 0.01),
            "regularization": (0.001, 0.01), "iterations": (100, 300, 1000)}
EASE_GRID = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0)


def stratified(users: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """(N,) True for the rows that go to the first part: for each user, a seeded random
    `ratio` of their rows (rounded), the rest to the second."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(users)), users))  # by user, then at random
    codes = pd.factorize(pd.Series(users[order]))[0]
    rank = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    size = np.bincount(codes)[codes]
    first = np.empty(len(users), bool)
    first[order] = rank < np.round(ratio * size)
    return first


class Split3:
    """The ratings, their users and items as matrix rows, and the three parts."""

    def __init__(self, ratings: pd.DataFrame, seed: int) -> None:
        self.ratings = ratings
        self.user_ids = np.sort(ratings["user_id"].unique())
        self.item_ids = np.sort(ratings["item_id"].unique())
        self.u = np.searchsorted(self.user_ids, ratings["user_id"].to_numpy())
        self.i = np.searchsorted(self.item_ids, ratings["item_id"].to_numpy())
        users = ratings["user_id"].to_numpy(object)
        self.train = stratified(users, 0.75, seed)  # N
        inner = stratified(users[self.train], 0.8, seed + 1)
        self.inner = np.zeros(len(users), bool)
        self.inner[np.flatnonzero(self.train)[inner]] = True
        self.val = self.train & ~self.inner
        self.test = ~self.train

    def matrix(self, part: np.ndarray) -> sp.csr_matrix:
        x = sp.csr_matrix((np.ones(int(part.sum()), np.float32), (self.u[part], self.i[part])),
                          shape=(len(self.user_ids), len(self.item_ids)))
        x.data[:] = 1.0
        return x

    def relevant(self, part: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The users with rows in `part` and each one's items there."""
        frame = pd.DataFrame({"u": self.u[part], "i": self.i[part]})
        groups = frame.groupby("u")["i"].apply(lambda s: np.unique(s.to_numpy()))
        return groups.index.to_numpy(), list(groups)


def top_k(scores: np.ndarray, seen: sp.csr_matrix, users: np.ndarray, k: int = K
          ) -> np.ndarray:
    """(U, k) the best items of `users` by their rows of `scores`, seen items removed."""
    s = np.asarray(scores[users], np.float64).copy()
    rows, cols = seen[users].nonzero()
    s[rows, cols] = -np.inf
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def quality(top: np.ndarray, relevant: list[np.ndarray]) -> dict[str, float]:
    return {"map": float(np.nanmean(average_precision(top, relevant, K))),
            "ndcg": float(np.nanmean(ndcg_at_k(top, relevant, K))),
            "precision": float(np.nanmean(precision_at_k(top, relevant, K))),
            "recall": float(np.nanmean(recall_at_k(top, relevant, K)))}


Scorer = Callable[[sp.csr_matrix, dict[str, Any]], np.ndarray]  # (U, I) scores


def als(x: sp.csr_matrix, p: dict[str, Any]) -> np.ndarray:
    from implicit.als import AlternatingLeastSquares

    m = AlternatingLeastSquares(factors=p["factors"], regularization=p["regularization"],
                                alpha=p["alpha"], iterations=15, random_state=0)
    m.fit(x, show_progress=False)
    return np.asarray(m.user_factors @ m.item_factors.T)


def bpr(x: sp.csr_matrix, p: dict[str, Any]) -> np.ndarray:
    from implicit.bpr import BayesianPersonalizedRanking

    m = BayesianPersonalizedRanking(factors=p["factors"], learning_rate=p["learning_rate"],
                                    regularization=p["regularization"],
                                    iterations=p["iterations"], random_state=0)
    m.fit(x, show_progress=False)
    return np.asarray(m.user_factors @ m.item_factors.T)


def ease_scores(x: sp.csr_matrix, p: dict[str, Any]) -> np.ndarray:
    return np.asarray(x @ ease(x, p["l2"]))


def popularity(x: sp.csr_matrix, p: dict[str, Any]) -> np.ndarray:
    return np.tile(np.asarray(x.sum(axis=0)).ravel(), (x.shape[0], 1))


def tuned(name: str, scorer: Scorer, grid: list[dict[str, Any]], s: Split3
          ) -> dict[str, Any]:
    """Pick the setting with the best validation NDCG@10 (inner split), refit it on the
    whole training part, score the test users."""
    x_inner, x_train = s.matrix(s.inner), s.matrix(s.train)
    val_users, val_rel = s.relevant(s.val)
    t0 = time.perf_counter()
    tried = [(quality(top_k(scorer(x_inner, p), x_inner, val_users), val_rel)["ndcg"], n)
             for n, p in enumerate(grid)]
    best = grid[max(tried)[1]]
    tune_s = time.perf_counter() - t0
    test_users, test_rel = s.relevant(s.test)
    t0 = time.perf_counter()
    top = top_k(scorer(x_train, best), x_train, test_users)
    return {"name": name, "setting": best, "val_ndcg": max(tried)[0], "tried": len(grid),
            "tune_s": tune_s, "wall_s": time.perf_counter() - t0,
            "quality": quality(top, test_rel)}


def grid(spec: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(spec, values, strict=True)) for values in product(*spec.values())]


def write_folder(src: Path, out: Path, s: Split3) -> Path:
    """The split as a warmstart data folder: inner training ratings on days 0-8, validation
    on 9-11, test on 12-13 (each rating's day within its part drawn at random; its time,
    hour and weekday its own), every rating labelled 1."""
    rng = np.random.default_rng(0)
    split = Split()
    r = s.ratings
    day = np.where(s.inner, rng.choice(split.train, len(r)),
                   np.where(s.val, rng.choice(split.val, len(r)), rng.choice(split.test, len(r))))
    out.mkdir(parents=True)
    for name in (ITEMS, USERS):
        shutil.copy(src / name, out / name)
    for d in range(14):
        on = r[day == d]
        write_day_file(out, d, "part-0.parquet", pa.Table.from_pandas(
            on.assign(label=np.int8(1)), preserve_index=False))
    return out


def warmstart(data: Path, workdir: Path, s: Split3) -> list[dict[str, Any]]:
    """Train warmstart on the folder and score the test users four ways."""
    from flows.runtime import start_ray
    from flows.train import TrainConfig, train
    from serve.pipeline import Pipeline, Request, bare_stores
    from serve.state import build_state
    from train.artifacts import load_bundle
    from train.blend import SIGNALS
    from train.scoring import user_vectors

    t0 = time.perf_counter()
    with start_ray():
        folder = train(TrainConfig(data=data, artifacts=workdir / "artifacts",
                                   reuse_steps=False))
    train_s = time.perf_counter() - t0
    bundle = load_bundle(folder)
    state = build_state(bundle, interests=None)
    pipeline = Pipeline(state, bare_stores(state), seed=0)
    test_users, test_rel = s.relevant(s.test)
    ids = s.user_ids[test_users].astype(str)
    first = s.ratings[s.test].sort_values("ts").drop_duplicates("user_id").set_index(
        "user_id")["ts"]
    item_row = np.array([state.item_pos[str(i)] for i in s.item_ids])  # matrix col -> row
    col_of = np.full(len(state.item_ids), -1)
    col_of[item_row] = np.arange(len(item_row))
    x_train = s.matrix(s.train)

    async def answers() -> tuple[np.ndarray, np.ndarray]:
        served = np.full((len(ids), K), -1)
        by_dlrm = np.full((len(ids), K), -1)
        for n, (u, uid) in enumerate(zip(test_users, ids, strict=True)):
            req = Request(user_id=uid, device="unknown",
                          timestamp=pd.Timestamp(first[s.user_ids[u]]).to_pydatetime(), k=K)
            got = await pipeline.recommend(req)
            served[n] = col_of[[state.item_pos[i.item_id] for i in got.items]]
            ranked = await pipeline.ranked(req)
            best = ranked.cands.rows[np.argsort(-ranked.signals[:, SIGNALS.index("dlrm")],
                                                kind="stable")[:K]]
            by_dlrm[n, :len(best)] = col_of[best]
        return served, by_dlrm

    t0 = time.perf_counter()
    served, by_dlrm = asyncio.run(answers())
    serve_s = time.perf_counter() - t0
    vectors = state.item_vectors[item_row]  # I, D in matrix column order
    users = bundle.features.user_features(ids.astype(object), bundle.user_table)
    tt = top_k(_rows(user_vectors(bundle.two_tower, users) @ vectors.T, test_users,
                     len(s.user_ids)), x_train, test_users)
    sources = bundle.sources
    ii = sources.item_item.score_matrix(sources.histories.matrix(len(state.item_ids))
                                        )[:, item_row] if sources is not None else None
    rows_of = bundle.user_table.positions(s.user_ids.astype(str).astype(object))
    ii_top = (top_k(ii[np.maximum(rows_of, 0)], x_train, test_users) if ii is not None
              else None)
    out = [{"name": "warmstart Two-Tower alone", "quality": quality(tt, test_rel)},
           {"name": "warmstart DLRM alone (its candidates)", "quality": quality(by_dlrm,
                                                                             test_rel)},
           {"name": "warmstart served (blend)", "quality": quality(served, test_rel),
            "wall_s": train_s + serve_s, "train_s": train_s, "serve_s": serve_s,
            "version": folder.name,
            "blend": {k: v.chosen for k, v in sources.blend.segments.items()}
            if sources is not None else {}}]
    if ii_top is not None and sources is not None:
        out.insert(1, {"name": f"warmstart item-item alone ({sources.item_item.kind}, l2 "
                               f"{sources.item_item.l2:g})", "quality": quality(ii_top,
                                                                               test_rel)})
    return out


def _rows(scores_of_test_users: np.ndarray, test_users: np.ndarray, n_users: int
          ) -> np.ndarray:
    """A (U, I) score matrix holding `scores_of_test_users` at the test users' rows."""
    out = np.zeros((n_users, scores_of_test_users.shape[1]))
    out[test_users] = scores_of_test_users
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    movielens_args(p, seed=42)
    args = p.parse_args()
    import threadpoolctl

    threadpoolctl.threadpool_limits(1, "blas")  # implicit's advice; the machine has 2 cores
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-standard-"))
    load_avg = os.getloadavg()
    loaded = workdir / "loaded"
    shutil.rmtree(workdir / "data", ignore_errors=True)
    shutil.rmtree(workdir / "artifacts", ignore_errors=True)
    load(LoadConfig(src=args.src, out=loaded, preset="movielens", like_threshold=1.0,
                    overwrite=True))
    ratings = read_interactions(loaded, tuple(available_days(loaded)))
    s = Split3(ratings, args.seed)
    data = write_folder(loaded, workdir / "data", s)

    rows = [tuned("popularity", popularity, [{}], s),
            tuned("ALS (implicit)", als, grid(ALS_GRID), s),
            tuned("BPR (implicit)", bpr, grid(BPR_GRID), s),
            tuned("EASE", ease_scores, [{"l2": v} for v in EASE_GRID], s)]
    rows += warmstart(data, workdir, s)
    test_users, _ = s.relevant(s.test)
    lines = [f"MovieLens-100K, Microsoft Recommenders' protocol: stratified 75/25 (seed "
             f"{args.seed}), top {K}, training items removed ({machine()})",
             f"  {len(ratings):,} ratings, {len(s.user_ids)} users, {len(s.item_ids)} items; "
             f"{int(s.inner.sum()):,} inner-train / {int(s.val.sum()):,} validation / "
             f"{int(s.test.sum()):,} test ratings; {len(test_users)} test users",
             f"  {'method':<44}{'MAP':>8}{'NDCG@10':>9}{'P@10':>8}{'R@10':>8}{'wall s':>9}"
             "  tuned on validation"]
    for r in rows:
        q = r["quality"]
        wall = f"{r['wall_s']:>9.1f}" if "wall_s" in r else f"{'':>9}"
        note = (f"{r['setting']} of {r['tried']} ({r['tune_s']:.0f} s)" if "setting" in r
                else "")
        lines.append(f"  {r['name']:<44}{q['map']:>8.4f}{q['ndcg']:>9.4f}{q['precision']:>8.4f}"
                     f"{q['recall']:>8.4f}{wall}  {note}")
    for name, q in PUBLISHED.items():
        cells = "".join(f"{q[m]:>{w}.3f}" if m in q else f"{'':>{w}}"
                        for m, w in (("ndcg", 9), ("precision", 8), ("recall", 8)))
        lines.append(f"  {name + ' (published)':<44}{'':>8}{cells}")
    served = next(r for r in rows if r["name"].startswith("warmstart served"))
    best_base = max((r for r in rows if not r["name"].startswith("warmstart")),
                    key=lambda r: r["quality"]["ndcg"])
    lines += [f"  warmstart served: trained in {served['train_s']:.0f} s (the whole flow on "
              f"Ray), answered {len(test_users)} users in {served['serve_s']:.1f} s; blend "
              f"per segment: {served['blend']}",
              f"  NDCG@10: warmstart {served['quality']['ndcg']:.4f} vs best baseline of this "
              f"run ({best_base['name']}) {best_base['quality']['ndcg']:.4f} and BiVAE "
              f"(published) {PUBLISHED['BiVAE']['ndcg']:.3f}",
              f"  {load_line(load_avg)}"]
    report(lines, "standard-movielens", args.save)


if __name__ == "__main__":
    main()
