"""Popularity as training counts it: clicks per item, device and hour bucket, weighted by
their age."""

from __future__ import annotations

import numpy as np
import pytest

from train.popularity import counts, decay

DAY = np.timedelta64(1, "D")
T0 = np.datetime64("2026-01-10T12:00:00", "ms")


#            (item, device, hour, label)
ROWS = ([(3, 1, 9, 1)] * 3 + [(1, 1, 9, 1), (0, 1, 9, 0)]  # device 1, morning (bucket 1)
        + [(0, 0, 20, 1)] * 4 + [(2, 0, 20, 1)] * 2  # device 0, evening (bucket 3)
        + [(4, 1, 22, 1)])  # device 1, evening: one click only


def test_counts_are_clicks_per_item_device_and_hour_bucket() -> None:
    item, device, hour, label = (np.array(c) for c in zip(*ROWS, strict=True))
    c = counts(item, device, hour, label, n_items=5, n_devices=2)
    assert c.shape == (5, 2, 4) and c.sum() == 11  # the view is not counted
    assert (c[3, 1, 1], c[1, 1, 1], c[0, 1, 1], c[0, 0, 3], c[2, 0, 3], c[4, 1, 3]) == (
        3, 1, 0, 4, 2, 1)
    with pytest.raises(ValueError, match="device vocabulary"):
        counts(np.array([0]), np.array([2]), np.array([0]), np.array([1]), 5, 2)


def test_decay_halves_the_weight_every_half_life() -> None:
    ts = np.array([T0, T0 - 2 * DAY, T0 - 4 * DAY, np.datetime64("NaT")], "datetime64[ms]")
    np.testing.assert_allclose(decay(ts, 2.0), [1.0, 0.5, 0.25, 1.0])  # NaT: no time, 1
    np.testing.assert_allclose(decay(ts, None), 1.0)
