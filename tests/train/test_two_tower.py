"""The Two-Tower model: the model contract, unit-length towers, the in-batch and
whole-catalog losses worked out by hand, the learned temperature, and the item tower's use of
content."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.contracts import CARDS, ModelContract, pair_batch, random_batch
from train.features import ITEM_SPARSE
from train.two_tower import (
    CATALOG,
    ITEM_INPUTS,
    TwoTower,
    TwoTowerConfig,
    TwoTowerTrain,
    ranking_score,
)


class TestTwoTower(ModelContract):
    kind = "two_tower"

    def known_answer_batch(self, users: torch.Tensor) -> dict[str, torch.Tensor]:
        # In-batch softmax needs positives only: each user with its own item.
        return pair_batch(users, users)


def test_towers_give_unit_vectors_of_the_configured_width() -> None:
    model = TwoTower(TwoTowerConfig(out_dim=16), CARDS)
    x = random_batch(6)
    u, v = model.user_embedding(x), model.item_embedding(x)
    assert u.shape == v.shape == (6, 16)
    torch.testing.assert_close(u.norm(dim=1), torch.ones(6))


def test_in_batch_loss_ignores_duplicate_positives() -> None:
    torch.manual_seed(0)
    model = TwoTower(TwoTowerConfig(), CARDS)
    x = random_batch(4)
    x["item"] = torch.tensor([1, 1, 1, 1])  # every row has the same item ...
    x["item_row"] = x["item"]
    for n in ITEM_SPARSE:
        x[n] = torch.ones(4, dtype=torch.long)
    # ... so no row has a negative: softmax over one logit, loss exactly 0.
    assert TwoTowerTrain(model)(x).item() == pytest.approx(0.0, abs=1e-6)


def test_in_batch_loss_matches_hand_computed_cross_entropy() -> None:
    torch.manual_seed(0)
    model = TwoTower(TwoTowerConfig(temperature=0.5, learn_temperature=False), CARDS)
    x = random_batch(3)
    x["item_row"] = torch.tensor([0, 1, 2])
    u, v = model.user_embedding(x), model.item_embedding(x)
    logits = (u @ v.T / 0.5).detach().numpy()
    expected = np.mean([np.log(np.exp(logits[i]).sum()) - logits[i, i] for i in range(3)])
    assert TwoTowerTrain(model)(x).item() == pytest.approx(expected, rel=1e-5)


def test_log_q_correction_lowers_popular_items_logits() -> None:
    """With log q = [0, log 0.5, log 0.25] the loss is the cross-entropy of logits minus
    log q: worked out here from the same towers."""
    torch.manual_seed(0)
    model = TwoTower(TwoTowerConfig(temperature=0.5, learn_temperature=False), CARDS)
    x = random_batch(3)
    x["item_row"] = torch.tensor([0, 1, 2])
    log_q = torch.log(torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))  # float64 on purpose
    u, v = model.user_embedding(x), model.item_embedding(x)
    logits = (u @ v.T / 0.5 - log_q.float()[None, :]).detach().numpy()
    expected = np.mean([np.log(np.exp(logits[i]).sum()) - logits[i, i] for i in range(3)])
    loss = TwoTowerTrain(model, log_q)(x)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected, rel=1e-5)


def test_catalog_loss_is_cross_entropy_over_every_catalog_item() -> None:
    """Given the catalog's item inputs, each row's clicked catalog row is scored against
    every catalog row, whatever else is in the batch (here: two rows click the same item,
    which the in-batch loss would not count as a negative), and logQ plays no part."""
    torch.manual_seed(0)
    model = TwoTower(TwoTowerConfig(temperature=0.5, learn_temperature=False), CARDS)
    catalog = random_batch(7, seed=1)  # 7 catalog rows
    x = random_batch(3)
    x["item_row"] = torch.tensor([4, 4, 6])
    for n in ITEM_INPUTS:  # each row's own item inputs are its catalog row's
        x[n] = catalog[n][x["item_row"]]
    u = model.user_embedding(x)
    v = model.item_embedding({n: catalog[n] for n in ITEM_INPUTS})  # 7, D
    logits = (u @ v.T / 0.5).detach().numpy()  # 3, 7
    rows = x["item_row"].numpy()
    expected = np.mean([np.log(np.exp(logits[i]).sum()) - logits[i, rows[i]] for i in range(3)])
    task = TwoTowerTrain(model, torch.log(torch.full((7,), 1 / 7)),
                         **{CATALOG + n: catalog[n] for n in ITEM_INPUTS})
    assert task(x).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(TypeError, match="catalog_price"):
        TwoTowerTrain(model, catalog_price=torch.zeros(7))


def test_validation_loss_leaves_out_each_users_training_clicks_but_not_the_target() -> None:
    """In eval mode, each row's softmax drops the catalog rows its user clicked in training
    (the seen CSR), except the row's own item; training mode keeps every item."""
    torch.manual_seed(0)
    model = TwoTower(TwoTowerConfig(temperature=0.5, learn_temperature=False), CARDS)
    catalog = random_batch(7, seed=1)
    x = random_batch(3)
    x["user"] = torch.tensor([1, 2, 0])  # user code 0 (OOV) has no list
    x["item_row"] = torch.tensor([4, 3, 6])
    for n in ITEM_INPUTS:
        x[n] = catalog[n][x["item_row"]]
    # user 1 clicked rows 0, 4 (4 is this row's target: kept); user 2 clicked 1, 2, 5
    seen = {"seen_indptr": torch.tensor([0, 0, 2, 5] + [5] * (CARDS["user"] - 3)),
            "seen_rows": torch.tensor([0, 4, 1, 2, 5])}
    task = TwoTowerTrain(model, **seen, **{CATALOG + n: catalog[n] for n in ITEM_INPUTS})
    u = model.user_embedding(x)
    v = model.item_embedding({n: catalog[n] for n in ITEM_INPUTS})
    logits = (u @ v.T / 0.5).detach().numpy()
    dropped = {0: [0], 1: [1, 2, 5], 2: []}
    rows = x["item_row"].numpy()

    def ce(i: int, leave_out: list[int]) -> float:
        keep = [j for j in range(7) if j not in leave_out]
        return float(np.log(np.exp(logits[i, keep]).sum()) - logits[i, rows[i]])

    task.eval()
    assert task(x).item() == pytest.approx(np.mean([ce(i, dropped[i]) for i in range(3)]),
                                           rel=1e-5)
    # and each row's ranking score ranks its item among the items left in
    _, score = task.validation(x)
    ranks = [sum(logits[i, j] > logits[i, rows[i]] for j in range(7) if j not in dropped[i])
             for i in range(3)]
    np.testing.assert_allclose(score.numpy(), ranking_score(torch.tensor(ranks)).numpy())
    task.train()
    assert task(x).item() == pytest.approx(np.mean([ce(i, []) for i in range(3)]), rel=1e-5)
    with pytest.raises(TypeError, match="together"):
        TwoTowerTrain(model, seen_indptr=seen["seen_indptr"])


