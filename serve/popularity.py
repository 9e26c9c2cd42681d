"""Popularity candidates for users the models know nothing about: the items clicked most in
the request's context (device, time of day), optionally within one category.

Training counts clicks per (item, device, hour bucket) (train/popularity.py) and publishes
the array with the version; serving adds the clicks it sees since (`Popularity.record`),
shared between replicas through one Redis hash per version, so an item that takes off today
rises within a second on every replica.

Shapes: I items (catalog rows), D devices (the version's device vocabulary, 0 = unknown),
H hour buckets (hour * H // 24).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import numpy as np

from serve.stores import connect, unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PopularityConfig:
    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://localhost:6379/0"
    prefix: str = "popularity"  # the shared hash is `<prefix>:<version>`
    refresh_s: float = 0.5  # how often a replica pulls the other replicas' clicks
    # Pseudo-clicks of the global ranking added to every context cell: a cell with far fewer
    # clicks than this ranks like the whole catalog does, a busy cell by its own clicks.
    smoothing: float = 20.0
    # A ranking is rebuilt at most this often while clicks keep arriving, so a steady event
    # stream costs one argpartition per context per interval, not one per request.
    rebuild_s: float = 0.1
    ttl_s: int = 7 * 86400  # the shared hash of a version nobody records into expires

    def __post_init__(self) -> None:
        if self.backend not in ("memory", "redis"):
            raise ValueError(f"unknown popularity backend {self.backend!r}; use 'memory' or "
                             "'redis'")
        if self.smoothing < 0 or self.refresh_s <= 0 or self.rebuild_s < 0:
            raise ValueError("smoothing and rebuild_s must be >= 0 and refresh_s > 0")


class Popularity:
    """Most-clicked items per (device, hour bucket, category), blended with the global ranking:

        score[i] = cell[i] + smoothing * global[i] / sum(global)

    Rankings are cached per (device, bucket, category) and rebuilt after clicks arrive, so a
    request is a dictionary lookup and a slice, whatever the catalog's size.
    """

    def __init__(self, base: np.ndarray, item_category: np.ndarray,
                 cfg: PopularityConfig | None = None, version: str = "") -> None:
        if base.ndim != 3 or base.shape[0] != len(item_category):
            raise ValueError(f"base counts must be (items, devices, hour buckets) with one row "
                             f"per item; got {base.shape} for {len(item_category)} items")
        self.cfg = cfg or PopularityConfig()
        self.version = version
        self.n_items, self.n_devices, self.hour_buckets = base.shape
        # D, H, I: a context's counts are contiguous, read in one pass per ranking
        self._counts = np.ascontiguousarray(base.transpose(1, 2, 0), dtype=np.float64)
        self._global = self._counts.sum(axis=(0, 1))  # I
        self._total = float(self._global.sum())
        item_category = np.asarray(item_category, np.int64)
        self._by_category = {int(c): np.flatnonzero(item_category == c)
                             for c in np.unique(item_category)}
        self._lock = threading.Lock()
        self._generation = 0  # bumped by every update
        # (device, bucket, category) -> (generation, built at, rows most popular first)
        self._cache: dict[tuple[int, int, int | None], tuple[int, float, np.ndarray]] = {}

    def _cell(self, device: int, hour: int) -> tuple[int, int]:
        """(device, hour bucket); bucket -1 for an unknown hour (-1): the whole day."""
        if not -1 <= hour <= 23:
            raise ValueError(f"hour must be in 0-23, or -1 for unknown, got {hour}")
        d = device if 0 <= device < self.n_devices else 0  # unknown device
        return d, hour * self.hour_buckets // 24 if hour >= 0 else -1

    def _scores(self, d: int, b: int, rows: np.ndarray | None) -> np.ndarray:
        if d < 0:  # overall
            return self._global if rows is None else self._global[rows]
        total = max(self._total, 1.0)
        counts = self._counts[d] if b >= 0 else self._counts[d].sum(0, keepdims=True)
        b = max(b, 0)
        cell = counts[b] if rows is None else counts[b, rows]
        glob = self._global if rows is None else self._global[rows]
        return cell + self.cfg.smoothing * glob / total

    def scores(self, device: int, hour: int) -> np.ndarray:
        """(I,) every item's score in this context: what `top` ranks by."""
        return self._scores(*self._cell(device, hour), None)

    def scores_of(self, device: int, hour: int, rows: np.ndarray) -> np.ndarray:
        """(N,) the scores of catalog `rows` only: a request's candidates."""
        return self._scores(*self._cell(device, hour), rows)

    def overall_of(self, rows: np.ndarray) -> np.ndarray:
        """(N,) the clicks of catalog `rows` over every context."""
        return self._global[rows]

    def top_overall(self, n: int) -> np.ndarray:
        """(<= n,) catalog rows with the most clicks over every context, best first."""
        return self.top(-1, -1, None, n, overall=True)

    def _ranked(self, d: int, b: int, rows: np.ndarray | None, n: int) -> np.ndarray:
        """The n best of `rows` (all items when None), best first, ties by catalog row."""
        scores = self._scores(d, b, rows)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]
        return top if rows is None else rows[top]

    def top(self, device: int, hour: int, category: int | None, n: int,
            overall: bool = False) -> np.ndarray:
        """(<= n,) catalog rows, most popular first in this context (`overall`: over every
        context, device and hour ignored). With a category, its items; when it has fewer
        than n, they come first and the best others fill the rest."""
        if n <= 0:
            return np.empty(0, np.int64)
        d, b = (-1, -1) if overall else self._cell(device, hour)
        key = (d, b, category)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and len(hit[2]) >= min(n, self.n_items):
            gen, built, ranked = hit
            if gen == self._generation or now - built < self.cfg.rebuild_s:
                return ranked[:n]
        gen = self._generation
        rows = self._by_category.get(category) if category is not None else None
        if rows is not None and len(rows) >= n:
            ranked = self._ranked(d, b, rows, n)
        else:
            ranked = self._ranked(d, b, None, n)
            if rows is not None and len(rows):  # the category's items first, then the rest
                own = self._ranked(d, b, rows, len(rows))
                ranked = np.concatenate([own, ranked[~np.isin(ranked, own)]])[:n]
        self._cache[key] = (gen, now, ranked)
        return ranked

    def _apply(self, row: int, d: int, b: int, weight: float) -> None:
        self._counts[d, b, row] += weight
        self._global[row] += weight
        self._total += weight
        self._generation += 1

    def record(self, row: int, device: int, hour: int, weight: float = 1.0) -> None:
        """Count one click (of `weight`) here at once; raises StoreUnavailable when the shared
        store is down (the click then counts on this replica only). A click at an unknown
        hour (-1) counts 1/H in every hour bucket, as in `counts`."""
        if not 0 <= row < self.n_items:
            raise ValueError(f"item row {row} is outside the catalog (0-{self.n_items - 1})")
        d, b = self._cell(device, hour)
        cells = [(b, weight)] if b >= 0 else [(k, weight / self.hour_buckets)
                                              for k in range(self.hour_buckets)]
        with self._lock:
            for bb, w in cells:
                self._apply(row, d, bb, w)
            for bb, w in cells:
                self._share(row, d, bb, w)

    def _share(self, row: int, d: int, b: int, weight: float) -> None:
        """Publish one click to the other replicas (nothing to do in memory)."""

    def refresh(self) -> None:
        """Pull the clicks other replicas recorded since the last refresh (call every
        `cfg.refresh_s`); nothing to do in memory."""


