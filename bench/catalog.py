"""A 1,000,000-item synthetic catalog grown from a published version, for serving at scale.

Real catalogs of that size are not on this machine, so the version's own rows are replicated
under new item ids (OOV to the model, as any unseen item is) with their content embeddings
plus a little Gaussian noise: the item tower then places each replica near, not on, its
original, and retrieval faces a million distinct vectors with the version's own structure.
The HNSW index is cached under the system temp folder (building it is the slow part), keyed
by version, size, noise, seed and M, so a rerun only loads it.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from index.faiss_index import IndexConfig, build_index, load_index, save_index, search
from train.artifacts import Bundle
from train.scoring import item_vectors

CACHE = Path(tempfile.gettempdir()) / "warmstart-bench-serve"


@dataclass(frozen=True)
class CatalogConfig:
    n_items: int = 1_000_000
    # Noise on the replicas' content embeddings, in units of each dimension's spread over the
    # catalog: small enough that a replica stays in its original's neighbourhood.
    noise: float = 1.0
    seed: int = 0
    hnsw_m: int = 32
    ef_search: tuple[int, ...] = (64, 128, 256, 512)  # recall/speed points to measure
    target_recall: float = 0.95  # the smallest efSearch reaching it serves
    chunk: int = 65_536  # rows per item-tower call


def replicate(bundle: Bundle, cfg: CatalogConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """(items, content) of `cfg.n_items` rows: the catalog first, then replicas
    `syn0000000`, ... of its rows in turn; the replicas have no clicks yet."""
    if bundle.item_content is None:
        raise ValueError(f"version {bundle.version} has no item_content.npy; the synthetic "
                         "catalog varies the content embeddings, train with content features")
    n_orig = len(bundle.items)
    if cfg.n_items <= n_orig:
        raise ValueError(f"n_items {cfg.n_items} must exceed the catalog's {n_orig} items")
    n_new = cfg.n_items - n_orig
    src = np.arange(n_new) % n_orig  # (R,) original row of each replica
    new = bundle.items.iloc[src].reset_index(drop=True)
    new["item_id"] = [f"syn{n:07d}" for n in range(n_new)]
    orig = bundle.item_content.astype(np.float32)  # (I0, E)
    scale = (cfg.noise * orig.std(axis=0)).astype(np.float32)  # (E,)
    rng = np.random.default_rng(cfg.seed)
    content = np.empty((cfg.n_items, orig.shape[1]), np.float32)  # (I, E)
    content[:n_orig] = orig
    for s in range(0, n_new, cfg.chunk):
        rows = src[s:s + cfg.chunk]
        noise = rng.standard_normal((len(rows), orig.shape[1]), dtype=np.float32)
        content[n_orig + s:n_orig + s + len(rows)] = orig[rows] + noise * scale
    return pd.concat([bundle.items, new], ignore_index=True), content


@dataclass(frozen=True)
class Million:
    bundle: Bundle  # the version with the synthetic catalog and its HNSW index
    exact: faiss.Index  # IndexFlatIP over the same vectors
    build_s: float  # HNSW build time (when it was built, if loaded from the cache)
    cached: bool
    seconds: float  # wall time of this call


def million_bundle(bundle: Bundle, cfg: CatalogConfig | None = None) -> Million:
    """The version's bundle with the synthetic catalog: items, content, popularity, item
    vectors, an HNSW index (cached) and the exact index beside it."""
    cfg = cfg or CatalogConfig()
    t0 = time.perf_counter()
    items, content = replicate(bundle, cfg)
    n_new = len(items) - len(bundle.items)
    big = replace(bundle, items=items, item_content=content,
                  sources=None if bundle.sources is None else bundle.sources.grown(n_new))
    key = f"{bundle.version}-{cfg.n_items}-{cfg.noise}-{cfg.seed}"
    folder = CACHE / key
    folder.mkdir(parents=True, exist_ok=True)
    vectors_path = folder / "vectors.npy"
    if vectors_path.exists():
        vectors = np.load(vectors_path)
    else:
        rows = big.item_rows
        vectors = np.concatenate([
            item_vectors(big.two_tower, {k: v[s:s + cfg.chunk] for k, v in rows.items()})
            for s in range(0, cfg.n_items, cfg.chunk)])  # (I, D)
        np.save(vectors_path, vectors)
    built = IndexConfig(kind="hnsw", hnsw_m=cfg.hnsw_m)
    name = f"hnsw-m{built.hnsw_m}-efc{built.hnsw_ef_construction}"
    hnsw_path, meta_path = folder / f"{name}.faiss", folder / f"{name}.json"
    cached = hnsw_path.exists() and meta_path.exists()
    if cached:
        hnsw = load_index(hnsw_path)
        build_s = float(json.loads(meta_path.read_text())["build_s"])
    else:
        tb = time.perf_counter()
        hnsw = build_index(vectors, built)
        build_s = time.perf_counter() - tb
        save_index(hnsw, hnsw_path)
        meta_path.write_text(json.dumps({"build_s": build_s}))
    exact = build_index(vectors, IndexConfig(kind="flat"))
    big.index = hnsw  # item_rows stay those of `big`: the same catalog
    return Million(bundle=big, exact=exact, build_s=build_s, cached=cached,
                   seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class RecallPoint:
    ef_search: int
    recall: float  # mean share of the exact top-k that HNSW found
    ms_per_query: float


def recall_at(hnsw: faiss.Index, exact: faiss.Index, queries: np.ndarray, k: int,
              ef_search: tuple[int, ...]) -> list[RecallPoint]:
    """Recall@k of `hnsw` against `exact` for (Q, D) `queries`, at each efSearch (one query
    at a time, as serving searches); leaves the last efSearch set."""
    _, truth = search(exact, queries, k)  # (Q, k)
    points = []
    for ef in ef_search:
        hnsw.hnsw.efSearch = ef
        found, t0 = [], time.perf_counter()
        for q in queries:
            found.append(search(hnsw, q[None], k)[1][0])
        ms = (time.perf_counter() - t0) * 1000 / len(queries)
        hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
        points.append(RecallPoint(ef, float(np.mean(hits)) / k, ms))
    return points
