"""Feature transforms fitted once and shared with serving: vocabularies with OOV and
infrequent values, user history, item attributes, context, persistence, and the cold-start
masking of training rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from train.features import (
    OOV,
    USER_SPARSE,
    Features,
    UserTable,
    cross_features,
    fit_categorical,
    mask_devices,
    mask_users,
)


@pytest.fixture
def fitted() -> tuple[Features, pd.DataFrame, pd.DataFrame]:
    users = pd.DataFrame({"user_id": ["a", "b", "c"], "age": [20, 40, 70],
                          "gender": ["F", "M", "F"]})
    items = pd.DataFrame({"item_id": ["x", "y", "z"], "category": ["tools", "books", "tools"],
                          "style": ["saw", "travel", "axe"], "price": [5.0, 50.0, 500.0]})
    inter = pd.DataFrame({"user_id": ["a", "a", "b", "a"], "item_id": ["x", "y", "x", "z"],
                          "device": ["web", "ios", "web", "web"], "label": [0, 1, 0, 0]})
    features = Features.fit(inter.iloc[:3], users, items)
    table = UserTable.build(users.set_index("user_id"), features, inter, items)
    return features, table, items


def test_vocabulary_lookup_matches_sklearn_transform() -> None:
    """The dict lookup serving uses must give sklearn's codes (+1), infrequent included."""
    values = np.array(["a"] * 5 + ["b"] * 3 + ["c"] + ["d"], dtype=object)
    enc = fit_categorical(values, min_freq=2)
    features = Features.fit(pd.DataFrame({"user_id": values, "item_id": values,
                                          "device": values}),
                            pd.DataFrame({"user_id": ["a"], "age": [30], "gender": ["F"]}),
                            pd.DataFrame({"item_id": ["a"], "category": ["t"], "style": ["s"],
                                          "price": [1.0]}), min_freq=2)
    probe = np.array(["a", "b", "c", "d", "never"], dtype=object)
    expected = enc.transform(probe[:, None])[:, 0] + 1  # unknown -1 -> OOV 0
    np.testing.assert_array_equal(features.lookup("user", probe), expected)
    assert expected[-1] == OOV and expected[2] == expected[3] != OOV  # c, d: infrequent
    assert features.cardinalities["user"] == 4  # OOV, a, b, infrequent


def test_history_columns_and_top_category(fitted) -> None:
    features, table, items = fitted
    a = table.rows["a"]
    tools, books = features.lookup("category", np.array(["tools", "books"]))
    # a saw x (tools), y (books, clicked), z (tools): shares 2/3 tools, 1/3 books
    assert table.history[a, tools] == pytest.approx(2 / 3, abs=1e-3)
    assert table.history[a, books] == pytest.approx(1 / 3, abs=1e-3)
    assert table.top_category[a] == books  # by clicks, not by impressions
    assert table.top_category[table.rows["b"]] == tools  # no clicks: by impressions
    assert table.top_category[table.rows["c"]] == OOV and not table.history[table.rows["c"]].any()
    user = features.user_features(np.array(["a", "nobody"]), table)
    item = features.item_table(items)
    cross = cross_features(user, {k: v[[0, 0]] for k, v in item.items()}, table)
    assert cross["hist_category"].tolist() == pytest.approx([2 / 3, 0.0], abs=1e-3)
    assert cross["hist_style"][0] == pytest.approx(1 / 3, abs=1e-3)  # tools/saw: x only


def test_unknown_users_and_devices_map_to_oov(fitted) -> None:
    features, users, _ = fitted
    u = features.user_features(np.array(["a", "c", "nobody"]), users)
    assert u["user"][0] != OOV
    assert u["user"][1] == OOV and u["age_bucket"][1] != OOV  # no interactions, known age
    assert u["user"][2] == OOV and u["age_bucket"][2] == OOV and u["gender"][2] == OOV
    assert u["age"][2] == 0.0
    c = features.context_features(np.array(["web", "fridge", None], dtype=object),
                                  np.array([0, 6, 23]), np.array([0, 3, 6]))
    assert c["device"][0] != OOV and c["device"][1] == OOV and c["device"][2] == OOV
    np.testing.assert_allclose(c["hour_sin"], np.sin(2 * np.pi * np.array([0, 6, 23]) / 24),
                               rtol=1e-6)
    # an unknown time (-1, data without timestamps) is the OOV index and no angle at all
    u = features.context_features(np.array(["web"], dtype=object), [-1], [-1])
    assert (u["hour"][0], u["weekday"][0], u["hour_sin"][0], u["hour_cos"][0],
            u["weekday_cos"][0]) == (OOV, OOV, 0.0, 0.0, 0.0)
    assert (c["hour"].tolist(), c["weekday"].tolist()) == ([1, 7, 24], [1, 4, 7])


def test_data_without_times_turns_time_off(fitted) -> None:
    features, _, items = fitted
    assert features.time_known  # no hour column: the data is not known to lack times
    users = pd.DataFrame({"user_id": ["a"], "age": [20], "gender": ["F"]})
    rows = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "y"], "device": ["web"] * 2,
                         "hour": [-1, -1], "label": [1, 0]})
    assert not Features.fit(rows, users, items).time_known
    assert Features.fit(rows.assign(hour=[-1, 9]), users, items).time_known