class Demographic:
    """Most-clicked items per demographic cell (age bucket x gender, from the version's
    vocabularies; 0 = unknown), blended with the global ranking like `Popularity`:

        score[i] = cell[i] + smoothing * global[i] / sum(global)

    The popularity a brand-new user with a known age or gender starts from; counted at
    training (`counts` over age bucket and gender instead of device and hour) and fixed for
    the version's life (events carry no demographics)."""

    def __init__(self, base: np.ndarray, smoothing: float = PopularityConfig.smoothing) -> None:
        if base.ndim != 3:
            raise ValueError(f"base counts must be (items, age buckets, genders), got "
                             f"{base.shape}")
        self.n_items, self.n_ages, self.n_genders = base.shape
        self.smoothing = smoothing
        self._counts = np.ascontiguousarray(base.transpose(1, 2, 0), dtype=np.float64)
        self._global = self._counts.sum(axis=(0, 1))  # I
        self._prior = smoothing * self._global / max(float(self._global.sum()), 1.0)  # I
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def _cell(self, age_bucket: int, gender: int) -> tuple[int, int]:
        return (age_bucket if 0 <= age_bucket < self.n_ages else 0,
                gender if 0 <= gender < self.n_genders else 0)

    def scores_of(self, age_bucket: int, gender: int, rows: np.ndarray) -> np.ndarray:
        """(N,) scores of catalog `rows` in the user's cell."""
        a, g = self._cell(age_bucket, gender)
        return self._counts[a, g, rows] + self._prior[rows]

    def top(self, age_bucket: int, gender: int, n: int) -> np.ndarray:
        """(<= n,) catalog rows, most popular first in the cell (ties by row)."""
        key = self._cell(age_bucket, gender)
        ranked = self._cache.get(key)
        if ranked is None or len(ranked) < min(n, self.n_items):
            scores = self._counts[key] + self._prior
            m = min(max(n, 256), self.n_items)  # rank a few hundred once per cell
            top = (np.argpartition(-scores, m - 1)[:m] if m < self.n_items
                   else np.arange(self.n_items))
            ranked = top[np.lexsort((top, -scores[top]))]
            self._cache[key] = ranked
        return ranked[:n]


