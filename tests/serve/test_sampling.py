"""Stage 7 and the candidates object, without Ray: top-k with reserved slots, the re-ranking
that covers a user's category shares (picks worked out by hand below), candidates merged
with their sources or-ed, and the UTC hour and weekday of any date-time."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from serve.candidates import INTERESTS, POPULAR, TWO_TOWER, Candidates
from serve.context import request_context, utc_hour_and_weekday
from serve.sampling import choose, cover, target_shares, top_k

# Fifteen candidates of four categories, best first within each: 8 of category 0 (logits
# 5.0 .. 4.3), 4 of category 1 (3.0 .. 2.7), 2 of category 2 (1.0, 0.9), 1 of category 3 (0.0).
LOGITS = np.array([5.0, 4.9, 4.8, 4.7, 4.6, 4.5, 4.4, 4.3, 3.0, 2.9, 2.8, 2.7, 1.0, 0.9, 0.0])
CATEGORIES = np.array([0] * 8 + [1] * 4 + [2] * 2 + [3])
SHARES = np.array([0.5, 0.3, 0.2, 0.0])  # the user's: three favourite categories


def test_top_k_keeps_the_reserved_share_and_answers_in_score_order() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    reserved = np.array([False, False, False, True, True])
    assert top_k(scores, 3).tolist() == [0, 1, 2]
    # ceil(3 * 0.5) = 2 slots for the reserved rows, the best other one fills the third
    assert top_k(scores, 3, reserved, 0.5).tolist() == [0, 3, 4]
    assert top_k(scores, 3, np.zeros(5, bool), 0.5).tolist() == [0, 1, 2]


def test_full_diversity_fills_the_slots_in_proportion_to_the_shares() -> None:
    """k = 10 and shares 0.5, 0.3, 0.2: the target counts are 5, 3, 2. The top 10 by score is
    8 + 2 of categories 0 and 1; at d = 1 each pick closes the gap of an under-filled category
    (+1) rather than widen an over-filled one (-1), so the list is the best 5 of category 0,
    the best 3 of category 1 and both of category 2, answered in score order."""
    assert choose(LOGITS, 10, 0.0, CATEGORIES, SHARES).tolist() == list(range(10))
    got = choose(LOGITS, 10, 1.0, CATEGORIES, SHARES)
    assert got.tolist() == [0, 1, 2, 3, 4, 8, 9, 10, 12, 13]
    assert np.bincount(CATEGORIES[got], minlength=4).tolist() == [5, 3, 2, 0]
    # d = 0.5 already fills it: relevance is scaled to [0, 1] over the candidates, so the
    # 6th item of category 0 gains 0.5 * 0.9 - 0.5 < 0 while the best of category 2 gains
    # 0.5 * 0.2 + 0.5 = 0.6
    assert choose(LOGITS, 10, 0.5, CATEGORIES, SHARES).tolist() == got.tolist()


def test_a_little_diversity_only_breaks_near_ties() -> None:
    """At d = 0.01 a pick from an under-filled category gains at most 0.02 over one from an
    over-filled category: far from the 0.3 of relevance between the 8th item of category 0
    (4.3 of 5.0) and the best of category 1 (3.0), so the top 10 stays; two items of equal
    score go to the category still owed a slot."""
    assert choose(LOGITS, 10, 0.01, CATEGORIES, SHARES).tolist() == list(range(10))
    tie = np.array([1.0, 0.5, 0.5, 0.0])  # items 1 and 2 tie; the user wants category 2
    got = choose(tie, 2, 0.01, np.array([0, 1, 2, 1]), np.array([0.5, 0.0, 0.5]))
    assert got.tolist() == [0, 2]
    assert choose(tie, 2, 0.0, np.array([0, 1, 2, 1]), np.array([0.5, 0.0, 0.5])).tolist() == [
        0, 1]


def test_diversity_zero_is_plain_top_k_with_its_reserved_slots() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=200)
    cats = rng.integers(0, 5, 200)
    reserved = rng.random(200) < 0.1
    for k in (1, 10, 50):
        assert choose(logits, k, 0.0, cats, np.full(5, 0.2)).tolist() == top_k(logits, k).tolist()
        assert choose(logits, k, 0.0, cats, np.full(5, 0.2), reserved, 0.5).tolist() == top_k(
            logits, k, reserved, 0.5).tolist()


def test_the_reserved_share_holds_at_any_diversity() -> None:
    reserved = np.zeros(15, bool)
    reserved[[11, 14]] = True  # the last of category 1 and the only one of category 3
    got = choose(LOGITS, 10, 1.0, CATEGORIES, SHARES, reserved, 0.2)  # ceil(10 * 0.2) = 2
    assert {11, 14} <= set(got.tolist()) and len(set(got.tolist())) == 10
    assert LOGITS[got].tolist() == sorted(LOGITS[got].tolist(), reverse=True)


def test_the_target_keeps_to_the_candidates_categories() -> None:
    """Shares 0.5, 0.3, 0.2, 0 over candidates of categories 0, 1 and 3 only: category 2 has
    nothing to offer, so 0.5 / 0.8 = 0.625 and 0.3 / 0.8 = 0.375."""
    got = target_shares(np.array([0.5, 0.3, 0.2, 0.0]), np.array([0, 1, 3, 3]),
                        np.zeros(4), 10)
    assert got == pytest.approx([0.625, 0.375, 0.0, 0.0])


def test_a_cold_user_gets_the_shares_of_the_candidates_scores() -> None:
    """No shares (a new user): the best 3k candidates' logits above the lowest weigh their
    categories. k = 2, logits 3, 2.5, 2, 1.5 of categories 0, 0, 1, 1: weights 1.5, 1, 0.5, 0,
    so category 0 gets 2.5 / 3 of the slots and category 1 a sixth; the greedy fill then
    keeps the top 2 (both of category 0, target 1.67 and 0.33)."""
    logits = np.array([3.0, 2.5, 2.0, 1.5])
    cats = np.array([0, 0, 1, 1])
    shares = target_shares(np.zeros(3), cats, logits, 2)
    assert shares == pytest.approx([2.5 / 3, 0.5 / 3, 0.0])
    assert choose(logits, 2, 1.0, cats, np.zeros(3)).tolist() == [0, 1]
    # k = 4: weights over every candidate, the same shares, targets 3.33 and 0.67: 2 + 2
    assert choose(logits, 4, 1.0, cats, np.zeros(3)).tolist() == [0, 1, 2, 3]


def test_k_beyond_the_candidates_answers_them_all_in_score_order() -> None:
    for d in (0.0, 0.3, 1.0):
        got = choose(LOGITS[::-1], 40, d, CATEGORIES[::-1], SHARES)
        assert got.tolist() == list(range(14, -1, -1))
    assert cover(np.zeros(0), np.zeros(0, np.int64), SHARES, 10, 1.0).tolist() == []


def test_candidates_merge_or_their_sources() -> None:
    a = Candidates.of(np.array([5, 1, 3]), TWO_TOWER)
    b = Candidates.of(np.array([3, 7]), INTERESTS).merge(Candidates.of(np.array([7]), POPULAR))
    m = a.merge(b)
    assert m.rows.tolist() == [1, 3, 5, 7]
    assert m.source_names() == ["two_tower", "two_tower+interests", "two_tower",
                                "interests+popular"]
    assert m.has(INTERESTS).tolist() == [False, True, False, True]
    assert m.keep(~m.has(POPULAR)).rows.tolist() == [1, 3, 5]
    assert a.merge(Candidates.empty()) is a


def test_the_utc_hour_and_weekday_of_any_date_time() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert utc_hour_and_weekday(dt.datetime(2026, 1, 19, 23, 30, tzinfo=plus2)) == (21, 0)
    # 0001-01-01 is a Monday; 02:00 at +05:00 is 21:00 on the Sunday before (no datetime)
    assert utc_hour_and_weekday(dt.datetime(1, 1, 1, 2, 0, tzinfo=dt.timezone(
        dt.timedelta(hours=5)))) == (21, 6)
    assert utc_hour_and_weekday(dt.datetime(2026, 1, 19, 21, 30)) == (21, 0)  # naive = UTC
    ctx = request_context("fridge", dt.datetime(2026, 1, 19, 9), {"web": 1, "ios": 2})
    assert (ctx.device, ctx.device_index, ctx.hour) == (None, 0, 9)
    assert "fridge" in (ctx.warning or "") and "ios, web" in (ctx.warning or "")
    # a version trained without times answers as of an unknown time, whatever was asked
    blind = request_context("web", dt.datetime(2026, 1, 19, 9), {"web": 1}, time_known=False)
    assert (blind.device_index, blind.hour, blind.weekday) == (1, -1, -1)
