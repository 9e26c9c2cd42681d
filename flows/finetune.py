"""`warmstart finetune`: the daily flow. Bring the current version up to date with the newest
day(s) in a fraction of a full training's time.

    1. start from the current version (LATEST)
    2. plan the days: with `--events`, the serving event log is drained into the data folder
       first (`drain_events`) and the day(s) it filled join the new days; training rows are
       the new day(s) plus a replay sample of the days the version was trained on, so the
       models do not drift toward one day's mix
    3. user history rebuilt over old and new days: users who arrived since the last full
       training get their history features now (their id joins the vocabulary at the next
       full training; the vocabularies and every other fitted transform stay as they are)
    4. the query tower and the DLRM fine-tuned from the current weights at a lower learning
       rate for fewer epochs; the item tower is frozen, so the FAISS index stays valid; in
       this process on featurized arrays when the rows fit (`in_process`), else on Ray Train;
       every item's embedding is then checked unchanged
    5. the closed-form sources and the blend refitted with the version's settings
    6. both versions evaluated on the same validation days
    7. a new version is written, and promoted (LATEST) only when neither retrieval recall
       nor ranking AUC drops by more than the configured margin

`finetune()` calls them in order, one module-level function each.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flows.evaluate import EvalConfig, EvalReport, evaluate
from flows.layout import (
    ARTIFACTS,
    DATA,
    INTERACTIONS,
    Split,
    available_days,
    count_rows,
    day_zero,
    event_days,
    model_rows,
    read_interactions,
    write_day_file,
)
from flows.sources import SourcesConfig, fit_sources
from flows.train import TrainConfig
from serve.event_log import Event, EventLog, log_at
from train import artifacts
from train.artifacts import Bundle, load_bundle, new_version
from train.features import UserTable
from train.inputs import (
    Fitted,
    ModelInputs,
    Negatives,
    click_log_q,
    joined,
    negatives_per_positive,
)
from train.loop import LoopConfig, RayRun, drop_runs, epoch_figures, fit
from train.registry import MODELS
from train.scoring import item_vectors
from train.storage import location
from train.two_tower import TwoTower


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
    # Train in this process (featurized arrays, train/loop.py `fit`) instead of on Ray
    # Train: True, False, or None for "when the rows to train on are at most
    # `in_process_max_rows`" (a Ray Train start costs more than a day's epoch on small data).
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


@dataclass(frozen=True)
class Days:
    """The days a fine-tuning reads: the version's training days (replayed in part), the
    new ones it learns, and the validation days both versions are compared on."""

    old: tuple[int, ...]
    new: tuple[int, ...]
    val: tuple[int, ...]


@dataclass(frozen=True)
class Finetuned:
    """What a fine-tuning decided."""

    version: str
    path: Path
    promoted: bool
    compare: dict[str, tuple[float, float]]  # metric -> (before, after) on validation days
    seconds: float


def finetune(cfg: FinetuneConfig, train_cfg: TrainConfig | None = None) -> Finetuned:
    """Fine-tune the current version (Ray starts only to train on Ray Train); returns what
    was decided."""
    t0 = time.perf_counter()
    tcfg = train_cfg or TrainConfig(data=cfg.data, artifacts=cfg.artifacts)
    current = load_bundle(cfg.artifacts)  # 1
    days = plan(current, cfg)  # 2
    fitted = history(current, cfg.data, days)  # 3
    tuned, log = tune_models(current, fitted, days, cfg, tcfg)  # 4
    tuned, report = refit_sources(tuned, current, cfg, tcfg, days)  # 5
    before, after = compare(current, tuned, cfg.data, days)  # 6
    return publish_tuned(tuned, current, cfg, days, before, after,  # 7
                         log | {"sources": report}, t0)


def plan(current: Bundle, cfg: FinetuneConfig) -> Days:
    """2. The events drained first when asked, then the days to learn and to validate on."""
    drained = (drain_events(log_at(cfg.events), cfg.data, cfg.drain_batch)["days"]
               if cfg.events else [])
    # Served events drained by an earlier run that stopped, or that this version was not
    # trained on (a run that did not promote), are new days too.
    learned = set(current.manifest["data_window"]["train_days"])
    drained = sorted(set(drained) | (set(event_days(cfg.data)) - learned))
    days = Days(*plan_days(current, cfg, available_days(cfg.data), tuple(drained)))
    print(f"[finetune] version {current.version}: new day(s) {list(days.new)}, replay "
          f"{cfg.replay_share:.0%} of days {days.old[0]}-{days.old[-1]}, validate on "
          f"{list(days.val)}")
    return days


def history(current: Bundle, data: Path, days: Days) -> Fitted:
    """3. The version's transforms with the user history and logQ over old and new days."""
    seen = read_interactions(data, days.old + days.new, ("user_id", "item_id", "label"))
    return Fitted(features=current.features,
                  table=UserTable.build(current.users, current.features, seen, current.items),
                  log_q=click_log_q(seen, current.items), content=current.item_content)


