"""`warmstart finetune`: the daily flow. Bring the current version up to date with the newest
day(s) in a fraction of a full training's time.

    1. start from the current version (LATEST)
    2. training rows: the new day(s) plus a replay sample of the days the version was trained
       on, so the models do not drift toward one day's mix
    3. user history rebuilt over old and new days: users who arrived since the last full
       training get their history features now (their id joins the vocabulary at the next
       full training; the vocabularies and every other fitted transform stay as they are)
    4. the query tower and the DLRM fine-tuned from the current weights at a lower learning
       rate for fewer epochs; the item tower is frozen, so the FAISS index stays valid; in
       this process on featurized arrays when the rows fit (`in_process`), else on Ray Train
    5. every item's embedding checked unchanged
    6. both versions evaluated on the same validation days; a new version is written, and
       promoted (LATEST) only when neither retrieval recall nor ranking AUC drops by more
       than the configured margin

With `--events`, the serving event log is drained into the data folder first (`drain_events`)
and the day(s) it filled join the new days.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from flows.layout import (
    ARTIFACTS,
    DATA,
    INTERACTIONS,
    Split,
    available_days,
    count_rows,
    day_zero,
    event_days,
    read_interactions,
    write_day_file,
)
from flows.sources import SourcesConfig, fit_sources, with_sources
from flows.train import (
    ModelInputs,
    Negatives,
    TrainConfig,
    click_log_q,
    dlrm_negatives,
    featurized,
    featurized_local,
)
from serve.event_log import Event, EventLog, log_at
from train.artifacts import Bundle, load_bundle, new_version, publish
from train.features import UserTable
from train.loop import LoopConfig, drop_runs, fit, fit_local
from train.registry import MODELS
from train.scoring import item_vectors
from train.storage import location


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
    # Train in this process (featurized arrays, `fit_local`) instead of on Ray Train: True,
    # False, or None for "when the rows to train on are at most `in_process_max_rows`" (a
    # Ray Train start costs more than a day's epoch on small data).
    in_process: bool | None = None
    in_process_max_rows: int = 2_000_000
    seed: int = 0
    version: str | None = None
    events: str | None = None  # the serving event log to drain first: a file or redis:// URL
    drain_batch: int = 50_000  # events read, written and trimmed at a time

    def __post_init__(self) -> None:
        if not 0 < self.replay_share <= 1:
            raise ValueError(f"the replay share (--replay) must be in (0, 1], got "
                             f"{self.replay_share}")


_EPOCH = dt.datetime(1970, 1, 1)


def events_table(events: list[Event]) -> pa.Table:
    """Logged events as interaction rows: hour and weekday of `ts`, device "unknown" when the
    client sent none, label 1 for a click or purchase."""
    ms = [(e.ts - _EPOCH) // dt.timedelta(milliseconds=1) for e in events]
    return pa.table({
        "user_id": [e.user_id for e in events],
        "item_id": [e.item_id for e in events],
        "ts": pa.array(ms, pa.int64()).cast(pa.timestamp("ms")),
        "hour": pa.array([e.ts.hour for e in events], pa.int8()),
        "weekday": pa.array([e.ts.weekday() for e in events], pa.int8()),
        "device": [e.device or "unknown" for e in events],
        "label": pa.array([e.label for e in events], pa.int8()),
    })


def _file_id(event_id: str) -> str:
    return event_id.replace("-", "_")  # a stream id's "-" would split the file name


def drain_events(log: EventLog, data: Path, batch: int = 50_000) -> dict[str, Any]:
    """Move the log's events into the data folder, `batch` at a time: each batch becomes one
    `interactions/day=NN/events-<first id>-<last id>.parquet` per day it touches (NN: days
    since day 0's date), and is trimmed from the log only once its files are written.

    A drain stopped between writing and trimming leaves files named after the batch's first
    id, which is still the log's first: the next drain removes them and writes the batch
    again (it may hold more events by then), so no event is lost or counted twice. Stops after
    a batch shorter than `batch`, so events arriving meanwhile do not keep it running.
    Returns {"events": rows written, "days": days filled, "files": paths}."""
    start = day_zero(data)
    written, days, files = 0, set[int](), list[Path]()
    while events := log.read(None, batch):
        first, last = events[0][0], events[-1][0]
        name = f"events-{_file_id(first)}-{_file_id(last)}.parquet"
        table = events_table([e for _, e in events])
        day = np.array([(e.ts.date() - start).days for _, e in events])  # N
        if (day < 0).any():
            bad = events[int(np.argmax(day < 0))]
            raise ValueError(f"event {bad[0]} at {bad[1].ts} is before day 0 ({start}) of "
                             f"{data}; its clock is wrong: trim it from the log "
                             "(EventLog.trim) or drain into the dataset it belongs to")
        for stale in (data / INTERACTIONS).glob(f"day=*/events-{_file_id(first)}-*.parquet"):
            if stale.name != name:  # an interrupted drain of a shorter batch
                stale.unlink()
        for d in np.unique(day):
            files.append(write_day_file(data, int(d), name, table.filter(pa.array(day == d))))
        log.trim(last)
        written += len(events)
        days.update(int(d) for d in np.unique(day))
        if len(events) < batch:
            break
    if written:
        print(f"[finetune] drained {written} events into day(s) {sorted(days)}")
    return {"events": written, "days": sorted(days), "files": [str(f) for f in files]}


TRAIN_ON = {"process": True, "ray": False}  # --train-on: FinetuneConfig.in_process


def plan_days(bundle: Bundle, cfg: FinetuneConfig, available: list[int],
              drained: tuple[int, ...] = ()
              ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(old training days, new days, validation days), checked against the data folder.
    Days just drained from the event log join the new days, except those already in the
    version's window (they join at the next full training)."""
    window = bundle.manifest["data_window"]
    old = tuple(window["train_days"])
    asked = cfg.new_days or (max(old) + 1,)
    if late := sorted(set(drained) & set(old)):
        print(f"[finetune] drained events of day(s) {late} fall in the version's training "
              "window; they are learned at the next full training")
    new = tuple(sorted(set(asked) | (set(drained) - set(old))))
    # Validation: the version's validation days after the asked-for new days. Served events
    # are dated by the clock, usually far past the dataset's days, so they do not move it.
    val = cfg.val_days or tuple(d for d in window["val_days"]
                                if d > max(asked) and d not in new)
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


def settled(cfg: SourcesConfig, report: dict[str, Any] | None) -> SourcesConfig:
    """`cfg` with its searches narrowed to what the current version picked (its sources
    report), so fine-tuning refits the sources without tuning them again."""
    if not report:
        return cfg
    half_life = report.get("half_life_days")
    l2 = report.get("item_item", {}).get("l2") or cfg.item_item.l2
    return replace(cfg, half_lives=(half_life,),
                   item_item=replace(cfg.item_item, l2=l2, l2_grid=(l2,)))


def should_promote(compare: dict[str, tuple[float, float]], margin: float) -> bool:
    """True when no metric (before, after) dropped by more than `margin`."""
    return all(before - after <= margin for before, after in compare.values())


def finetune(cfg: FinetuneConfig, train_cfg: TrainConfig | None = None) -> dict[str, Any]:
    """Fine-tune the current version on the running Ray; returns what was decided."""
    from flows.evaluate import EvalConfig, evaluate

    t0 = time.perf_counter()
    tcfg = train_cfg or TrainConfig(data=cfg.data, artifacts=cfg.artifacts)
    current = load_bundle(cfg.artifacts)
    drained = (drain_events(log_at(cfg.events), cfg.data, cfg.drain_batch)["days"]
               if cfg.events else [])
    # Served events drained by an earlier run that stopped, or that this version was not
    # trained on (a run that did not promote), are new days too.
    learned = set(current.manifest["data_window"]["train_days"])
    drained = sorted(set(drained) | (set(event_days(cfg.data)) - learned))
    old, new, val = plan_days(current, cfg, available_days(cfg.data), tuple(drained))
    print(f"[finetune] version {current.version}: new day(s) {list(new)}, replay "
          f"{cfg.replay_share:.0%} of days {old[0]}-{old[-1]}, validate on {list(val)}")
    features, items = current.features, current.items
    cards = features.cardinalities

    # 2-3. Rows and history. The history covers every day the new version has seen.
    seen = read_interactions(cfg.data, old + new, ("user_id", "item_id", "label"))
    table = UserTable.build(current.users, features, seen, items)
    log_q = click_log_q(seen, items)
    del seen

    def loop(base: LoopConfig, freeze: tuple[str, ...] = ()) -> LoopConfig:
        return replace(base, epochs=cfg.epochs, lr=base.lr * cfg.lr_scale, freeze=freeze,
                       seed=cfg.seed)

    run = cfg.version or new_version()
    negatives = dlrm_negatives(tcfg, cfg.data, Split(train=old))
    tt_cols, dlrm_cols = MODELS["two_tower"].columns, MODELS["dlrm"].columns
    tt_fn, dlrm_fn = (ModelInputs(features, table, items, current.item_content, columns,
                                  Negatives.of(negatives, log_q, items) if negatives and
                                  columns == dlrm_cols else None, cfg.seed)
                      for columns in (tt_cols, dlrm_cols))
    n_rows = count_rows(cfg.data, new) + cfg.replay_share * count_rows(cfg.data, old)
    local = cfg.in_process if cfg.in_process is not None else (
        n_rows <= cfg.in_process_max_rows and tcfg.dlrm_loop.accelerator == "cpu")
    # 4. Fine-tune, the item tower frozen.
    if local:
        def arrays(days: tuple[int, ...], fn: ModelInputs, clicks_only: bool,
                   sample: float | None = None) -> dict[str, np.ndarray]:
            return featurized_local(cfg.data, days, fn, clicks_only, sample, cfg.seed)

        def joined(fn: ModelInputs, clicks_only: bool) -> dict[str, np.ndarray]:
            replay = arrays(old, fn, clicks_only, cfg.replay_share)
            fresh = arrays(new, fn, clicks_only)
            return {k: np.concatenate([replay[k], fresh[k]]) for k in replay}

        print(f"[finetune] training in process ({n_rows:,.0f} rows)")
        tt, tt_hist = fit_local("two_tower", current.two_tower.cfg, cards, joined(tt_fn, True),
                                arrays(val, tt_fn, True), loop(tcfg.two_tower_loop,
                                                               ("item_tower",)),
                                {"log_q": log_q}, init=current.two_tower)
        dlrm, dlrm_hist = fit_local("dlrm", current.dlrm.cfg, cards, joined(dlrm_fn, False),
                                    arrays(val, dlrm_fn, False), loop(tcfg.dlrm_loop),
                                    init=current.dlrm)
    else:
        def rows(fn: ModelInputs, clicks_only: bool) -> Any:
            replay = featurized(cfg.data, old, features, table, items, current.item_content,
                                clicks_only, fn.columns, 0, sample=cfg.replay_share,
                                seed=cfg.seed, negatives=fn.negatives)
            fresh = featurized(cfg.data, new, features, table, items, current.item_content,
                               clicks_only, fn.columns, 0, negatives=fn.negatives)
            return replay.union(fresh)  # streamed: one epoch reads each row once

        def val_rows(fn: ModelInputs, clicks_only: bool) -> Any:
            return featurized(cfg.data, val, features, table, items, current.item_content,
                              clicks_only, fn.columns, tcfg.cache_max_rows,
                              negatives=fn.negatives)

        from flows.runtime import start_ray

        storage = (cfg.artifacts / "_runs").resolve()
        with start_ray():  # joins the running Ray when there is one
            tt, tt_hist = fit("two_tower", current.two_tower.cfg, cards, rows(tt_fn, True),
                              val_rows(tt_fn, True), loop(tcfg.two_tower_loop,
                                                          ("item_tower",)),
                              storage, f"{run}-two_tower", {"log_q": log_q},
                              init=current.two_tower)
            dlrm, dlrm_hist = fit("dlrm", current.dlrm.cfg, cards, rows(dlrm_fn, False),
                                  val_rows(dlrm_fn, False), loop(tcfg.dlrm_loop), storage,
                                  f"{run}-dlrm", init=current.dlrm)
        drop_runs(storage, run)
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
    # The closed-form sources and the blend again, with the version's settings (its l2 and
    # half-life, not a new search), so that the new days join them too.
    sources = fit_sources(tuned, cfg.data, old + new, val,
                          settled(tcfg.sources, current.manifest["metrics"].get("sources")))
    tuned = with_sources(tuned, sources)
    split = Split(train=old + new, val=(), test=val)
    # The decision needs the two models side by side: not the oracle, nor the serving answer
    # (its sources have now seen the validation days), nor the diversity sweep.
    ecfg = EvalConfig(split=split, oracle=False, serving=False, diversity=())
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
    metrics = {"sources": sources.report,
               "finetune": {"from_version": current.version, "new_days": list(new),
                            "replay_share": cfg.replay_share, "validation_days": list(val),
                            "in_process": local,
                            "before_after": compare, "margin": cfg.margin,
                            "promoted": promote, "item_embedding_drift": drift,
                            "seconds": seconds},
               "evaluation": after, "two_tower_epochs": tt_hist, "dlrm_epochs": dlrm_hist}
    window = current.manifest["data_window"] | {"train_days": list(old + new),
                                                "val_days": list(val)}
    folder = publish(cfg.artifacts, run, features=features, two_tower=tt, dlrm=dlrm,
                     index=current.index, items=items, users=current.users, user_table=table,
                     item_content=current.item_content, data_window=window,
                     metrics=json.loads(json.dumps(metrics, default=float)),
                     popularity=sources.popularity, demographic=sources.demographic,
                     item_item=sources.item_item, histories=sources.histories,
                     blend=sources.blend, promote=promote)
    for name, (b, a) in compare.items():
        print(f"[finetune]   {name}: {b:.4f} -> {a:.4f}")
    verdict = "promoted (LATEST)" if promote else f"not promoted (a drop > {cfg.margin})"
    print(f"[finetune] {folder} {verdict} in {seconds:.1f} s")
    return {"version": folder.name, "promoted": promote, "compare": compare,
            "seconds": seconds, "path": str(folder)}


# A URI location is mirrored locally for the run, and uploaded after when written
# (train/storage.py).
LOCATIONS = {"data": "write", "artifacts": "write"}


def add_args(p: argparse.ArgumentParser) -> None:
    d = FinetuneConfig()
    p.add_argument("--data", type=location, default=d.data)
    p.add_argument("--artifacts", type=location, default=d.artifacts)
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
    p.add_argument("--train-on", choices=tuple(TRAIN_ON), default=None,
                   help="where the models train: process (this one), ray (Ray Train), or by "
                        f"default this process up to {d.in_process_max_rows:,} rows")
    p.add_argument("--events", default=d.events,
                   help="serving event log to drain into the data first: a file (the local "
                        "log) or a redis:// URL (the stream 'events'); its day(s) join the "
                        "new days")


def config(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(data=args.data, artifacts=args.artifacts,
                          new_days=tuple(args.days or ()), val_days=tuple(args.val_days or ()),
                          replay_share=args.replay, epochs=args.epochs,
                          lr_scale=args.lr_scale, margin=args.margin, events=args.events,
                          in_process=TRAIN_ON.get(args.train_on))


def run(args: argparse.Namespace) -> None:
    from train.artifacts import resolve, verify

    cfg = config(args)
    verify(resolve(cfg.artifacts))  # a clear error before anything runs
    finetune(cfg)  # starts Ray only when it trains on Ray Train


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("finetune")
