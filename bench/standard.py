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

Every method runs on 5 split seeds (`--seeds`); the table prints each method's mean ± sd
over them and each seed's figure, and the served answer's difference to the best baseline
paired by seed. Tuning never sees the test set: the 75% is split again per user (80/20) into
an inner training and validation set; every method picks its settings on that validation
set, then the baselines are refitted on the whole 75% with them. warmstart trains its models
on the inner set, fits its sources and blend (its tuning) on the validation days, and refits
its closed-form sources (item-item, popularity) on the whole 75% (flows/sources.py), as it
does on any data.

Rows: popularity; implicit's ALS and BPR (the `implicit` package, each tuned over a grid);
EASE (closed form, l2 tuned); warmstart's retrieval sources alone (Two-Tower, item-item),
its DLRM alone reordering the served candidates, and its served answer (every source
blended); beside the published BiVAE row, printed, not rerun. Then the candidates' count
curve: the served answer, the DLRM alone and each retrieval source alone on the same
candidates, as FAISS's `retrieval_k` grows from 50 to 300. `--ablate` adds warmstart rows
trained with one change to its defaults (`ABLATIONS`). Wall time is each method's final fit and
its predictions; tuning is timed apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
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
SEEDS = (42, 1, 2, 3, 4)
RETRIEVAL_KS = (50, 100, 200, 300)
# Microsoft Recommenders' README table for MovieLens-100K (top 10, stratified 75/25), as it
# prints BiVAE today.
PUBLISHED = {"BiVAE": {"map": 0.1461, "ndcg": 0.4751, "precision": 0.4118, "recall": 0.2191}}
ALS_GRID = {"factors": (16, 32, 64, 128), "regularization": (0.01, 0.1, 1.0),
            "alpha": (1.0, 5.0, 20.0, 40.0)}
# Narrowed from a 54-setting grid whose best on seed 42 (64 factors, learning rate 0.005,
# regularization 0.001, 100 iterations) sits inside this one; five seeds must fit an hour.
BPR_GRID = {"factors": (64, 128), "learning_rate": (0.005, 0.01),
            "regularization": (0.001, 0.01), "iterations": (100, 300)}
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


def _with_item_history(cfg: Any) -> Any:
    return replace(cfg, two_tower=replace(cfg.two_tower, item_history=True))


def _with_candidate_negatives(cfg: Any) -> Any:
    return replace(cfg, dlrm_candidate_negatives=2)


def _with_in_batch_softmax(cfg: Any) -> Any:
    return replace(cfg, full_softmax_items=0)


# warmstart trained with one change to its defaults: what each change gains or costs
# (`--ablate NAME`, the row named "warmstart NAME").
ABLATIONS: dict[str, Callable[[Any], Any]] = {
    "with item-history": _with_item_history,  # the query tower's bag of clicked items (off)
    "with candidate-negatives": _with_candidate_negatives,  # the DLRM's negatives (off)
    "with in-batch-softmax": _with_in_batch_softmax,  # the Two-Tower's softmax (catalog)
}


