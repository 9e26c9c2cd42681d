"""Ranking and retrieval metrics on NumPy arrays."""

from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores sharing their mean rank).

    Example: labels [0, 1, 0, 1], scores [0.1, 0.4, 0.5, 0.8]: of the 4 positive-negative
    pairs, 3 are ordered right ((0.4, 0.1), (0.8, 0.1), (0.8, 0.5)), so AUC = 0.75.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s))
    # Average ranks over runs of equal scores.
    bounds = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(s)]])
    run_rank = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks[order] = np.repeat(run_rank, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def recall_at_k(top: np.ndarray, relevant: list[np.ndarray], k: int) -> np.ndarray:
    """(U,) share of each user's relevant items found in the first k of `top` (U, >=k).

    Users with no relevant items get NaN; average with `np.nanmean`.
    """
    out = np.full(len(relevant), np.nan)
    for u, rel in enumerate(relevant):
        if len(rel):
            out[u] = np.isin(rel, top[u, :k]).sum() / len(rel)
    return out


def ndcg_at_k(top: np.ndarray, relevant: list[np.ndarray], k: int) -> np.ndarray:
    """(U,) NDCG@k with binary relevance; NaN for users with no relevant items.

    Example: relevant {7, 9}, top [9, 1, 7]: DCG = 1/log2(2) + 1/log2(4) = 1.5, the ideal
    DCG = 1/log2(2) + 1/log2(3) = 1.631, so NDCG@3 = 0.920.
    """
    discount = 1.0 / np.log2(np.arange(2, k + 2))  # k
    out = np.full(len(relevant), np.nan)
    for u, rel in enumerate(relevant):
        if len(rel):
            hits = np.isin(top[u, :k], rel)
            out[u] = (hits * discount[:len(hits)]).sum() / discount[:min(len(rel), k)].sum()
    return out


def precision_at_k(top: np.ndarray, relevant: list[np.ndarray], k: int) -> np.ndarray:
    """(U,) share of the first k of `top` that are relevant (hits / k, as Spark and Microsoft
    Recommenders define it: a list shorter than k still divides by k); NaN for users with
    no relevant items.

    Example: relevant {7, 9}, top [9, 1, 7, 4]: 2 hits in 4, precision@4 = 0.5.
    """
    out = np.full(len(relevant), np.nan)
    for u, rel in enumerate(relevant):
        if len(rel):
            out[u] = np.isin(top[u, :k], rel).sum() / k
    return out


def average_precision(top: np.ndarray, relevant: list[np.ndarray], k: int) -> np.ndarray:
    """(U,) the precision at each hit's rank within the first k, summed and divided by the
    number of relevant items (not by min(k, relevant)): Microsoft Recommenders' `map` (its
    benchmark table's MAP column), after Spark's RankingMetrics. NaN for users with no
    relevant items; average with `np.nanmean` for MAP.

    Example: relevant {7, 9, 5}, top [9, 1, 7]: hits at ranks 1 and 3, precisions 1/1 and
    2/3, so AP@3 = (1 + 2/3) / 3 = 0.556.
    """
    out = np.full(len(relevant), np.nan)
    for u, rel in enumerate(relevant):
        if len(rel):
            hits = np.isin(top[u, :k], rel)
            ranks = np.flatnonzero(hits) + 1  # 1-based ranks of the hits
            out[u] = (np.arange(1, len(ranks) + 1) / ranks).sum() / len(rel)
    return out
