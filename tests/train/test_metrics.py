from __future__ import annotations

import numpy as np
import pytest

from train.metrics import (
    auc,
    average_precision,
    log_loss,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)


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


def test_precision_divides_by_k_even_for_a_short_list() -> None:
    # relevant {7, 9}: [9, 1, 7, 4] holds 2 of them in 4; a user with nothing relevant is NaN
    got = precision_at_k(np.array([[9, 1, 7, 4], [1, 2, 3, 4]]), [np.array([7, 9]),
                                                                  np.array([])], k=4)
    assert got[0] == 0.5 and np.isnan(got[1])
    # Microsoft Recommenders divides by k whatever the number of relevant items: 1 hit of
    # 1 relevant in 10 is 0.1, not 1
    assert precision_at_k(np.arange(10)[None, :], [np.array([3])], k=10)[0] == 0.1


def test_average_precision_divides_by_all_relevant_items() -> None:
    # relevant {7, 9, 5}, top [9, 1, 7]: hits at ranks 1 and 3 with precisions 1/1 and 2/3;
    # (1 + 2/3) / 3 relevant = 0.5556 (not / min(3, k) as MAP@k would, nor / 2 hits)
    got = average_precision(np.array([[9, 1, 7]]), [np.array([7, 9, 5])], k=3)
    assert got[0] == pytest.approx((1 + 2 / 3) / 3)
    # every hit at the top: 1 when all relevant items fit in k
    assert average_precision(np.array([[4, 5, 0]]), [np.array([4, 5])], k=3)[0] == 1.0
    # 12 relevant, 10 in the first 10: 10 / 12 (MAP@k would give 1)
    assert average_precision(np.arange(10)[None, :], [np.arange(12)], k=10)[0] == \
        pytest.approx(10 / 12)
    assert np.isnan(average_precision(np.array([[1]]), [np.array([])], k=1)[0])


def test_recall_divides_by_all_relevant_items() -> None:
    # 12 relevant, the first 10 all hits: recall@10 = 10 / 12 (the ceiling for this user)
    assert recall_at_k(np.arange(10)[None, :], [np.arange(12)], k=10)[0] == \
        pytest.approx(10 / 12)
