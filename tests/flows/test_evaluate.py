"""Evaluation on the tiny version: every baseline is reported, the models beat chance, and
nothing beats the oracle by more than sampling noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.evaluate import EvalReport, format_report
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
    # The serving path's top 10 at each diversity setting: sampling spreads the lists.
    div = report["diversity"]["settings"]
    assert list(div) == ["0.0", "0.1", "0.25", "0.5", "1.0"]
    assert div["1.0"]["category_diversity"] > div["0.0"]["category_diversity"]
    assert div["1.0"]["categories_per_list"] > div["0.0"]["categories_per_list"]
    assert all(0 <= m["ndcg@10"] <= 1 for m in div.values())
    # a title line, 4 metrics x (a header and 7 methods), 2 oracle shares, the ranking's
    # title and 2 x 4 lines, and the diversity table's 2 + one line per setting
    assert len(text.splitlines()) == 1 + 4 * 8 + 2 + 1 + 2 * 4 + 2 + len(div)


def test_an_evaluation_that_was_skipped_says_so() -> None:
    with pytest.raises(ValueError, match="published without an evaluation .no interactions"):
        EvalReport.from_dict({"skipped": "no interactions on test days [12, 13]"})
    with pytest.raises(ValueError, match="lacks \\['oracle', 'ranking'"):
        EvalReport.from_dict({"retrieval": {}, "test_days": []})
