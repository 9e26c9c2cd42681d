"""Popularity as training counts it: clicks per item in each request context (device, hour
bucket), each click weighted by its age. The version publishes the (I, D, H) counts;
serving ranks by them and adds the clicks it sees since (serve/popularity.py).

Shapes: I items (catalog rows), D devices (the version's device vocabulary, 0 = unknown),
H hour buckets (hour * H // 24).
"""

from __future__ import annotations

import numpy as np


def decay(ts: np.ndarray, half_life_days: float | None) -> np.ndarray:
    """(N,) weight of each click at `ts` (datetime64; NaT = no time): 1 at the latest click,
    halving every `half_life_days` before it; 1 everywhere for None (no decay) and for
    clicks without a time. A decayed count follows what is popular now, not over the whole
    history: on MovieLens' time split the last days' clicks predict the next days' far
    better than all of them (flows/sources.py picks the half-life on validation days)."""
    ts = np.asarray(ts, "datetime64[s]")
    known = ~np.isnat(ts)
    if half_life_days is None or not known.any():
        return np.ones(len(ts))
    age_days = (ts[known].max() - ts).astype("timedelta64[s]").astype(np.float64) / 86400
    return np.where(known, 0.5 ** (np.where(known, age_days, 0.0) / half_life_days), 1.0)


def counts(item_pos: np.ndarray, device: np.ndarray, hour: np.ndarray, label: np.ndarray,
           n_items: int, n_devices: int, hour_buckets: int = 4,
           weight: np.ndarray | None = None) -> np.ndarray:
    """(I, D, H) clicks per item row, device index and hour bucket, from training rows
    (item_pos: catalog row, device: device index, hour 0-23 or -1 for unknown, label 1 =
    click, weight: of each row, default 1), all (N,). A click at an unknown hour counts 1/H
    in every bucket."""
    item_pos, device, hour = (np.asarray(a, np.int64) for a in (item_pos, device, hour))
    clicked = np.asarray(label) > 0  # N
    w = np.ones(len(item_pos)) if weight is None else np.asarray(weight, np.float64)
    if (hour < 0).any():
        timed = hour >= 0
        spread = np.repeat(np.flatnonzero(clicked & ~timed), hour_buckets)  # each in all H
        at = np.concatenate([np.flatnonzero(clicked & timed), spread])
        bucket = np.concatenate([hour[clicked & timed] * hour_buckets // 24,
                                 np.tile(np.arange(hour_buckets), int((clicked & ~timed).sum()))])
        weight = np.concatenate([w[clicked & timed], w[spread] / hour_buckets])
        return _cells(item_pos[at], device[at], bucket, weight, n_items, n_devices,
                      hour_buckets)
    if len(item_pos) and (item_pos.min() < 0 or item_pos.max() >= n_items):
        raise ValueError(f"item rows must be in [0, {n_items}); map item ids to catalog rows "
                         "and drop items outside the catalog first")
    if len(device) and (device.min() < 0 or device.max() >= n_devices):
        raise ValueError(f"device indices must be in [0, {n_devices}); look devices up in the "
                         "version's device vocabulary (0 = unknown)")
    return _cells(item_pos[clicked], device[clicked], hour[clicked] * hour_buckets // 24,
                  w[clicked], n_items, n_devices, hour_buckets)


def _cells(item_pos: np.ndarray, device: np.ndarray, bucket: np.ndarray,
           weight: np.ndarray | None, n_items: int, n_devices: int, hour_buckets: int
           ) -> np.ndarray:
    cell = (item_pos * n_devices + device) * hour_buckets + bucket  # N
    flat = np.bincount(cell, weights=weight, minlength=n_items * n_devices * hour_buckets)
    return flat.reshape(n_items, n_devices, hour_buckets)  # I, D, H
