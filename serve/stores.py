"""What every networked store behind the serving path shares: one error for "unreachable",
and a Redis/Valkey client with timeouts short enough that a dead server degrades an answer
instead of stalling it.

Stages catch `StoreUnavailable`, answer without that store, and name the stage in the
response's `degraded` list; nothing a store raises becomes a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StoreUnavailable(RuntimeError):
    """A store (Redis/Valkey, the online store) could not be reached or answered badly."""


def no_retry() -> Any:
    """redis-py's retry policy of none: its default (3 retries, exponential backoff) turns a
    dead server into ~6 s of stall per command, on the request path."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def connect(url: str, timeout_s: float = 0.25) -> Any:
    """A Redis/Valkey client for `url` (redis://host:port/db). No connection is made until
    the first command; every command fails within `timeout_s` when the server is gone."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                health_check_interval=0, retry=no_retry())


@contextmanager
def unavailable(what: str, fix: str = "check that the Redis/Valkey server is up"
                ) -> Iterator[None]:
    """Redis/OS errors inside the block as `StoreUnavailable("<what> failed (<error>);
    <fix>")`: the one edge where a store's failure becomes something a stage degrades on."""
    try:
        yield
    except redis_errors() as e:
        raise StoreUnavailable(f"{what} failed ({e}); {fix}") from e


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a Redis client raises when the server is down or misbehaves."""
    import redis

    return (redis.RedisError, OSError)
