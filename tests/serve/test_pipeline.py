"""The in-process serving path on a real tiny version: ranked answers that follow the
context, the cold-start answer for unknown users (context-conditioned popularity among the
candidates), new items retrievable from content alone, LLM interests as a retrieval source,
the seen-items filter, events that move the next answer, the diversity re-ranking,
degradation, and the state swapped in one assignment."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.faiss_index import search
from serve.config import ServeConfig, StoresConfig
from serve.context import request_context
from serve.event_log import EventLogConfig
from serve.online import OnlineConfig
from serve.pipeline import Pipeline, Request, bare_stores, open_stores
from serve.state import ServingState, build_state, with_items
from serve.stores import StoreUnavailable
from train.artifacts import load_bundle
from train.blend import SIGNALS
from train.features import cross_features
from train.scoring import click_probability, user_vectors

pytestmark = pytest.mark.ray
NOON = dt.datetime(2026, 1, 14, 12, 0)  # a Wednesday


@pytest.fixture(scope="module")
def state(tiny_artifacts: Path) -> ServingState:
    return build_state(load_bundle(tiny_artifacts))


def stores_cfg(tmp_path: Path) -> StoresConfig:
    return StoresConfig(online=OnlineConfig(backend="memory"),
                        events=EventLogConfig(path=tmp_path / "events.jsonl"))


def ask(p: Pipeline, user: str | None, k: int = 10, **kw: Any) -> dict[str, Any]:
    kw = {"device": "web", "timestamp": NOON} | kw
    return asyncio.run(p.recommend(Request(user_id=user, k=k, **kw)))


def ids(answer: dict[str, Any]) -> list[str]:
    return [i.item_id for i in answer.items]


def known_user(state: ServingState, n: int = 0) -> str:
    return [u for u in state.users.rows if u in state.bundle.features.users][n]


def test_the_same_request_gets_the_same_answer_from_two_loads(state: ServingState,
                                                            tiny_artifacts: Path) -> None:
    other = build_state(load_bundle(tiny_artifacts))
    a, b = Pipeline(state, bare_stores(state)), Pipeline(other, bare_stores(other))
    user = known_user(state)
    assert ask(a, user, 20, device="ios") == ask(b, user, 20, device="ios")


def test_ranking_is_sorted_context_matters_and_scores_blend_the_dlrms(state: ServingState
                                                                      ) -> None:
    p = Pipeline(state, bare_stores(state))
    user = known_user(state)
    web = ask(p, user, 50, timestamp=dt.datetime(2026, 1, 12, 9))
    ios = ask(p, user, 50, device="ios", timestamp=dt.datetime(2026, 1, 18, 21))
    scores = [i.score for i in web.items]
    assert scores == sorted(scores, reverse=True) and len(scores) == 50
    assert web.known_user is True and web.degraded == () and web.model_version
    assert scores != [i.score for i in ios.items]
    # The DLRM signal of the first item is exactly what scoring gives for that row, the way
    # evaluation computes it (features built by the training path, not serving's), and its
    # score is the version's blend of that row's signals.
    b = state.bundle
    row = [state.item_pos[web.items[0].item_id]]
    u = b.features.user_features(np.array([user]), b.user_table)
    rows = u | {k: v[row] for k, v in b.item_rows.items()}
    rows |= cross_features(rows, rows, b.user_table)
    rows |= b.features.context_features(np.array(["web"], dtype=object), [9], [0])
    p_click = float(click_probability(b.dlrm, rows)[0])
    ranked = asyncio.run(p.ranked(Request(user_id=user, device="web", k=50,
                                          timestamp=dt.datetime(2026, 1, 12, 9))))
    at = int(np.flatnonzero(ranked.cands.rows == row[0])[0])
    assert ranked.signals[at, SIGNALS.index("dlrm")] == pytest.approx(
        np.log(p_click / (1 - p_click)), rel=1e-4)
    assert ranked.scores[at] == pytest.approx(scores[0], rel=1e-5)
    z = state.blend.score(ranked.signals, ranked.user.segment)
    assert ranked.scores[at] == pytest.approx(1 / (1 + np.exp(-z[at])), rel=1e-5)


def test_a_user_without_history_gets_popularity_in_their_context(state: ServingState) -> None:
    p = Pipeline(state, bare_stores(state))
    a, b = ask(p, "never-seen-1"), ask(p, "never-seen-2")
    anonymous = ask(p, None)
    assert a.known_user is False and len(a.items) == 10
    assert ids(a) == ids(b) == ids(anonymous)
    # Popularity candidates are ranked with the rest, and they follow the context.
    sources = {s for i in a.items for s in i.source.split("+")}
    assert "popular" in sources, a.items
    pop = bare_stores(state).popularity
    web = pop.top(state.devices["web"], 12, None, 100)
    ios = pop.top(state.devices["ios"], 21, None, 100)
    assert list(web) != list(ios)


def test_an_unknown_device_is_answered_as_unknown_with_a_warning(state: ServingState) -> None:
    p = Pipeline(state, bare_stores(state))
    got = ask(p, known_user(state), device="smart-fridge")
    assert got.device is None and len(got.items) == 10
    assert "smart-fridge" in got.warnings[0] and "unknown" in got.warnings[0]
    ctx = request_context("smart-fridge", NOON, state.devices)
    assert ctx.device_index == 0


def test_request_context_is_the_requests_time_or_the_server_clock(state: ServingState) -> None:
    given = request_context("ios", dt.datetime(2026, 1, 19, 21, 30), state.devices)  # Monday
    assert (given.device, given.hour, given.weekday) == ("ios", 21, 0)
    aware = request_context("ios", dt.datetime(2026, 1, 19, 23, 30, tzinfo=dt.timezone(
        dt.timedelta(hours=2))), state.devices)
    assert (aware.hour, aware.weekday) == (21, 0)  # converted to UTC
    before = dt.datetime.now(dt.UTC)
    ctx = request_context(None, None, state.devices)
    after = dt.datetime.now(dt.UTC)
    assert ctx.device is None
    assert (ctx.hour, ctx.weekday) in {(t.hour, t.weekday()) for t in (before, after)}


def test_a_click_hides_the_item_and_shifts_the_next_answer(state: ServingState,
                                                            tmp_path: Path) -> None:
    """A known user clicks an item of a category they never looked at: the item leaves their
    answer and the next answer moves toward that category."""
    p = Pipeline(state, open_stores(state, stores_cfg(tmp_path)))
    user = known_user(state, 3)
    before = ask(p, user, 20)
    first = before.items[0].item_id
    assert p.event(user, first, "click", "web", NOON).degraded == ()
    after = ask(p, user, 20)
    assert first not in ids(after)
    # A category far from the user's: the least represented in their history. Clicks there
    # move the user's shares in the online store, and the DLRM then scores the category's
    # other (unclicked) items higher for this user.
    from serve import ranking
    from serve.candidates import Candidates
    from serve.user_features import user_features

    hist = state.users.cols["history"][state.users.row(user)]
    cats = np.unique(state.item_category)
    far = int(cats[np.argmin(hist[cats])])
    far_rows = np.flatnonzero(state.item_category == far)
    far_items = state.item_ids[far_rows]
    online = p.serving.stores.online
    ctx = request_context("web", NOON, state.devices)

    def far_scores() -> np.ndarray:
        u = user_features(state, online, user, [])
        x = ranking.rows(state, u, ctx, Candidates.of(far_rows[5:], 1))
        return ranking.score(state, [x])[0]

    before_scores = far_scores()
    for item in far_items[:5]:
        p.event(user, str(item), "click", "web", NOON)
    got = online.user(user)
    assert got is not None and got.history[far] > hist[far] + 0.5
    assert got.top_category == far
    assert far_scores().mean() > before_scores.mean()
    assert not set(map(str, far_items[:5])) & set(ids(ask(p, user, 20)))
    # Every acknowledged event is in the durable log.
    log = p.serving.stores.events.log  # type: ignore[union-attr]
    assert [e.item_id for _, e in log.read(None, 100)] == [first, *map(str, far_items[:5])]


def test_a_new_users_first_click_reaches_item_item_on_the_next_request(
        state: ServingState, tmp_path: Path) -> None:
    """A user the version never saw clicks one item: the next answer comes from the user's
    segment of the blend with item-item candidates of that item, and a dead recent-items
    store degrades that answer instead of failing it."""
    assert state.item_item is not None and state.blend is not None
    p = Pipeline(state, open_stores(state, stores_cfg(tmp_path)))
    stranger = ask(p, "brand-new-user", 30)
    assert not any("item_item" in i.source for i in stranger.items)
    ranked = asyncio.run(p.ranked(Request(user_id="brand-new-user", device="web",
                                          timestamp=NOON, k=30)))
    assert ranked.user.segment == "new" and ranked.user.n_known == 0
    clicked = stranger.items[0].item_id
    p.event("brand-new-user", clicked, "click", "web", NOON)
    ranked = asyncio.run(p.ranked(Request(user_id="brand-new-user", device="web",
                                          timestamp=NOON, k=30)))
    assert ranked.user.n_known == 1 and ranked.user.segment == "few"
    row = state.item_pos[clicked]
    assert ranked.user.items.tolist() == [row]
    # the item-item signal is the clicked item's row of the weights, for every candidate
    ii = ranked.signals[:, SIGNALS.index("item_item")]
    expected = np.asarray(state.item_item.weights[row], np.float32).ravel()[ranked.cands.rows]
    np.testing.assert_allclose(ii, expected, rtol=1e-5)
    after = ask(p, "brand-new-user", 30)
    assert any("item_item" in i.source for i in after.items)
    assert clicked not in ids(after)  # the seen filter hides it

    class DeadRecent:
        def add(self, user_id: str, item_id: str) -> None:
            raise StoreUnavailable("down")

        def items(self, user_id: str) -> list[str]:
            raise StoreUnavailable("down")

    dead = Pipeline(state, replace(p.serving.stores, recent=DeadRecent()))
    got = ask(dead, "brand-new-user", 10)
    assert "recent_items" in got.degraded and len(got.items) == 10


def test_an_unknown_item_event_is_refused_and_logs_nothing(state: ServingState,
                                                           tmp_path: Path) -> None:
    p = Pipeline(state, open_stores(state, stores_cfg(tmp_path)))
    with pytest.raises(ValueError, match="no-such-item"):
        p.event("someone", "no-such-item", "click", None, None)
    assert p.serving.stores.events.log.read(None, 10) == []  # type: ignore[union-attr]


def test_a_dead_seen_filter_degrades_the_answer_not_the_request(state: ServingState) -> None:
    class Dead:
        name = "dead"

        def add(self, user_id: str, item_ids: Any) -> None:
            raise StoreUnavailable("down")

        def seen(self, user_id: str, item_ids: np.ndarray) -> np.ndarray:
            raise StoreUnavailable("down")

    p = Pipeline(state, replace(bare_stores(state), seen=Dead()))
    user = known_user(state)
    got = ask(p, user)
    assert got.degraded == ("seen_filter",) and len(got.items) == 10
    plain = ask(Pipeline(state, bare_stores(state)), user)
    assert ids(got) == ids(plain)
    assert p.degraded["seen_filter"] == 1


def test_diversity_covers_the_users_categories_and_zero_is_top_k(state: ServingState) -> None:
    p = Pipeline(state, bare_stores(state), ServeConfig(diversity=0.0))
    user = known_user(state, 1)
    top = ask(p, user)
    assert ids(ask(p, user, diversity=0.0)) == ids(top)
    covered = ask(p, user, diversity=1.0)
    assert ids(ask(p, user, diversity=1.0)) == ids(covered)  # a re-ranking: no draw
    s = [i.score for i in covered.items]
    assert s == sorted(s, reverse=True) and len(set(ids(covered))) == 10
    shares = state.users.cols["history"][state.users.row(user)].astype(float)

    def gap(a: Any) -> float:  # L1 between the list's category counts and 10 x the shares
        cats = [state.item_category[state.item_pos[i]] for i in ids(a)]
        return float(np.abs(np.bincount(cats, minlength=len(shares)) - 10 * shares).sum())

    assert gap(covered) < gap(top)
    # a request without `diversity` gets the configured default
    by_default = Pipeline(state, bare_stores(state), ServeConfig(diversity=1.0))
    assert ids(ask(by_default, user)) == ids(covered)


def test_a_new_item_is_retrievable_from_its_content_alone(state: ServingState) -> None:
    """Copies of users' best-retrieved items under new ids (no interactions, so each id is
    OOV) must be retrieved for those users near the originals, without retraining. Random
    placement would rank a copy ~150th of 300; the bound leaves room for the id embedding
    the copy lacks."""
    b = state.bundle
    users = [known_user(state, n) for n in range(10)]
    ucols = b.features.user_features(np.array(users), b.user_table)
    _, before = search(state.index, user_vectors(b.two_tower, ucols), 300)
    new = b.items.iloc[before[:, 0]].assign(item_id=[f"brand-new-{n}" for n in range(10)])
    grown = with_items(state, new)
    n_before = state.index.ntotal
    assert state.index.ntotal == n_before and len(state.item_ids) == n_before  # unchanged
    rows = np.arange(n_before, n_before + 10)
    assert grown.index.ntotal == n_before + 10
    assert (grown.items["item"][rows] == 0).all()  # new ids are OOV: content carries them
    _, after = search(grown.index, user_vectors(b.two_tower, ucols), 300)
    ranks = [int(np.flatnonzero(after[u] == rows[u])[0]) for u in range(10)]
    assert np.median(ranks) < 30, f"ranks of the copies: {ranks}"
    # Content places each among its kind: nearer to its category than to the rest.
    vectors = grown.index.reconstruct_n(0, grown.index.ntotal)  # I+10, D
    category = grown.item_category
    margins = []
    for r in rows:
        cos = vectors[:n_before] @ vectors[r]
        same = category[:n_before] == category[r]
        margins.append(cos[same].mean() - cos[~same].mean())
    assert np.mean(margins) > 0.05, f"same-category margins: {np.round(margins, 2)}"
    # The swapped-in state answers from the extended item cache.
    p = Pipeline(state, bare_stores(state))
    p.swap(grown, bare_stores(grown))
    ranked = ids(ask(p, users[0], 100))
    assert len(set(ranked)) == 100 and set(ranked) <= set(grown.item_ids)
    with pytest.raises(ValueError, match="already in the catalog"):
        with_items(grown, new.iloc[:1])


def test_a_cold_users_interests_are_a_retrieval_source(state: ServingState,
                                                       tmp_path: Path) -> None:
    """A brand-new user whose LLM interests point at jewelry gets jewelry from the interest
    source in half the slots; a brand-new user without interests gets the plain answer."""
    import pandas as pd

    from interests.artifact import load_interests, write_interests
    from train.encoders import EncoderConfig, item_texts, load_encoder

    enc = load_encoder(EncoderConfig())
    items = state.bundle.items
    want = enc.encode(["jewelry: necklace, bracelet, earrings"])[0]
    result = pd.DataFrame({"user_id": ["cold-jeweller", "cold-empty"], "status":
                           ["expanded", "no_history"], "n_history": [1, 0], "n_unknown": [0, 0],
                           "llm_text": ["", ""], "llm_error": ["", ""], "json_valid": [True, False],
                           "topics": [["jewelry"], []], "kept": [["jewelry"], []],
                           "terms": [["jewelry"], []], "drops": ["{}", "{}"],
                           "llm_seconds": [1.0, 0.0], "llm_batch": [1, 0],
                           "vector": [want.tolist(), None]})
    write_interests(tmp_path / "interests", result, items.item_id.tolist(),
                    enc.encode(item_texts(items)), {"encoder": {"kind": "minilm"}})
    interests = load_interests(tmp_path / "interests", items.item_id.to_numpy())
    assert interests is not None and set(interests.vectors) == {"cold-jeweller"}
    # The 10 nearest items to "jewelry" as candidates: tiny's catalog has ~11 jewelry items.
    with_interests = build_state(state.bundle, interests=interests)
    rec = Pipeline(with_interests, bare_stores(with_interests), ServeConfig(interest_k=10))
    plain = Pipeline(state, bare_stores(state), ServeConfig(interest_k=10))

    got = ask(rec, "cold-jeweller").items
    from_interests = [i for i in got if "interests" in i.source]
    assert len(from_interests) >= 5
    category = items.set_index("item_id")["category"]
    jewelry = sum(category[i.item_id] == "jewelry" for i in from_interests)
    assert jewelry >= 0.8 * len(from_interests)
    plain_jewelry = sum(category[i.item_id] == "jewelry" for i in
                        ask(plain, "cold-jeweller").items)
    assert jewelry > plain_jewelry
    assert [i.score for i in got] == sorted((i.score for i in got), reverse=True)
    # Without an interest vector: exactly what serving without interests answers.
    assert ask(rec, "cold-empty") == ask(plain, "cold-empty")
    assert all("interests" not in i.source for i in ask(plain, "cold-jeweller").items)


def test_a_batch_of_requests_scores_like_one_at_a_time(state: ServingState) -> None:
    from serve import ranking
    from serve.candidates import Candidates
    from serve.context import request_context as ctx_of
    from serve.user_features import user_features

    xs = []
    for n in range(3):
        user = user_features(state, None, known_user(state, n), [])
        cands = Candidates.of(np.arange(20 + n), 1)
        xs.append(ranking.rows(state, user, ctx_of("web", NOON, state.devices), cands))
    together = ranking.score(state, xs)
    for x, got in zip(xs, together, strict=True):
        np.testing.assert_allclose(got, ranking.score(state, [x])[0], rtol=1e-5)
