"""One training loop for both models, run where its rows are: `fit(kind, ..., train, val, ...)`.

    Ray Datasets   on Ray Train: CPU, GPU or AWS Neuron workers (`LoopConfig.accelerator`),
                   a checkpoint every epoch under `RayRun` (resumed after a worker dies);
                   CPU workers ask for fractional CPUs so that Ray Data keeps CPUs to feed
                   them on a 2-core machine (a whole CPU per worker deadlocks there)
    arrays         in this process, the same epochs (`_train_epoch`, `_validate`): for rows
                   that fit in memory, where starting a Ray Train run (workers, process
                   group, checkpoints) would cost more than the epoch itself (daily
                   fine-tuning on a day of data)

Both stop early, after `LoopConfig.patience` epochs without a better validation objective
(the loss, or the ranking score of a task that ranks: `_validate`), and return the weights
of the epoch with the best one with the per-epoch metrics.
train/inputs.py makes either kind of rows from interaction rows.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray.exceptions
import ray.train
import ray.train.torch
import ray.util.queue
import torch
from ray.train.torch import TorchConfig
from torch import nn

from train.accelerators import check_accelerator
from train.features import MASK_KINDS, mask_devices, mask_users
from train.inputs import Rows
from train.registry import MODELS, build, spec
from train.scoring import to_tensors
from train.storage import join, origin, ray_path, remove

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    epochs: int = 3
    batch_size: int = 1024
    lr: float = 3e-3
    mask_rate: float = 0.05  # share of rows made to look like cold-start users
    # of those: id only / no past / anonymous (see train.features.mask_users)
    mask_kinds: tuple[float, float, float] = MASK_KINDS
    freeze: tuple[str, ...] = ()  # parameter name prefixes kept fixed, e.g. ("item_tower",)
    device_mask_rate: float = 0.05  # share of rows whose device is masked to OOV
    num_workers: int = 2
    cpus_per_worker: float = 0.5
    use_gpu: bool = False  # deprecated alias of accelerator="gpu"
    max_failures: int = 1
    seed: int = 0
    # Stop after this many epochs without a better validation objective (None: run every
    # epoch): `epochs` is then a ceiling, and the epochs a dataset needs are found on its
    # own validation days.
    patience: int | None = 2
    accelerator: str = "cpu"  # see train/accelerators.py
    neuron_cores_per_worker: int = 1

    def __post_init__(self) -> None:
        check_accelerator(self.accelerator)
        if self.use_gpu and self.accelerator == "neuron":
            raise ValueError("use_gpu=True contradicts accelerator='neuron'; drop use_gpu "
                             "(a deprecated alias) and set accelerator alone")
        if self.use_gpu:  # frozen: the alias is resolved once, so only `accelerator` is read
            object.__setattr__(self, "accelerator", "gpu")
        if self.neuron_cores_per_worker < 1:
            raise ValueError(f"neuron_cores_per_worker must be at least 1, "
                             f"got {self.neuron_cores_per_worker}")


def worker_device(accelerator: str) -> torch.device:
    """This worker's torch device. Ray's `get_device()` knows CUDA only, so on NeuronCores it
    would answer "cpu": there the device is the XLA one (torch_xla ships with torch-neuronx on
    Neuron hosts only, hence the late import)."""
    if accelerator == "neuron":
        import torch_xla.core.xla_model as xm

        return xm.xla_device()
    return ray.train.torch.get_device()


def _model(kind: str, model_cfg: Any, cards: dict[str, int], init: dict[str, Any] | None,
           freeze: tuple[str, ...]) -> nn.Module:
    """A fresh model of `kind`, from `init` weights when given (fine-tuning), with the
    parameters under `freeze` fixed (e.g. the item tower, so the index stays valid)."""
    model = build(kind, model_cfg, cards)
    if init is not None:
        model.load_state_dict(init)
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in freeze):
            p.requires_grad_(False)
    return model


def _train_epoch(train: nn.Module, optimizer: torch.optim.Optimizer,
                 batches: Iterable[dict[str, np.ndarray]], loop: LoopConfig,
                 rng: np.random.Generator, device: torch.device | None) -> tuple[float, int]:
    """One pass over `batches`, cold-start and device masking applied; (loss sum, rows)."""
    train.train()
    total, rows = 0.0, 0
    for batch in batches:
        batch = mask_devices(mask_users(batch, loop.mask_rate, rng, loop.mask_kinds),
                             loop.device_mask_rate, rng)
        x = to_tensors(batch, device)
        loss = train(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(x["label"])
        rows += len(x["label"])
    return total, rows


@torch.no_grad()
def _validate(train: nn.Module, batches: Iterable[dict[str, np.ndarray]],
              device: torch.device | None) -> dict[str, float]:
    """Validation figures over `batches`, summed over every worker when training is
    distributed: `val_loss`, the mean loss; `val_ranking`, the mean ranking score of a task
    that has one (its `validation` gives a (B,) score, e.g. the Two-Tower's over the
    catalog); `val_objective`, what the epochs are chosen by, lower is better: 1 minus the
    ranking score where there is one, else the loss."""
    train.eval()
    task = getattr(train, "module", train)  # under DistributedDataParallel
    validation = getattr(task, "validation", None)
    total = torch.zeros(4, dtype=torch.float64, device=device)  # loss, score sums, rows x2
    for batch in batches:
        x = to_tensors(batch, device)
        loss, score = validation(x) if validation else (train(x), None)
        n = len(x["label"])
        total += torch.tensor([float(loss) * n, 0.0 if score is None else float(score.sum()),
                               n, 0 if score is None else n],
                              dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
    out = {"val_loss": float(total[0] / total[2].clamp(min=1))}
    if total[3] > 0:
        out["val_ranking"] = float(total[1] / total[3])
    out["val_objective"] = 1.0 - out["val_ranking"] if "val_ranking" in out \
        else out["val_loss"]
    return out


def _val_loss(train: nn.Module, batches: Iterable[dict[str, np.ndarray]],
              device: torch.device | None) -> float:
    """Mean loss over `batches` (`_validate`'s `val_loss`)."""
    return _validate(train, batches, device)["val_loss"]


class _Patience:
    """Whether to stop: `patience` epochs in a row without a lower validation objective."""

    def __init__(self, patience: int | None) -> None:
        self.patience, self.best, self.waited = patience, float("inf"), 0

    def stop(self, objective: float) -> bool:
        if objective < self.best:
            self.best, self.waited = objective, 0
            return False
        self.waited += 1
        return self.patience is not None and self.waited >= self.patience


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker. `config` holds small settings only; initial weights
    and the task's arrays arrive as one object-store reference (`config["state"]`)."""
    loop = LoopConfig(**config["loop"])
    kind = config["kind"]
    ctx = ray.train.get_context()
    torch.manual_seed(loop.seed)
    torch.set_num_threads(max(1, int(loop.cpus_per_worker)))
    device = worker_device(loop.accelerator)
    state_in = ray.get(config["state"])

    model = _model(kind, config["model_cfg"], config["cards"], state_in["init"], loop.freeze)
    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    optimizer_state = None
    if checkpoint:  # resuming after a failure: continue from the last finished epoch
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer_state = state["optimizer"]
        start_epoch = state["epoch"] + 1
    # move_to_device: Ray's own choice is CUDA or CPU, which is wrong on NeuronCores.
    task = spec(kind).task(model, **{k: torch.as_tensor(v) for k, v in state_in["task"].items()})
    train = ray.train.torch.prepare_model(task, move_to_device=device)
    optimizer = torch.optim.Adam([p for p in train.parameters() if p.requires_grad], lr=loop.lr)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    rng = np.random.default_rng([loop.seed, ctx.get_world_rank()])

    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    patience = _Patience(loop.patience)
    for epoch in range(start_epoch, loop.epochs):
        t_epoch = time.perf_counter()
        total, rows = _train_epoch(train, optimizer, train_shard.iter_batches(
            batch_size=loop.batch_size, batch_format="numpy",
            local_shuffle_buffer_size=4 * loop.batch_size), loop, rng, device)
        val = _validate(train, val_shard.iter_batches(
            batch_size=loop.batch_size, batch_format="numpy"), device)
        metrics = {"epoch": epoch, "train_loss": total / max(rows, 1), **val,
                   "train_rows": rows, "start_epoch": start_epoch,
                   # this worker's rows over the epoch's wall time, validation included
                   "epoch_seconds": time.perf_counter() - t_epoch}
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if ctx.get_world_rank() == 0:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "epoch": epoch}, Path(tmp) / "state.pt")
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
        # Every worker sees the same all-reduced validation figures, so all stop together.
        if patience.stop(val["val_objective"]):
            break


