from __future__ import annotations

import numpy as np
import pytest

from train.metrics import auc, log_loss, ndcg_at_k, recall_at_k


def test_auc_hand_example() -> None:
    # Positives 0.4 and 0.8 against negatives 0.1 and 0.5: 3 of 4 pairs right.
    assert auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.4, 0.5, 0.8])) == 0.75


def test_auc_ties_count_half_and_degenerate_labels_are_nan() -> None:
    assert auc(np.array([0, 1]), np.array([0.3, 0.3])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_auc_matches_pairwise_definition_on_random_data() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 2)  # rounding makes ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(y, s) == pytest.approx(pairs)


def test_log_loss_of_a_coin() -> None:
    assert log_loss(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))


def test_recall_at_k() -> None:
    top = np.array([[1, 2, 3], [4, 5, 6]])
    r = recall_at_k(top, [np.array([2, 9]), np.array([])], k=2)
    assert r[0] == 0.5 and np.isnan(r[1])


def test_ndcg_hand_example() -> None:
    # Hits at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5; ideal: 1 + 1/log2(3) = 1.6309.
    got = ndcg_at_k(np.array([[9, 1, 7], [1, 2, 3]]), [np.array([7, 9]), np.array([])], k=3)
    assert got[0] == pytest.approx(1.5 / (1 + 1 / np.log2(3)))
    assert np.isnan(got[1])
    # A perfect ranking scores 1 whatever the number of relevant items beyond k.
    assert ndcg_at_k(np.array([[4, 5]]), [np.array([4, 5, 6])], k=2)[0] == pytest.approx(1.0)
