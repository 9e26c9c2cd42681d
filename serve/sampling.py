"""Stage 7: which k of the ranked candidates to answer.

`diversity` 0 is the top k by score, with `reserve_share` of the slots kept for the best
reserved candidates (a cold user's LLM-interest items, which the DLRM knows little about).
`diversity` d > 0 draws k without replacement with probability proportional to
score ** (1 / (d * temperature)) — Gumbel top-k, the Efraimidis-Spirakis sampler: add Gumbel
noise to the log-weights and take the top k. A small d stays near the top-k; d * temperature
= 1 samples in proportion to click probability. The serving path samples on the blend's own
scale (`log_weights`: its logit), not on the sigmoid it answers with, which saturates near 1
for every good candidate and would make any d > 0 close to uniform. The chosen items are
answered in score order.
"""

from __future__ import annotations

import math

import numpy as np


def top_k(scores: np.ndarray, k: int, reserved: np.ndarray | None = None,
          reserve_share: float = 0.0) -> np.ndarray:
    """Positions of the k best scores, best first; `reserve_share` of the slots go to the best
    `reserved` positions (when there are any), the rest by score."""
    order = np.argsort(-scores, kind="stable")
    n_reserved = 0 if reserved is None else min(math.ceil(k * reserve_share), int(reserved.sum()))
    if not n_reserved:
        return order[:k]
    assert reserved is not None
    chosen = order[reserved[order]][:n_reserved]
    rest = order[~np.isin(order, chosen)][:k - n_reserved]
    both = np.concatenate([chosen, rest])
    return both[np.argsort(-scores[both], kind="stable")]


def sample(scores: np.ndarray, k: int, diversity: float, temperature: float,
           rng: np.random.Generator, log_weights: np.ndarray | None = None) -> np.ndarray:
    """k positions drawn without replacement, weight score ** (1 / (diversity * temperature))
    (or exp(log_weights / (diversity * temperature)) when given), answered best score first."""
    tau = diversity * temperature
    logw = np.log(np.maximum(scores, 1e-12)) if log_weights is None else log_weights
    keys = logw / tau + rng.gumbel(size=len(scores))
    k = min(k, len(scores))
    chosen = np.argpartition(-keys, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return chosen[np.argsort(-scores[chosen], kind="stable")]


def choose(scores: np.ndarray, k: int, diversity: float, temperature: float,
           rng: np.random.Generator, reserved: np.ndarray | None = None,
           reserve_share: float = 0.0, log_weights: np.ndarray | None = None) -> np.ndarray:
    if diversity <= 0:
        return top_k(scores, k, reserved, reserve_share)
    return sample(scores, k, diversity, temperature, rng, log_weights)
