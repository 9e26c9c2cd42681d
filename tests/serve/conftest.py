"""One Serve HTTP port for the whole run: Serve's proxy keeps the port it first started on,
so every module that deploys the app uses this one (and deletes its app when done); and a
plain redis-server per module for the stores' contracts."""

from __future__ import annotations

from typing import Any

import pytest

from bench.redis_server import RedisServer
from tests.helpers import free_port


@pytest.fixture(scope="session")
def serve_port(ray_session: None) -> int:
    return free_port()


@pytest.fixture(scope="module")
def plain_redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A redis-server without modules on a free port, for one test module."""
    server = RedisServer(tmp_path_factory.mktemp("redis-plain"))
    yield server
    server.stop()
