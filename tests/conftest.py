"""Shared fixtures: one local Ray, tiny generated data and one trained tiny version per run,
and the encoders several test modules load. Helpers live in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import write_tiny_clip, write_tiny_t5
from train.encoders import EncoderConfig, TextEncoder, load_encoder

METRICS_PORT: list[int] = []  # the session Ray's Prometheus port, once it has started


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    from flows.runtime import RayConfig, free_port, start_ray

    METRICS_PORT.append(free_port())
    with start_ray(RayConfig(num_cpus=4, metrics_export_port=METRICS_PORT[0])):
        yield


@pytest.fixture(scope="session")
def metrics_port(ray_session: None) -> int:
    """Where the session Ray exports its metrics (the app's among them) for Prometheus."""
    return METRICS_PORT[0]


@pytest.fixture(scope="session")
def tiny_data(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flows.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate(GenerateConfig(out=out, scale="tiny", seed=7))
    return out


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flows.train import TrainConfig, train

    cfg = TrainConfig(data=tiny_data, artifacts=tmp_path_factory.mktemp("artifacts"))
    cfg = replace(cfg, two_tower_loop=replace(cfg.two_tower_loop, epochs=3),
                  dlrm_loop=replace(cfg.dlrm_loop, epochs=2))
    return train(cfg)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_t5(tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def minilm() -> TextEncoder:
    return load_encoder(EncoderConfig(batch_size=8))
