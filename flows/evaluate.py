"""`warmstart evaluate`: test-day quality beside popularity and the generator's oracle.

Retrieval: recall and NDCG at 10 and K of each test user's clicked items in
    serving     the serving path's top K (every source, ranked and blended), each user in
                the context (device, time) of their first test click
    two_tower   the Two-Tower top-K (FAISS) alone
    popularity  the K most-clicked training items, and the version's own popularity
                variants: decayed over training and validation days (`recent`), in the
                test click's device and hour (`context`), in the user's age and gender cell
                (`demographic`)
    oracle      the K items with the most expected clicks under the true model
A version whose users never return to an item (`Blend.exclude_history`, MovieLens) leaves
each user's own items out of every list alike. Ranking: AUC and log loss of the DLRM on test
impressions, beside item click-through rate from training and the true click probability.
Slices: overall; cold (outside the training vocabulary); new (no interaction at all in the
version's training and validation days); few (1-3 clicks there); known users masked to OOV at
inference (Two-Tower); per device. Users are sampled per slice: `max_users` at random for
every slice but two, and the new and few slices topped up to `slice_users` each (where the
data has them), so a difference of about 0.01 in their recall@K is not lost in sampling noise.
Each retrieval figure comes with a 95% interval, a percentile bootstrap over the slice's users.
Oracle figures need the `truth/` folder that `warmstart generate` writes; for other data they
are left out.

Diversity: the serving path's top 10 at each `diversity` setting (serve/sampling.py), NDCG@10
beside its fraction of setting 0's and the categories per list: the curve ServeConfig's
default is read from.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows.generate.world import World
from flows.layout import ARTIFACTS, DATA, TRUTH, Split, read_interactions
from index.faiss_index import search
from train.artifacts import Bundle, load_bundle
from train.features import featurize, mask_user_attributes, mask_user_past
from train.metrics import auc, log_loss, ndcg_at_k, recall_at_k
from train.scoring import click_probability, user_vectors
from train.storage import location


@dataclass(frozen=True)
class EvalConfig:
    split: Split = field(default_factory=Split)
    k: int = 100
    max_users: int = 1000  # test users sampled for recall (the oracle costs ~10 ms a user)
    # Users sampled for each of the new and few slices (those already in the `max_users`
    # sample included): about 1,000 puts a 95% interval of +-0.02 on their recall@K.
    slice_users: int = 1000
    resamples: int = 1000  # bootstrap resamples of each slice's users, for the intervals
    max_impressions: int = 300_000  # test impressions sampled for AUC
    # Diversity settings of the serving path whose NDCG@10 and categories per top 10 are
    # reported (0 = top-k by score); users sampled for it (each ranked once, then re-ranked at
    # every setting).
    diversity: tuple[float, ...] = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0)
    diversity_users: int = 1000
    oracle: bool = True  # score the generator's oracle when the data has ground truth
    serving: bool = True  # score the serving path's answer (every source, blended)
    seed: int = 0


Figures = dict[str, dict[str, float]]  # slice -> metric -> value
Intervals = dict[str, dict[str, tuple[float, float]]]  # slice -> metric -> (low, high)


@dataclass(frozen=True)
class RetrievalReport:
    """Recall and NDCG at 10 and `k` of each method's lists, per slice of test users, each
    with its 95% bootstrap interval (`intervals`; empty in a report written before them)."""

    k: int
    users: int  # sampled, all slices together
    cold_users: int
    new_users: int
    few_users: int
    history_excluded: bool  # each user's own items left out of every list
    methods: dict[str, Figures]  # "serving", "two_tower", "popularity", ... (METHODS)
    intervals: dict[str, Intervals] = field(default_factory=dict)  # method -> ...
    slice_users: dict[str, int] = field(default_factory=dict)  # users behind each slice
    # test users with a click in the data, overall and in the new and few slices
    population: dict[str, int] = field(default_factory=dict)

    def figure(self, method: str, metric: str, slice: str = "overall") -> float:
        """One figure: `metric` ("recall@10", f"ndcg@{k}", ...) of `method` in `slice`."""
        return self.methods[method][slice][metric]

    def interval(self, method: str, metric: str, slice: str = "overall"
                 ) -> tuple[float, float] | None:
        """The figure's 95% interval, None when the report has none."""
        return self.intervals.get(method, {}).get(slice, {}).get(metric)


