"""Evaluation on the tiny version: every baseline is reported, the models beat chance, and
nothing beats the oracle by more than sampling noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.evaluate import format_report
from train.artifacts import load_bundle

pytestmark = pytest.mark.ray


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
    for model in ("two_tower", "popularity", "oracle"):
        assert set(r[model]) == {"overall", "cold", "masked", "web", "ios", "android"}
        assert set(r[model]["overall"]) == {"recall@10", f"recall@{k}", "ndcg@10", f"ndcg@{k}"}
        assert r[model]["overall"]["recall@10"] <= r[model]["overall"][recall]
    # Popularity ignores the user, so masking the user cannot change it; the DLRM uses them.
    assert g["dlrm"]["masked"]["auc"] != g["dlrm"]["overall"]["auc"]
    text = format_report(report)
    assert f"two_tower recall@{k} is" in text and "of the oracle's" in text
    # The serving path's top 10 at each diversity setting: sampling spreads the lists.
    div = report["diversity"]["settings"]
    assert list(div) == ["0.0", "0.1", "0.25", "0.5", "1.0"]
    assert div["1.0"]["category_diversity"] > div["0.0"]["category_diversity"]
    assert div["1.0"]["categories_per_list"] > div["0.0"]["categories_per_list"]
    assert all(0 <= m["ndcg@10"] <= 1 for m in div.values())
    assert len(text.splitlines()) == 2 + 4 * 4 + 1 + 2 * 4 + 2 + len(div)
