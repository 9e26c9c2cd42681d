"""The ways to fill a top-k that the experiment compares, their scores, and the LLMs'
latency sweep.

    (a) popularity      the training days' click counts
    (b) item neighbours the known item's nearest items (the encoder alone)
    (c) LLM interests   the interest vector's nearest items
    (d) merged          (a), (b) and (c) blended: each user's candidates from all three, each
                        ranked by weights fitted on half the cohort (train/blend.py `choose`,
                        on NDCG and recall at k) and reported on the other half; where it does
                        not beat one source alone on held-out users, that source is kept
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from flows.experiment.config import NamedLLM
from flows.experiment.results import LatencyPoint, Quality
from index.faiss_index import search
from interests.backends import load_backend
from train.blend import SegmentBlend, choose, standardize
from train.metrics import ndcg_at_k, recall_at_k

MERGED_SIGNALS = ("item_neighbours", "llm_interests", "popularity")


def top_excluding(index: Any, queries: np.ndarray, exclude: np.ndarray, k: int,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(U, k) rows and scores of the nearest items, each user's known item left out."""
    scores, rows = search(index, queries, k + 1)
    keep = rows != exclude[:, None]  # U, k+1
    out_r = np.stack([r[m][:k] for r, m in zip(rows, keep, strict=True)])
    out_s = np.stack([s[m][:k] for s, m in zip(scores, keep, strict=True)])
    return out_r, out_s


def interleave(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """(U, k): a1, b1, a2, b2, ... without repeats."""
    out = np.full((len(a), k), -1, dtype=np.int64)
    for u in range(len(a)):
        seen: list[int] = []
        for x in (v for pair in zip(a[u], b[u], strict=True) for v in pair):
            if x not in seen:
                seen.append(int(x))
            if len(seen) == k:
                break
        out[u, :len(seen)] = seen
    return out


def quality(top: np.ndarray, relevant: list[np.ndarray], k: int,
            users: np.ndarray | None = None) -> Quality:
    """Mean recall and NDCG at k, over the `users` (bool, (U,)) given, else over all."""
    keep = np.ones(len(top), bool) if users is None else users
    return Quality(recall=float(np.nanmean(recall_at_k(top, relevant, k)[keep])),
                   ndcg=float(np.nanmean(ndcg_at_k(top, relevant, k)[keep])))


def merged(vectors: np.ndarray, known: np.ndarray, interests: np.ndarray,
           popularity: np.ndarray, relevant: list[np.ndarray], fit: np.ndarray, k: int,
           pool: int = 50, seed: int = 0) -> tuple[np.ndarray, SegmentBlend | None]:
    """(U, k) method (d), and the weights it used (None: too few fit users with a hit, and
    (b) and (c) interleaved instead). `vectors` (I, D) the catalog in the encoder's space,
    `known` (U,) each user's known item, `interests` (U, D) interest vectors, `popularity`
    (I,), `fit` (U,) bool: the users whose later clicks fit the weights."""
    pop_rank = np.argsort(-popularity, kind="stable")[:pool + 1]
    neighbour_sim = vectors @ vectors[known].T  # I, U
    interest_sim = vectors @ interests.T  # I, U
    cands, xs = [], []
    for u, item in enumerate(known):
        pools = [np.argpartition(-neighbour_sim[:, u], pool)[:pool + 1],
                 np.argpartition(-interest_sim[:, u], pool)[:pool + 1], pop_rank]
        c = np.setdiff1d(np.unique(np.concatenate(pools)), [item])
        cands.append(c)
        xs.append(np.stack([neighbour_sim[c, u], interest_sim[c, u],
                            np.log1p(popularity[c])], axis=1))
    groups = np.repeat(np.arange(len(known)), [len(c) for c in cands])
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate([np.isin(c, r) for c, r in zip(cands, relevant, strict=True)])
    rows = fit[groups]
    chosen = choose(x[rows], y[rows].astype(np.int8), np.searchsorted(
        np.flatnonzero(fit), groups[rows]), np.array([len(r) for r, f in
                                                      zip(relevant, fit, strict=True) if f]),
        (f"ndcg@{k}", f"recall@{k}"), min_users=10, seed=seed, names=MERGED_SIGNALS)
    if chosen is None:
        return interleave(top_of(neighbour_sim.T, known, k), top_of(interest_sim.T, known, k),
                          k), None
    score = standardize(x, groups) @ np.asarray(chosen.weights, np.float32)
    out = np.full((len(known), k), -1, np.int64)
    for u, c in enumerate(cands):
        s = score[groups == u]
        out[u, :min(k, len(c))] = c[np.argsort(-s, kind="stable")[:k]]
    return out, chosen


def top_of(scores: np.ndarray, known: np.ndarray, k: int) -> np.ndarray:
    """(U, k) each row's best columns, the user's known item left out."""
    s = scores.copy()
    s[np.arange(len(known)), known] = -np.inf
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def latency_sweep(m: NamedLLM, prompts: list[Any], batch_sizes: tuple[int, ...],
                  ) -> list[LatencyPoint]:
    """Per-profile latency (the batch's generate time) and throughput at each batch size,
    in this process; for a vLLM entry with `tensor_parallel_sizes`, also per tp degree."""
    points = []
    tps = m.tensor_parallel_sizes or (m.llm.tp,)
    for tp in tps:
        backend = load_backend(replace(m.llm, tensor_parallel_size=tp))
        backend.generate(prompts[:1])  # warm-up: first-call costs are not latency
        for bs in batch_sizes:
            per_profile, total = [], 0.0
            for s in range(0, len(prompts), bs):
                t0 = time.perf_counter()
                backend.generate(prompts[s:s + bs])
                dt_s = time.perf_counter() - t0
                total += dt_s
                per_profile += [dt_s] * len(prompts[s:s + bs])
            points.append(LatencyPoint(llm=m.name, tp=tp, batch_size=bs,
                                       p50_s=float(np.percentile(per_profile, 50)),
                                       p99_s=float(np.percentile(per_profile, 99)),
                                       profiles_per_s=len(prompts) / total))
        del backend
    return points
