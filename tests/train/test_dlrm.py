"""The DLRM ranker: the model contract, the interaction width worked out from the feature
counts, content taking part in the interaction, a context rule it must learn, and the
sampling offset added when scoring."""

from __future__ import annotations

import numpy as np
import torch

from tests.contracts import CARDS, ModelContract, random_batch
from train.dlrm import DLRM, SPARSE, DLRMConfig, DLRMTrain, SparseArch, sampling_offset


class TestDLRM(ModelContract):
    kind = "dlrm"


def test_interaction_width_counts_every_pair_and_content_takes_part() -> None:
    cfg = DLRMConfig(embedding_dim=8)
    model = DLRM(cfg, CARDS)
    x = random_batch(5)
    f = len(SPARSE) + 1  # the projected content vector interacts too
    changed = x | {"content": x["content"] + 1.0}
    assert not torch.allclose(model(x), model(changed))
    inter = model.interaction_arch(model.dense_arch(x["dense"]), model.sparse_arch(x))
    assert inter.shape == (5, 8 + (f + 1) * f // 2)


def test_sparse_arch_embeds_exactly_the_features_it_is_given() -> None:
    arch = SparseArch(("user", "device"), CARDS, 4)
    assert set(arch.embeddings) == {"user", "device"} and arch.n_vectors == 3  # + content
    assert arch(random_batch(2)).shape == (2, 3, 4)
    x = random_batch(2)
    x["item"] = x["item"] + 1  # not one of its features: nothing changes
    torch.testing.assert_close(arch(random_batch(2)), arch(x))


def test_dlrm_learns_a_context_rule() -> None:
    """Clicks happen exactly on device 1: a few steps must separate it."""
    torch.manual_seed(0)
    model = DLRM(DLRMConfig(), CARDS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(60):
        x = random_batch(256, seed=step)
        x["label"] = (x["device"] == 1).float()
        loss = DLRMTrain(model)(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = random_batch(512, seed=999)
    p = torch.sigmoid(model(x))
    assert p[x["device"] == 1].min() > p[x["device"] != 1].max()


def test_the_sampling_offset_is_added_when_scoring_and_never_when_training() -> None:
    torch.manual_seed(0)
    model = DLRM(DLRMConfig(embedding_dim=8), CARDS)
    x = random_batch(6)
    before, loss = model(x).detach(), DLRMTrain(model)(x).item()
    # catalog rows 0-3 are ids 5, 6, 7 and the OOV id 0 shared by rows 3 and 4
    offset = sampling_offset(np.array([5, 6, 7, 0, 0]), np.array([0.4, 0.2, 0.2, 0.1, 0.1]),
                             4, CARDS["item"])
    np.testing.assert_allclose(offset[[5, 6, 7, 0, 1]], np.log(4 * np.array(
        [0.4, 0.2, 0.2, 0.1, 0.1])), rtol=1e-6)  # unseen ids: the least likely row's
    model.item_offset.copy_(torch.from_numpy(offset))
    torch.testing.assert_close(model(x), before + torch.from_numpy(offset)[x["item"]])
    assert DLRMTrain(model)(x).item() == loss
    # weights saved before the offset existed load with none
    old = {k: v for k, v in model.state_dict().items() if k != "item_offset"}
    fresh = DLRM(DLRMConfig(embedding_dim=8), CARDS)
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh(x), before)