@dataclass(frozen=True)
class RankingReport:
    """AUC and log loss of click scores on test impressions, per slice."""

    impressions: int
    cold_impressions: int
    methods: dict[str, Figures]  # "dlrm", "popularity", "oracle"

    def figure(self, method: str, metric: str, slice: str = "overall") -> float:
        return self.methods[method][slice][metric]


@dataclass(frozen=True)
class DiversityFigures:
    ndcg_at_10: float
    category_diversity: float  # share of item pairs in a list from different categories
    categories_per_list: float


@dataclass(frozen=True)
class DiversityReport:
    """The serving path's top 10 at each diversity setting (0 = top-k by score)."""

    users: int
    settings: dict[str, DiversityFigures]  # str(setting) -> figures


_COUNTS = {"retrieval": ("k", "users", "cold_users", "new_users", "few_users",
                         "history_excluded", "slice_users", "population"),
           "ranking": ("impressions", "cold_impressions")}
_INTERVALS = "intervals"  # beside the methods in the retrieval's JSON: method -> slice -> ...


@dataclass(frozen=True)
class EvalReport:
    """What `warmstart evaluate` measures on a version's test days. Its JSON form (`to_dict`,
    `from_dict`) is what a version's manifest keeps under `metrics["evaluation"]`: each
    part's counts beside its methods' figures."""

    retrieval: RetrievalReport
    ranking: RankingReport
    diversity: DiversityReport | None
    test_days: tuple[int, ...]
    oracle: bool  # the data has ground truth: oracle rows are present

    def to_dict(self) -> dict[str, Any]:  # JSON: the manifest's form
        div = self.diversity
        return {
            "retrieval": {n: getattr(self.retrieval, n) for n in _COUNTS["retrieval"]}
            | self.retrieval.methods | {_INTERVALS: {
                m: {sl: {metric: list(lh) for metric, lh in f.items()} for sl, f in v.items()}
                for m, v in self.retrieval.intervals.items()}},
            "ranking": {n: getattr(self.ranking, n) for n in _COUNTS["ranking"]}
            | self.ranking.methods,
            "diversity": {} if div is None else {"users": div.users, "settings": {
                d: {"ndcg@10": f.ndcg_at_10, "category_diversity": f.category_diversity,
                    "categories_per_list": f.categories_per_list}
                for d, f in div.settings.items()}},
            "test_days": list(self.test_days),
            "oracle": self.oracle,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalReport:
        """The report of a manifest's `metrics["evaluation"]`; ValueError when the version
        was published without one (its test days were empty) or it is not such a report."""
        if "skipped" in d:
            raise ValueError(f"the version was published without an evaluation ({d['skipped']});"
                             " run `warmstart evaluate --data DIR` on data with test days")
        if missing := {"retrieval", "ranking", "test_days", "oracle"} - set(d):
            raise ValueError(f"not an evaluation report: it lacks {sorted(missing)}")
        r, g, div = d["retrieval"], d["ranking"], d.get("diversity") or {}
        return cls(
            retrieval=RetrievalReport(
                k=r["k"], users=r["users"], cold_users=r["cold_users"],
                new_users=r.get("new_users", 0), few_users=r.get("few_users", 0),
                history_excluded=bool(r.get("history_excluded", False)),
                methods={m: v for m, v in r.items()
                         if m not in _COUNTS["retrieval"] and m != _INTERVALS},
                intervals={m: {sl: {metric: (lh[0], lh[1]) for metric, lh in f.items()}
                               for sl, f in v.items()}
                           for m, v in r.get(_INTERVALS, {}).items()},
                slice_users=r.get("slice_users", {}), population=r.get("population", {})),
            ranking=RankingReport(
                impressions=g["impressions"], cold_impressions=g["cold_impressions"],
                methods={m: v for m, v in g.items() if m not in _COUNTS["ranking"]}),
            diversity=DiversityReport(div["users"], {
                s: DiversityFigures(f["ndcg@10"], f["category_diversity"],
                                    f["categories_per_list"])
                for s, f in div["settings"].items()}) if div else None,
            test_days=tuple(d["test_days"]), oracle=bool(d["oracle"]))


def evaluate(bundle: Bundle, data: Path, cfg: EvalConfig | None = None) -> EvalReport:
    cfg = cfg or EvalConfig()
    rng = np.random.default_rng(cfg.seed)
    items = bundle.items
    item_pos = {iid: n for n, iid in enumerate(items["item_id"])}
    # None for data without ground truth (e.g. MovieLens), or when not asked for
    world = _world(data, items) if cfg.oracle else None
    oracle = ("p_click",) if world is not None else ()  # the true click probability
    test = read_interactions(data, cfg.split.test,
                             ("user_id", "item_id", "ts", "hour", "weekday", "device", "label",
                              *oracle))
    if test.empty:
        raise ValueError(f"no test interactions on days {cfg.split.test} in {data}")
    train = read_interactions(data, cfg.split.train, ("item_id", "label"))
    known = set(bundle.features.users)
    test["cold"] = ~test["user_id"].isin(known)
    seen = read_interactions(data, cfg.split.train + cfg.split.val, ("user_id", "label"))
    test["interactions"] = test["user_id"].map(seen.groupby("user_id").size()).fillna(0)
    test["clicks"] = test["user_id"].map(seen.groupby("user_id")["label"].sum()).fillna(0)

    # Popularity from training: clicks per item, and smoothed click-through rate.
    pos = train["item_id"].map(item_pos).to_numpy()
    clicks = np.bincount(pos, weights=train["label"], minlength=len(items))
    shows = np.bincount(pos, minlength=len(items))
    prior = clicks.sum() / max(shows.sum(), 1)
    ctr = (clicks + 20 * prior) / (shows + 20)

    return EvalReport(retrieval=_retrieval(bundle, test, world, clicks, item_pos, cfg, rng),
                      ranking=_ranking(bundle, test, ctr, item_pos, cfg, rng),
                      diversity=_diversity(bundle, test, item_pos, cfg, rng),
                      test_days=tuple(cfg.split.test), oracle=world is not None)


def _world(data: Path, items: pd.DataFrame) -> World | None:
    try:
        return World.load(data / TRUTH, items)
    except FileNotFoundError:
        return None


SLICES = ("overall", "cold", "new", "few", "masked", "web", "ios", "android")
FEW = (1, 3)  # clicks known of a user in the "few" slice


def _retrieval(bundle: Bundle, test: pd.DataFrame, world: World | None, clicks: np.ndarray,
               item_pos: dict[str, int], cfg: EvalConfig, rng: np.random.Generator
               ) -> RetrievalReport:
    """Recall and NDCG at 10 and K of each sampled test user's clicked items, with 95%
    intervals.

    Slices: cold users (no training interactions); new users (nothing at all known of them);
    few (1-3 known clicks); "masked", known users whose features are replaced by OOV at
    inference (what a known user looks like before login); and per device, where a user's
    relevant items are their clicks on that device. The new and few slices have their own
    larger samples (`sample_users`); the others read the uniform `max_users` sample.
    """
    clicked = test[test["label"] == 1]
    per_user = clicked.drop_duplicates("user_id").set_index("user_id")
    new_all = per_user["interactions"].to_numpy() == 0
    few_all = per_user["clicks"].between(*FEW).to_numpy()
    users, base = sample_users(per_user.index.to_numpy(), {"new": new_all, "few": few_all},
                               cfg.max_users, cfg.slice_users, rng)
    clicked = clicked[clicked["user_id"].isin(users)]
    first = clicked.sort_values("ts", kind="stable").drop_duplicates("user_id").set_index(
        "user_id").loc[users]  # each user's first test click: the context of their request
    exclude = bundle.sources is not None and bundle.sources.blend.exclude_history
    history = _histories(bundle, users) if exclude else [np.zeros(0, np.int64)] * len(users)
    relevant = _relevant(clicked, users, history, item_pos)
    cold = ~np.isin(users, list(bundle.features.users))
    new = first["interactions"].to_numpy() == 0
    few = first["clicks"].between(*FEW).to_numpy()
    tops, masked_top = _lists(bundle, users, first, history, clicks, world, cfg)
    keeps = {"cold": base & cold, "new": new, "few": few, "masked": base & ~cold}
    methods: dict[str, Figures] = {}
    intervals: dict[str, Intervals] = {}
    slice_users: dict[str, int] = {}
    for name, top in tops.items():
        methods[name], intervals[name] = {}, {}
        for n_slice, sl in enumerate(SLICES):
            rel = relevant.get(sl, relevant["overall"])
            t = masked_top if (sl == "masked" and name == "two_tower") else top
            keep = keeps.get(sl, base) & np.array([len(r) > 0 for r in rel])
            if not keep.any():
                continue  # no clicks in this slice (a device the data lacks, no cold users)
            slice_users[sl] = int(keep.sum())
            rel_kept = [r for r, kept in zip(rel, keep, strict=True) if kept]
            methods[name][sl], intervals[name][sl] = {}, {}
            for kk in (10, cfg.k):
                for metric, fn in (("recall", recall_at_k), ("ndcg", ndcg_at_k)):
                    per_user_figure = fn(t[keep], rel_kept, kk)  # U_slice
                    methods[name][sl][f"{metric}@{kk}"] = float(per_user_figure.mean())
                    # one seed per slice: every method and metric of a slice is resampled
                    # over the same users, so their intervals are paired
                    intervals[name][sl][f"{metric}@{kk}"] = bootstrap_interval(
                        per_user_figure, cfg.resamples, seed=(cfg.seed, n_slice))
    return RetrievalReport(k=cfg.k, users=int(len(users)), cold_users=int((base & cold).sum()),
                           new_users=int(new.sum()), few_users=int(few.sum()),
                           history_excluded=exclude, methods=methods, intervals=intervals,
                           slice_users=slice_users,
                           population={"overall": len(per_user), "new": int(new_all.sum()),
                                       "few": int(few_all.sum())})


def sample_users(users: np.ndarray, strata: dict[str, np.ndarray], n: int, per_stratum: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(sorted users, (U,) bool: in the uniform sample): `n` users at random, and the first
    `per_stratum` of each stratum (bool masks over `users`) in the same random order, so a
    stratum's sample is uniform within it and holds the uniform sample's members of it.

    Example: 10,000 users of which 700 new, n = 1,000 (70 of them new), per_stratum = 1,000:
    the 1,000, then the other 630 new users: 1,630 users, the new slice all 700."""
    order = rng.permutation(len(users))
    chosen = np.zeros(len(users), bool)
    chosen[order[:n]] = True
    base = chosen.copy()
    for mask in strata.values():
        in_stratum = order[mask[order]]  # the stratum's positions, in the random order
        chosen[in_stratum[:per_stratum]] = True
    at = np.argsort(users[chosen], kind="stable")
    return users[chosen][at], base[chosen][at]


def bootstrap_interval(values: np.ndarray, resamples: int, seed: int | tuple[int, ...],
                       level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of `values`' mean (U,): the users resampled with
    replacement `resamples` times, seeded, so the same values and seed give the same
    interval."""
    if len(values) == 0 or resamples < 1:
        return float("nan"), float("nan")
    picks = np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))
    means = values[picks].mean(axis=1)  # resamples
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _relevant(clicked: pd.DataFrame, users: np.ndarray, history: list[np.ndarray],
              item_pos: dict[str, int]) -> dict[str, list[np.ndarray]]:
    """Per slice ("overall" and each device), each user's distinct clicked catalog rows, less
    their history (when it is left out of the lists)."""
    rows = clicked["item_id"].map(item_pos)

    def unique(r: pd.Series) -> pd.Series:
        return r.groupby(clicked["user_id"]).apply(lambda s: np.unique(s.to_numpy()))

    per_user = unique(rows)
    relevant = {"overall": [np.setdiff1d(per_user[u], h) for u, h in
                            zip(users, history, strict=True)]}
    for device in ("web", "ios", "android"):
        on = unique(rows[clicked["device"] == device])
        relevant[device] = [np.setdiff1d(on.get(u, np.array([], dtype=np.int64)), h)
                            for u, h in zip(users, history, strict=True)]
    return relevant