class RedisPopularity(Popularity):
    """Popularity whose clicks since the version's training are shared through the hash
    `<prefix>:<version>` (field `<row>:<device>:<bucket>`, value the summed weight): `record`
    adds to it, `refresh` applies what the others added. The hash grows with the distinct
    (item, device, bucket) cells clicked since the version was published."""

    def __init__(self, base: np.ndarray, item_category: np.ndarray, cfg: PopularityConfig,
                 version: str) -> None:
        super().__init__(base, item_category, cfg, version)
        self.key = f"{cfg.prefix}:{version}"
        self._redis = connect(cfg.url)
        self._seen: dict[bytes, float] = {}  # field -> the shared total this replica applied

    def _store(self, what: str) -> AbstractContextManager[None]:
        return unavailable(f"popularity hash {self.key!r} at {self.cfg.url}: {what}")

    def _share(self, row: int, d: int, b: int, weight: float) -> None:
        field = f"{row}:{d}:{b}".encode()
        with self._store("HINCRBYFLOAT"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hincrbyfloat(self.key, field, weight)
            pipe.expire(self.key, self.cfg.ttl_s)
            pipe.execute()
        # Only once stored: `refresh` then applies the others' share of the field, not ours.
        self._seen[field] = self._seen.get(field, 0.0) + weight

    def refresh(self) -> None:
        with self._lock, self._store("HGETALL"):  # no record between the read and the apply
            shared = self._redis.hgetall(self.key)
            for field, raw in shared.items():
                delta = float(raw) - self._seen.get(field, 0.0)
                if delta:
                    row, d, b = (int(x) for x in field.split(b":"))
                    self._apply(row, d, b, delta)
                    self._seen[field] = float(raw)


def open_popularity(cfg: PopularityConfig, base: np.ndarray, item_category: np.ndarray,
                    version: str) -> Popularity:
    """The popularity of version `version` (its published base counts), shared between
    replicas when `cfg.backend` is redis."""
    if cfg.backend == "redis":
        return RedisPopularity(base, item_category, cfg, version)
    return Popularity(base, item_category, cfg, version)
