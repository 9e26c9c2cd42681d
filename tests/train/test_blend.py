"""The blend: per-list standardization worked by hand, segments, the list recall it is fitted
on, the coordinate ascent finding a known mixture, and the guard that keeps a single signal
when the blend does not beat it on held-out users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train.blend import SIGNALS, Blend, Lists, SegmentBlend, ascend, choose, segment, standardize

F = len(SIGNALS)
AT = {name: n for n, name in enumerate(SIGNALS)}


def test_segments() -> None:
    assert segment(0, anything_known=False) == "new"
    assert segment(0) == "few"  # impressions, or an id, but no click yet
    assert [segment(n) for n in (1, 3, 4, 50)] == ["few", "few", "known", "known"]


def test_standardize_is_a_z_score_within_each_list() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0], [10.0, 0.0], [20.0, 2.0], [30.0, 4.0]])
    z = standardize(x, np.array([0, 0, 1, 1, 1]))
    # list 0: column 0 is [1, 3] -> mean 2, sd 1 -> [-1, 1]; column 1 is constant -> 0
    np.testing.assert_allclose(z[:2], [[-1, 0], [1, 0]])
    # list 1: [10, 20, 30] -> mean 20, sd 8.165 -> [-1.2247, 0, 1.2247]; same for [0, 2, 4]
    np.testing.assert_allclose(z[2:, 0], [-1.2247449, 0, 1.2247449], rtol=1e-6)
    np.testing.assert_allclose(z[2:, 1], z[2:, 0], rtol=1e-6)
    np.testing.assert_allclose(standardize(x[:2]), z[:2])  # one list alone: the same


def test_the_list_metrics_are_computed_per_list() -> None:
    # two lists of three candidates; the first user has 2 relevant items, one of them
    # outside the candidates; the second has 1, in the candidates
    z = np.zeros((6, F), np.float32)
    z[:, 0] = [3, 2, 1, 1, 2, 3]
    y = np.array([0, 1, 0, 1, 0, 0])
    lists = Lists(z, y, np.array([0, 0, 0, 1, 1, 1]), np.array([2, 1]))
    w = np.eye(F, dtype=np.float32)[0]
    # top 1: list 0 picks the 3 (not relevant), list 1 the 3 (not relevant) -> 0
    # top 2: list 0 gets its relevant one (1 of 2), list 1 does not -> (0.5 + 0) / 2
    assert lists.score(w, ("recall@1",)) == 0.0 and lists.score(w, ("recall@2",)) == 0.25
    # reversed: list 1's hit comes first
    assert lists.score(-w, ("recall@1",)) == pytest.approx((0 + 1) / 2)
    assert lists.score(w, ("recall@1", "recall@2")) == pytest.approx(0.125)  # the mean
    # NDCG@2: list 0 has its hit at rank 2 (1/log2(3)) against an ideal of 1 + 1/log2(3)
    # (2 relevant); list 1 has no hit -> (0.6309 / 1.6309 + 0) / 2
    assert lists.score(w, ("ndcg@2",)) == pytest.approx(
        (1 / np.log2(3)) / (1 + 1 / np.log2(3)) / 2)
    with pytest.raises(ValueError, match="ndcg@K or recall@K"):
        lists.score(w, ("map@10",))


def synthetic_lists(n_lists: int = 400, size: int = 30, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lists whose clicks follow 2 * item_item + 1 * popular, with dlrm pure noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_lists * size, F)).astype(np.float32)
    truth = 2 * x[:, AT["item_item"]] + x[:, AT["popular"]]
    groups = np.repeat(np.arange(n_lists), size)
    y = np.zeros(len(x), np.int8)
    for g in range(n_lists):  # each user clicks their two best candidates by the truth
        rows = np.flatnonzero(groups == g)
        y[rows[np.argsort(-truth[rows])[:2]]] = 1
    return x, y, groups, np.full(n_lists, 2)


def test_coordinate_ascent_finds_the_mixture_that_generated_the_clicks() -> None:
    x, y, groups, relevant = synthetic_lists()
    lists = Lists(standardize(x, groups), y, groups, relevant)
    single = np.eye(F, dtype=np.float32)[AT["item_item"]]
    w = ascend(lists, single, ("recall@2",))
    assert lists.score(w, ("recall@2",)) > lists.score(single, ("recall@2",)) + 0.1
    assert w[AT["item_item"]] > w[AT["popular"]] > 0  # the right signals, the right order
    assert abs(w[AT["dlrm"]]) < w[AT["popular"]]


def test_choose_keeps_the_blend_when_it_beats_every_single_signal() -> None:
    x, y, groups, relevant = synthetic_lists(seed=1)
    got = choose(x, y, groups, relevant, ("recall@2",))
    assert got is not None and got.chosen == "blend"
    assert got.validation["blend"] >= max(v for k, v in got.validation.items() if k != "blend")


def test_choose_keeps_a_single_signal_when_nothing_else_helps() -> None:
    x, y, groups, relevant = synthetic_lists(seed=2)
    x[:, AT["item_item"]] = 0.0  # only popular is informative now: clicks follow it alone
    truth = x[:, AT["popular"]]
    y[:] = 0
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        y[rows[np.argsort(-truth[rows])[:2]]] = 1
    got = choose(x, y, groups, relevant, ("recall@2",))
    assert got is not None
    # a blend can only tie the perfect single signal on held-out users: popular is kept
    # (or a blend that ranks exactly as well)
    assert got.validation[got.chosen] == pytest.approx(got.validation["popular"])


def test_too_few_clicked_lists_fit_nothing() -> None:
    x, y, groups, relevant = synthetic_lists(n_lists=10)
    assert choose(x, y, groups, relevant) is None


def test_a_blend_round_trips_and_borrows_weights_for_a_segment_it_lacks(tmp_path: Path
                                                                          ) -> None:
    known = SegmentBlend(tuple(float(v) for v in np.eye(F)[AT["item_item"]]), "item_item",
                         {"item_item": 0.5}, 100)
    b = Blend(segments={"known": known}, exclude_history=True, repeat_share=0.0)
    b.save(tmp_path / "blend.json")
    again = Blend.load(tmp_path / "blend.json")
    assert again == b
    np.testing.assert_array_equal(again.weights("few"), again.weights("known"))  # borrowed
    # a stranger is never ranked by weights fitted on users with clicks: popularity alone
    assert again.weights("new")[AT["popular"]] == 1.0 and again.weights("new").sum() == 1.0
    assert Blend().weights("known")[AT["dlrm"]] == 1.0  # nothing fitted: the DLRM alone
    x = np.zeros((3, F), np.float32)
    x[:, AT["item_item"]] = [0.1, 0.9, 0.5]
    assert again.score(x, "known").argmax() == 1
    single = Blend.single("dlrm")
    assert all(s.chosen == "dlrm" for s in single.segments.values())
