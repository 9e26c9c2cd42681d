"""The sources fitted in closed form beside the two trained models, and the blend over all of
them: the `fit_sources` step of `warmstart train` (and of `warmstart finetune`).

    1 repeat share   do this data's users return to items they already have? (share of
                     validation clicks on items of the user's training history); under 1%,
                     serving leaves a user's own items out (MovieLens: 0%)
    2 item-item      EASE on the training days' clicks, its l2 picked on validation clicks
    3 popularity     clicks per item in each context (device, hour bucket) and demographic
                     cell (age bucket, gender), each click weighted by its age with a
                     half-life picked on validation clicks (on MovieLens' time split the
                     last days predict the next far better than all of them)
    4 blend          the serving path run over sampled validation users (their first
                     validation click's device and time, the version's sources as of the
                     training days): each candidate's signals, labelled by the user's
                     validation clicks; one set of weights per user segment (train/blend.py),
                     each kept only where it beats every single signal
    Every choice maximizes `SourcesConfig.objective` (NDCG@10 and recall@100, averaged).
    5 refit          item-item, histories and popularity again over training and validation
                     days with the picked settings: what serving answers from

Nothing here reads a test day. Every choice and its validation figures are written to
`sources.json` in the step's folder and the version's manifest.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from flows.layout import read_interactions
from train.artifacts import Bundle
from train.blend import OBJECTIVE, SEGMENTS, Blend, choose, metric
from train.features import Features, UserTable
from train.item_item import Histories, ItemItemConfig, fit_item_item
from train.metrics import ndcg_at_k, recall_at_k
from train.popularity import counts, decay
from train.sources import Sources


@dataclass(frozen=True)
class SourcesConfig:
    item_item: ItemItemConfig = field(default_factory=ItemItemConfig)
    # Half-lives (days) of a click's weight in popularity; None = no decay.
    half_lives: tuple[float | None, ...] = (1.0, 3.0, 7.0, 30.0, None)
    # The mean of these list metrics picks l2, the half-life and the blend: the top 10 (what
    # a page shows) and the top 100 (what ranking gets) both count; a decay can help one and
    # hurt the other.
    objective: tuple[str, ...] = OBJECTIVE
    blend_users: int = 2_000  # validation users sampled for the blend
    repeat_share: float = 0.01  # below this, a user's own items are left out of answers
    seed: int = 0


@dataclass(frozen=True)
class SourcesFit:
    """What the step gives a version: its sources (train/sources.py), and every choice made
    with its validation figures (`sources.json`, the manifest's `metrics["sources"]`)."""

    sources: Sources
    report: dict[str, Any]

    def save(self, folder: Path) -> None:
        self.sources.save(folder)
        (folder / "sources.json").write_text(json.dumps(self.report, indent=1, default=float))

    @classmethod
    def load(cls, folder: Path) -> SourcesFit:
        sources = Sources.load(folder)
        if sources is None:
            raise FileNotFoundError(f"{folder} holds no fitted sources")
        return cls(sources, json.loads((folder / "sources.json").read_text()))


@dataclass(frozen=True)
class Clicks:
    """Positive interactions of some days, as rows of the version's tables."""

    user: np.ndarray  # (N,) row in the user table, -1 for a user it lacks
    item: np.ndarray  # (N,) catalog row
    ts: np.ndarray  # (N,) datetime64[ms], NaT without a time
    device: np.ndarray  # (N,) device index
    hour: np.ndarray  # (N,) 0-23, -1 unknown

    @classmethod
    def read(cls, data: Path, days: tuple[int, ...], features: Features, table: UserTable,
             items: pd.DataFrame) -> Clicks:
        rows = read_interactions(data, days, ("user_id", "item_id", "ts", "hour", "device",
                                              "label"))
        rows = rows[rows["label"] == 1]
        pos = pd.Series(np.arange(len(items)), index=items["item_id"].astype(str))
        item = pos.reindex(rows["item_id"]).to_numpy()
        if np.isnan(item).any():
            bad = rows["item_id"].to_numpy()[np.isnan(item)][:3]
            raise ValueError(f"clicks on items missing from the catalog: {list(bad)}")
        return cls(user=table.positions(rows["user_id"].to_numpy(object)),
                   item=item.astype(np.int64), ts=rows["ts"].to_numpy("datetime64[ms]"),
                   device=features.lookup("device", rows["device"]),
                   hour=rows["hour"].to_numpy(np.int64))

    def matrix(self, n_users: int, n_items: int) -> sp.csr_matrix:
        """(U, I) binary: who clicked what (users the table lacks left out)."""
        known = self.user >= 0
        x = sp.csr_matrix((np.ones(int(known.sum()), np.float32),
                           (self.user[known], self.item[known])), shape=(n_users, n_items))
        x.data[:] = 1.0
        return x

    def __add__(self, other: Clicks) -> Clicks:
        return Clicks(*(np.concatenate([getattr(self, f), getattr(other, f)])
                        for f in ("user", "item", "ts", "device", "hour")))


def popularity_counts(clicks: Clicks, features: Features, n_items: int,
                      half_life: float | None) -> np.ndarray:
    """(I, D, H) decayed clicks per item, device and hour bucket."""
    return counts(clicks.item, clicks.device, clicks.hour, np.ones(len(clicks.item)),
                  n_items=n_items, n_devices=features.cardinalities["device"],
                  weight=decay(clicks.ts, half_life))


def demographic_counts(clicks: Clicks, features: Features, table: UserTable, n_items: int,
                       half_life: float | None) -> np.ndarray:
    """(I, A, G) decayed clicks per item, age bucket and gender (0 = unknown)."""
    known = clicks.user >= 0
    at = np.where(known, clicks.user, 0)
    age = features.age_columns(np.where(known, table.age[at], np.nan))["age_bucket"]
    gender = features.lookup("gender", np.where(known, table.gender[at], ""))
    n_ages, n_genders = features.cardinalities["age_bucket"], features.cardinalities["gender"]
    cell = (clicks.item * n_ages + age) * n_genders + gender  # N
    flat = np.bincount(cell, weights=decay(clicks.ts, half_life),
                       minlength=n_items * n_ages * n_genders)
    return flat.reshape(n_items, n_ages, n_genders)


def repeat_share(train: sp.csr_matrix, val: Clicks) -> float:
    """Share of validation clicks, by users with a training history, on items already in
    that history."""
    known = (val.user >= 0)
    known &= np.diff(train.indptr)[np.where(known, val.user, 0)] > 0
    if not known.any():
        return float("nan")
    had = np.asarray(train[val.user[known], val.item[known]]).ravel() > 0
    return float(had.mean())


def depth(metrics: tuple[str, ...]) -> int:
    """The longest list the metrics read."""
    return max(metric(m)[1] for m in metrics)


def objective(top: np.ndarray, relevant: list[np.ndarray], metrics: tuple[str, ...]) -> float:
    """The mean over `metrics` of their mean over users (train/metrics.py)."""
    fns = {"ndcg": ndcg_at_k, "recall": recall_at_k}
    return float(np.mean([np.nanmean(fns[name](top, relevant, k))
                          for name, k in map(metric, metrics)]))


def _relevant(val: Clicks, users: np.ndarray, exclude: sp.csr_matrix | None
              ) -> list[np.ndarray]:
    """Each of `users`' distinct validation items, less their training items when given."""
    frame = pd.DataFrame({"u": val.user, "i": val.item})
    by_user = frame[frame["u"] >= 0].groupby("u")["i"].apply(lambda s: np.unique(s.to_numpy()))
    out = []
    for u in users:
        rel = by_user.get(u, np.zeros(0, np.int64))
        if exclude is not None:
            rel = np.setdiff1d(rel, exclude.indices[exclude.indptr[u]:exclude.indptr[u + 1]])
        out.append(rel)
    return out


def _top(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None, users: np.ndarray
         ) -> np.ndarray:
    """(U, k) best rows per user (row u of `scores`), their training items left out when
    given."""
    s = scores.copy()
    if exclude is not None:
        sub = exclude[users]
        s[sub.nonzero()] = -np.inf
    k = min(k, s.shape[1])
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def tune_l2(train: sp.csr_matrix, val: Clicks, cfg: SourcesConfig, exclude: bool,
            rng: np.random.Generator) -> tuple[float, dict[str, float]]:
    """The l2 of `cfg.item_item.l2_grid` whose EASE ranks validation clicks best (the
    objective over users with a training history), and every value's figure."""
    users = np.unique(val.user[(val.user >= 0)])
    users = users[np.diff(train.indptr)[users] > 0]
    if len(users) > cfg.blend_users:
        users = np.sort(rng.choice(users, cfg.blend_users, replace=False))
    if not len(users) or train.shape[1] > cfg.item_item.dense_max_items:
        return cfg.item_item.l2, {}
    ex = train if exclude else None
    rel = _relevant(val, users, ex)
    recall = {}
    for l2 in cfg.item_item.l2_grid:
        scores = fit_item_item(train, cfg.item_item, l2).score_matrix(train[users])
        recall[str(l2)] = objective(_top(scores, depth(cfg.objective), ex, users), rel,
                                    cfg.objective)
    best = max(recall, key=lambda v: recall[v])
    return float(best), recall


def tune_half_life(clicks: Clicks, val: Clicks, n_items: int, cfg: SourcesConfig
                   ) -> tuple[float | None, dict[str, float]]:
    """The half-life of `cfg.half_lives` whose decayed popularity ranks the validation
    clicks best (the objective over every validation user: one list for all), and each
    one's figure."""
    users = np.unique(val.user)
    frame = pd.DataFrame({"u": val.user, "i": val.item})
    rel = [np.unique(g.to_numpy()) for _, g in frame.groupby("u")["i"]]
    recall = {}
    for h in cfg.half_lives:
        pop = np.bincount(clicks.item, weights=decay(clicks.ts, h), minlength=n_items)
        top = np.tile(np.argsort(-pop, kind="stable")[:depth(cfg.objective)], (len(users), 1))
        recall[str(h)] = objective(top, rel, cfg.objective)
    best = max(cfg.half_lives, key=lambda h: recall[str(h)])
    return best, recall


def fit_blend(bundle: Bundle, data: Path, val_days: tuple[int, ...], val: Clicks,
              cfg: SourcesConfig, rng: np.random.Generator) -> tuple[Blend, dict[str, Any]]:
    """The blend of `bundle` (whose sources are the training days'), fitted on sampled
    validation users through the serving path itself."""
    from serve.pipeline import Pipeline, Request, bare_stores
    from serve.state import build_state

    assert bundle.sources is not None  # the provisional ones: which history to exclude
    provisional = bundle.sources.blend
    rows = read_interactions(data, val_days, ("user_id", "item_id", "ts", "device", "label"))
    rows = rows[rows["label"] == 1].sort_values("ts", kind="stable")
    first = rows.drop_duplicates("user_id")
    if len(first) > cfg.blend_users:
        first = first.iloc[np.sort(rng.choice(len(first), cfg.blend_users, replace=False))]
    state = build_state(bundle, interests=None)
    pipeline = Pipeline(state, bare_stores(state))
    clicked = rows.groupby("user_id")["item_id"].apply(
        lambda s: np.unique(s.map(state.item_pos).to_numpy(np.int64)))

    async def lists() -> dict[str, list[tuple[np.ndarray, np.ndarray, int]]]:
        out: dict[str, list[tuple[np.ndarray, np.ndarray, int]]] = {s: [] for s in SEGMENTS}
        for r in first.itertuples():
            ts = pd.Timestamp(r.ts).to_pydatetime() if pd.notna(r.ts) else None
            ranked = await pipeline.ranked(Request(user_id=r.user_id, device=r.device,
                                                   timestamp=ts, k=10))
            rel = clicked[r.user_id]
            if provisional.exclude_history:
                rel = np.setdiff1d(rel, ranked.user.items)
            if not len(rel):
                continue
            y = np.isin(ranked.cands.rows, rel).astype(np.int8)
            out[ranked.user.segment].append((ranked.signals, y, len(rel)))
        return out

    by_segment = asyncio.run(lists())
    segments, report = {}, {}
    for seg, got in by_segment.items():
        if not got:
            continue
        x = np.concatenate([g[0] for g in got])
        y = np.concatenate([g[1] for g in got])
        groups = np.repeat(np.arange(len(got)), [len(g[1]) for g in got])
        relevant = np.array([g[2] for g in got])
        chosen = choose(x, y, groups, relevant, cfg.objective, seed=cfg.seed)
        report[seg] = {"users": len(got), "clicked_candidates": int(y.sum()),
                       "relevant": int(relevant.sum())}
        if chosen is not None:
            segments[seg] = chosen
            report[seg] |= {"chosen": chosen.chosen, "held_out_recall": chosen.validation,
                            "weights": dict(zip(provisional.signals, chosen.weights,
                                                strict=True))}
    blend = replace(provisional, segments=segments)
    return blend, report


def fit_sources(bundle: Bundle, data: Path, train_days: tuple[int, ...],
                val_days: tuple[int, ...], cfg: SourcesConfig) -> SourcesFit:
    """Every closed-form source of `bundle`'s version, and the blend (module docstring)."""
    rng = np.random.default_rng(cfg.seed)
    features, table, items = bundle.features, bundle.user_table, bundle.items
    n_users, n_items = len(table.rows), len(items)
    clicks = Clicks.read(data, train_days, features, table, items)
    val = Clicks.read(data, val_days, features, table, items)
    x_train = clicks.matrix(n_users, n_items)

    share = repeat_share(x_train, val)  # 1
    exclude = bool(np.isfinite(share) and share < cfg.repeat_share)
    l2, l2_recall = tune_l2(x_train, val, cfg, exclude, rng)  # 2
    half_life, hl_recall = tune_half_life(clicks, val, n_items, cfg)  # 3
    provisional = Sources(
        popularity=popularity_counts(clicks, features, n_items, half_life),
        demographic=demographic_counts(clicks, features, table, n_items, half_life),
        item_item=fit_item_item(x_train, cfg.item_item, l2), histories=Histories.of(x_train),
        blend=Blend.single("dlrm", exclude_history=exclude, repeat_share=share))
    blend, blend_report = fit_blend(replace(bundle, sources=provisional), data, val_days, val,
                                    cfg, rng)  # 4
    both = clicks + val  # 5
    x_all = both.matrix(n_users, n_items)
    report = {"repeat_share": share, "exclude_history": exclude,
              "item_item": {"kind": provisional.item_item.kind, "l2": l2,
                            "validation": l2_recall},
              "half_life_days": half_life, "half_life_validation": hl_recall,
              "objective": list(cfg.objective), "blend": blend_report,
              "refit_days": sorted(set(train_days) | set(val_days))}
    return SourcesFit(Sources(
        popularity=popularity_counts(both, features, n_items, half_life),
        demographic=demographic_counts(both, features, table, n_items, half_life),
        item_item=fit_item_item(x_all, cfg.item_item, l2), histories=Histories.of(x_all),
        blend=blend), report)
