"""FAISS index results against exact search in NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.faiss_index import IndexConfig, build_index, load_index, save_index, search


def unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :k]


def test_flat_index_equals_exact_search() -> None:
    items, queries = unit(2465, 64, 0), unit(50, 64, 1)
    scores, ids = search(build_index(items, IndexConfig(kind="flat")), queries, 300)
    exact = queries @ items.T
    want = exact_top(items, queries, 300)
    # Same scores rank by rank; ids may differ only where two items tie within float error.
    np.testing.assert_allclose(scores, np.take_along_axis(exact, want, 1), atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(exact, ids, 1), scores, atol=1e-5)
    assert (ids == want).mean() > 0.99


def test_hnsw_recall_against_exact() -> None:
    items, queries = unit(5000, 32, 2), unit(100, 32, 3)
    _, ids = search(build_index(items, IndexConfig(kind="hnsw")), queries, 10)
    truth = exact_top(items, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
    assert recall > 0.95


def test_auto_picks_flat_for_small_catalogs() -> None:
    assert build_index(unit(100, 8, 0)).__class__.__name__ == "IndexFlatIP"
    big = build_index(unit(300, 8, 0), IndexConfig(flat_max=200))
    assert big.__class__.__name__ == "IndexHNSWFlat"


def test_save_load_gives_identical_results(tmp_path: Path) -> None:
    items, queries = unit(500, 16, 4), unit(10, 16, 5)
    index = build_index(items)
    save_index(index, tmp_path / "i.faiss")
    a = search(index, queries, 20)
    b = search(load_index(tmp_path / "i.faiss"), queries, 20)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        build_index(np.zeros((0, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="dimension 4 does not match the index's 8"):
        search(build_index(unit(10, 8, 0)), unit(1, 4, 0), 3)
    with pytest.raises(ValueError, match="kind must be"):
        IndexConfig(kind="ivf")
