"""`warmstart finetune`: the daily flow. Bring the current version up to date with the newest
day(s) in a fraction of a full training's time.

    1. start from the current version (LATEST)
    2. training rows: the new day(s) plus a replay sample of the days the version was trained
       on, so the models do not drift toward one day's mix
    3. user history rebuilt over old and new days: users who arrived since the last full
       training get their history features now (their id joins the vocabulary at the next
       full training; the vocabularies and every other fitted transform stay as they are)
    4. the query tower and the DLRM fine-tuned from the current weights at a lower learning
       rate for fewer epochs; the item tower is frozen, so the FAISS index stays valid
    5. every item's embedding checked unchanged
    6. both versions evaluated on the same validation days; a new version is written, and
       promoted (LATEST) only when neither retrieval recall nor ranking AUC drops by more
       than the configured margin
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from flows.layout import ARTIFACTS, DATA, Split, available_days, read_interactions
from flows.train import TrainConfig, click_log_q, featurized
from train.artifacts import Bundle, load_bundle, new_version, publish
from train.features import UserTable
from train.loop import LoopConfig, fit
from train.registry import MODELS
from train.scoring import item_vectors


@dataclass(frozen=True)
class FinetuneConfig:
    data: Path = DATA
    artifacts: Path = ARTIFACTS
    new_days: tuple[int, ...] = ()  # default: the day after the version's last training day
    val_days: tuple[int, ...] = ()  # default: the version's validation days after new_days
    replay_share: float = 0.2  # share of the old training days' rows replayed
    lr_scale: float = 0.2  # fine-tuning learning rate = full training's x this
    epochs: int = 1
    margin: float = 0.005  # largest drop in validation recall@K or AUC that still promotes
    seed: int = 0
    version: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.replay_share <= 1:
            raise ValueError(f"the replay share (--replay) must be in (0, 1], got "
                             f"{self.replay_share}")


def plan_days(bundle: Bundle, cfg: FinetuneConfig, available: list[int]
              ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(old training days, new days, validation days), checked against the data folder."""
    window = bundle.manifest["data_window"]
    old = tuple(window["train_days"])
    new = cfg.new_days or (max(old) + 1,)
    val = cfg.val_days or tuple(d for d in window["val_days"] if d > max(new))
    if overlap := sorted(set(new) & set(old)):
        raise ValueError(f"day(s) {overlap} are already in version {bundle.version}'s "
                         "training window; pass newer --days")
    if missing := sorted((set(new) | set(val)) - set(available)):
        raise ValueError(f"the data folder has no day(s) {missing}; available: {available}")
    if not val:
        raise ValueError("no validation day after the new day(s); pass --val-days")
    if set(val) & set(new):
        raise ValueError("validation days must differ from the new training days")
    return old, new, val


def should_promote(compare: dict[str, tuple[float, float]], margin: float) -> bool:
    """True when no metric (before, after) dropped by more than `margin`."""
    return all(before - after <= margin for before, after in compare.values())


