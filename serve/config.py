"""Serving settings, typed and in one place. `ServeConfig` reaches every replica through
Serve's `user_config` (and `reconfigure()`); `HTTPConfig` is where the app listens. The
request schema in serve/app.py takes its default and bounds for `k` from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    retrieval_k: int = 300  # candidates fetched from FAISS before ranking
    default_k: int = 10  # items answered when a request does not say
    max_k: int = 100  # the most a request may ask for
    interest_k: int = 50  # candidates from a cold user's interest vector
    # Share of the top-k kept for interest candidates: the DLRM knows little of a cold user
    # and would otherwise rank popular two-tower items above everything the LLM found.
    interest_share: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.default_k <= self.max_k:
            raise ValueError(f"default_k must be within 1..max_k, got {self.default_k} "
                             f"with max_k {self.max_k}")
        if not 0.0 <= self.interest_share <= 1.0:
            raise ValueError(f"interest_share must be in [0, 1], got {self.interest_share}")


@dataclass(frozen=True)
class HTTPConfig:
    host: str = "127.0.0.1"
    port: int = 8000
