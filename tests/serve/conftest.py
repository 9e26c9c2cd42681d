"""One Serve HTTP port for the whole run: Serve's proxy keeps the port it first started on,
so every module that deploys the app uses this one (and deletes its app when done)."""

from __future__ import annotations

import pytest

from tests.helpers import free_port


@pytest.fixture(scope="session")
def serve_port(ray_session: None) -> int:
    return free_port()