def in_process(cfg: FinetuneConfig, tcfg: TrainConfig, days: Days) -> bool:
    """Whether the models train here on arrays rather than on Ray Train."""
    if cfg.in_process is not None:
        return cfg.in_process
    rows = count_rows(cfg.data, days.new) + cfg.replay_share * count_rows(cfg.data, days.old)
    return rows <= cfg.in_process_max_rows and tcfg.dlrm_loop.accelerator == "cpu"


def tune_models(current: Bundle, fitted: Fitted, days: Days, cfg: FinetuneConfig,
                tcfg: TrainConfig) -> tuple[Bundle, dict[str, Any]]:
    """4. The query tower and the DLRM from the current weights, the item tower frozen, then
    every item's embedding checked unchanged. Returns the tuned models (the current index,
    the new history) and what the manifest records of the training."""
    from flows.runtime import start_ray

    local, version = in_process(cfg, tcfg, days), cfg.version or new_version()
    storage = (cfg.artifacts / "_runs").resolve()
    print(f"[finetune] training {'in process' if local else 'on Ray Train'}")
    with contextlib.nullcontext() if local else start_ray():  # joins a running Ray
        two_tower, tt_history = tune("two_tower", current.two_tower, fitted, current.items,
                                     days, cfg, tcfg.two_tower_loop, ("item_tower",),
                                     RayRun(storage, f"{version}-two_tower"), local,
                                     tcfg.cache_max_rows,
                                     full_softmax_items=tcfg.full_softmax_items)
        dlrm, dlrm_history = tune("dlrm", current.dlrm, fitted, current.items, days, cfg,
                                  tcfg.dlrm_loop, (), RayRun(storage, f"{version}-dlrm"), local,
                                  tcfg.cache_max_rows, tcfg.dlrm_negatives)
    if not local:
        drop_runs(storage, version)
    drift = item_drift(current, two_tower)
    tuned = replace(current, version=version, path=cfg.artifacts / version, manifest={},
                    two_tower=two_tower, dlrm=dlrm, user_table=fitted.table)
    return tuned, {"in_process": local, "item_embedding_drift": drift,
                   "two_tower_epochs": epoch_figures(tt_history),
                   "dlrm_epochs": epoch_figures(dlrm_history)}


def tune(kind: str, model: Any, fitted: Fitted, items: pd.DataFrame, days: Days,
         cfg: FinetuneConfig, base: LoopConfig, freeze: tuple[str, ...], run: RayRun,
         local: bool, cache_max_rows: int, negatives: int | None = None,
         full_softmax_items: int = 0) -> tuple[Any, list[dict[str, Any]]]:
    """One model fine-tuned on the new days and a replay sample of the old ones, at the
    full training's learning rate times `lr_scale`, for `cfg.epochs`."""
    clicks_only = kind == "two_tower"  # the retriever learns clicks, the ranker impressions
    per_positive = 0 if clicks_only else negatives_per_positive(
        read_interactions(cfg.data, days.old, ("label",))["label"].to_numpy(), negatives)
    fn = ModelInputs(fitted, items, MODELS[kind].columns, Negatives.of(
        per_positive, fitted.log_q, items) if per_positive else None, cfg.seed)
    rows = partial(model_rows, cfg.data, fn=fn, clicks_only=clicks_only, on_ray=not local)
    train = joined(rows(days.old, sample=cfg.replay_share, seed=cfg.seed), rows(days.new))
    val = rows(days.val, cache_max_rows=cache_max_rows)
    loop = replace(base, epochs=cfg.epochs, lr=base.lr * cfg.lr_scale, freeze=freeze,
                   seed=cfg.seed)
    task = None
    if kind == "two_tower":  # its validation loss leaves out the clicks it trains on
        clicks = (read_interactions(cfg.data, days.old + days.new, ("user_id", "item_id",
                                                                    "label"))
                  if len(items) <= full_softmax_items else None)
        task = fitted.two_tower_task(items, full_softmax_items, None if clicks is None
                                     else clicks[clicks["label"] == 1])
    return fit(kind, model.cfg, fitted.features.cardinalities, train, val, loop, task,
               init=model, run=run)