def warmstart(data: Path, workdir: Path, s: Split3, name: str = "warmstart",
              change: Callable[[Any], Any] | None = None) -> tuple[list[dict[str, Any]],
                                                                    list[dict[str, Any]]]:
    """Train warmstart on the folder (its config passed through `change`), and score the
    test users: the served answer, each source alone, the DLRM alone reordering the served
    candidates; and the same at each of `RETRIEVAL_KS` (the curve)."""
    from flows.runtime import start_ray
    from flows.train import TrainConfig, train
    from serve.config import ServeConfig
    from serve.pipeline import Pipeline, bare_stores
    from serve.state import build_state
    from train.artifacts import load_bundle
    from train.scoring import user_vectors

    cfg = TrainConfig(data=data, artifacts=workdir / "artifacts", reuse_steps=False)
    t0 = time.perf_counter()
    with start_ray():
        folder = train(change(cfg) if change else cfg)
    train_s = time.perf_counter() - t0
    bundle = load_bundle(folder)
    state = build_state(bundle, interests=None)
    test_users, test_rel = s.relevant(s.test)
    item_row = np.array([state.item_pos[str(i)] for i in s.item_ids])  # matrix col -> row
    col_of = np.full(len(state.item_ids), -1)
    col_of[item_row] = np.arange(len(item_row))
    x_train = s.matrix(s.train)

    def answered(k: int) -> tuple[dict[str, np.ndarray], float]:
        pipeline = Pipeline(state, bare_stores(state), replace(ServeConfig(), retrieval_k=k))
        t0 = time.perf_counter()
        lists = asyncio.run(_answers(pipeline, state, s, test_users))
        return {n: np.where(top >= 0, col_of[top], -1) for n, top in lists.items()}, \
            time.perf_counter() - t0

    curve = []
    for k in RETRIEVAL_KS:
        lists, serve_s = answered(k)
        curve.append({"name": name, "k": k, "serve_s": serve_s,
                      "ndcg": {n: quality(top, test_rel)["ndcg"] for n, top in lists.items()}})
    lists, serve_s = answered(ServeConfig().retrieval_k)
    vectors = state.item_vectors[item_row]  # I, D in matrix column order
    ids = s.user_ids[test_users].astype(str).astype(object)
    users = bundle.features.user_features(ids, bundle.user_table)
    tt = top_k(_rows(user_vectors(bundle.two_tower, users) @ vectors.T, test_users,
                     len(s.user_ids)), x_train, test_users)
    sources = bundle.sources
    out: list[dict[str, Any]] = [{"name": f"{name} Two-Tower alone",
                                  "quality": quality(tt, test_rel)}]
    if sources is not None:
        ii = sources.item_item.score_matrix(sources.histories.matrix(len(state.item_ids))
                                            )[:, item_row]
        rows_of = bundle.user_table.positions(s.user_ids.astype(str).astype(object))
        out.append({"name": f"{name} item-item alone ({sources.item_item.kind})",
                    "quality": quality(top_k(ii[np.maximum(rows_of, 0)], x_train, test_users),
                                       test_rel)})
    out += [{"name": f"{name} DLRM alone (reordering its candidates)",
             "quality": quality(lists["dlrm"], test_rel)},
            {"name": f"{name} served at diversity {ServeConfig().diversity:g} (the default)",
             "quality": quality(lists["default"], test_rel)},
            {"name": f"{name} served (blend)", "quality": quality(lists["served"], test_rel),
             "wall_s": train_s + serve_s, "train_s": train_s, "serve_s": serve_s,
             "blend": {k: v.chosen for k, v in sources.blend.segments.items()}
             if sources is not None else {}}]
    return out, curve


