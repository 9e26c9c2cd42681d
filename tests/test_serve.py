"""The serving path: in-process recommender, artifact checks, and the Ray Serve HTTP app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flows.evaluate import format_report
from index.faiss_index import search
from serve.recommender import Context, Recommender, ServeConfig, request_context
from train.artifacts import ArtifactError, load_bundle
from train.features import cross_features
from train.scoring import click_probability, item_vectors, user_vectors

pytestmark = pytest.mark.ray


def test_reload_gives_identical_scores(tiny_artifacts: Path) -> None:
    a, b = load_bundle(tiny_artifacts), load_bundle(tiny_artifacts)
    np.testing.assert_array_equal(item_vectors(a.two_tower, a.item_rows),
                                  item_vectors(b.two_tower, b.item_rows))
    rec_a, rec_b = Recommender(a), Recommender(b)
    ctx = Context(device="ios", hour=20, weekday=5)
    user = str(a.users.index[0])
    assert rec_a.recommend(user, ctx, 20) == rec_b.recommend(user, ctx, 20)


def test_index_holds_the_item_tower_vectors(tiny_artifacts: Path) -> None:
    b = load_bundle(tiny_artifacts)
    vectors = item_vectors(b.two_tower, b.item_rows)
    np.testing.assert_allclose(b.index.reconstruct_n(0, b.index.ntotal), vectors, atol=1e-6)


def test_ranking_is_sorted_and_context_matters(tiny_artifacts: Path) -> None:
    rec = Recommender(load_bundle(tiny_artifacts))
    user = str(rec.bundle.users.index[0])
    web = rec.recommend(user, Context("web", 9, 0), 50)
    ios = rec.recommend(user, Context("ios", 21, 6), 50)
    scores = [i["score"] for i in web["items"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 50
    assert web["known_user"] is True
    assert [i["score"] for i in web["items"]] != [i["score"] for i in ios["items"]]


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


def test_request_context_defaults_to_server_time() -> None:
    ctx = request_context(None, None)
    assert ctx.device is None and 0 <= ctx.hour < 24 and 0 <= ctx.weekday < 7


def test_tampered_or_incomplete_artifacts_are_refused(tiny_artifacts: Path,
                                                      tmp_path: Path) -> None:
    copy = tmp_path / "v"
    shutil.copytree(tiny_artifacts, copy)
    with (copy / "dlrm.pt").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="dlrm.pt does not match its checksum"):
        load_bundle(copy)
    (copy / "dlrm.pt").unlink()
    with pytest.raises(ArtifactError, match="dlrm.pt is listed in the manifest but missing"):
        load_bundle(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="run `warmstart train`"):
        load_bundle(copy)
    shutil.copytree(tiny_artifacts, tmp_path / "w")
    m = json.loads((tmp_path / "w/manifest.json").read_text())
    del m["files"]["index.faiss"]
    (tmp_path / "w/manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="does not list \\['index.faiss'\\]"):
        load_bundle(tmp_path / "w")


def test_latest_pointer_resolves_to_the_version(tiny_artifacts: Path) -> None:
    assert load_bundle(tiny_artifacts.parent).path == tiny_artifacts


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
    assert len(text.splitlines()) == 2 + 4 * 4 + 1 + 2 * 4


# ----- HTTP through Ray Serve -----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_artifacts: Path):
    from ray import serve

    from serve.app import run_app
    from tests.conftest import free_port

    url = run_app(tiny_artifacts.parent, port=free_port())
    yield url
    serve.delete("warmstart")


def test_http_recommend_known_unknown_and_malformed(server: str, tiny_artifacts: Path) -> None:
    import httpx

    bundle = load_bundle(tiny_artifacts)
    user = str(next(u for u in bundle.users.index if u in bundle.features.users))
    with httpx.Client(base_url=server, timeout=30) as c:
        health = c.get("/healthz").json()
        assert health["model_version"] == bundle.version
        assert health["items"] == len(bundle.items)

        r = c.post("/recommend", json={"user_id": user, "device": "web", "k": 5,
                                        "timestamp": "2026-01-12T09:00:00"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["known_user"] and body["model_version"] == bundle.version
        assert len(body["items"]) == 5
        assert {i["item_id"] for i in body["items"]} <= set(bundle.items["item_id"])
        # Same request in process: the HTTP app serves exactly the recommender's answer.
        direct = Recommender(bundle).recommend(user, Context("web", 9, 0), 5)
        assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in direct["items"]]

        r = c.post("/recommend", json={"user_id": "brand-new", "timestamp": 1768208400})
        assert r.status_code == 200 and not r.json()["known_user"]
        assert len(r.json()["items"]) == 10 and r.json()["device"] is None

        for bad, field in (({"device": "web"}, "user_id"),
                           ({"user_id": "x", "k": 0}, "k"),
                           ({"user_id": "x", "k": 1000}, "k"),
                           ({"user_id": "x", "timestamp": "yesterday"}, "timestamp"),
                           ({"user_id": "x", "colour": "red"}, "colour")):
            r = c.post("/recommend", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert field in json.dumps(r.json()["detail"])
        r = c.post("/recommend", content=b"{not json", headers={"content-type":
                                                                "application/json"})
        assert r.status_code == 422
        assert c.get("/docs").status_code == 200
        assert "/recommend" in c.get("/openapi.json").json()["paths"]


def test_serving_refuses_a_damaged_version(tiny_artifacts: Path, tmp_path: Path) -> None:
    from serve.app import build_app

    copy = tmp_path / "v"
    shutil.copytree(tiny_artifacts, copy)
    (copy / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="index.faiss does not match its checksum"):
        build_app(copy)


def test_a_cold_users_interests_are_a_retrieval_source(tiny_artifacts: Path,
                                                       tmp_path: Path) -> None:
    """A brand-new user whose LLM interests point at jewelry gets jewelry from the interest
    source in half the slots; a brand-new user without interests gets the plain answer."""
    import pandas as pd

    from flows.expand import write_interests
    from serve.recommender import load_interests
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