def _batches(cols: dict[str, np.ndarray], batch_size: int,
             rng: np.random.Generator | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Slices of `batch_size` rows of featurized arrays, shuffled when `rng` is given."""
    n = len(next(iter(cols.values())))
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for s in range(0, n, batch_size):
        at = order[s:s + batch_size]
        yield {k: v[at] for k, v in cols.items()}


def _val_line(m: dict[str, Any]) -> str:
    """"val loss 6.1234" and, where the task ranks, ", val ranking 0.3456"."""
    ranking = f", val ranking {m['val_ranking']:.4f}" if "val_ranking" in m else ""
    return f"val loss {m['val_loss']:.4f}{ranking}"


def _fit_in_process(kind: str, model_cfg: Any, cards: dict[str, int],
                    train_cols: dict[str, np.ndarray], val_cols: dict[str, np.ndarray],
                    loop: LoopConfig, task_inputs: dict[str, np.ndarray] | None = None,
                    init: nn.Module | None = None) -> tuple[nn.Module, list[dict[str, Any]]]:
    """`fit` on featurized arrays (one column each, as `featurize` gives them): the same
    epochs, masking, early stop and choice of the best epoch, without Ray Train's workers,
    process group and checkpoints. CPU only."""
    if loop.accelerator != "cpu":
        raise ValueError("training in this process runs on its CPU; pass Ray Datasets to "
                         f"train on Ray Train workers with accelerator {loop.accelerator!r}")
    torch.manual_seed(loop.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, round(loop.num_workers * loop.cpus_per_worker)))
    model = _model(kind, model_cfg, cards, None if init is None else init.state_dict(),
                   loop.freeze)
    task = spec(kind).task(model, **{k: torch.as_tensor(v) for k, v in
                                     (task_inputs or {}).items()})
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=loop.lr)
    rng = np.random.default_rng([loop.seed, 0])
    history: list[dict[str, Any]] = []
    best: dict[str, torch.Tensor] = {}
    patience = _Patience(loop.patience)
    try:
        for epoch in range(loop.epochs):
            t_epoch = time.perf_counter()
            total, rows = _train_epoch(task, optimizer, _batches(train_cols, loop.batch_size,
                                                                 rng), loop, rng, None)
            val = _validate(task, _batches(val_cols, loop.batch_size), None)
            history.append({"epoch": epoch, "train_loss": total / max(rows, 1), **val,
                            "train_rows": rows, "start_epoch": 0,
                            "epoch_seconds": time.perf_counter() - t_epoch})
            print(f"[train]   {kind} epoch {epoch + 1}/{loop.epochs} (in process): train "
                  f"loss {total / max(rows, 1):.4f}, {_val_line(val)}", flush=True)
            if val["val_objective"] < patience.best:  # the best epoch so far: keep its weights
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if patience.stop(val["val_objective"]):
                break
    finally:
        torch.set_num_threads(threads)
    model.load_state_dict(best)
    model.eval()
    return model, history


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
                  f"train loss {m['train_loss']:.4f}, {_val_line(m)} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield history
    finally:
        done.set()
        thread.join(timeout=30)
        queue.shutdown()


def scaling(loop: LoopConfig) -> tuple[ray.train.ScalingConfig, TorchConfig | None]:
    """The Ray Train workers that `loop.accelerator` asks for, and the torch backend config
    that goes with them (None: Ray's default, gloo on CPU and NCCL on GPU)."""
    if loop.accelerator == "neuron":
        from ray.train.torch.xla import TorchXLAConfig

        # Ray detects NeuronCores as the custom resource "neuron_cores", and XLA replaces
        # gloo/NCCL there. No CPU is asked for, as Ray does by default for GPU workers.
        neuron = {"neuron_cores": loop.neuron_cores_per_worker}
        return (ray.train.ScalingConfig(num_workers=loop.num_workers,
                                        resources_per_worker=neuron), TorchXLAConfig())
    gpu = loop.accelerator == "gpu"
    # Fractional CPUs, so that Ray Data keeps CPUs to feed the workers (docs/ARCHITECTURE.md,
    # "Ray on two cores").
    resources = {"CPU": loop.cpus_per_worker} | ({"GPU": 1} if gpu else {})
    return (ray.train.ScalingConfig(num_workers=loop.num_workers, use_gpu=gpu,
                                    resources_per_worker=resources), None)


def epoch_figures(history: list[dict[str, Any]]
                  ) -> dict[str, Any]:  # JSON, for a version's manifest
    """The per-epoch figures a version's manifest keeps of a `fit` history."""
    keep = ("epoch", "train_loss", "val_loss", "val_ranking", "val_objective", "train_rows",
            "start_epoch", "epoch_seconds")
    return {"epochs": [{k: float(h[k]) for k in keep if k in h} for h in history]}


REFIT = "_refit"  # a model kind's second training, on more days (flows/train.py step 7b)


def drop_runs(storage: Path, run: str) -> None:
    """Delete the Ray Train folders of `run` (one per model kind and training,
    `<run>-<kind>` and `<run>-<kind>_refit`) under `storage`, and under the URI it mirrors:
    checkpoints only matter while training."""
    uri = origin(storage)
    for kind in (*MODELS, *(k + REFIT for k in MODELS)):
        if uri is not None:
            remove(join(uri, f"{run}-{kind}"))
        shutil.rmtree(storage / f"{run}-{kind}", ignore_errors=True)


@dataclass(frozen=True)
class RayRun:
    """Where a Ray Train run keeps its checkpoints: `<storage>/<name>` (Ray Train writes to
    the URI that `storage` mirrors, when it mirrors one: train/storage.py)."""

    storage: Path
    name: str


def fit(kind: str, model_cfg: Any, cards: dict[str, int], train: Rows, val: Rows,
        loop: LoopConfig, task_inputs: dict[str, np.ndarray] | None = None,
        init: nn.Module | None = None, run: RayRun | None = None
        ) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train `kind` (a key of train.registry.MODELS) on `train`, stopping early on `val`;
    returns the model with the weights of its best validation epoch, and per-epoch metrics.

    `train`, `val`: featurized arrays (one column each) train in this process; Ray Datasets
    on Ray Train workers, with checkpoints under `run`.
    `task_inputs`: keyword arrays of the kind's training wrapper (Two-Tower: `log_q`, the log
    of each catalog row's share of training clicks).
    `init`: a trained model of the same shape to start from (fine-tuning).
    """
    if isinstance(train, dict):
        return _fit_in_process(kind, model_cfg, cards, train, val, loop, task_inputs, init)
    if run is None:
        raise ValueError("training on Ray Train needs a RayRun: where its checkpoints go")
    return _fit_on_ray(kind, model_cfg, cards, train, val, loop, run, task_inputs, init)


def _fit_on_ray(kind: str, model_cfg: Any, cards: dict[str, int], train_ds: Any, val_ds: Any,
                loop: LoopConfig, run: RayRun, task_inputs: dict[str, np.ndarray] | None,
                init: nn.Module | None) -> tuple[nn.Module, list[dict[str, Any]]]:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    progress = ray.util.queue.Queue(actor_options={"num_cpus": 0})
    # Weights and arrays go through the object store: the trainer's config is pickled into
    # every worker and the controller, and should stay a few settings.
    state = ray.put({"init": None if init is None else init.state_dict(),
                     "task": dict(task_inputs or {})})

    storage_path, storage_fs = ray_path(run.storage)
    scaling_config, torch_config = scaling(loop)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"kind": kind, "model_cfg": asdict(model_cfg), "cards": cards,
                           "loop": asdict(loop), "state": state},
        scaling_config=scaling_config,
        torch_config=torch_config,
        run_config=RunConfig(
            # the URI when the artifacts are mirrored from one: every worker writes there
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            name=run.name,
            failure_config=FailureConfig(max_failures=loop.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2,
                                               checkpoint_score_attribute="val_objective",
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
    # The epoch with the best validation figure, not necessarily the last one.
    best = min(result.best_checkpoints or [(result.checkpoint, {"val_objective": 0.0})],
               key=lambda cm: cm[1]["val_objective"])[0]
    with best.as_directory() as d:
        best_state = torch.load(Path(d) / "state.pt", weights_only=True)
    model = build(kind, model_cfg, cards)
    model.load_state_dict(best_state["model"])
    model.eval()
    return model, history
