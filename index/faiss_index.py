"""FAISS inner-product index over item vectors: build, search, persist.

Index positions are catalog rows, so search results index straight into the item table.
The index type follows catalog size: exact `IndexFlatIP` while a flat scan is cheap (a
2,465 x 64 top-300 search takes ~0.1 ms), HNSW beyond.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np


@dataclass(frozen=True)
class IndexConfig:
    kind: str = "auto"  # "flat" (exact), "hnsw", or "auto": flat up to `flat_max` vectors
    flat_max: int = 200_000
    hnsw_m: int = 32
    # Build-time search width: FAISS's default of 40 left recall@100 at 0.56 on a 1M-item
    # catalog (bench.serve); 200 builds ~5x slower and finds far better neighbours.
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "flat", "hnsw"):
            raise ValueError(f"index kind must be auto, flat or hnsw, got {self.kind!r}")


def build_index(vectors: np.ndarray, cfg: IndexConfig | None = None) -> faiss.Index:
    """Index (n, d) float vectors for maximum-inner-product search."""
    cfg = cfg or IndexConfig()
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"expected a non-empty (n, d) array of item vectors, got {vectors.shape}")
    n, d = vectors.shape
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    kind = cfg.kind if cfg.kind != "auto" else ("flat" if n <= cfg.flat_max else "hnsw")
    index: faiss.Index
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
    index.add(x)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, positions), each (nq, k); positions are -1 past the index size."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    nq, d = q.shape
    if d != index.d:
        raise ValueError(f"query dimension {d} does not match the index's {index.d}")
    return index.search(q, min(k, index.ntotal))


def save_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load_index(path: Path) -> faiss.Index:
    if not path.exists():
        raise FileNotFoundError(f"no FAISS index at {path}")
    return faiss.read_index(str(path))
