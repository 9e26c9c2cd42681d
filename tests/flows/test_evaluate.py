"""Evaluation on the tiny version: every baseline is reported, the models beat chance, and
nothing beats the oracle by more than sampling noise; each figure's bootstrap interval and the
per-slice sample, on data whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flows.evaluate import EvalReport, bootstrap_interval, format_report, sample_users
from train.artifacts import load_bundle


@pytest.mark.ray
def test_pipeline_beats_chance_and_reports_every_baseline(tiny_artifacts: Path) -> None:
    bundle = load_bundle(tiny_artifacts)
    report = bundle.manifest["metrics"]["evaluation"]
    r, g, k = report["retrieval"], report["ranking"], report["retrieval"]["k"]
    recall = f"recall@{k}"
    # Random retrieval's expected recall is k / n_items.
    assert r["two_tower"]["overall"][recall] > k / len(bundle.items)
    assert g["dlrm"]["overall"]["auc"] > 0.55
    # The oracle knows the true model: nothing beats it by more than sampling noise.
    assert g["oracle"]["overall"]["auc"] > g["dlrm"]["overall"]["auc"] - 0.02
    assert r["oracle"]["overall"][recall] >= r["popularity"]["overall"][recall]
    assert r["cold_users"] > 0 and g["cold_impressions"] > 0
    assert r["new_users"] > 0 and not r["history_excluded"]  # synthetic users click again
    for model in ("serving", "two_tower", "popularity", "popularity_recent",
                  "popularity_context", "popularity_demographic", "oracle"):
        assert {"overall", "cold", "new", "masked", "web", "ios", "android"} <= set(r[model])
        assert set(r[model]["overall"]) == {"recall@10", f"recall@{k}", "ndcg@10", f"ndcg@{k}"}
        assert r[model]["overall"]["recall@10"] <= r[model]["overall"][recall]
    # The served answer (every source, blended) beats chance and popularity
    assert r["serving"]["overall"][recall] > max(k / len(bundle.items),
                                                 r["popularity"]["overall"][recall])
    # Popularity ignores the user, so masking the user cannot change it; the DLRM uses them.
    assert g["dlrm"]["masked"]["auc"] != g["dlrm"]["overall"]["auc"]
    parsed = EvalReport.from_dict(report)
    assert parsed.to_dict() == report  # the manifest's JSON form, read and written back
    text = format_report(parsed)
    assert f"two_tower recall@{k} is" in text and f"serving recall@{k} is" in text
    assert "    popularity_demographic" in text
    # Every figure has its 95% interval, around it
    for model in ("serving", "two_tower", "oracle"):
        for sl, figures in r[model].items():
            for metric, value in figures.items():
                low, high = r["intervals"][model][sl][metric]
                assert low - 1e-9 <= value <= high + 1e-9
    assert r["slice_users"]["new"] == r["new_users"] and r["slice_users"]["overall"] <= r["users"]
    # The serving path's top 10 at each diversity setting: covering the user's categories
    # adds categories to the lists.
    div = report["diversity"]["settings"]
    assert list(div) == ["0.0", "0.1", "0.15", "0.2", "0.25", "0.3", "0.5", "0.75", "1.0"]
    assert div["1.0"]["category_diversity"] > div["0.0"]["category_diversity"]
    assert div["1.0"]["categories_per_list"] > div["0.0"]["categories_per_list"]
    assert all(0 <= m["ndcg@10"] <= 1 for m in div.values())
    assert "±" in text and "of d=0" in text
    # 3 title lines, 4 metrics x (a header and 7 methods), 2 oracle shares, the ranking's
    # title and 2 x 4 lines, and the diversity table's 2 + one line per setting
    assert len(text.splitlines()) == 3 + 4 * 8 + 2 + 1 + 2 * 4 + 2 + len(div)
    # A manifest written before the intervals still loads, and prints without them
    old = dict(report, retrieval={key: v for key, v in r.items()
                                  if key not in ("intervals", "slice_users", "population")})
    older = EvalReport.from_dict(old)
    assert older.retrieval.intervals == {} and older.retrieval.methods == parsed.retrieval.methods
    assert "±" not in format_report(older).split("ranking on")[0]


def test_the_interval_holds_the_mean_narrows_with_users_and_repeats_with_its_seed() -> None:
    """Per-user recall of 0 or 1 with mean 0.3: the standard error is sqrt(0.3 * 0.7 / n),
    so the 95% interval is about +-1.96 * 0.0145 = +-0.028 wide at n = 1,000 and +-0.009 at
    n = 10,000: about sqrt(10) narrower."""
    rng = np.random.default_rng(0)
    small = (rng.random(1_000) < 0.3).astype(float)
    large = (rng.random(10_000) < 0.3).astype(float)
    lo, hi = bootstrap_interval(small, 1000, seed=0)
    assert lo < small.mean() < hi
    assert (hi - lo) / 2 == pytest.approx(1.96 * np.sqrt(0.3 * 0.7 / 1_000), rel=0.15)
    lo_l, hi_l = bootstrap_interval(large, 1000, seed=0)
    assert lo_l < large.mean() < hi_l
    assert (hi - lo) / (hi_l - lo_l) == pytest.approx(np.sqrt(10), rel=0.2)
    assert bootstrap_interval(small, 1000, seed=0) == (lo, hi)  # the seed repeats it
    assert bootstrap_interval(small, 1000, seed=1) != (lo, hi)
    assert bootstrap_interval(np.full(50, 0.25), 100, seed=0) == (0.25, 0.25)


def test_the_new_and_few_slices_are_sampled_up_to_their_own_size() -> None:
    """10,000 users, the first 700 new and the next 1,500 with few clicks: 1,000 at random
    (about 70 new and 150 few), then each slice topped up to 1,000 where it has them: every
    new user, 1,000 few ones, the random 1,000 kept whole."""
    users = np.array([f"u{n:05d}" for n in range(10_000)], dtype=object)
    new = np.arange(10_000) < 700
    few = (np.arange(10_000) >= 700) & (np.arange(10_000) < 2_200)
    got, base = sample_users(users, {"new": new, "few": few}, 1_000, 1_000,
                             np.random.default_rng(0))
    at = np.searchsorted(users, got)
    assert list(got) == sorted(got) and base.sum() == 1_000
    assert new[at].sum() == 700 and few[at].sum() == 1_000
    assert len(got) == 1_000 + (700 - new[at][base].sum()) + (1_000 - few[at][base].sum())
    assert 40 < new[at][base].sum() < 100  # the random part is not stratified
    again, _ = sample_users(users, {"new": new, "few": few}, 1_000, 1_000,
                            np.random.default_rng(0))
    assert list(again) == list(got)


def test_an_evaluation_that_was_skipped_says_so() -> None:
    with pytest.raises(ValueError, match="published without an evaluation .no interactions"):
        EvalReport.from_dict({"skipped": "no interactions on test days [12, 13]"})
    with pytest.raises(ValueError, match="lacks \\['oracle', 'ranking'"):
        EvalReport.from_dict({"retrieval": {}, "test_days": []})
