"""Ray Train resumes from the last checkpoint after a worker dies; accelerators map to the
Ray resources that schedule the workers; the in-process loop learns, stops early and keeps
its best epoch."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ray.train.torch.xla import TorchXLAConfig

from train.dlrm import SPARSE, DLRMConfig
from train.features import DENSE
from train.loop import (
    LoopConfig,
    RayRun,
    _batches,
    _val_loss,
    _validate,
    fit,
    scaling,
    worker_device,
)
from train.registry import spec


def separable(n: int, seed: int) -> dict[str, Any]:
    """DLRM inputs whose label is 1 exactly for items 3 and 4 of 5."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {name: rng.integers(0, 5, n) for name in SPARSE}
    cols |= {name: np.zeros(n, np.float32) for name in DENSE}
    cols["label"] = (cols["item"] >= 3).astype(np.float32)
    return cols


def test_fit_on_arrays_learns_in_process_stops_early_and_keeps_its_best_epoch() -> None:
    cards = {name: 5 for name in SPARSE} | {"content": 0}
    loop = LoopConfig(epochs=40, patience=2, lr=0.0003, batch_size=256, mask_rate=0.0,
                      device_mask_rate=0.0, num_workers=1, cpus_per_worker=1.0)
    val = separable(1000, 1)
    # a fifth of the validation labels flipped: the more confident the model grows, the
    # higher its validation loss once the rule is learned, so there is a best epoch
    val["label"][:200] = 1 - val["label"][:200]
    model, history = fit("dlrm", DLRMConfig(), cards, separable(4000, 0), val, loop)
    losses = [h["val_loss"] for h in history]
    assert losses[0] > min(losses) + 0.05  # it learned the rule (0.69 -> ~0.62)
    assert len(history) < loop.epochs  # and stopped: 2 epochs without a lower loss
    assert losses.index(min(losses)) == len(losses) - 1 - loop.patience
    # the model returned is the best epoch's, not the last one's
    again = _val_loss(spec("dlrm").task(model), _batches(val, 256), None)
    assert again == pytest.approx(min(losses), rel=1e-5)
    with pytest.raises(ValueError, match="Ray Train"):
        fit("dlrm", DLRMConfig(), cards, val, val, LoopConfig(accelerator="gpu"))


def test_epochs_are_chosen_by_the_ranking_score_of_a_task_that_ranks() -> None:
    """A task with `validation` (loss, per-row ranking score) is judged by 1 - its mean
    score; a task without one by its loss."""

    class Ranks(torch.nn.Module):
        def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
            return x["label"].mean() * 2

        def validation(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return self(x), x["label"]

    class Loss(Ranks):
        validation = None  # type: ignore[assignment]

    val = {"label": np.array([1.0, 0.0, 0.0, 1.0, 1.0], np.float32)}
    got = _validate(Ranks(), _batches(val, 2), None)
    assert got == pytest.approx({"val_loss": 1.2, "val_ranking": 0.6, "val_objective": 0.4})
    assert _validate(Loss(), _batches(val, 2), None) == pytest.approx(
        {"val_loss": 1.2, "val_objective": 1.2})


def test_fit_on_ray_datasets_needs_a_place_for_its_checkpoints() -> None:
    with pytest.raises(ValueError, match="RayRun"):
        fit("dlrm", DLRMConfig(), {}, object(), object(), LoopConfig())


def test_cpu_workers_ask_for_fractional_cpus_only() -> None:
    workers, torch_config = scaling(LoopConfig(num_workers=3, cpus_per_worker=0.5))
    assert (workers.num_workers, workers.use_gpu) == (3, False)
    assert workers.resources_per_worker == {"CPU": 0.5}
    assert torch_config is None  # Ray's default TorchConfig: gloo


def test_gpu_workers_ask_for_one_gpu_each() -> None:
    workers, torch_config = scaling(LoopConfig(accelerator="gpu", cpus_per_worker=0.5))
    assert workers.use_gpu
    assert workers.resources_per_worker == {"CPU": 0.5, "GPU": 1}
    assert torch_config is None  # Ray's default TorchConfig: NCCL on GPU


def test_use_gpu_still_means_gpu() -> None:
    # use_gpu is kept as an alias, for callers written before `accelerator`.
    loop = LoopConfig(use_gpu=True)
    assert loop.accelerator == "gpu"
    assert scaling(loop)[0].resources_per_worker == {"CPU": 0.5, "GPU": 1}


def test_neuron_workers_ask_for_neuron_cores_over_xla() -> None:
    workers, torch_config = scaling(LoopConfig(accelerator="neuron", neuron_cores_per_worker=2))
    assert not workers.use_gpu
    assert workers.resources_per_worker == {"neuron_cores": 2}
    assert isinstance(torch_config, TorchXLAConfig)


def test_unknown_accelerator_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="'tpu'; choose one of cpu, gpu, neuron"):
        LoopConfig(accelerator="tpu")
    with pytest.raises(ValueError, match="drop use_gpu"):
        LoopConfig(use_gpu=True, accelerator="neuron")
    with pytest.raises(ValueError, match="neuron_cores_per_worker"):
        LoopConfig(accelerator="neuron", neuron_cores_per_worker=0)