def _lists(bundle: Bundle, users: np.ndarray, first: pd.DataFrame, history: list[np.ndarray],
           clicks: np.ndarray, world: World | None, cfg: EvalConfig
           ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(U, k) each method's list per user, and the Two-Tower's with every user masked to
    OOV."""
    k = cfg.k
    deep = k + max((len(h) for h in history), default=0)  # enough left after excluding
    u_cols = bundle.features.user_features(users, bundle.user_table)
    masked_cols = {name: np.zeros_like(v) for name, v in u_cols.items()}  # all OOV
    ranked = {
        "two_tower": search(bundle.index, user_vectors(bundle.two_tower, u_cols), deep)[1],
        "popularity": np.tile(np.argsort(-clicks, kind="stable")[:deep], (len(users), 1)),
    } | _popularity_variants(bundle, first, u_cols, deep)
    tops = {name: _without(r, history, k) for name, r in ranked.items()}
    if cfg.serving:
        tops["serving"] = _serving(bundle, first, users, k)
    masked_top = _without(search(bundle.index, user_vectors(bundle.two_tower, masked_cols),
                                 deep)[1], history, k)
    if world is not None:
        uidx = pd.Series(np.arange(world.n_users), index=world.user_ids).reindex(users)
        if uidx.isna().any():
            raise ValueError("test users are missing from the ground truth; was the data "
                             "folder regenerated after training?")
        expected = world.expected_clicks(uidx.to_numpy(np.int64))  # U, I
        tops["oracle"] = np.argsort(-expected, axis=1)[:, :k]
    return tops, masked_top


def _histories(bundle: Bundle, users: np.ndarray) -> list[np.ndarray]:
    """Each user's items in the version (train and validation clicks), [] for a stranger."""
    if bundle.sources is None:
        return [np.zeros(0, np.int64)] * len(users)
    rows = bundle.user_table.positions(np.asarray(users, dtype=object))
    return [bundle.sources.histories.row(int(r)).astype(np.int64) for r in rows]


def _without(ranked: np.ndarray, history: list[np.ndarray], k: int) -> np.ndarray:
    """(U, k) each row of `ranked` (U, >= k) with the user's history left out."""
    out = np.full((len(ranked), k), -1, dtype=np.int64)
    for u, (r, h) in enumerate(zip(ranked, history, strict=True)):
        kept = r[~np.isin(r, h)][:k] if len(h) else r[:k]
        out[u, :len(kept)] = kept
    return out


def _popularity_variants(bundle: Bundle, first: pd.DataFrame, u_cols: dict[str, np.ndarray],
                         n: int) -> dict[str, np.ndarray]:
    """(U, n) lists of the version's popularity: decayed over its days (`recent`), in each
    user's first test click's device and hour (`context`), in their demographic cell."""
    from serve.context import request_context
    from serve.popularity import Demographic, Popularity

    out: dict[str, np.ndarray] = {}
    sources = bundle.sources
    if sources is None:
        return out
    pop = Popularity(sources.popularity, bundle.item_rows["category"])
    overall = sources.popularity.sum(axis=(1, 2))
    out["popularity_recent"] = np.tile(np.argsort(-overall, kind="stable")[:n],
                                       (len(first), 1))
    time_known = bundle.features.time_known
    ctx = [request_context(d, pd.Timestamp(t).to_pydatetime() if pd.notna(t) else None,
                           bundle.features.devices, time_known)
           for d, t in zip(first["device"], first["ts"], strict=True)]
    out["popularity_context"] = np.stack([pop.top(c.device_index, c.hour, None, n)
                                          for c in ctx])
    demo = Demographic(sources.demographic)
    out["popularity_demographic"] = np.stack([
        demo.top(int(a), int(g), n) for a, g in zip(u_cols["age_bucket"], u_cols["gender"],
                                                    strict=True)])
    return out


def _serving(bundle: Bundle, first: pd.DataFrame, users: np.ndarray, k: int) -> np.ndarray:
    """(U, k) the serving path's answers (bare stores: the version as published), each user
    in the device and time of their first test click."""
    import asyncio

    from serve.pipeline import Pipeline, Request, bare_stores
    from serve.state import build_state

    state = build_state(bundle)
    pipeline = Pipeline(state, bare_stores(state))

    async def answers() -> np.ndarray:
        out = np.full((len(users), k), -1, dtype=np.int64)
        for n, (u, r) in enumerate(zip(users, first.itertuples(), strict=True)):
            ts = pd.Timestamp(r.ts).to_pydatetime() if pd.notna(r.ts) else None
            a = await pipeline.recommend(Request(user_id=u, device=r.device, timestamp=ts, k=k))
            got = [state.item_pos[i.item_id] for i in a.items]
            out[n, :len(got)] = got
        return out

    return asyncio.run(answers())


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def _ranking(bundle: Bundle, test: pd.DataFrame, ctr: np.ndarray, item_pos: dict[str, int],
             cfg: EvalConfig, rng: np.random.Generator) -> RankingReport:
    """AUC and log loss on test impressions, by the same slices as retrieval."""
    if len(test) > cfg.max_impressions:
        test = test.iloc[np.sort(rng.choice(len(test), cfg.max_impressions, replace=False))]
    rows = featurize(test, bundle.features, bundle.user_table, bundle.item_rows, item_pos)
    every = np.ones(len(test), dtype=bool)
    masked = mask_user_attributes(mask_user_past(rows, every), every)  # nothing known

    def dlrm(cols: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([
            click_probability(bundle.dlrm, {key: v[s:s + 65536] for key, v in cols.items()})
            for s in range(0, len(test), 65536)])

    y = test["label"].to_numpy()
    cold = test["cold"].to_numpy(bool)
    device = test["device"].to_numpy()
    scores = {"dlrm": dlrm(rows), "popularity": ctr[rows["item_row"]]}
    masked_scores = dlrm(masked)
    if "p_click" in test:
        scores["oracle"] = test["p_click"].to_numpy()
    methods: dict[str, Figures] = {}
    for name, s in scores.items():
        methods[name] = {}
        for sl in SLICES:
            keep = {"overall": np.ones(len(y), bool), "cold": cold,
                    "masked": ~cold}.get(sl, device == sl)
            if not keep.any():
                continue  # no impressions in this slice
            ss = masked_scores if (sl == "masked" and name == "dlrm") else s
            methods[name][sl] = {"auc": auc(y[keep], ss[keep]),
                                 "log_loss": log_loss(y[keep], ss[keep])}
    return RankingReport(impressions=int(len(test)), cold_impressions=int(cold.sum()),
                         methods=methods)


def _diversity(bundle: Bundle, test: pd.DataFrame, item_pos: dict[str, int],
               cfg: EvalConfig, rng: np.random.Generator) -> DiversityReport | None:
    """The serving path's top 10 at each diversity setting, for test users in the context of
    their first test click: NDCG@10 of their test clicks, categories per list, and intra-list
    category diversity (the share of item pairs in a list from different categories; 0 = one
    category). Each user is ranked once (stages 1-6) and stage 7 chooses at every setting,
    as `Pipeline.recommend` does."""
    import asyncio

    from serve.pipeline import Pipeline, Ranked, Request, bare_stores
    from serve.state import build_state

    clicked = test[test["label"] == 1].drop_duplicates("user_id")
    if len(clicked) > cfg.diversity_users:
        clicked = clicked.iloc[np.sort(rng.choice(len(clicked), cfg.diversity_users,
                                                  replace=False))]
    if clicked.empty or not cfg.diversity:
        return None
    relevant = test[(test["label"] == 1) & test["user_id"].isin(clicked["user_id"])]
    rel = relevant.groupby("user_id")["item_id"].apply(
        lambda s: np.unique(s.map(item_pos).to_numpy()))
    state = build_state(bundle)
    pipeline = Pipeline(state, bare_stores(state))
    category = state.item_category

    async def rank_all() -> list[Ranked]:
        out = []
        for r in clicked.itertuples():
            ts = pd.Timestamp(r.ts).to_pydatetime() if pd.notna(r.ts) else None
            out.append(await pipeline.ranked(Request(user_id=r.user_id, device=r.device,
                                                     timestamp=ts, k=10)))
        return out

    ranked = asyncio.run(rank_all())
    settings = {}
    for d in cfg.diversity:
        top = np.array([r.cands.rows[pipeline.chosen(state, r, 10, d)] for r in ranked],
                       dtype=np.int64)  # U, 10
        cats = category[top]  # U, 10
        pairs = (cats[:, :, None] != cats[:, None, :]).sum((1, 2)) / (10 * 9)
        settings[str(d)] = DiversityFigures(
            ndcg_at_10=_nanmean(ndcg_at_k(top, [rel[u] for u in clicked["user_id"]], 10)),
            category_diversity=float(pairs.mean()),
            categories_per_list=float(np.mean([len(set(c)) for c in cats.tolist()])))
    return DiversityReport(users=int(len(clicked)), settings=settings)


METHODS = ("serving", "two_tower", "popularity", "popularity_recent", "popularity_context",
           "popularity_demographic", "oracle")


def format_report(report: EvalReport) -> str:
    r, g, k = report.retrieval, report.ranking, report.retrieval.k
    models = [m for m in METHODS if m in r.methods]
    slices = [sl for sl in SLICES if sl in r.methods["two_tower"]]  # those without rows: out
    width = 13 if r.intervals else 9  # "0.695 ±0.012" with intervals
    head = "".join(f"{sl:>{width}}" for sl in slices)
    lines = [f"retrieval on {r.users} test users; users per slice: "
             + ", ".join(f"{sl} {n}" for sl, n in r.slice_users.items())
             if r.slice_users else
             f"retrieval on {r.users} test users ({r.cold_users} cold, {r.new_users} new, "
             f"{r.few_users} with 1-3 clicks)"]
    if r.population:
        lines.append(f"  sampled: {r.slice_users.get('overall', 0)} of the "
                     f"{r.population['overall']:,} test users with a click, for every slice "
                     f"but new ({r.new_users} of {r.population['new']:,}) and few, 1-3 clicks "
                     f"({r.few_users} of {r.population['few']:,})")
    lines.append("  masked = known users with OOV features at inference"
                 + ("; ± half the 95% interval (bootstrap over the slice's users)"
                    if r.intervals else ""))
    if r.history_excluded:
        lines.append("  each user's own items are left out of every list (users of this data "
                     "never return to an item)")
    if not report.oracle:
        lines.append("  no ground truth in this dataset: oracle rows omitted")

    def cell(m: str, metric: str, sl: str) -> str:
        if sl not in r.methods[m]:
            return f"{'':>{width}}"
        ci = r.interval(m, metric, sl)
        half = "" if ci is None else f" ±{(ci[1] - ci[0]) / 2:.3f}"
        return f"{r.figure(m, metric, sl):.3f}{half}".rjust(width)

    for metric in (f"recall@{k}", "recall@10", f"ndcg@{k}", "ndcg@10"):
        lines.append(f"  {metric:<24}{head}")
        for m in models:
            lines.append(f"    {m:<22}" + "".join(cell(m, metric, sl) for sl in slices))
    if "oracle" in r.methods:
        for m in (m for m in ("serving", "two_tower") if m in r.methods):
            share = r.figure(m, f"recall@{k}") / r.figure("oracle", f"recall@{k}")
            lines.append(f"  {m} recall@{k} is {share:.0%} of the oracle's")
    lines.append(f"ranking on {g.impressions:,} test impressions ({g.cold_impressions:,} "
                 "from cold users):")
    slices = [sl for sl in SLICES if sl in g.methods["dlrm"]]
    head = "".join(f"{sl:>9}" for sl in slices)
    for metric in ("auc", "log_loss"):
        lines.append(f"  {metric:<24}{head}")
        for m in (m for m in ("dlrm", "popularity", "oracle") if m in g.methods):
            lines.append(f"    {m:<22}" + "".join(f"{g.figure(m, metric, sl):>9.4f}"
                                                  for sl in slices))
    if report.diversity is not None and report.diversity.settings:
        lines += _format_diversity(report.diversity)
    return "\n".join(lines)


def _format_diversity(div: DiversityReport) -> list[str]:
    """The curve ServeConfig.diversity is read from: NDCG@10 and its fraction of setting 0's
    beside the categories per top 10."""
    base = div.settings.get("0.0")
    lines = [f"serving top 10 by diversity setting ({div.users} test users, in the context of "
             "their first test click; serve/sampling.py):",
             f"  {'diversity':<12}{'ndcg@10':>9}{'of d=0':>9}{'categories':>12}"
             f"{'category diversity':>20}"]
    for d, f in div.settings.items():
        share = f"{f.ndcg_at_10 / base.ndcg_at_10:.1%}" if base and base.ndcg_at_10 else ""
        lines.append(f"  {d:<12}{f.ndcg_at_10:>9.4f}{share:>9}{f.categories_per_list:>12.2f}"
                     f"{f.category_diversity:>20.3f}")
    return lines


# A URI location is mirrored locally for the run, and uploaded after when written
# (train/storage.py).
LOCATIONS = {"data": "read", "artifacts": "read"}


def add_args(p: argparse.ArgumentParser) -> None:
    d = EvalConfig()
    p.add_argument("--data", type=location, default=DATA)
    p.add_argument("--artifacts", type=location, default=ARTIFACTS,
                   help="artifact root (uses LATEST) or a version folder")
    p.add_argument("--users", type=int, default=d.max_users,
                   help="test users sampled at random for recall, every slice but new and few, "
                   f"which are topped up to {d.slice_users} each (default %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")


def config(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(max_users=args.users)


def run(args: argparse.Namespace) -> None:
    bundle = load_bundle(args.artifacts)
    report = evaluate(bundle, args.data, config(args))
    print(f"version {bundle.version}")
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=1))


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("evaluate")
