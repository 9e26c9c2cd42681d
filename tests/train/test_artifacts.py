"""Published versions: what is reloaded scores as what was saved, the index holds the item
tower's vectors, and a tampered, incomplete or foreign folder is refused with what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from train.artifacts import ArtifactError, load_bundle
from train.features import cross_features
from train.scoring import click_probability, item_vectors

pytestmark = pytest.mark.ray


def test_a_reloaded_version_scores_identically(tiny_artifacts: Path) -> None:
    a, b = load_bundle(tiny_artifacts), load_bundle(tiny_artifacts)
    np.testing.assert_array_equal(item_vectors(a.two_tower, a.item_rows),
                                  item_vectors(b.two_tower, b.item_rows))
    user = a.features.user_features(np.array([str(a.users.index[0])]), a.user_table)
    rows = {k: np.repeat(v, 20, axis=0) for k, v in user.items()}
    rows |= {k: v[:20] for k, v in a.item_rows.items()}
    rows |= cross_features(rows, rows, a.user_table)
    rows |= a.features.context_features(np.array(["ios"] * 20, dtype=object), np.full(20, 20),
                                        np.full(20, 5))
    np.testing.assert_array_equal(click_probability(a.dlrm, rows),
                                  click_probability(b.dlrm, rows))


def test_index_holds_the_item_tower_vectors(tiny_artifacts: Path) -> None:
    b = load_bundle(tiny_artifacts)
    vectors = item_vectors(b.two_tower, b.item_rows)
    np.testing.assert_allclose(b.index.reconstruct_n(0, b.index.ntotal), vectors, atol=1e-6)


def test_tampered_or_incomplete_artifacts_are_refused(tiny_artifacts: Path,
                                                      tmp_path: Path) -> None:
    copy = tmp_path / "v"
    shutil.copytree(tiny_artifacts, copy)
    with (copy / "dlrm.pt").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="dlrm.pt does not match its checksum"):
        load_bundle(copy)
    (copy / "dlrm.pt").unlink()
    with pytest.raises(ArtifactError, match="dlrm.pt is listed in the manifest but missing"):
        load_bundle(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="run `warmstart train`"):
        load_bundle(copy)
    shutil.copytree(tiny_artifacts, tmp_path / "w")
    m = json.loads((tmp_path / "w/manifest.json").read_text())
    del m["files"]["index.faiss"]
    (tmp_path / "w/manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="does not list \\['index.faiss'\\]"):
        load_bundle(tmp_path / "w")


def test_latest_pointer_resolves_to_the_version(tiny_artifacts: Path) -> None:
    assert load_bundle(tiny_artifacts.parent).path == tiny_artifacts


def test_a_catalog_that_breaks_the_schema_is_refused(tiny_artifacts: Path,
                                                     tmp_path: Path) -> None:
    copy = tmp_path / "v"
    shutil.copytree(tiny_artifacts, copy)
    items = pd.read_parquet(copy / "items.parquet").assign(price="cheap")
    items.to_parquet(copy / "items.parquet", index=False)
    manifest = json.loads((copy / "manifest.json").read_text())
    from train.artifacts import sha256

    manifest["files"]["items.parquet"] = sha256(copy / "items.parquet")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"items.parquet: column 'price' is \w+, expected "
                                            "a number.*warmstart train"):
        load_bundle(copy)
