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


def _same(a: object, b: object, where: str) -> None:
    """`a` and `b` hold the same values, compared field by field down to arrays."""
    import dataclasses

    import faiss
    import scipy.sparse as sp
    import torch

    from train.features import Features

    if isinstance(a, Features):  # fitted transforms: the same answers to the same inputs
        assert isinstance(b, Features), where
        _same(a.vocab, b.vocab, f"{where}.vocab")
        _same(a.cardinalities, b.cardinalities, f"{where}.cardinalities")
        ages = np.array([18.0, 40.0, np.nan])
        _same(a.age_columns(ages), b.age_columns(ages), f"{where}.age_columns")
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif sp.issparse(a):
        assert sp.issparse(b) and (a != b).nnz == 0, where
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, obj=where)
    elif isinstance(a, torch.nn.Module):
        _same(a.cfg, b.cfg, f"{where}.cfg")  # type: ignore[attr-defined]
        _same({k: v.numpy() for k, v in a.state_dict().items()},
              {k: v.numpy() for k, v in b.state_dict().items()}, f"{where}.state_dict")
    elif isinstance(a, faiss.Index):
        _same(a.reconstruct_n(0, a.ntotal), b.reconstruct_n(0, b.ntotal), where)
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_a_published_version_loads_back_as_the_same_value(tiny_artifacts: Path,
                                                          tmp_path: Path) -> None:
    from dataclasses import replace

    from train.artifacts import publish

    loaded = load_bundle(tiny_artifacts)
    assert loaded.sources is not None  # the round trip covers every closed-form source
    again = publish(tmp_path, replace(loaded, version="copy", path=tmp_path / "copy"),
                    promote=False)
    assert not (tmp_path / "LATEST").exists()
    back = load_bundle(tmp_path / "copy")
    assert back.manifest == again.manifest  # what publish returns is what was written
    for name in ("data_window", "metrics"):
        assert back.manifest[name] == loaded.manifest[name]
    assert back.manifest["files"] == {**loaded.manifest["files"]}  # byte for byte
    for field in ("version", "path", "manifest"):
        loaded, back = replace(loaded, **{field: None}), replace(back, **{field: None})
    _same(loaded, back, "bundle")
    with pytest.raises(ArtifactError, match="already exists"):
        publish(tmp_path, again)
