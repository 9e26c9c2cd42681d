"""Training inputs on hand-made rows whose answers are known: the click share behind logQ,
the negatives a ranker samples, and interaction rows turned into model inputs the same way
in this process and on Ray Data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from train.inputs import (
    ModelInputs,
    Negatives,
    candidate_pool,
    click_log_q,
    featurized_frame,
    fit_features,
    joined,
    negatives_per_positive,
)
from train.registry import MODELS
from train.two_tower import CATALOG, ITEM_INPUTS

ITEMS = pd.DataFrame({"item_id": ["x", "y", "z"], "category": ["a", "a", "b"],
                      "style": ["s", "t", "s"], "price": [10.0, 20.0, 30.0]})
USERS = pd.DataFrame({"user_id": ["u1", "u2"], "age": [30.0, 50.0],
                      "gender": ["F", "M"]}).set_index("user_id")
ROWS = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u2"],
                     "item_id": ["x", "y", "x", "z", "y"],
                     "label": [1, 0, 1, 1, 0], "device": "web", "hour": 9, "weekday": 2})


def test_log_q_is_the_add_one_smoothed_log_click_share() -> None:
    # clicks x 2, y 0, z 1; add one: 3, 1, 2 of 6
    np.testing.assert_allclose(click_log_q(ROWS, ITEMS), np.log([3 / 6, 1 / 6, 2 / 6]))


def test_negatives_are_sampled_only_for_data_of_positives() -> None:
    assert negatives_per_positive(np.array([1, 1, 1])) == 4
    assert negatives_per_positive(np.array([1, 0, 1])) == 0  # the data has its own
    assert negatives_per_positive(np.array([1, 1]), configured=2) == 2


def test_sampled_negatives_follow_the_click_distribution_and_the_seed() -> None:
    items = pd.DataFrame({"item_id": ["x", "y", "z"]})
    neg = Negatives.of(2, np.log(np.array([0.8, 0.2, 1e-9])), items)
    batch = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "x"],
                          "label": [1, 0, 1]})
    out = neg.add(batch, seed=0)
    assert len(out) == 3 + 2 * 2  # two for each of the two positives
    added = out.iloc[3:]
    assert (added["label"] == 0).all() and list(added["user_id"]) == ["a", "a", "c", "c"]
    # half by clicks to the 0.75 (z has none), half uniform
    w = np.array([0.8, 0.2, 1e-9]) ** 0.75
    np.testing.assert_allclose(neg.probs, 0.5 * w / w.sum() + 0.5 / 3)
    pd.testing.assert_frame_equal(out, neg.add(batch, seed=0))  # the same rows, the same draw


def test_candidate_negatives_come_from_the_users_own_candidates() -> None:
    items = pd.DataFrame({"item_id": ["x", "y", "z"]})
    pool = np.array([[2, -1], [-1, -1]], np.int32)  # a: z only; b: nothing retrieved
    neg = Negatives.of(0, np.log(np.array([0.98, 0.01, 0.01])), items, from_candidates=3,
                       candidates=pool, user_rows={"a": 0, "b": 1})
    batch = pd.DataFrame({"user_id": ["a", "b", "nobody"], "item_id": ["x", "x", "x"],
                          "label": [1, 1, 1]})
    added = neg.add(batch, seed=0).iloc[3:]
    assert len(added) == 9 and (added["label"] == 0).all()
    assert set(added.loc[added["user_id"] == "a", "item_id"]) == {"z"}
    # without candidates, popular or random items stand in
    assert added.loc[added["user_id"] != "a", "item_id"].isin(["x", "y", "z"]).all()


def test_candidate_pool_is_the_query_towers_nearest_items_less_the_users_clicks() -> None:
    import torch

    from index.faiss_index import IndexConfig, build_index
    from train.scoring import item_vectors
    from train.two_tower import TwoTower, TwoTowerConfig

    torch.manual_seed(0)
    fitted = fit_features(ROWS, USERS, ITEMS, None)
    model = TwoTower(TwoTowerConfig(out_dim=8), fitted.features.cardinalities).eval()
    index = build_index(item_vectors(model, fitted.features.item_table(ITEMS)),
                        IndexConfig(kind="flat"))
    clicked = ROWS[ROWS["label"] == 1]
    pool = candidate_pool(model, index, fitted, clicked, ITEMS, depth=3)
    assert pool.shape == (2, 3)
    y, z = 1, 2  # catalog rows of ITEMS; x (row 0) is clicked by both users
    assert sorted(pool[fitted.table.rows["u1"]].tolist()) == [-1, y, z]  # u1 clicked x
    assert sorted(pool[fitted.table.rows["u2"]].tolist()) == [-1, -1, y]  # u2 clicked x, z
    assert (pool[:, 0] >= 0).all()  # pads last


def test_model_inputs_keep_the_model_columns_and_add_negatives_first() -> None:
    fitted = fit_features(ROWS, USERS, ITEMS, None)
    columns = MODELS["dlrm"].columns
    plain = featurized_frame(ROWS, ModelInputs(fitted, ITEMS, columns), clicks_only=False)
    assert set(plain) == set(columns) and len(plain["label"]) == 5
    clicks = featurized_frame(ROWS, ModelInputs(fitted, ITEMS, columns), clicks_only=True)
    assert clicks["label"].tolist() == [1, 1, 1]
    # the item column is the vocabulary index of each row's item: x, x, z
    vocab = fitted.features.lookup("item", np.array(["x", "z"], dtype=object))
    assert clicks["item"].tolist() == [vocab[0], vocab[0], vocab[1]]
    negatives = Negatives.of(2, fitted.log_q, ITEMS)
    with_neg = featurized_frame(ROWS, ModelInputs(fitted, ITEMS, columns, negatives),
                                clicks_only=False)
    assert len(with_neg["label"]) == 5 + 2 * 3 and with_neg["label"].sum() == 3
    both = joined(plain, clicks)
    assert {k: len(v) for k, v in both.items()} == {k: 8 for k in columns}


def test_the_two_tower_gets_the_catalogs_item_inputs_up_to_the_configured_size() -> None:
    fitted = fit_features(ROWS, USERS, ITEMS, None)
    full = fitted.two_tower_task(ITEMS, full_softmax_items=3)
    table = fitted.features.item_table(ITEMS)
    assert set(full) == {"log_q"} | {CATALOG + n for n in ITEM_INPUTS}
    for n in ITEM_INPUTS:  # catalog order, the rows `item_row` points at
        np.testing.assert_array_equal(full[CATALOG + n], table[n])
    assert set(fitted.two_tower_task(ITEMS, full_softmax_items=2)) == {"log_q"}


def test_the_two_tower_gets_each_users_training_clicks_as_catalog_rows() -> None:
    fitted = fit_features(ROWS, USERS, ITEMS, None)
    seen = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u1", "nobody", "u2"],
                         "item_id": ["z", "x", "x", "z", "x", "not-in-catalog"]})
    task = fitted.two_tower_task(ITEMS, full_softmax_items=3, seen=seen)
    indptr, rows = task["seen_indptr"], task["seen_rows"]
    assert len(indptr) == fitted.features.cardinalities["user"] + 1
    row_of = {item: n for n, item in enumerate(ITEMS["item_id"])}
    for user, items in (("u1", {"x", "z"}), ("u2", {"x"})):  # distinct; unknown ones out
        code = fitted.features.lookup("user", np.array([user], dtype=object))[0]
        assert sorted(rows[indptr[code]:indptr[code + 1]]) == sorted(row_of[i] for i in items)
    assert indptr[1] == indptr[0] == 0 and indptr[-1] == 3  # OOV: none
    assert "seen_rows" not in fitted.two_tower_task(ITEMS, full_softmax_items=2, seen=seen)


def test_a_sample_is_drawn_by_its_seed() -> None:
    rows = pd.concat([ROWS] * 40, ignore_index=True)
    fitted = fit_features(rows, USERS, ITEMS, None)
    fn = ModelInputs(fitted, ITEMS, ("label",))
    a = featurized_frame(rows, fn, clicks_only=False, sample=0.5, seed=3)
    assert 60 < len(a["label"]) < 140  # about half of 200
    b = featurized_frame(rows, fn, clicks_only=False, sample=0.5, seed=3)
    np.testing.assert_array_equal(a["label"], b["label"])


@pytest.mark.ray
def test_ray_data_and_this_process_give_the_same_model_inputs(ray_session: None,
                                                               tiny_data: Path) -> None:
    from flows.layout import Split, model_rows, read_interactions, read_items, read_users

    items, split = read_items(tiny_data), Split()
    fitted = fit_features(read_interactions(tiny_data, split.train), read_users(tiny_data),
                          items, None)
    fn = ModelInputs(fitted, items, MODELS["dlrm"].columns)
    here = model_rows(tiny_data, (9, 10), fn, False, on_ray=False)
    ds = model_rows(tiny_data, (9, 10), fn, False, on_ray=True, cache_max_rows=10**7)
    there = {k: np.concatenate([b[k] for b in ds.iter_batches(batch_format="numpy")])
             for k in here}

    def table(cols: dict[str, np.ndarray]) -> np.ndarray:
        """Every row as one record, in a canonical order (Ray Data may reorder blocks)."""
        x = np.column_stack([cols[k].reshape(len(cols["label"]), -1).astype(np.float64)
                             for k in sorted(cols)])
        return x[np.lexsort(x.T[::-1])]

    assert len(here["label"]) == len(read_interactions(tiny_data, (9, 10)))
    np.testing.assert_allclose(table(there), table(here), rtol=1e-6)


def test_sources_of_another_catalog_are_refused_with_the_fix() -> None:
    import scipy.sparse as sp

    from train.blend import Blend
    from train.item_item import Histories, ItemItem
    from train.sources import Sources

    two = Sources(popularity=np.zeros((2, 1, 4), np.float32),
                  demographic=np.zeros((2, 1, 1), np.float32),
                  item_item=ItemItem(np.zeros((2, 2), np.float32), "ease", 1.0),
                  histories=Histories.of(sp.csr_matrix((3, 2))), blend=Blend.single("dlrm"))
    two.check(n_items=2, n_users=3)
    with pytest.raises(ValueError, match="cover 2 items, the catalog has 3: fit the sources"):
        two.check(n_items=3, n_users=3)
    with pytest.raises(ValueError, match="3 histories for 4 users"):
        two.check(n_items=2, n_users=4)
    grown = two.grown(1)  # an item added since: no clicks, no weights yet
    grown.check(n_items=3, n_users=3)
    assert grown.popularity[2].sum() == 0 and grown.item_item.scores(np.array([2])).sum() == 0