def test_ranking_score_is_the_blends_objective_for_one_relevant_item() -> None:
    """NDCG@10 and recall@100 of a list holding one relevant item at 0-based `rank`,
    averaged: rank 0 scores 1, rank 9 (1/log2(11) + 1) / 2, ranks 10-99 a half, 100 none."""
    got = ranking_score(torch.tensor([0, 9, 10, 99, 100]))
    np.testing.assert_allclose(got.numpy(), [1.0, (1 / np.log2(11) + 1) / 2, 0.5, 0.5, 0.0],
                               rtol=1e-6)


def test_temperature_is_learned_unless_configured_fixed() -> None:
    torch.manual_seed(0)
    for learn in (True, False):
        model = TwoTower(TwoTowerConfig(temperature=0.2, learn_temperature=learn), CARDS)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        for step in range(5):
            loss = TwoTowerTrain(model)(random_batch(16, seed=step))
            opt.zero_grad()
            loss.backward()
            opt.step()
        moved = abs(model.temperature.item() - 0.2) > 1e-4
        assert moved is learn


def test_item_tower_reads_the_content_vector() -> None:
    """A brand-new item differs from another only by its content: the tower must see it."""
    torch.manual_seed(0)
    model = TwoTower(TwoTowerConfig(), CARDS)
    x = random_batch(2)
    for n in ITEM_SPARSE:
        x[n] = torch.zeros(2, dtype=torch.long)  # both items all-OOV
    assert not torch.allclose(model.item_embedding(x)[0], model.item_embedding(x)[1])
    x["content"] = x["content"][[0, 0]]
    torch.testing.assert_close(model.item_embedding(x)[0], model.item_embedding(x)[1])


def test_query_tower_reads_the_bag_of_clicked_items_and_training_leaves_the_row_out() -> None:
    torch.manual_seed(0)
    cards = CARDS | {"hist_items": CARDS["item"]}
    model = TwoTower(TwoTowerConfig(item_history=True), cards)
    x = random_batch(4)
    x["hist_items"] = torch.tensor([[3, 5, 0], [0, 0, 0], [7, 0, 0], [2, 2, 9]])
    other = x | {"hist_items": torch.tensor([[4, 6, 0], [0, 0, 0], [8, 0, 0], [1, 1, 9]])}
    u, v = model.user_embedding(x), model.user_embedding(other)
    assert not torch.allclose(u[0], v[0])  # what they clicked moves the query
    torch.testing.assert_close(u[1], v[1])  # an empty bag (all pads) is the same for all
    train = TwoTowerTrain(model)
    x["item"] = x["item_row"] = torch.tensor([3, 1, 7, 9])
    without = x | {"hist_items": torch.tensor([[0, 5, 0], [0, 0, 0], [0, 0, 0], [2, 2, 0]])}
    torch.testing.assert_close(train(x), train(without))  # each row's own item is left out


def test_a_version_without_the_bag_ignores_it() -> None:
    model = TwoTower(TwoTowerConfig(), CARDS)
    x = random_batch(3)
    torch.testing.assert_close(model.user_embedding(x),
                               model.user_embedding(x | {"hist_items": torch.ones(3, 2).long()}))
