"""The blend: one score per candidate from every signal serving has for it, learned on the
validation days.

Each candidate of a request carries one value per signal (`SIGNALS`): the Two-Tower cosine,
the item-item score of the user's history, the log popularity overall (decayed by age), in
the request's context (device, hour) and in the user's demographic cell, the LLM interest
cosine, and the DLRM logit. Within one
request's list each signal is standardized (z-score over the list), so that a signal's scale
does not matter and a signal that is the same for every candidate (no history, no interest
vector) counts for nothing. A logistic regression over those z-scores, fitted on validation
users' candidates labelled by their validation clicks, gives the weights.

Users differ by how much serving knows of them, so there is one set of weights per segment
(`segment`): "new" (nothing known: no click, no impression, no id), "few" (1-3 clicks, or
only impressions), "known" (4 clicks or more). The weights start from a logistic
regression and are refined by coordinate ascent on the lists' own metrics (`OBJECTIVE`:
NDCG@10 and recall@100; `ascend`). Each segment keeps whichever of the blend and its single
signals ranked best on a held-out half of its validation users (`choose`): the blended
answer is never below its best single source there.

Shapes: N candidates of one list (or of many lists, with `groups`), F signals.

Example::

    b = Blend.single("dlrm")
    x = np.array([[0.1, 0, 0, 0, 0, 0, 2.0], [0.3, 0, 0, 0, 0, 0, -1.0]], np.float32)
    assert b.score(x, "new").argmax() == 0  # the DLRM alone decides
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SIGNALS = ("two_tower", "item_item", "popular", "context", "demographic", "interests", "dlrm")
SEGMENTS = ("new", "few", "known")
FEW = 3  # up to this many known interactions is "few"
# What the blend (and the tuning of the sources, flows/sources.py) maximizes: the mean of
# these list metrics. NDCG@10 judges the top of a page; recall@10 would not (a user with 50
# relevant items has a recall@10 of at most 0.2 whatever the order). Recall@100 judges what
# reaches ranking.
OBJECTIVE = ("ndcg@10", "recall@100")


def metric(spec: str) -> tuple[str, int]:
    """("ndcg", 10) from "ndcg@10"; only ndcg and recall are known."""
    name, _, k = spec.partition("@")
    if name not in ("ndcg", "recall") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown list metric {spec!r}; use ndcg@K or recall@K")
    return name, int(k)


def segment(n_clicks: int, anything_known: bool = True) -> str:
    """The segment of a user with `n_clicks` known clicks (training and events);
    `anything_known` False: not even an impression or an id is known of them."""
    if not anything_known and n_clicks <= 0:
        return "new"
    return "few" if n_clicks <= FEW else "known"


def standardize(x: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """(N, F) z-scores of each signal within each list (`groups`: (N,) list ids, sorted;
    None: one list). A signal constant over a list is 0 there."""
    if groups is None:
        mu, sd = x.mean(0, keepdims=True), x.std(0, keepdims=True)
        return np.where(sd > 1e-9, (x - mu) / np.maximum(sd, 1e-9), 0.0).astype(np.float32)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])  # list boundaries
    counts = np.diff(np.r_[starts, len(groups)])
    sums = np.add.reduceat(x, starts, axis=0)  # L, F
    mu = np.repeat(sums / counts[:, None], counts, axis=0)  # N, F
    var = np.repeat(np.add.reduceat((x - mu) ** 2, starts, axis=0) / counts[:, None],
                    counts, axis=0)
    sd = np.sqrt(var)
    return np.where(sd > 1e-9, (x - mu) / np.maximum(sd, 1e-9), 0.0).astype(np.float32)


@dataclass(frozen=True)
class SegmentBlend:
    weights: tuple[float, ...]  # one per signal, over standardized values
    chosen: str = "blend"  # "blend", or the single signal that ranked best
    validation: dict[str, float] = field(default_factory=dict)  # held-out OBJECTIVE per choice
    users: int = 0  # validation users it was fitted on


@dataclass(frozen=True)
class Blend:
    signals: tuple[str, ...] = SIGNALS
    segments: dict[str, SegmentBlend] = field(default_factory=dict)
    # Users of this data never return to an item (the share of validation clicks on items
    # already in the user's history is under 1%, as in MovieLens): leave history out.
    exclude_history: bool = False
    repeat_share: float = float("nan")

    @classmethod
    def single(cls, name: str, **kw: Any) -> Blend:
        """Every segment ranked by one signal."""
        w = tuple(float(s == name) for s in SIGNALS)
        return cls(segments={s: SegmentBlend(w, chosen=name) for s in SEGMENTS}, **kw)

    def weights(self, seg: str) -> np.ndarray:
        """(F,) the segment's weights. A segment the validation days had no users of
        borrows: "few" and "known" each other's, else the DLRM alone; "new" ranks by
        popularity alone (decayed, as tuned), the one signal a stranger's answer must never
        fall below, rather than by weights fitted on users with clicks."""
        chain = {"new": ("new",), "few": ("few", "known"), "known": ("known", "few")}[seg]
        for s in chain:
            if s in self.segments:
                return np.asarray(self.segments[s].weights, np.float32)
        default = "popular" if seg == "new" else "dlrm"
        return np.asarray([float(s == default) for s in self.signals], np.float32)

    def score(self, x: np.ndarray, seg: str) -> np.ndarray:
        """(N,) scores of one request's candidates from their (N, F) raw signals."""
        return standardize(x) @ self.weights(seg)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, default=float))

    @classmethod
    def load(cls, path: Path) -> Blend:
        d = json.loads(path.read_text())
        if tuple(d["signals"]) != SIGNALS:
            raise ValueError(f"{path} blends {d['signals']}, this warmstart computes {SIGNALS}; "
                             "retrain the version")
        return cls(signals=tuple(d["signals"]),
                   segments={k: SegmentBlend(tuple(v["weights"]), v["chosen"],
                                             v["validation"], v["users"])
                             for k, v in d["segments"].items()},
                   exclude_history=d["exclude_history"], repeat_share=d["repeat_share"])


