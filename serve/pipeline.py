"""The online path of one request, as numbered stage calls on one immutable serving state.

    1 context        serve/context.py        fill in time and device
    2 user features  serve/user_features.py  online store, else the version's arrays, else OOV;
                                             the user's items (version history + recent clicks)
    3 retrieval      serve/retrieval.py      query tower + FAISS, item-item, interests,
                                             popularity in context and demographic cell
    4 seen filter    serve/seen.py           drop what the user saw in the last days (and
                                             their own items, when the version says so)
    5 item features  serve/ranking.py        gathered from the in-process array cache
    6 ranking        serve/ranking.py        DLRM click probability (batched in Serve), then
                                             every signal blended into one score (train/blend.py)
    7 sampling       serve/sampling.py       top-k, or a re-ranking that covers the user's
                                             categories in proportion to their shares
    8 response       here                    an `Answer`: ids, scores, sources, version,
                                             degraded stages

The state and the stores opened for it travel together as one `Serving` value; `swap`
replaces it in one assignment and every request reads it once, so a request never mixes
versions.
A store that cannot be reached degrades its stage (named in `degraded`, logged, counted)
and never fails the request. The same object serves the Ray Serve ingress, a plain uvicorn
app and the tests.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np

from serve import ranking
from serve.candidates import INTERESTS, Candidates
from serve.config import ServeConfig, StoresConfig
from serve.context import Context, request_context
from serve.event_log import Event, EventKind, open_log
from serve.events import EventReceipt, EventSink
from serve.metrics import Metrics, NoMetrics
from serve.online import OnlineFeatures, open_online
from serve.popularity import Popularity, PopularityConfig, open_popularity
from serve.recent import NoRecent, RecentItems, open_recent
from serve.retrieval import fill, retrieve
from serve.sampling import choose
from serve.seen import SeenConfig, SeenFilter, open_seen, unseen
from serve.state import ServingState
from serve.stores import StoreUnavailable
from serve.user_features import User, user_features

log = logging.getLogger(__name__)

STAGES = ("context", "user_features", "retrieval", "seen_filter", "item_features", "ranking",
          "sampling", "response")
Rank = Callable[[ServingState, dict[str, np.ndarray]], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class Request:
    user_id: str | None = None
    device: str | None = None
    timestamp: dt.datetime | None = None
    k: int = 10
    diversity: float | None = None  # None: ServeConfig.diversity


@dataclass(frozen=True)
class Stores:
    online: OnlineFeatures | None
    seen: SeenFilter
    popularity: Popularity
    events: EventSink | None  # None: a read-only pipeline (evaluation), events refused
    recent: RecentItems = field(default_factory=NoRecent)


@dataclass(frozen=True)
class Ranked:
    """One request after ranking: its candidates, their signals and blended scores."""

    ctx: Context
    user: User
    cands: Candidates
    signals: np.ndarray  # (N, F) in train/blend.py SIGNALS order
    logits: np.ndarray  # (N,) the blend's scores
    scores: np.ndarray  # (N,) the same through a sigmoid, in (0, 1): what the answer shows
    found: dict[str, int]  # candidates each source found, before the seen filter
    dropped: int  # candidates the seen filter dropped


@dataclass(frozen=True)
class Serving:
    """A version's state and the stores opened for it: what one request reads, once."""

    state: ServingState
    stores: Stores


@dataclass(frozen=True)
class AnsweredItem:
    item_id: str
    score: float  # the blend of the item's signals, through a sigmoid: in (0, 1)
    source: str  # the retrieval sources that found it, '+'-joined (serve/candidates.py)
    name: str  # its name in the catalog (its id if none)
    category: str


@dataclass(frozen=True)
class Answer:
    """One request's recommendations (the HTTP answer is a view of it, serve/app.py)."""

    user_id: str | None
    known_user: bool  # in the version's vocabulary
    device: str | None  # as answered: None or an unknown device is out-of-vocabulary
    model_version: str
    items: tuple[AnsweredItem, ...]
    degraded: tuple[str, ...]  # stages answered without their store
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    """The last version this pipeline was asked to serve and could not load, and why: it
    kept serving the one it had."""

    version: str
    reason: str


@dataclass(frozen=True)
class Health:
    """What `GET /healthz` says of one replica."""

    status: str
    model_version: str
    items: int  # in the served catalog
    requests: int  # answered since start
    example_users: tuple[str, ...]  # a few known users, to try the page with
    stores: dict[str, str]  # store -> backend in use
    degraded: dict[str, int]  # stage or effect -> answers or events that went without it
    refused: Refusal | None


