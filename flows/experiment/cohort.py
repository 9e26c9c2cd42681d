"""The evaluated users: each reduced to one known click, with their later clicks as the
ground truth, the popularity baseline and, on synthetic data, the oracle's top-k."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flows.experiment.config import ExperimentConfig
from flows.generate.world import World
from flows.layout import LOAD_REPORT, TRUTH, read_interactions, read_items, read_reviews
from interests.profiles import build_profiles


@dataclass
class Cohort:
    items: pd.DataFrame
    users: list[str]
    known_item: np.ndarray  # (U,) catalog row of each user's single training click
    relevant: list[np.ndarray]  # catalog rows clicked on later days
    popularity: np.ndarray  # (I,) training-day clicks
    profiles: pd.DataFrame
    oracle_top: np.ndarray | None  # (U, k) best rows by the generator's truth
    dataset: str
    mode: str  # "single" or "first", see `cohort`


def cohort(cfg: ExperimentConfig) -> Cohort:
    """The evaluated users, each reduced to one known click, and their later clicks.

    `single`: users whose training days hold exactly one click and whose validation and
    test days hold at least one; the truth is those later clicks. `first`: users with at
    least two clicks anywhere, reduced to their first one; the truth is every click after it
    (MovieLens-100K has no `single` users: each rated at least 20 films). `auto` takes
    `single` when at least `min_users` users qualify.
    """
    items = read_items(cfg.data)
    row = {i: n for n, i in enumerate(items["item_id"].astype(str))}
    cols = ("user_id", "item_id", "ts", "label")
    train = read_interactions(cfg.data, cfg.split.train, cols)
    later = read_interactions(cfg.data, cfg.split.val + cfg.split.test, cols)
    clicks = train[(train["label"] == 1) & train["item_id"].isin(row)]
    later = later[(later["label"] == 1) & later["item_id"].isin(row)]
    n = clicks.groupby("user_id").size()
    single = sorted(set(n.index[n == 1]) & set(later["user_id"]))
    mode = cfg.cohort
    if mode == "auto":
        mode = "single" if len(single) >= cfg.min_users else "first"
    if mode == "single":
        known_clicks, truth = clicks[clicks["user_id"].isin(single)], later
    else:
        every = pd.concat([clicks, later]).sort_values(["user_id", "ts"], kind="stable")
        rank = every.groupby("user_id").cumcount()
        known_clicks, truth = every[rank == 0], every[rank > 0]
    users = sorted(set(known_clicks["user_id"]) & set(truth["user_id"]))
    if not users:
        raise ValueError(f"{cfg.data} has no user with a known click and a later one "
                         f"(cohort {mode!r}); try --cohort first or a larger --scale")
    if len(users) > cfg.max_users:
        rng = np.random.default_rng(cfg.seed)
        users = sorted(rng.choice(users, cfg.max_users, replace=False).tolist())
    known_clicks = known_clicks[known_clicks["user_id"].isin(users)]
    first = known_clicks.set_index("user_id").loc[users, "item_id"]
    known = np.array([row[i] for i in first], dtype=np.int64)
    rel = truth[truth["user_id"].isin(users)].groupby("user_id")["item_id"].agg(
        lambda s: np.unique([row[i] for i in s]))
    relevant = [np.setdiff1d(rel[u], [k]) for u, k in zip(users, known, strict=True)]
    # Popularity from the training days, the evaluated users' own clicks left out.
    others = clicks[~clicks["user_id"].isin(users)]
    pop = np.bincount(others["item_id"].map(row), minlength=len(items)).astype(float)
    profiles = build_profiles(items, known_clicks, users, read_reviews(cfg.data))
    oracle, dataset = _oracle(cfg, items, users, known)
    return Cohort(items, users, known, relevant, pop, profiles, oracle, dataset, mode)


def _oracle(cfg: ExperimentConfig, items: pd.DataFrame, users: list[str], known: np.ndarray,
            ) -> tuple[np.ndarray | None, str]:
    report = cfg.data / LOAD_REPORT
    if report.exists():
        r = json.loads(report.read_text())
        return None, f"{r.get('preset', 'loaded')} ({r.get('format', '')}, {r.get('src', '')})"
    try:
        world = World.load(cfg.data / TRUTH, items)
    except FileNotFoundError:
        return None, f"files in {cfg.data} (no ground-truth model)"
    pos = {u: n for n, u in enumerate(world.user_ids)}
    expected = world.expected_clicks(np.array([pos[u] for u in users]))  # U, I
    expected[np.arange(len(users)), known] = -np.inf
    top = np.argsort(-expected, axis=1)[:, :cfg.k]
    return top, f"synthetic retail world (generator seed {world.seed})"