class Lists:
    """Many requests' candidate lists padded into one (L, M) matrix, so that ranking every
    list by some weights and scoring the top k is a few array operations."""

    def __init__(self, z: np.ndarray, y: np.ndarray, groups: np.ndarray, relevant: np.ndarray
                 ) -> None:
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        sizes = np.diff(np.r_[starts, len(groups)])
        width = int(sizes.max())
        self.idx = np.full((len(starts), width), -1, np.int64)  # L, M row of each slot
        col = np.arange(len(groups)) - np.repeat(starts, sizes)
        self.idx[np.repeat(np.arange(len(starts)), sizes), col] = np.arange(len(groups))
        self.z = np.vstack([z, np.zeros((1, z.shape[1]), z.dtype)])  # N+1, F: the pad last
        self.y = np.r_[y, 0][self.idx]  # L, M
        self.pad = self.idx < 0
        self.relevant = np.maximum(relevant, 1)

    def score(self, w: np.ndarray, metrics: tuple[str, ...] = OBJECTIVE) -> float:
        """Mean over `metrics` ("ndcg@10", "recall@100") of their mean over the lists when
        every list is ranked by z @ w. Recall divides by the user's relevant items, NDCG's
        ideal is min(relevant, k) hits at the top (train/metrics.py)."""
        s = (self.z @ w)[self.idx]  # L, M
        s[self.pad] = -np.inf
        kmax = min(max(metric(m)[1] for m in metrics), s.shape[1])
        top = np.argpartition(-s, kmax - 1, axis=1)[:, :kmax]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), axis=1,
                                                 kind="stable"), 1)  # L, kmax best first
        hits = np.take_along_axis(self.y, top, 1).astype(np.float64)  # L, kmax
        out = []
        for name, k in map(metric, metrics):
            k = min(k, kmax)
            if name == "recall":
                out.append(float((hits[:, :k].sum(1) / self.relevant).mean()))
            else:
                disc = 1.0 / np.log2(np.arange(2, k + 2))  # k
                ideal = np.cumsum(disc)[np.minimum(self.relevant, k) - 1]  # L
                out.append(float(((hits[:, :k] * disc).sum(1) / ideal).mean()))
        return float(np.mean(out))


