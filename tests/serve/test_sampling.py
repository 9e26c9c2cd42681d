"""Stage 7 and the candidates object, without Ray: top-k with reserved slots, Gumbel top-k
whose first pick follows score ** (1 / tau) (worked out by hand below), candidates merged
with their sources or-ed, and the UTC hour and weekday of any date-time."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from serve.candidates import INTERESTS, POPULAR, TWO_TOWER, Candidates
from serve.context import request_context, utc_hour_and_weekday
from serve.sampling import choose, sample, top_k


def test_top_k_keeps_the_reserved_share_and_answers_in_score_order() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    reserved = np.array([False, False, False, True, True])
    assert top_k(scores, 3).tolist() == [0, 1, 2]
    # ceil(3 * 0.5) = 2 slots for the reserved rows, the best other one fills the third
    assert top_k(scores, 3, reserved, 0.5).tolist() == [0, 3, 4]
    assert top_k(scores, 3, np.zeros(5, bool), 0.5).tolist() == [0, 1, 2]


def test_the_first_draw_follows_score_to_the_power_one_over_tau() -> None:
    """Scores 0.6, 0.3, 0.1 with tau = 1: the first pick is item 0 with probability 0.6;
    with tau = 0.5 the weights are squared: 0.36 / 0.46 = 0.783."""
    scores = np.array([0.6, 0.3, 0.1])
    rng = np.random.default_rng(0)
    for tau, want in ((1.0, 0.6), (0.5, 0.36 / 0.46)):
        firsts = []
        for _ in range(20_000):
            keys = np.log(scores) / tau + rng.gumbel(size=3)
            firsts.append(int(np.argmax(keys)))
        assert np.mean(np.array(firsts) == 0) == pytest.approx(want, abs=0.015)
    # sample() returns k distinct positions, best score first
    for _ in range(50):
        got = sample(scores, 2, 1.0, 1.0, rng)
        assert len(set(got.tolist())) == 2 and scores[got[0]] >= scores[got[1]]


def test_sampling_on_logits_weighs_by_their_exponent() -> None:
    """Saturated scores (0.999, 0.998, 0.99: the sigmoid of logits 6.9, 6.2, 4.6) would be
    drawn almost uniformly; on the logits themselves, with d * temperature = 1, the first
    pick is item 0 with probability e^6.9 / (e^6.9 + e^6.2 + e^4.6) = 0.62."""
    logits = np.array([6.9, 6.2, 4.6])
    scores = 1 / (1 + np.exp(-logits))
    rng = np.random.default_rng(1)
    first = [int(sample(scores, 1, 1.0, 1.0, rng, log_weights=logits)[0]) for _ in range(20_000)]
    want = np.exp(6.9) / np.exp(logits).sum()
    assert np.mean(np.array(first) == 0) == pytest.approx(want, abs=0.015)
    flat = [int(sample(scores, 1, 1.0, 1.0, rng)[0]) for _ in range(20_000)]
    assert np.mean(np.array(flat) == 0) < 0.34  # on the scores: near a third each


def test_diversity_zero_is_top_k_and_more_diversity_draws_further_down() -> None:
    rng = np.random.default_rng(1)
    scores = np.linspace(0.9, 0.1, 100)
    assert choose(scores, 10, 0.0, 1.0, rng).tolist() == list(range(10))
    low = np.mean([choose(scores, 10, 0.05, 1.0, rng).max() for _ in range(200)])
    high = np.mean([choose(scores, 10, 1.0, 1.0, rng).max() for _ in range(200)])
    assert low < high  # positions are ranks: a hotter draw reaches lower-ranked items


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
