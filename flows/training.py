"""`warmstart train`: fit features, train both models on Ray Train, index, evaluate, publish.

Steps:
    1. fit feature vocabularies on the training days
    2. featurize interactions with Ray Data (streamed into the trainers)
    3. train the Two-Tower model on clicks (in-batch negatives)
    4. embed every catalog item and build the FAISS index
    5. train the DLRM ranker on all impressions
    6. evaluate on the test days
    7. publish artifacts/<version>/
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flows.data import Split, ray_interactions, read_interactions, read_items, read_users
from index.faiss_index import IndexConfig, build_index
from train.artifacts import Bundle, new_version, publish
from train.dlrm import DLRMConfig
from train.features import Features, UserTable, featurize
from train.loop import LoopConfig, fit
from train.scoring import item_vectors
from train.two_tower import TwoTowerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    data: Path = Path("data")
    artifacts: Path = Path("artifacts")
    split: Split = field(default_factory=Split)
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    dlrm: DLRMConfig = field(default_factory=DLRMConfig)
    # Batch sizes are per worker. Tuned on `small` (20k users, 1M impressions).
    two_tower_loop: LoopConfig = field(
        default_factory=lambda: LoopConfig(epochs=6, batch_size=512, lr=0.01))
    dlrm_loop: LoopConfig = field(
        default_factory=lambda: LoopConfig(epochs=3, batch_size=512, lr=0.02))
    index: IndexConfig = field(default_factory=IndexConfig)
    min_freq: int = 1
    # Keep featurized data in Ray's object store after the first pass, so epochs after the
    # first skip reading and featurizing. Turn off when the data is larger than memory.
    cache_datasets: bool = True
    version: str | None = None


def step(name: str) -> Any:
    """Print a progress line around a long step."""
    class _Step:
        def __enter__(self) -> None:
            self.t0 = time.perf_counter()
            print(f"[train] {name} ...", flush=True)

        def __exit__(self, *exc: object) -> None:
            print(f"[train] {name}: {time.perf_counter() - self.t0:.1f} s", flush=True)
    return _Step()


def featurized(data: Path, days: tuple[int, ...], features: Features, users: pd.DataFrame,
               items: pd.DataFrame, clicks_only: bool, cache: bool) -> Any:
    """A streaming Ray Dataset of model inputs for the given days."""
    item_rows = features.item_table(items)
    item_pos = {iid: n for n, iid in enumerate(items["item_id"])}
    table = UserTable.from_frame(users)
    from ray.data.expressions import col

    ds = ray_interactions(data, days)
    if clicks_only:
        ds = ds.filter(expr=col("label") == 1)

    def fn(batch: pd.DataFrame) -> dict[str, np.ndarray]:
        return featurize(batch, features, table, item_rows, item_pos)

    ds = ds.map_batches(fn, batch_format="pandas", batch_size=8192, num_cpus=0.5)
    return ds.materialize() if cache else ds


def train(cfg: TrainConfig) -> Path:
    """Run the whole training flow on the running Ray; returns the published version folder."""
    from flows.evaluate import EvalConfig, evaluate

    t0 = time.perf_counter()
    items = read_items(cfg.data)
    users = read_users(cfg.data)
    with step("fit features"):
        fit_rows = read_interactions(cfg.data, cfg.split.train,
                                     ("user_id", "item_id", "device", "label"))
        features = Features.fit(fit_rows, users.reset_index(), items, cfg.min_freq)
        log_q = click_log_q(fit_rows, items)
        del fit_rows
        print(f"[train]   {len(features.users):,} users, {len(features.items):,} items, "
              f"{len(features.devices)} devices in the training vocabulary")
    cards = features.cardinalities
    storage = (cfg.artifacts / "_runs").resolve()
    run = cfg.version or new_version()


    def days(split: tuple[int, ...], clicks_only: bool) -> Any:
        return featurized(cfg.data, split, features, users, items, clicks_only,
                          cfg.cache_datasets)

    with step("train two-tower (Ray Train)"):
        tt, tt_hist = fit("two_tower", cfg.two_tower, cards, days(cfg.split.train, True),
                          days(cfg.split.val, True), cfg.two_tower_loop, storage,
                          f"{run}-two_tower", log_q)
    with step("embed items and build the FAISS index"):
        vectors = item_vectors(tt, features.item_table(items))
        index = build_index(vectors, cfg.index)
    with step("train DLRM (Ray Train)"):
        dlrm, dlrm_hist = fit("dlrm", cfg.dlrm, cards, days(cfg.split.train, False),
                              days(cfg.split.val, False), cfg.dlrm_loop, storage, f"{run}-dlrm")

    bundle = Bundle(version=run, path=cfg.artifacts / run, manifest={}, features=features,
                    two_tower=tt, dlrm=dlrm, index=index, items=items, users=users,
                    item_rows=features.item_table(items))
    with step("evaluate on the test days"):
        report = evaluate(bundle, cfg.data, EvalConfig(split=cfg.split))
    metrics = {"evaluation": report,
               "two_tower_epochs": _clean(tt_hist), "dlrm_epochs": _clean(dlrm_hist),
               "train_seconds": time.perf_counter() - t0}
    window = {"data": str(cfg.data.resolve()), "train_days": list(cfg.split.train),
              "val_days": list(cfg.split.val), "test_days": list(cfg.split.test)}
    with step("publish"):
        folder = publish(cfg.artifacts, run, features=features, two_tower=tt, dlrm=dlrm,
                         index=index, items=items, users=users, data_window=window,
                         metrics=metrics)
    for ray_run in storage.glob(f"{run}-*"):  # checkpoints only matter while training
        shutil.rmtree(ray_run, ignore_errors=True)
    print(f"[train] published {folder} in {time.perf_counter() - t0:.1f} s")
    return folder


def click_log_q(interactions: pd.DataFrame, items: pd.DataFrame) -> np.ndarray:
    """(I,) log share of training clicks per catalog row, add-one smoothed."""
    clicked = interactions.loc[interactions["label"] == 1, "item_id"]
    counts = clicked.value_counts().reindex(items["item_id"]).fillna(0).to_numpy() + 1.0
    return np.log(counts / counts.sum())


def _clean(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    keep = ("epoch", "train_loss", "val_loss", "train_rows")
    return [{k: float(h[k]) for k in keep if k in h} for h in history]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--epochs", type=int, default=None, help="epochs for both models")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers per model")
    p.add_argument("--gpu", action="store_true", help="train on GPU workers")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig(data=args.data, artifacts=args.artifacts)
    over: dict[str, Any] = {"num_workers": args.workers, "use_gpu": args.gpu}
    tt = replace(cfg.two_tower_loop, **over, **({"epochs": args.epochs} if args.epochs else {}))
    dl = replace(cfg.dlrm_loop, **over, **({"epochs": args.epochs} if args.epochs else {}))
    return replace(cfg, two_tower_loop=tt, dlrm_loop=dl)


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray

    cfg = config_from_args(args)
    read_items(cfg.data)  # fail on a missing or bad data folder before Ray starts
    read_users(cfg.data)
    with start_ray():
        train(cfg)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m flows.training")
    add_args(parser)
    run(parser.parse_args())