def finetune(cfg: FinetuneConfig, train_cfg: TrainConfig | None = None) -> dict[str, Any]:
    """Fine-tune the current version on the running Ray; returns what was decided."""
    from flows.evaluate import EvalConfig, evaluate

    t0 = time.perf_counter()
    tcfg = train_cfg or TrainConfig(data=cfg.data, artifacts=cfg.artifacts)
    current = load_bundle(cfg.artifacts)
    old, new, val = plan_days(current, cfg, available_days(cfg.data))
    print(f"[finetune] version {current.version}: new day(s) {list(new)}, replay "
          f"{cfg.replay_share:.0%} of days {old[0]}-{old[-1]}, validate on {list(val)}")
    features, items = current.features, current.items
    cards = features.cardinalities

    # 2-3. Rows and history. The history covers every day the new version has seen.
    seen = read_interactions(cfg.data, old + new, ("user_id", "item_id", "label"))
    table = UserTable.build(current.users, features, seen, items)
    log_q = click_log_q(seen, items)
    del seen

    def rows(clicks_only: bool, columns: tuple[str, ...]) -> Any:
        replay = featurized(cfg.data, old, features, table, items, current.item_content,
                            clicks_only, columns, 0, sample=cfg.replay_share, seed=cfg.seed)
        fresh = featurized(cfg.data, new, features, table, items, current.item_content,
                           clicks_only, columns, 0)
        return replay.union(fresh)  # streamed: one epoch reads each row once

    def val_rows(clicks_only: bool, columns: tuple[str, ...]) -> Any:
        return featurized(cfg.data, val, features, table, items, current.item_content,
                          clicks_only, columns, tcfg.cache_max_rows)

    def loop(base: LoopConfig, freeze: tuple[str, ...] = ()) -> LoopConfig:
        return replace(base, epochs=cfg.epochs, lr=base.lr * cfg.lr_scale, freeze=freeze,
                       seed=cfg.seed)

    run = cfg.version or new_version()
    storage = (cfg.artifacts / "_runs").resolve()
    # 4. Fine-tune, the item tower frozen.
    tt_cols, dlrm_cols = MODELS["two_tower"].columns, MODELS["dlrm"].columns
    tt, tt_hist = fit("two_tower", current.two_tower.cfg, cards, rows(True, tt_cols),
                      val_rows(True, tt_cols), loop(tcfg.two_tower_loop, ("item_tower",)),
                      storage, f"{run}-two_tower", {"log_q": log_q}, init=current.two_tower)
    dlrm, dlrm_hist = fit("dlrm", current.dlrm.cfg, cards, rows(False, dlrm_cols),
                          val_rows(False, dlrm_cols), loop(tcfg.dlrm_loop), storage,
                          f"{run}-dlrm", init=current.dlrm)
    # 5. The index must still hold exactly these items' vectors.
    drift = float(np.abs(item_vectors(tt, current.item_rows)
                         - current.index.reconstruct_n(0, current.index.ntotal)).max())
    if drift > 1e-5:
        raise RuntimeError(f"fine-tuning moved item embeddings by up to {drift:.2e}; the item "
                           "tower must stay frozen (LoopConfig.freeze)")

    # 6. Compare on the validation days, then publish; promote only without a regression.
    tuned = Bundle(version=run, path=cfg.artifacts / run, manifest={}, features=features,
                   two_tower=tt, dlrm=dlrm, index=current.index, items=items,
                   users=current.users, user_table=table, item_content=current.item_content)
    split = Split(train=old + new, val=(), test=val)
    # The decision needs the two models side by side, not the oracle (the costly part).
    ecfg = EvalConfig(split=split, oracle=False)
    before = evaluate(current, cfg.data, ecfg)  # as served today
    after = evaluate(tuned, cfg.data, ecfg)
    k = after["retrieval"]["k"]
    compare = {
        f"recall@{k}": (before["retrieval"]["two_tower"]["overall"][f"recall@{k}"],
                        after["retrieval"]["two_tower"]["overall"][f"recall@{k}"]),
        "auc": (before["ranking"]["dlrm"]["overall"]["auc"],
                after["ranking"]["dlrm"]["overall"]["auc"]),
    }
    promote = should_promote(compare, cfg.margin)
    seconds = time.perf_counter() - t0
    metrics = {"finetune": {"from_version": current.version, "new_days": list(new),
                            "replay_share": cfg.replay_share, "validation_days": list(val),
                            "before_after": compare, "margin": cfg.margin,
                            "promoted": promote, "item_embedding_drift": drift,
                            "seconds": seconds},
               "evaluation": after, "two_tower_epochs": tt_hist, "dlrm_epochs": dlrm_hist}
    window = current.manifest["data_window"] | {"train_days": list(old + new),
                                                "val_days": list(val)}
    folder = publish(cfg.artifacts, run, features=features, two_tower=tt, dlrm=dlrm,
                     index=current.index, items=items, users=current.users, user_table=table,
                     item_content=current.item_content, data_window=window,
                     metrics=json.loads(json.dumps(metrics, default=float)), promote=promote)
    for ray_run in storage.glob(f"{run}-*"):
        shutil.rmtree(ray_run, ignore_errors=True)
    for name, (b, a) in compare.items():
        print(f"[finetune]   {name}: {b:.4f} -> {a:.4f}")
    verdict = "promoted (LATEST)" if promote else f"not promoted (a drop > {cfg.margin})"
    print(f"[finetune] {folder} {verdict} in {seconds:.1f} s")
    return {"version": folder.name, "promoted": promote, "compare": compare,
            "seconds": seconds, "path": str(folder)}


def add_args(p: argparse.ArgumentParser) -> None:
    d = FinetuneConfig()
    p.add_argument("--data", type=Path, default=d.data)
    p.add_argument("--artifacts", type=Path, default=d.artifacts)
    p.add_argument("--days", type=int, nargs="+", default=None,
                   help="new day(s) to learn (default: the day after the version's window)")
    p.add_argument("--val-days", type=int, nargs="+", default=None,
                   help="validation days (default: the version's, after the new days)")
    p.add_argument("--replay", type=float, default=d.replay_share,
                   help="share of the old training rows replayed beside the new day(s) "
                        "(default %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr-scale", type=float, default=d.lr_scale,
                   help="learning rate = full training's x this (default %(default)s)")
    p.add_argument("--margin", type=float, default=d.margin,
                   help="largest validation drop in recall or AUC that still promotes "
                        "(default %(default)s)")


def config(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(data=args.data, artifacts=args.artifacts,
                          new_days=tuple(args.days or ()), val_days=tuple(args.val_days or ()),
                          replay_share=args.replay, epochs=args.epochs,
                          lr_scale=args.lr_scale, margin=args.margin)


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray
    from train.artifacts import resolve, verify

    cfg = config(args)
    verify(resolve(cfg.artifacts))  # a clear error before Ray starts
    with start_ray():
        finetune(cfg)


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("finetune")
