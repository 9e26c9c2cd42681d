"""Shared fixtures: one local Ray, tiny generated data and one trained tiny version per run."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    from flows.runtime import RayConfig, start_ray

    with start_ray(RayConfig(num_cpus=4)):
        yield


@pytest.fixture(scope="session")
def tiny_data(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flows.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate(GenerateConfig(out=out, scale="tiny", seed=7))
    return out


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flows.training import TrainConfig, train

    cfg = TrainConfig(data=tiny_data, artifacts=tmp_path_factory.mktemp("artifacts"))
    cfg = replace(cfg, two_tower_loop=replace(cfg.two_tower_loop, epochs=3),
                  dlrm_loop=replace(cfg.dlrm_loop, epochs=2))
    return train(cfg)