def test_neuron_workers_train_on_the_xla_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch_xla exists on Neuron hosts only: stand in for it, as the loop must ask it.
    xla = torch.device("meta")  # any device but the "cpu" that Ray would answer
    for name in ("torch_xla", "torch_xla.core", "torch_xla.core.xla_model"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(sys.modules["torch_xla.core.xla_model"], "xla_device", lambda: xla,
                        raising=False)
    assert worker_device("neuron") == xla


class WorkerKiller(threading.Thread):
    """SIGKILLs one Ray Train worker process once the controller has registered a checkpoint.

    It waits for `checkpoint_manager_snapshot.json`, which the controller writes when it
    registers a checkpoint, and not for a `checkpoint_*` folder: rank 0 writes that folder
    when it reports, but the controller only takes the report at its next poll of the workers
    (every 2 s). A worker killed in between takes the report with it, and Ray restarts from
    the checkpoint before, or from scratch (start_epoch 0: no resume to see).
    """

    def __init__(self, run_dir: Path, timeout_s: float = 240.0) -> None:
        super().__init__(daemon=True)
        self.snapshot = run_dir / "checkpoint_manager_snapshot.json"
        self.timeout_s = timeout_s
        self.stop = threading.Event()
        self.killed_pid: int | None = None
        self.epoch_at_kill: int | None = None  # the newest checkpointed epoch at the kill
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._wait_and_kill()
        except Exception as e:  # surfaces in the test's assertion, not as a thread warning
            self.error = repr(e)

    def _wait_and_kill(self) -> None:
        import ray
        from ray.util.state import list_actors

        deadline = time.monotonic() + self.timeout_s
        while (epoch := self._registered_epoch()) is None:
            if self.stop.wait(0.05) or time.monotonic() > deadline:
                self.error = f"no checkpoint registered in {self.snapshot.parent}"
                return
        # Ask this test's Ray by its address, never `ps` or the default address: other people's
        # Ray clusters run on this machine too, and with two of them `list_actors()` refuses
        # ("Found multiple active Ray instances").
        workers = list_actors(address=ray.get_runtime_context().gcs_address,
                              filters=[("class_name", "=", "RayTrainWorker"),
                                       ("state", "=", "ALIVE")])
        if not workers:
            self.error = "no live RayTrainWorker actor (training already finished?)"
            return
        pid = min(w.pid for w in workers)  # any one: the controller restarts the whole group
        os.kill(pid, signal.SIGKILL)
        self.killed_pid, self.epoch_at_kill = pid, epoch

    def _registered_epoch(self) -> int | None:
        try:  # the controller may be halfway through writing it
            snapshot = json.loads(self.snapshot.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return int(snapshot["latest_checkpoint_result"]["metrics"]["epoch"])


@pytest.mark.ray
@pytest.mark.slow  # ~1-2 min here: two worker-group starts dominate, not the 4 epochs
def test_training_resumes_from_the_last_checkpoint_after_a_worker_is_killed(
        ray_session: None, tiny_data: Path, tmp_path: Path) -> None:
    from flows.layout import Split, model_rows, read_interactions, read_items, read_users
    from train.dlrm import DLRMConfig
    from train.inputs import ModelInputs, fit_features
    from train.registry import MODELS

    items, users, split = read_items(tiny_data), read_users(tiny_data), Split()
    fitted = fit_features(read_interactions(tiny_data, split.train), users, items, None)
    fn = ModelInputs(fitted, items, MODELS["dlrm"].columns)

    def days(which: tuple[int, ...]) -> Any:
        return model_rows(tiny_data, which, fn, False, on_ray=True, cache_max_rows=10**7)

    train_ds, val_ds = days(split.train), days(split.val)
    # 4 epochs: the kill lands after epoch 0 is registered (up to one 2 s poll after it is
    # reported) while 2-3 epochs of ~2 s each are still to run.
    loop = LoopConfig(epochs=4, batch_size=256, max_failures=1)
    killer = WorkerKiller(tmp_path / "runs" / "resume")
    killer.start()
    try:
        _, history = fit("dlrm", DLRMConfig(), fitted.features.cardinalities, train_ds, val_ds,
                         loop, run=RayRun(tmp_path / "runs", "resume"))
    finally:
        killer.stop.set()
        killer.join(timeout=30)

    assert killer.killed_pid is not None, killer.error
    assert killer.epoch_at_kill is not None
    epochs = [int(h["epoch"]) for h in history]
    starts = [int(h["start_epoch"]) for h in history]
    # Every epoch reported exactly once, in order: none retrained, none skipped.
    assert epochs == list(range(loop.epochs)), starts
    assert any(s > 0 for s in starts), f"no report came from a resumed attempt: {history}"
    resumed = next(i for i, s in enumerate(starts) if s > 0)
    # The first attempt ran from scratch; the second started right after the last checkpoint
    # (epoch `resumed - 1`), which was at least the one registered when the worker died.
    assert starts[:resumed] == [0] * resumed
    assert starts[resumed:] == [resumed] * (loop.epochs - resumed)
    assert resumed > killer.epoch_at_kill
    # The optimizer state came back with the weights (both are in state.pt): Adam counted
    # every batch of every epoch, the killed attempt's included.
    run_dir = tmp_path / "runs" / "resume"
    snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    last = run_dir / snapshot["latest_checkpoint_result"]["checkpoint_dir_name"] / "state.pt"
    adam = torch.load(last, weights_only=True)["optimizer"]["state"]
    assert max(int(s["step"]) for s in adam.values()) == sum(
        math.ceil(h["train_rows"] / loop.batch_size) for h in history)


@pytest.mark.ray
def test_initial_weights_and_log_q_reach_the_workers_through_the_object_store(
        ray_session: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The trainer's config is pickled into the controller and every worker: it carries
    settings and one object-store reference, never a state dict or a catalog-sized array."""
    import pickle

    import numpy as np
    import ray
    import ray.train.torch

    from tests.contracts import CARDS
    from train.two_tower import TwoTower, TwoTowerConfig

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    class RecordingTrainer:
        def __init__(self, fn: Any, train_loop_config: dict[str, Any], **kwargs: Any) -> None:
            seen["config"] = train_loop_config

        def fit(self) -> None:
            raise Stop

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", RecordingTrainer)
    init = TwoTower(TwoTowerConfig(), CARDS)
    log_q = np.log(np.full(50_000, 1 / 50_000))
    with pytest.raises(Stop):
        fit("two_tower", init.cfg, CARDS, None, None, LoopConfig(), {"log_q": log_q},
            init=init, run=RayRun(tmp_path, "x"))
    config = seen["config"]
    assert isinstance(config["state"], ray.ObjectRef)
    assert len(pickle.dumps({k: v for k, v in config.items() if k != "state"})) < 5_000
    state = ray.get(config["state"])
    np.testing.assert_array_equal(state["task"]["log_q"], log_q)
    for name, w in init.state_dict().items():
        torch.testing.assert_close(state["init"][name], w)
