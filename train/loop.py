"""Ray Train loops for both models: one `TorchTrainer`, fed by Ray Data shards.

`fit()` is the entry point: it takes featurized Ray Datasets (train and validation), trains
on CPU workers (or GPU workers by config), checkpoints every epoch, and returns the trained
state dict with the per-epoch metrics. Workers ask for fractional CPUs so that Ray Data keeps
CPUs to feed them on a 2-core machine (a whole CPU per worker deadlocks there).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray.exceptions
import ray.train
import ray.train.torch
import ray.util.queue
import torch
from torch import nn

from train.dlrm import DLRM, DLRMConfig, DLRMTrain
from train.features import DENSE, mask_devices, mask_users
from train.two_tower import TwoTower, TwoTowerConfig, TwoTowerTrain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    epochs: int = 3
    batch_size: int = 1024
    lr: float = 3e-3
    mask_rate: float = 0.05  # share of rows whose user features are masked to OOV
    device_mask_rate: float = 0.05  # share of rows whose device is masked to OOV
    num_workers: int = 2
    cpus_per_worker: float = 0.5
    use_gpu: bool = False
    max_failures: int = 1
    seed: int = 0


def build_model(kind: str, model_cfg: dict[str, Any], cards: dict[str, int]) -> nn.Module:
    if kind == "two_tower":
        return TwoTower(TwoTowerConfig(**model_cfg), cards)
    if kind == "dlrm":
        return DLRM(DLRMConfig.from_dict(model_cfg), cards)
    raise ValueError(f"unknown model kind {kind!r}; expected two_tower or dlrm")


def _wrap(kind: str, model: nn.Module, log_q: list[float] | None) -> nn.Module:
    if kind == "two_tower":
        q = torch.tensor(log_q, dtype=torch.float32) if log_q is not None else None
        return TwoTowerTrain(model, q)  # type: ignore[arg-type]
    return DLRMTrain(model)  # type: ignore[arg-type]


def to_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """A NumPy batch from Ray Data -> model inputs (dense features stacked into one tensor)."""
    out = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device)
           for k, v in batch.items() if k not in DENSE}
    dense = np.stack([batch[k] for k in DENSE], axis=1).astype(np.float32)  # B, N
    out["dense"] = torch.from_numpy(dense).to(device)
    return out


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    loop = LoopConfig(**config["loop"])
    kind = config["kind"]
    ctx = ray.train.get_context()
    torch.manual_seed(loop.seed)
    torch.set_num_threads(max(1, int(loop.cpus_per_worker)))
    device = ray.train.torch.get_device()

    model = build_model(kind, config["model_cfg"], config["cards"])
    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    optimizer_state = None
    if checkpoint:  # resuming after a failure: continue from the last finished epoch
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer_state = state["optimizer"]
        start_epoch = state["epoch"] + 1
    train = ray.train.torch.prepare_model(_wrap(kind, model, config.get("log_q")))
    optimizer = torch.optim.Adam(train.parameters(), lr=loop.lr)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    rng = np.random.default_rng([loop.seed, ctx.get_world_rank()])

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    for epoch in range(start_epoch, loop.epochs):
        train.train()
        total, rows = 0.0, 0
        for batch in train_shard.iter_batches(batch_size=loop.batch_size, batch_format="numpy",
                                              local_shuffle_buffer_size=4 * loop.batch_size):
            batch = mask_devices(mask_users(batch, loop.mask_rate, rng),
                                 loop.device_mask_rate, rng)
            x = to_tensors(batch, device)
            loss = train(x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(x["label"])
            rows += len(x["label"])
        val_loss = _evaluate_loss(train, val_shard, loop.batch_size, device)
        metrics = {"epoch": epoch, "train_loss": total / max(rows, 1), "val_loss": val_loss,
                   "train_rows": rows, "start_epoch": start_epoch}
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if ctx.get_world_rank() == 0:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "epoch": epoch}, Path(tmp) / "state.pt")
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)


@torch.no_grad()
def _evaluate_loss(train: nn.Module, shard: Any, batch_size: int, device: torch.device) -> float:
    train.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, rows
    for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
        x = to_tensors(batch, device)
        total += torch.tensor([float(train(x)) * len(x["label"]), len(x["label"])],
                              dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
    return float(total[0] / total[1].clamp(min=1))


class ProgressCallback(ray.train.UserCallback):
    """Runs in the Ray Train controller: forwards rank 0's epoch metrics to the driver."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Any) -> None:
        if metrics:
            self.queue.put_nowait(dict(metrics[0]))


@contextlib.contextmanager
def _print_progress(queue: Any, kind: str, epochs: int) -> Iterator[list[dict[str, Any]]]:
    """Print each finished epoch while `trainer.fit()` blocks the main thread; yields the
    list that collects every report, restarts included (Ray's result keeps only the
    retained checkpoints' metrics)."""
    done = threading.Event()
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []

    def pump() -> None:
        while True:
            try:
                m = queue.get(timeout=0.5)
            except ray.util.queue.Empty:
                if done.is_set():  # training returned and every report is drained
                    return
                continue
            except ray.exceptions.RayError as e:  # progress is best effort; training goes on
                log.warning("epoch progress unavailable: %s", e)
                return
            history.append(m)
            print(f"[train]   {kind} epoch {int(m['epoch']) + 1}/{epochs}: "
                  f"train loss {m['train_loss']:.4f}, val loss {m['val_loss']:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield history
    finally:
        done.set()
        thread.join(timeout=30)
        queue.shutdown()


def fit(kind: str, model_cfg: TwoTowerConfig | DLRMConfig, cards: dict[str, int],
        train_ds: Any, val_ds: Any, loop: LoopConfig, storage: Path, name: str,
        log_q: np.ndarray | None = None) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train `kind` on Ray Train; returns the trained model and per-epoch metrics.

    `log_q` (Two-Tower only): log of each catalog row's share of training clicks.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    progress = ray.util.queue.Queue(actor_options={"num_cpus": 0})

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"kind": kind, "model_cfg": asdict(model_cfg), "cards": cards,
                           "loop": asdict(loop),
                           "log_q": None if log_q is None else [float(v) for v in log_q]},
        scaling_config=ScalingConfig(
            num_workers=loop.num_workers,
            use_gpu=loop.use_gpu,
            resources_per_worker={"CPU": loop.cpus_per_worker} | ({"GPU": 1} if loop.use_gpu
                                                                   else {}),
        ),
        run_config=RunConfig(
            storage_path=str(storage.resolve()),
            name=name,
            failure_config=FailureConfig(max_failures=loop.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2,
                                               checkpoint_score_attribute="val_loss",
                                               checkpoint_score_order="min"),
            # RunConfig's stub is Train V1's; V2 (the default in 2.60) takes UserCallbacks.
            callbacks=[ProgressCallback(progress)],  # type: ignore[list-item]
        ),
        datasets={"train": train_ds, "val": val_ds},
    )
    with _print_progress(progress, kind, loop.epochs) as history:
        result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"{kind} training finished without a checkpoint: {result.error}")
    # The epoch with the lowest validation loss, not necessarily the last one.
    best = min(result.best_checkpoints or [(result.checkpoint, {"val_loss": 0.0})],
               key=lambda cm: cm[1]["val_loss"])[0]
    with best.as_directory() as d:
        state = torch.load(Path(d) / "state.pt", weights_only=False)
    model = build_model(kind, asdict(model_cfg), cards)
    model.load_state_dict(state["model"])
    model.eval()
    return model, history
