"""The closed-form sources and their tuning, on hand-made clicks whose answers are known: the
repeat share, decayed popularity in context and per demographic cell, the half-life and l2
picked on validation clicks, and the objective. No test
starts Ray (the whole step runs on a real tiny version in tests/flows/test_train.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.sources import (
    Clicks,
    SourcesConfig,
    demographic_counts,
    objective,
    popularity_counts,
    repeat_share,
    tune_half_life,
    tune_l2,
)
from serve.popularity import Demographic
from train.features import Features, UserTable
from train.item_item import ItemItemConfig

DAY = np.timedelta64(1, "D")
T0 = np.datetime64("2026-01-10T12:00:00", "ms")


def clicks(user: list[int], item: list[int], days_ago: list[float] | None = None,
           hour: list[int] | None = None, device: list[int] | None = None) -> Clicks:
    n = len(user)
    ago = np.asarray(days_ago if days_ago is not None else [0] * n, np.float64)
    ts = T0 - (ago * 86_400_000).astype("timedelta64[ms]")
    return Clicks(user=np.asarray(user), item=np.asarray(item), ts=ts,
                  device=np.asarray(device or [0] * n), hour=np.asarray(hour or [12] * n))


def test_repeat_share_counts_validation_clicks_on_items_already_had() -> None:
    train = clicks([0, 0, 1], [5, 6, 7]).matrix(3, 10)
    # user 0 clicks 5 again (a repeat) and 8 (new); user 1 clicks 9 (new); user 2 has no
    # training history and does not count
    val = clicks([0, 0, 1, 2], [5, 8, 9, 5])
    assert repeat_share(train, val) == pytest.approx(1 / 3)
    assert np.isnan(repeat_share(train, clicks([2], [1])))


def test_the_half_life_follows_what_validation_clicks() -> None:
    # item 1 is clicked a lot long ago, item 2 a little but lately; validation clicks item 2
    old = clicks([0] * 6 + [1, 2], [1] * 6 + [2, 2], days_ago=[60] * 6 + [0, 1])
    val = clicks([3, 4], [2, 2])
    cfg = SourcesConfig(half_lives=(1.0, None), objective=("recall@1",))
    best, figures = tune_half_life(old, val, 3, cfg)
    assert best == 1.0 and figures == {"1.0": 1.0, "None": 0.0}


def test_l2_is_picked_on_validation_clicks() -> None:
    # items 0 and 1 always together; validation: users who had 0 click 1
    train = clicks([0, 0, 1, 1, 2, 2, 3], [0, 1, 0, 1, 2, 3, 0]).matrix(4, 4)
    val = clicks([3], [1])
    cfg = SourcesConfig(item_item=ItemItemConfig(l2_grid=(1.0, 1e6)), objective=("recall@1",))
    l2, figures = tune_l2(train, val, cfg, exclude=True, rng=np.random.default_rng(0))
    assert figures["1.0"] == 1.0 and l2 in (1.0, 1e6)


def test_objective_is_the_mean_of_its_metrics() -> None:
    top = np.array([[3, 1, 2]])
    rel = [np.array([1])]
    # recall@1 = 0, recall@2 = 1; NDCG@2 = (1/log2(3)) / 1
    assert objective(top, rel, ("recall@1", "recall@2")) == 0.5
    assert objective(top, rel, ("ndcg@2",)) == pytest.approx(1 / np.log2(3))


@pytest.fixture
def fitted() -> tuple[Features, UserTable]:
    users = pd.DataFrame({"user_id": ["a", "b", "c"], "age": [20.0, 60.0, np.nan],
                          "gender": ["F", "M", ""]})
    items = pd.DataFrame({"item_id": ["x", "y", "z"], "category": ["t", "t", "u"],
                          "style": ["s", "s", "v"], "price": [1.0, 2.0, 3.0]})
    rows = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"],
                         "device": ["web", "ios", "web"], "label": [1, 1, 1]})
    features = Features.fit(rows, users, items)
    return features, UserTable.build(users.set_index("user_id"), features)


def test_popularity_and_demographic_counts_decay_by_age(fitted: tuple[Features, UserTable]
                                                        ) -> None:
    features, table = fitted
    web = features.lookup("device", np.array(["web"]))[0]
    c = clicks([0, 0, 1], [0, 0, 1], days_ago=[0, 2, 0], hour=[1, 1, 13],
               device=[web, web, web])
    pop = popularity_counts(c, features, 3, half_life=2.0)
    assert pop.shape == (3, features.cardinalities["device"], 4)
    assert pop[0, web, 0] == pytest.approx(1.5)  # one click now, one at half weight
    assert pop[1, web, 2] == pytest.approx(1.0) and pop.sum() == pytest.approx(2.5)
    demo = demographic_counts(c, features, table, 3, half_life=None)
    a = features.age_columns(np.array([20.0]))["age_bucket"][0]
    f = features.lookup("gender", np.array(["F"]))[0]
    assert demo[0, a, f] == 2.0 and demo.sum() == 3.0
    # serving ranks the cell's clicks first, the global ranking after
    d = Demographic(demo, smoothing=0.0)
    assert d.top(int(a), int(f), 1).tolist() == [0]
    np.testing.assert_allclose(d.scores_of(int(a), int(f), np.array([0, 1])), [2.0, 0.0])
