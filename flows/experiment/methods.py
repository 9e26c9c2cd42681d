"""The ways to fill a top-k that the experiment compares, their scores, and the LLMs'
latency sweep."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from flows.experiment.config import NamedLLM
from index.faiss_index import search
from interests.backends import load_backend
from train.metrics import ndcg_at_k, recall_at_k


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


def quality(top: np.ndarray, relevant: list[np.ndarray], k: int) -> dict[str, float]:
    return {"recall": float(np.nanmean(recall_at_k(top, relevant, k))),
            "ndcg": float(np.nanmean(ndcg_at_k(top, relevant, k)))}


def latency_sweep(m: NamedLLM, prompts: list[Any], batch_sizes: tuple[int, ...],
                  ) -> list[dict[str, Any]]:
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
            points.append({"llm": m.name, "tp": tp, "batch_size": bs,
                           "p50_s": float(np.percentile(per_profile, 50)),
                           "p99_s": float(np.percentile(per_profile, 99)),
                           "profiles_per_s": len(prompts) / total})
        del backend
    return points