STEPS = (-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # weights tried per signal


def ascend(lists: Lists, start: np.ndarray, metrics: tuple[str, ...] = OBJECTIVE,
           rounds: int = 3) -> np.ndarray:
    """Coordinate ascent on the lists' metrics: each signal's weight in turn set to the value
    of `STEPS` that ranks best with the others fixed, `rounds` times over. The direct search
    targets the list metric itself (what a pointwise logistic loss does not), and with a
    handful of signals it needs only a few hundred rankings."""
    w = start.astype(np.float64).copy()
    best = lists.score(w, metrics)
    for _ in range(rounds):
        moved = False
        for f in range(len(w)):
            for v in STEPS:
                if v == w[f]:
                    continue
                trial = w.copy()
                trial[f] = v
                if not trial.any():
                    continue
                got = lists.score(trial, metrics)
                if got > best + 1e-9:
                    best, w, moved = got, trial, True
        if not moved:
            break
    return w.astype(np.float32)


def _logistic(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pointwise logistic regression weights, scaled so the largest is 1: a start for the
    ascent."""
    from sklearn.linear_model import LogisticRegression

    w = LogisticRegression(C=1.0, max_iter=1000).fit(z, y).coef_[0]
    return (w / max(np.abs(w).max(), 1e-9)).astype(np.float32)


def choose(x: np.ndarray, y: np.ndarray, groups: np.ndarray, relevant: np.ndarray,
           metrics: tuple[str, ...] = OBJECTIVE, min_users: int = 20, seed: int = 0,
           names: tuple[str, ...] = SIGNALS) -> SegmentBlend | None:
    """The weights of one segment from its validation lists: `x` (N, F) raw signals,
    `y` (N,) 1 where the candidate was clicked on a validation day, `groups` (N,) list ids
    (consecutive, sorted), `relevant` (L,) each list's user's validation clicks (the
    recall's denominator: clicks outside the candidates count too).

    The blend is fitted on half the users (a logistic regression, then coordinate ascent
    on the mean of `metrics`) and compared with every single signal on the other half, and
    the same with the halves swapped; the better on average is kept, a blend refitted on all
    users. None when fewer than `min_users` lists hold a clicked candidate. `names` name
    `x`'s columns (serving's `SIGNALS` by default)."""
    lists = np.unique(groups)
    with_positive = np.unique(groups[y > 0])
    if len(with_positive) < min_users:
        return None
    z = standardize(x, groups)
    half = np.random.default_rng(seed).random(len(lists)) < 0.5  # per list
    in_a = half[np.searchsorted(lists, groups)]
    folds = [(Lists(z[in_a], y[in_a], groups[in_a], relevant[half]), in_a),
             (Lists(z[~in_a], y[~in_a], groups[~in_a], relevant[~half]), ~in_a)]
    singles = {}
    for n, name in enumerate(names):
        if np.ptp(x[:, n]) > 0:  # a signal with something to say in this segment
            w = np.zeros(len(names), np.float32)
            w[n] = 1.0
            singles[name] = w
    # Two folds: fit on one half, score on the other, and the other way round; a choice
    # made on one held-out half of a few hundred users flips from run to run.
    held: dict[str, float] = {name: 0.0 for name in ["blend", *singles]}
    for (fit, rows), (other, _) in zip(folds, folds[::-1], strict=True):
        start = max([_logistic(z[rows], y[rows]), *singles.values()],
                    key=lambda w: fit.score(w, metrics))
        for name, w in ({"blend": ascend(fit, start, metrics)} | singles).items():
            held[name] += other.score(w, metrics) / 2
    best = max(held, key=lambda name: (held[name], name == "blend"))
    if best == "blend":
        every = Lists(z, y, groups, relevant)
        start = max([_logistic(z, y), *singles.values()], key=lambda w: every.score(w, metrics))
        weights = ascend(every, start, metrics)
    else:
        weights = singles[best]
    return SegmentBlend(tuple(float(v) for v in weights), best, held, int(len(lists)))