def test_items_outside_training_keep_their_attributes(fitted) -> None:
    features, _, items = fitted
    t = features.item_table(items)
    assert t["item"][2] == OOV  # z had no interactions
    assert t["category"][2] == t["category"][0]  # but it is a tool, like x
    assert list(t["price_bucket"]) == sorted(t["price_bucket"])


def test_features_round_trip(fitted, tmp_path: Path) -> None:
    features, table, items = fitted
    features.save(tmp_path)
    again = Features.load(tmp_path)
    assert again.vocab == features.vocab
    assert again.cardinalities == features.cardinalities
    for key, v in features.item_table(items).items():
        np.testing.assert_array_equal(again.item_table(items)[key], v)
    table.save(tmp_path / "h.npz")
    users = pd.DataFrame({"age": table.age, "gender": table.gender}, index=list(table.rows))
    np.testing.assert_array_equal(UserTable.load(users, tmp_path / "h.npz").history,
                                  table.history)


def test_features_from_another_sklearn_are_refused(fitted, tmp_path: Path) -> None:
    features, _, _ = fitted
    features.save(tmp_path)
    summary = tmp_path / "features.json"
    summary.write_text(summary.read_text().replace('"scikit_learn": "', '"scikit_learn": "0.'))
    with pytest.raises(RuntimeError, match="install that version or retrain"):
        Features.load(tmp_path)


def test_masking_hits_the_configured_share_of_rows() -> None:
    n = 40_000
    b = {k: np.ones(n, dtype=np.int64) for k in USER_SPARSE}
    b |= {k: np.ones(n, dtype=np.float32) for k in ("age", "hist_category", "hist_style")}
    b["history"] = np.ones((n, 5), dtype=np.float32)
    b["item"] = np.ones(n, dtype=np.int64)
    out = mask_users(b, 0.05, np.random.default_rng(0), kinds=(0.2, 0.4, 0.4))
    masked = out["user"] == OOV
    assert 0.045 < masked.mean() < 0.055
    no_past = out["top_category"] == OOV
    anonymous = out["gender"] == OOV
    assert (anonymous <= no_past).all() and (no_past <= masked).all()
    assert 0.75 < no_past.sum() / masked.sum() < 0.85  # 0.4 + 0.4
    assert 0.35 < anonymous.sum() / masked.sum() < 0.45
    assert (out["history"][no_past] == 0).all() and (out["history"][~no_past] == 1).all()
    assert (out["hist_style"][no_past] == 0).all()
    assert (out["age_bucket"][anonymous] == OOV).all() and (out["age"][anonymous] == 0).all()
    assert (out["age"][masked & ~anonymous] == 1).all()
    assert (out["item"] == 1).all()  # item features are never masked
    seed_way = mask_users(b, 0.05, np.random.default_rng(0), kinds=(0, 0, 1))
    assert ((seed_way["user"] == OOV) == (seed_way["gender"] == OOV)).all()
    with pytest.raises(ValueError, match="summing to 1"):
        mask_users(b, 0.05, np.random.default_rng(0), kinds=(0.5, 0.5, 0.5))


def test_device_masking_is_separate_from_user_masking() -> None:
    n = 20_000
    b = {"user": np.ones(n, dtype=np.int64), "device": np.full(n, 2)}
    out = mask_devices(b, 0.05, np.random.default_rng(1))
    assert 0.04 < (out["device"] == OOV).mean() < 0.06
    assert (out["user"] == 1).all()
    assert mask_devices({"user": b["user"]}, 0.05, np.random.default_rng(1)).keys() == {"user"}


def test_latest_clicked_items_are_newest_first_and_padded() -> None:
    users = pd.DataFrame({"user_id": ["a", "b"], "age": [20, 40], "gender": ["F", "M"]})
    items = pd.DataFrame({"item_id": ["x", "y", "z"], "category": ["t", "b", "t"],
                          "style": ["s", "s", "s"], "price": [1.0, 2.0, 3.0]})
    inter = pd.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": ["x", "y", "z", "y"],
                          "device": "web", "label": [1, 0, 1, 1],
                          "ts": pd.to_datetime(["2026-01-03", "2026-01-04", "2026-01-01",
                                                "2026-01-02"])})
    features = Features.fit(inter, users, items)
    table = UserTable.build(users.set_index("user_id"), features, inter, items)
    x, y, z = features.lookup("item", np.array(["x", "y", "z"]))
    assert table.items[table.rows["a"], :3].tolist() == [x, z, OOV]  # clicks only, newest first
    assert table.items[table.rows["b"], :2].tolist() == [y, OOV]
    cols = features.user_features(np.array(["a", "nobody"]), table)
    assert cols["hist_items"][1].tolist() == [OOV] * table.items.shape[1]
    masked = mask_users(cols | {"user_pos": np.zeros(2)}, 1.0, np.random.default_rng(0),
                        kinds=(0, 1, 0))
    assert not masked["hist_items"].any()  # a user with no past has an empty bag
