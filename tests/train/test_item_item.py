"""The item-item source: EASE worked by hand on a tiny matrix, the co-occurrence fallback for
large catalogs, scoring one history or many, the saved weights, and the histories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from train.item_item import (
    Histories,
    ItemItem,
    ItemItemConfig,
    cooccurrence,
    ease,
    fit_item_item,
    interaction_matrix,
)

# Three users over four items: items 0 and 1 always go together, 2 and 3 together.
USERS = np.array([0, 0, 1, 1, 2, 2, 2])
ITEMS = np.array([0, 1, 0, 1, 2, 3, 3])  # user 2 has item 3 twice: it counts once


def x() -> sp.csr_matrix:
    return interaction_matrix(USERS, ITEMS, 3, 4)


def test_the_interaction_matrix_is_binary() -> None:
    m = x().toarray()
    assert m.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]]


def test_ease_matches_its_closed_form_and_has_a_zero_diagonal() -> None:
    # G = X^T X = [[2,2,0,0],[2,2,0,0],[0,0,1,1],[0,0,1,1]]; with l2 = 1, the block of items
    # 0-1 is [[3,2],[2,3]], whose inverse is [[3,-2],[-2,3]] / 5, so B[0,1] = -P01 / P11 =
    # (2/5) / (3/5) = 2/3; the block of items 2-3 is [[2,1],[1,2]]: B[2,3] = 1/2.
    b = ease(x(), l2=1.0)
    np.testing.assert_allclose(np.diag(b), 0.0)
    assert b[0, 1] == pytest.approx(2 / 3, rel=1e-5) and b[2, 3] == pytest.approx(0.5, rel=1e-5)
    assert b[0, 2] == pytest.approx(0.0, abs=1e-6)  # never together: nothing learned
    # one user's scores are the sum of their items' rows
    model = ItemItem(b, "ease", 1.0)
    np.testing.assert_allclose(model.scores(np.array([0, 0])), b[0])
    assert model.scores(np.array([2])).argmax() == 3


def test_scores_of_many_users_equal_one_at_a_time() -> None:
    model = fit_item_item(x(), ItemItemConfig(l2=1.0))
    many = model.score_matrix(x())
    for u, items in enumerate(([0, 1], [0, 1], [2, 3])):
        np.testing.assert_allclose(many[u], model.scores(np.array(items)), rtol=1e-5)
    assert not model.scores(np.array([], dtype=np.int64)).any()


def test_large_catalogs_get_cooccurrence_neighbours() -> None:
    model = fit_item_item(x(), ItemItemConfig(dense_max_items=3, neighbours=1))
    assert model.kind == "cooccurrence" and sp.issparse(model.weights)
    # cosine of items 0 and 1: 2 / sqrt(2 * 2) = 1, of items 2 and 3: 1 / sqrt(1 * 1) = 1
    # (user 2's repeat counts once); each item keeps its one best neighbour
    w = model.weights.toarray()
    assert w[0, 1] == pytest.approx(1.0, rel=1e-5) and w[2, 3] == pytest.approx(1.0, rel=1e-5)
    assert (np.count_nonzero(w, axis=1) <= 1).all()
    assert model.scores(np.array([0])).argmax() == 1
    c = cooccurrence(x(), neighbours=5).toarray()
    assert c[0, 2] == 0 and np.diag(c).sum() == 0


@pytest.mark.parametrize("dense_max", [10, 2])
def test_weights_round_trip_and_grow_for_new_items(tmp_path: Path, dense_max: int) -> None:
    model = fit_item_item(x(), ItemItemConfig(l2=1.0, dense_max_items=dense_max))
    model.save(tmp_path / "ii.npz")
    again = ItemItem.load(tmp_path / "ii.npz")
    assert (again.kind, again.l2) == (model.kind, model.l2)
    np.testing.assert_allclose(again.scores(np.array([0, 2])), model.scores(np.array([0, 2])))
    grown = again.grown(2)
    assert grown.n_items == 6
    np.testing.assert_allclose(grown.scores(np.array([0]))[:4], model.scores(np.array([0])))
    assert not grown.scores(np.array([4])).any()  # a new item has no weights yet


def test_histories_are_each_users_items(tmp_path: Path) -> None:
    h = Histories.of(x())
    assert [h.row(u).tolist() for u in range(3)] == [[0, 1], [0, 1], [2, 3]]
    assert h.row(-1).tolist() == [] and h.counts().tolist() == [2, 2, 2]
    h.save(tmp_path / "h.npz")
    again = Histories.load(tmp_path / "h.npz")
    assert (again.matrix(4) != x()).nnz == 0