def item_drift(current: Bundle, two_tower: TwoTower) -> float:
    """The largest change of any item's embedding, which must be none: the index holds
    exactly the current item tower's vectors."""
    drift = float(np.abs(item_vectors(two_tower, current.item_rows)
                         - current.index.reconstruct_n(0, current.index.ntotal)).max())
    if drift > 1e-5:
        raise RuntimeError(f"fine-tuning moved item embeddings by up to {drift:.2e}; the item "
                           "tower must stay frozen (LoopConfig.freeze)")
    return drift


def refit_sources(tuned: Bundle, current: Bundle, cfg: FinetuneConfig, tcfg: TrainConfig,
                  days: Days) -> tuple[Bundle, dict[str, Any]]:
    """5. The closed-form sources and the blend again, with the version's settings (its l2
    and half-life, not a new search), so that the new days join them too."""
    fitted = fit_sources(tuned, cfg.data, days.old + days.new, days.val,
                         settled(tcfg.sources, current.manifest["metrics"].get("sources")))
    return replace(tuned, sources=fitted.sources), fitted.report


def compare(current: Bundle, tuned: Bundle, data: Path, days: Days
            ) -> tuple[EvalReport, EvalReport]:
    """6. Both versions on the validation days: the two models side by side; not the oracle,
    nor the serving answer (its sources have now seen the validation days), nor the
    diversity sweep."""
    ecfg = EvalConfig(split=Split(train=days.old + days.new, val=(), test=days.val),
                      oracle=False, serving=False, diversity=())
    return evaluate(current, data, ecfg), evaluate(tuned, data, ecfg)


def decision_metrics(before: EvalReport, after: EvalReport) -> dict[str, tuple[float, float]]:
    """(before, after) of what the promotion rule reads: the Two-Tower's recall@K and the
    DLRM's AUC, over every validation user."""
    recall = f"recall@{after.retrieval.k}"
    return {recall: (before.retrieval.figure("two_tower", recall),
                     after.retrieval.figure("two_tower", recall)),
            "auc": (before.ranking.figure("dlrm", "auc"), after.ranking.figure("dlrm", "auc"))}


def publish_tuned(tuned: Bundle, current: Bundle, cfg: FinetuneConfig, days: Days,
                  before: EvalReport, after: EvalReport, log: dict[str, Any],
                  t0: float) -> Finetuned:
    """7. The tuned version, published; promoted only without a validation drop beyond the
    margin."""
    scores = decision_metrics(before, after)
    promote = should_promote(scores, cfg.margin)
    seconds = time.perf_counter() - t0
    finetune_log = {"from_version": current.version, "new_days": list(days.new),
                    "replay_share": cfg.replay_share, "validation_days": list(days.val),
                    "in_process": log["in_process"], "before_after": scores,
                    "margin": cfg.margin, "promoted": promote,
                    "item_embedding_drift": log["item_embedding_drift"], "seconds": seconds}
    metrics = {"sources": log["sources"], "finetune": finetune_log,
               "evaluation": after.to_dict(),
               "two_tower_epochs": log["two_tower_epochs"], "dlrm_epochs": log["dlrm_epochs"]}
    window = current.manifest["data_window"] | {"train_days": list(days.old + days.new),
                                                "val_days": list(days.val)}
    published = artifacts.publish(cfg.artifacts, replace(tuned, manifest={
        "data_window": window, "metrics": json.loads(json.dumps(metrics, default=float))}),
        promote=promote)
    for name, (b, a) in scores.items():
        print(f"[finetune]   {name}: {b:.4f} -> {a:.4f}")
    verdict = "promoted (LATEST)" if promote else f"not promoted (a drop > {cfg.margin})"
    print(f"[finetune] {published.path} {verdict} in {seconds:.1f} s")
    return Finetuned(version=published.version, path=published.path, promoted=promote,
                     compare=scores, seconds=seconds)


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