def open_stores(state: ServingState, cfg: StoresConfig, keep: Stores | None = None) -> Stores:
    """The stores for serving `state`. With `keep` (the stores of the version being
    replaced), what does not depend on the version carries over: the seen filters, the
    recent items and the event log; the online store and popularity are the new
    version's."""
    online = open_online(cfg.online, state.bundle)
    seen = keep.seen if keep is not None else open_seen(cfg.seen)
    popularity = open_popularity(cfg.popularity, state.popularity, state.item_category,
                                 state.version)
    recent = keep.recent if keep is not None else open_recent(cfg.recent)
    old_log = keep.events.log if keep is not None and keep.events is not None else None
    events = EventSink(log=old_log or open_log(cfg.events), seen=seen, online=online,
                       popularity=popularity, item_pos=state.item_pos,
                       item_category=state.item_category, activity=cfg.activity,
                       n_categories=state.n_categories, recent=recent)
    return Stores(online=online, seen=seen, popularity=popularity, events=events,
                  recent=recent)


def bare_stores(state: ServingState) -> Stores:
    """No online store, no seen filter, the version's popularity, no events: the serving path
    exactly as the version was published (offline evaluation)."""
    return Stores(online=None, seen=open_seen(SeenConfig(backend="off")),
                  popularity=open_popularity(PopularityConfig(), state.popularity,
                                             state.item_category, state.version),
                  events=None)


async def rank_now(state: ServingState, x: dict[str, np.ndarray]) -> np.ndarray:
    return ranking.score(state, [x])[0]


class Pipeline:
    def __init__(self, state: ServingState, stores: Stores, cfg: ServeConfig | None = None,
                 metrics: Metrics | None = None) -> None:
        self.serving = Serving(state, stores)
        self.cfg = cfg or ServeConfig()
        self.degraded: Counter[str] = Counter()  # requests answered with a stage degraded
        self.seconds: dict[str, float] = defaultdict(float)  # per stage, over all requests
        self.requests = 0
        self.refused: Refusal | None = None
        self.metrics: Metrics = metrics or NoMetrics()
        self.metrics.version(state.version, None)

    @property
    def version(self) -> str:
        """The version this pipeline serves now."""
        return self.serving.state.version

    def swap(self, state: ServingState, stores: Stores) -> None:
        previous = self.version
        self.serving = Serving(state, stores)
        self.refused = None
        self.metrics.version(state.version, previous)

    def refuse(self, version: str, reason: str) -> None:
        """`version` could not be loaded: the pipeline keeps what it serves, and says so."""
        self.refused = Refusal(version, reason)

    async def recommend(self, req: Request, rank: Rank = rank_now) -> Answer:
        serving = self.serving  # one version for the whole request
        state = serving.state
        degraded: list[str] = []
        clock = _Clock(self.seconds)
        r = await self._ranked(serving, req, rank, degraded, clock)  # 1-6
        chosen = self.chosen(state, r, req.k, req.diversity)  # 7
        clock.tick("sampling")
        answer = self._answer(state, req, r, chosen, degraded)  # 8
        clock.tick("response")
        self.requests += 1
        self.degraded.update(degraded)
        self.metrics.request(r.user.segment, clock.spent, r.found, r.dropped, degraded)
        return answer

    @staticmethod
    def _answer(state: ServingState, req: Request, r: Ranked, chosen: np.ndarray,
                degraded: list[str]) -> Answer:
        rows = r.cands.rows[chosen]
        items = tuple(AnsweredItem(item_id=state.item_ids[row], score=float(r.scores[t]),
                                   source=source, name=state.item_labels[row, 0],
                                   category=state.item_labels[row, 1])
                      for t, row, source in zip(chosen.tolist(), rows.tolist(),
                                                r.cands.keep(chosen).source_names(),
                                                strict=True))
        return Answer(user_id=req.user_id, known_user=r.user.known, device=r.ctx.device,
                      model_version=state.version, items=items, degraded=tuple(degraded),
                      warnings=(r.ctx.warning,) if r.ctx.warning else ())

    def chosen(self, state: ServingState, r: Ranked, k: int, diversity: float | None
               ) -> np.ndarray:
        """Stage 7 of `recommend`: positions in `r` of the k items answered, best first, at
        `diversity` (None: the configured default)."""
        d = self.cfg.diversity if diversity is None else diversity
        return choose(r.logits, k, d, state.item_category[r.cands.rows],
                      category_shares(r.user, state.item_category, state.n_categories),
                      reserved=r.cands.has(INTERESTS), reserve_share=self.cfg.interest_share)

    async def ranked(self, req: Request, rank: Rank = rank_now) -> Ranked:
        """Stages 1-6 of `recommend`: every candidate with its signals and blended score,
        before sampling (what the blend is fitted on, flows/sources.py)."""
        return await self._ranked(self.serving, req, rank, [], _Clock(defaultdict(float)))

    async def _ranked(self, serving: Serving, req: Request, rank: Rank, degraded: list[str],
                      clock: _Clock) -> Ranked:
        state, stores, cfg = serving.state, serving.stores, self.cfg
        ctx = request_context(req.device, req.timestamp, state.devices,  # 1
                              state.bundle.features.time_known)
        clock.tick("context")
        user = user_features(state, stores.online, req.user_id, degraded, stores.recent)  # 2
        clock.tick("user_features")
        cands, sig = retrieve(state, stores.popularity, user, ctx, cfg)  # 3
        found = cands.counts()
        clock.tick("retrieval")
        own = user.items if state.blend.exclude_history else np.zeros(0, np.int64)
        cands, excluded, dropped = unseen(stores.seen, req.user_id, state.item_ids,  # 4
                                          cands, own, degraded)
        cands = fill(cands, stores.popularity, ctx, req.k, exclude=excluded)
        clock.tick("seen_filter")
        x = ranking.rows(state, user, ctx, cands)  # 5
        clock.tick("item_features")
        p_click = await rank(state, x)  # 6
        signals = ranking.signals(state, stores.popularity, user, ctx, cands, sig, p_click)
        logits = ranking.blended(state, user, signals)
        clock.tick("ranking")
        return Ranked(ctx=ctx, user=user, cands=cands, signals=signals, logits=logits,
                      scores=1.0 / (1.0 + np.exp(-logits)), found=found, dropped=dropped)

    def event(self, user_id: str, item_id: str, event: str, device: str | None,
              timestamp: dt.datetime | None) -> EventReceipt:
        """Log one event durably, then apply it (seen filter, interests, popularity). Raises
        ValueError for an item the catalog does not have (nothing is written), and
        StoreUnavailable when the log cannot take it (nothing was acknowledged)."""
        serving = self.serving
        if serving.stores.events is None:
            raise StoreUnavailable("this pipeline takes no events (it was opened read-only)")
        ts, warnings = event_time(timestamp, dt.datetime.now(dt.UTC))
        ctx = request_context(device, ts, serving.state.devices,
                              serving.state.bundle.features.time_known)
        ev = Event(user_id=user_id, item_id=item_id, event=cast(EventKind, event), device=device,
                   ts=ts.replace(tzinfo=None))
        receipt = serving.stores.events.handle(ev, ctx.device_index, ctx.hour)
        self.degraded.update(receipt.degraded)
        self.metrics.event(event, list(receipt.degraded))
        return replace(receipt, warnings=(*warnings, *((ctx.warning,) if ctx.warning else ())))

    def health(self) -> Health:
        serving = self.serving
        s = serving.stores
        return Health(status="ok", model_version=serving.state.version,
                      items=len(serving.state.item_ids), requests=self.requests,
                      example_users=tuple(list(serving.state.users.rows)[:8]),
                      stores={"online": getattr(s.online, "name", "off"), "seen": s.seen.name,
                              "popularity": type(s.popularity).__name__,
                              "events": type(s.events.log).__name__ if s.events else "off"},
                      degraded=dict(self.degraded), refused=self.refused)

    def stage_ms(self) -> dict[str, float]:
        """Mean milliseconds per request in each stage since start."""
        n = max(self.requests, 1)
        return {s: 1000 * self.seconds.get(s, 0.0) / n for s in STAGES}


