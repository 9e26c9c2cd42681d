"""The in-process serving path: ranked answers that follow the context, the cold-start answer
for unknown users, new items retrievable from content alone, LLM interests as a retrieval
source, and the request context filled from the server clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from index.faiss_index import search
from serve.config import ServeConfig
from serve.recommender import Context, Recommender, request_context
from train.artifacts import load_bundle
from train.features import cross_features
from train.scoring import click_probability, user_vectors


@pytest.mark.ray
def test_the_same_request_gets_the_same_answer_from_two_loads(tiny_artifacts: Path) -> None:
    a, b = Recommender(load_bundle(tiny_artifacts)), Recommender(load_bundle(tiny_artifacts))
    ctx = Context(device="ios", hour=20, weekday=5)
    user = str(a.bundle.users.index[0])
    assert a.recommend(user, ctx, 20) == b.recommend(user, ctx, 20)


@pytest.mark.ray
def test_ranking_is_sorted_and_context_matters(tiny_artifacts: Path) -> None:
    rec = Recommender(load_bundle(tiny_artifacts))
    user = str(rec.bundle.users.index[0])
    web = rec.recommend(user, Context("web", 9, 0), 50)
    ios = rec.recommend(user, Context("ios", 21, 6), 50)
    scores = [i["score"] for i in web["items"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 50
    assert web["known_user"] is True
    assert [i["score"] for i in web["items"]] != [i["score"] for i in ios["items"]]


@pytest.mark.ray
def test_unknown_user_gets_the_oov_answer(tiny_artifacts: Path) -> None:
    rec = Recommender(load_bundle(tiny_artifacts))
    a = rec.recommend("never-seen-1", Context("web", 12, 2), 10)
    b = rec.recommend("never-seen-2", Context("web", 12, 2), 10)
    assert a["known_user"] is False and len(a["items"]) == 10
    assert [i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]]
    # Scores are the DLRM's on all-OOV user features.
    bundle = rec.bundle
    row = [int(np.flatnonzero(bundle.items["item_id"] == a["items"][0]["item_id"])[0])]
    user = bundle.features.user_features(np.array(["never-seen-1"]), bundle.user_table)
    rows = user | {k: v[row] for k, v in bundle.item_rows.items()}
    rows |= cross_features(rows, rows, bundle.user_table)  # zeros: no history
    rows |= bundle.features.context_features(np.array(["web"], dtype=object), [12], [2])
    assert click_probability(bundle.dlrm, rows)[0] == pytest.approx(a["items"][0]["score"])


@pytest.mark.ray
def test_a_new_item_is_retrievable_from_its_content_alone(tiny_artifacts: Path) -> None:
    """Copies of users' best-retrieved items under new ids (no interactions, so each id is
    OOV) must be retrieved for those users near the originals, without retraining. Random
    placement would rank a copy ~150th of 300; the bound leaves room for the id embedding
    the copy lacks."""
    rec = Recommender(load_bundle(tiny_artifacts))
    b = rec.bundle
    users = [str(u) for u in b.users.index if u in b.features.users][:10]
    ucols = b.features.user_features(np.array(users), b.user_table)
    _, before = search(b.index, user_vectors(b.two_tower, ucols), 300)
    originals = before[:, 0]
    new = b.items.iloc[originals].assign(item_id=[f"brand-new-{n}" for n in range(10)])
    n_before = b.index.ntotal
    rows = rec.add_items(new)
    assert rows.tolist() == list(range(n_before, n_before + 10))
    assert b.index.ntotal == n_before + 10
    assert (b.item_rows["item"][rows] == 0).all()  # new ids are OOV: content carries them
    _, after = search(b.index, user_vectors(b.two_tower, ucols), 300)
    ranks = [int(np.flatnonzero(after[u] == rows[u])[0]) for u in range(10)]
    assert np.median(ranks) < 30, f"ranks of the copies: {ranks}"
    # Content places each among its kind: nearer to its category than to the rest.
    vectors = b.index.reconstruct_n(0, b.index.ntotal)  # I+10, D
    category = b.items["category"].to_numpy()
    margins = []
    for r in rows:
        cos = vectors[:n_before] @ vectors[r]
        same = category[:n_before] == category[r]
        margins.append(cos[same].mean() - cos[~same].mean())
    assert np.mean(margins) > 0.05, f"same-category margins: {np.round(margins, 2)}"
    # Ranking scores new rows from the extended item cache.
    answer = rec.recommend(users[0], Context("web", 12, 2), 100)
    ranked = [i["item_id"] for i in answer["items"]]
    assert len(set(ranked)) == 100 and set(ranked) <= set(b.items["item_id"])
    with pytest.raises(ValueError, match="already in the catalog"):
        rec.add_items(new.iloc[:1])


def test_request_context_is_the_requests_time_or_the_server_clock() -> None:
    given = request_context("ios", dt.datetime(2026, 1, 19, 21, 30))  # a Monday
    assert (given.device, given.hour, given.weekday) == ("ios", 21, 0)
    before = dt.datetime.now(dt.UTC)
    ctx = request_context(None, None)
    after = dt.datetime.now(dt.UTC)
    assert ctx.device is None
    assert (ctx.hour, ctx.weekday) in {(t.hour, t.weekday()) for t in (before, after)}


@pytest.mark.ray
def test_a_cold_users_interests_are_a_retrieval_source(tiny_artifacts: Path,
                                                       tmp_path: Path) -> None:
    """A brand-new user whose LLM interests point at jewelry gets jewelry from the interest
    source in half the slots; a brand-new user without interests gets the plain answer."""
    import pandas as pd

    from interests.artifact import load_interests, write_interests
    from train.encoders import EncoderConfig, item_texts, load_encoder

    bundle = load_bundle(tiny_artifacts)
    enc = load_encoder(EncoderConfig())
    items = bundle.items
    want = enc.encode(["jewelry: necklace, bracelet, earrings"])[0]
    result = pd.DataFrame({"user_id": ["cold-jeweller", "cold-empty"], "status":
                           ["expanded", "no_history"], "n_history": [1, 0], "n_unknown": [0, 0],
                           "llm_text": ["", ""], "llm_error": ["", ""], "json_valid": [True, False],
                           "topics": [["jewelry"], []], "kept": [["jewelry"], []],
                           "terms": [["jewelry"], []], "drops": ["{}", "{}"],
                           "llm_seconds": [1.0, 0.0], "llm_batch": [1, 0],
                           "vector": [want.tolist(), None]})
    write_interests(tmp_path / "interests", result, items["item_id"].tolist(),
                    enc.encode(item_texts(items)), {"encoder": {"kind": "minilm"}})
    interests = load_interests(tmp_path / "interests", items["item_id"].to_numpy())
    assert interests is not None and set(interests.vectors) == {"cold-jeweller"}
    # The 10 nearest items to "jewelry" as candidates: tiny's catalog has ~11 jewelry items.
    rec = Recommender(bundle, ServeConfig(interest_k=10), interests=interests)
    plain = Recommender(bundle)
    ctx = Context("web", 12, 2)

    got = rec.recommend("cold-jeweller", ctx, 10)["items"]
    from_interests = [i for i in got if "interests" in i["source"]]
    assert len(from_interests) >= 5
    category = items.set_index("item_id")["category"]
    jewelry = sum(category[i["item_id"]] == "jewelry" for i in from_interests)
    assert jewelry >= 0.8 * len(from_interests)
    plain_jewelry = sum(category[i["item_id"]] == "jewelry" for i in
                        plain.recommend("cold-jeweller", ctx, 10)["items"])
    assert jewelry > plain_jewelry
    assert [i["score"] for i in got] == sorted((i["score"] for i in got), reverse=True)
    # Without an interest vector: exactly what serving without interests answers.
    assert rec.recommend("cold-empty", ctx, 10) == plain.recommend("cold-empty", ctx, 10)
    assert all(i["source"] == "two_tower" for i in plain.recommend("cold-jeweller", ctx, 10)
               ["items"])