async def _answers(pipeline: Any, state: Any, s: Split3, test_users: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """(U, K) catalog rows per test user: the served answer at diversity 0 (the blend's
    order) and at the configured default, and the served candidates in the order of the DLRM
    alone and of each retrieval signal alone (-1 where fewer)."""
    from serve.pipeline import Request
    from train.blend import SIGNALS

    first = s.ratings[s.test].sort_values("ts").drop_duplicates("user_id").set_index(
        "user_id")["ts"]
    orders = ("dlrm", "two_tower", "item_item")
    out = {n: np.full((len(test_users), K), -1) for n in ("served", "default", *orders)}
    for n, u in enumerate(test_users):
        req = Request(user_id=str(s.user_ids[u]), device="unknown",
                      timestamp=pd.Timestamp(first[s.user_ids[u]]).to_pydatetime(), k=K)
        got = await pipeline.recommend(replace(req, diversity=0.0))
        out["served"][n] = [state.item_pos[i.item_id] for i in got.items]
        ranked = await pipeline.ranked(req)
        out["default"][n] = ranked.cands.rows[pipeline.chosen(state, ranked, K, None)]
        for name in orders:
            best = ranked.cands.rows[np.argsort(-ranked.signals[:, SIGNALS.index(name)],
                                                kind="stable")[:K]]
            out[name][n, :len(best)] = best
    return out


def _rows(scores_of_test_users: np.ndarray, test_users: np.ndarray, n_users: int
          ) -> np.ndarray:
    """A (U, I) score matrix holding `scores_of_test_users` at the test users' rows."""
    out = np.zeros((n_users, scores_of_test_users.shape[1]))
    out[test_users] = scores_of_test_users
    return out


def one_seed(loaded: Path, ratings: pd.DataFrame, workdir: Path, seed: int,
             ablate: list[str], baselines: bool = True
             ) -> tuple[Split3, list[dict[str, Any]], list[dict[str, Any]]]:
    """Every method on the split of `seed`: (the split, its rows, the candidates' curve)."""
    s = Split3(ratings, seed)
    shutil.rmtree(workdir / "data", ignore_errors=True)
    data = write_folder(loaded, workdir / "data", s)
    rows = [] if not baselines else [
        tuned("popularity", popularity, [{}], s),
        tuned("ALS (implicit)", als, grid(ALS_GRID), s),
        tuned("BPR (implicit)", bpr, grid(BPR_GRID), s),
        tuned("EASE", ease_scores, [{"l2": v} for v in EASE_GRID], s)]
    curve: list[dict[str, Any]] = []
    for name, change in [("warmstart", None), *((f"warmstart {a}", ABLATIONS[a])
                                                 for a in ablate)]:
        shutil.rmtree(workdir / "artifacts", ignore_errors=True)
        got, points = warmstart(data, workdir, s, name, change)
        rows += got if change is None else [r for r in got if "served" in r["name"]
                                            or "alone" in r["name"]]
        curve += points if change is None else []
    return s, rows, curve


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}"


def table(seeds: tuple[int, ...], runs: list[list[dict[str, Any]]]) -> list[str]:
    """Each method's mean ± sd over the seeds and each seed's NDCG@10; the served answer's
    difference to each baseline, paired by seed."""
    names = list(dict.fromkeys(r["name"] for rows in runs for r in rows))
    of = {(n, i): r for i, rows in enumerate(runs) for r in rows for n in [r["name"]]}
    per_seed = "".join(f"{s:>8}" for s in seeds)
    lines = [f"  {'method':<52}{'NDCG@10 mean ± sd':>19}{per_seed}{'MAP':>8}{'P@10':>8}"
             f"{'R@10':>8}{'wall s':>8}  tuned on validation (seed {seeds[0]})"]
    for n in names:
        got = [of[(n, i)] for i in range(len(runs)) if (n, i) in of]
        nd = [r["quality"]["ndcg"] for r in got]
        mean = {m: np.mean([r["quality"][m] for r in got]) for m in ("map", "precision",
                                                                    "recall")}
        wall = [r["wall_s"] for r in got if "wall_s" in r]
        cells = "".join(f"{v:>8.4f}" for v in nd) + f"{'':>8}" * (len(seeds) - len(nd))
        note = (f"{got[0]['setting']} of {got[0]['tried']} ({got[0]['tune_s']:.0f} s)"
                if "setting" in got[0] else "")
        lines.append(f"  {n:<52}{_spread(nd):>19}{cells}{mean['map']:>8.4f}"
                     f"{mean['precision']:>8.4f}{mean['recall']:>8.4f}"
                     f"{np.mean(wall) if wall else float('nan'):>8.1f}  {note}")
    for name, q in PUBLISHED.items():
        lines.append(f"  {name + ' (published)':<52}{q['ndcg']:>19.4f}{'':>{8 * len(seeds)}}"
                     f"{q['map']:>8.4f}{q['precision']:>8.4f}{q['recall']:>8.4f}")
    served = "warmstart served (blend)"
    bases = [n for n in names if not n.startswith("warmstart")]
    lines.append(f"  {served} minus each baseline, paired by seed (NDCG@10):")
    for b in sorted(bases, key=lambda b: -np.mean([of[(b, i)]["quality"]["ndcg"]
                                                   for i in range(len(runs))])):
        d = [of[(served, i)]["quality"]["ndcg"] - of[(b, i)]["quality"]["ndcg"]
             for i in range(len(runs))]
        lines.append(f"    vs {b:<48}{_spread(d):>19}" + "".join(f"{v:>+8.4f}" for v in d)
                     + f"  above on {sum(v > 0 for v in d)} of {len(d)} seeds")
    best = max(PUBLISHED["BiVAE"]["ndcg"], 0)
    nd = [of[(served, i)]["quality"]["ndcg"] for i in range(len(runs))]
    lines.append(f"    vs BiVAE (published) {best:.4f}: mean {np.mean(nd) - best:+.4f}, above on "
                 f"{sum(v > best for v in nd)} of {len(nd)} seeds")
    return lines