def category_shares(user: User, item_category: np.ndarray, n_categories: int) -> np.ndarray:
    """(C,) the user's category shares: the version's (moved by their events when the online
    store is on), else those of the items they clicked since (events without the online
    store), else zeros (a new user: stage 7 falls back to the candidates' scores)."""
    history = user.cols["history"][0].astype(np.float64)  # C
    if history.any() or not len(user.items):
        return history
    return np.bincount(item_category[user.items], minlength=n_categories)[:n_categories] / len(
        user.items)


def event_time(timestamp: dt.datetime | None, now: dt.datetime,
               slack: dt.timedelta = dt.timedelta(days=1)) -> tuple[dt.datetime, list[str]]:
    """An event's time in UTC: the client's when within `slack` of the server's clock, else
    the server's, with a warning (a clock far off would put the event in a training day it
    does not belong to)."""
    if timestamp is None:
        return now, []
    aware = timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=dt.UTC)
    try:
        if abs(aware - now) <= slack:
            return aware.astimezone(dt.UTC), []
    except OverflowError:
        pass
    return now, [f"timestamp {timestamp.isoformat()} is more than {slack} from the server's "
                 f"clock; the event was recorded at the server's time {now.isoformat()}"]


class _Clock:
    """Adds the time since the previous tick to `totals[stage]`, and keeps this request's
    own (`spent`)."""

    def __init__(self, totals: dict[str, float]) -> None:
        self.totals = totals
        self.spent: dict[str, float] = {}
        self.t = time.perf_counter()

    def tick(self, stage: str) -> None:
        now = time.perf_counter()
        self.totals[stage] += now - self.t
        self.spent[stage] = self.spent.get(stage, 0.0) + now - self.t
        self.t = now
