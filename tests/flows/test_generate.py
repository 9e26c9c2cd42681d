"""The generator: deterministic for a seed, and its ground truth agrees with its data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flows.generate import SCALES, SLATE, GenerateConfig, build_world, sample_day
from flows.generate.catalog import CATEGORIES, load_catalog, make_catalog
from flows.generate.world import World, make_world
from flows.layout import read_interactions, read_items
from tests.helpers import DATASETS
from train import schema


@pytest.fixture(scope="module")
def world() -> World:
    rng = np.random.default_rng([3, 0])
    return make_world(make_catalog(400, rng), n_users=500, n_days=14, seed=3)


def test_sample_day_is_deterministic_per_seed(world: World) -> None:
    a = sample_day(world, 4, 300, seed=3)
    b = sample_day(world, 4, 300, seed=3)
    c = sample_day(world, 4, 300, seed=4)
    assert a.equals(b)
    assert not a.column("item_id").equals(c.column("item_id"))


def test_stored_click_probability_is_the_true_model(world: World) -> None:
    t = sample_day(world, 5, 500, seed=1).to_pandas()  # day 5 is a Saturday
    users = pd.Series(np.arange(world.n_users), index=world.user_ids)[t["user_id"].astype(str)]
    items = pd.Series(np.arange(world.n_items), index=world.items["item_id"])[
        t["item_id"].astype(str)]
    device = t["device"].astype(str).map({"web": 0, "ios": 1, "android": 2}).to_numpy()
    logit = world.click_logit(users.to_numpy(), items.to_numpy(), device,
                              t["hour"].to_numpy() // 6, (t["weekday"].to_numpy() >= 5) * 1)
    np.testing.assert_allclose(t["p_click"], 1 / (1 + np.exp(-logit)), rtol=1e-5)
    assert (t["weekday"] == 5).all()


def test_labels_are_calibrated_to_click_probability(world: World) -> None:
    t = pa.concat_tables([sample_day(world, d, 2000, seed=2) for d in range(3)]).to_pandas()
    # Overall: observed click rate within 4 standard errors of the mean probability.
    p = t["p_click"].to_numpy(np.float64)
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(t["label"].mean() - p.mean()) < 4 * se
    # Per probability decile, too.
    t["bin"] = pd.qcut(t["p_click"], 10, labels=False, duplicates="drop")
    g = t.groupby("bin").agg(rate=("label", "mean"), p=("p_click", "mean"), n=("label", "size"))
    tol = 4 * np.sqrt(g["p"] * (1 - g["p"]) / g["n"]) + 1e-3
    assert ((g["rate"] - g["p"]).abs() < tol).all(), g


def test_context_shifts_which_categories_are_clicked(world: World) -> None:
    t = pa.concat_tables([sample_day(world, d, 3000, seed=5) for d in range(2)]).to_pandas()
    t = t[t["label"] == 1]
    cat = world.item_category[pd.Series(np.arange(world.n_items), index=world.items["item_id"])[
        t["item_id"].astype(str)].to_numpy()]
    mix = pd.crosstab(t["device"].astype(str), cat, normalize="index")
    # Total variation distance between web and ios click mixes is far from zero.
    assert 0.5 * (mix.loc["web"] - mix.loc["ios"]).abs().sum() > 0.05


def test_expected_clicks_oracle_prefers_the_persona(world: World) -> None:
    users = np.arange(20)
    expected = world.expected_clicks(users)  # 20, I
    top = np.argsort(-expected, axis=1)[:, :20]
    in_persona = np.array([np.isin(world.item_category[top[u]], world.user_persona[u]).mean()
                           for u in users])
    assert in_persona.mean() > 0.8


def test_a_scale_gives_its_users_items_and_impressions() -> None:
    """The tiny scale's world and its 14 days, drawn without Ray: exactly its users and
    items, and its impression target to within one slate a day (sessions are whole)."""
    cfg = GenerateConfig(scale="tiny", seed=3)
    world, scale = build_world(cfg), SCALES["tiny"]
    assert (world.n_users, world.n_items) == (scale.n_users, scale.n_items)
    rows = sum(len(sample_day(world, d, cfg.sessions_per_day, cfg.seed))
               for d in range(cfg.days))
    assert rows == cfg.sessions_per_day * SLATE * cfg.days
    assert scale.impressions - SLATE * cfg.days < rows <= scale.impressions


def test_generated_tables_follow_the_schema() -> None:
    cfg = GenerateConfig(scale="tiny", seed=3)
    day = schema.conform(sample_day(build_world(cfg), 0, 10, 3), schema.INTERACTIONS)
    for f in schema.INTERACTIONS:
        assert day.schema.field(f.name).type == f.type
    assert {"p_click", "impression_id"} <= set(day.column_names)  # ground truth rides along


def test_catalog_file_is_read_and_bad_rows_are_named(tmp_path: Path) -> None:
    good = tmp_path / "products.yaml"
    good.write_text(
        "- id: a1\n  name: Chair\n  category: furniture\n  style: chairs\n  price: 99.5\n"
        "  description: A  wooden\n    chair.\n  gender_affinity: null\n"
        "- id: b2\n  name: Scarf\n  category: apparel\n  style: scarf\n  price: 20\n"
        "  gender_affinity: F\n")
    items = load_catalog(good)
    assert list(items["item_id"]) == ["a1", "b2"]
    assert items.loc[0, "description"] == "A wooden chair."
    assert list(items["gender_affinity"]) == ["", "F"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: a1\n  name: Chair\n  category: spaceships\n  style: x\n  price: 1\n")
    with pytest.raises(ValueError, match=r"product #0 has unknown category 'spaceships'"):
        load_catalog(bad)
    bad.write_text("- id: a1\n  name: Chair\n  category: furniture\n")
    with pytest.raises(ValueError, match=r"product #0 \(id=a1\) lacks \['style', 'price'\]"):
        load_catalog(bad)


def test_real_retail_catalog_loads_when_present() -> None:
    path = DATASETS / "retail-demo-store" / "products.yaml"
    if not path.exists():
        pytest.skip("shared datasets not present")
    items = load_catalog(path)
    assert len(items) == 2465
    assert set(items["category"]) <= set(CATEGORIES)


@pytest.mark.ray
def test_ray_job_writes_daily_partitions_matching_sample_day(tiny_data: Path) -> None:
    days = sorted(p.name for p in (tiny_data / "interactions").iterdir())
    assert days == [f"day={d:02d}" for d in range(14)]
    items = read_items(tiny_data)
    world = World.load(tiny_data / "truth", items)
    sessions = GenerateConfig(scale="tiny").sessions_per_day
    for day in (0, 13):
        got = read_interactions(tiny_data, (day,), ("impression_id", "user_id", "item_id",
                                                    "label", "p_click"))
        want = sample_day(world, day, sessions, seed=7).to_pandas()
        got = got.sort_values("impression_id").reset_index(drop=True)
        assert (got["impression_id"].to_numpy() == want["impression_id"].to_numpy()).all()
        assert (got["item_id"].to_numpy() == want["item_id"].astype(str).to_numpy()).all()
        assert (got["label"].to_numpy() == want["label"].to_numpy()).all()


def test_sampled_impressions_follow_the_exposure_model(world: World) -> None:
    """The oracle's exposure formula is what the sampler really draws from."""
    from flows.generate import _sample_items

    rng = np.random.default_rng(0)
    n = 200_000
    u = np.full(n, 7)
    ctx = [np.full(n, v) for v in (1, 3, 1)]  # ios, evening, weekend
    counts = np.bincount(_sample_items(world, rng, u, *ctx), minlength=world.n_items)
    expected = world.exposure(np.array([7]), 1, 3, 1)[0] * n
    assert expected.sum() == pytest.approx(n)
    big = expected > 200  # items with enough draws for a 5-sigma check
    assert big.sum() > 10
    assert (np.abs(counts[big] - expected[big]) < 5 * np.sqrt(expected[big])).all()