def curve_lines(seeds: tuple[int, ...], curve: list[dict[str, Any]]) -> list[str]:
    """NDCG@10 by FAISS's retrieval_k (mean ± sd over the seeds): the served answer, the
    DLRM alone and each retrieval signal alone, each reordering the same candidates."""
    orders = ("served", "dlrm", "two_tower", "item_item")
    lines = [f"  candidates' curve: NDCG@10 by retrieval_k, each order over the same candidates "
             f"(mean ± sd over {len(seeds)} seeds)",
             f"  {'retrieval_k':<12}" + "".join(f"{o:>19}" for o in orders) + f"{'serve s':>9}"]
    for k in RETRIEVAL_KS:
        at = [c for c in curve if c["k"] == k]
        lines.append(f"  {k:<12}" + "".join(f"{_spread([c['ndcg'][o] for c in at]):>19}"
                                            for o in orders)
                     + f"{np.mean([c['serve_s'] for c in at]):>9.1f}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    movielens_args(p, seed=SEEDS[0])
    p.add_argument("--seeds", type=lambda v: tuple(int(x) for x in v.split(",")),
                   default=SEEDS, help="split seeds, comma-separated (default: %(default)s)")
    p.add_argument("--ablate", action="append", default=[], choices=sorted(ABLATIONS),
                   help="also train warmstart with this change taken back (repeatable)")
    p.add_argument("--no-baselines", action="store_true",
                   help="warmstart's rows only (while working on it; the table then lacks "
                        "the comparisons)")
    args = p.parse_args()
    import threadpoolctl

    threadpoolctl.threadpool_limits(1, "blas")  # implicit's advice; the machine has 2 cores
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-standard-"))
    load_avg = os.getloadavg()
    t0 = time.perf_counter()
    loaded = workdir / "loaded"
    load(LoadConfig(src=args.src, out=loaded, preset="movielens", like_threshold=1.0,
                    overwrite=True))
    ratings = read_interactions(loaded, tuple(available_days(loaded)))
    runs, curve = [], []
    for seed in args.seeds:
        s, rows, points = one_seed(loaded, ratings, workdir, seed, args.ablate,
                                   not args.no_baselines)
        runs.append(rows)
        curve += points
        print(f"seed {seed}: " + ", ".join(f"{r['name']} {r['quality']['ndcg']:.4f}"
                                           for r in rows), flush=True)
    test_users, _ = s.relevant(s.test)
    lines = [f"MovieLens ({args.src.name}), Microsoft Recommenders' protocol: stratified 75/25, "
             f"top {K}, training items removed; split seeds {args.seeds} ({machine()})",
             f"  {len(ratings):,} ratings, {len(s.user_ids)} users, {len(s.item_ids)} items; "
             f"{int(s.inner.sum()):,} inner-train / {int(s.val.sum()):,} validation / "
             f"{int(s.test.sum()):,} test ratings; {len(test_users)} test users (last seed)",
             *table(args.seeds, runs), *curve_lines(args.seeds, curve),
             f"  blend per segment, last seed: "
             f"{next(r for r in rows if r['name'] == 'warmstart served (blend)')['blend']}",
             f"  {time.perf_counter() - t0:.0f} s in all; {load_line(load_avg)}"]
    report(lines, "standard-movielens", args.save)


if __name__ == "__main__":
    main()
