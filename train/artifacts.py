"""The artifact folder: one trained version, everything serving needs, and its manifest.

    artifacts/<version>/
        manifest.json        version, created time, data window, metrics, sha256 of each file
        features.joblib      fitted feature transformers (scikit-learn), features.json summary
        two_tower.pt/.json   retrieval model weights and its config + cardinalities
        dlrm.pt/.json        ranking model weights and its config + cardinalities
        index.faiss          item-tower vectors, positions = rows of items.parquet
        items.parquet        the catalog as served (ids, attributes)
        users.parquet        user attributes for feature lookup (age, gender)
        user_history.npz     per-user training history (top category, category/style shares)
        item_content.npy     raw content embeddings of the catalog rows (when used)
        popularity.npy, demographic.npy, item_item.npz, user_items.npz, blend.json
                             the closed-form sources and the blend (train/sources.py)
    artifacts/LATEST         name of the newest published version

A version is one value, `Bundle`: `publish(root, bundle)` writes it and `load_bundle` reads
the same value back. It is written to a temporary folder and renamed into place, so a reader
never sees a half-written one; `load_bundle` refuses a folder whose manifest or checksums
don't match.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from index.faiss_index import load_index, save_index
from train import schema
from train.dlrm import DLRM
from train.features import Features, UserTable
from train.registry import MODELS, build, kind_of, spec
from train.sources import Sources
from train.two_tower import TwoTower

MANIFEST = "manifest.json"
FORMAT = 2


class ArtifactError(RuntimeError):
    """An artifact folder that cannot be served as it is."""


@dataclass
class Bundle:
    """One version: what serving and evaluation work from, and what `publish` writes.

    A loaded version's `manifest` is its manifest.json. One about to be published holds what
    its publisher says of it, `data_window` and `metrics`; `publish` adds the format, the
    creation time and every file's checksum."""

    version: str
    path: Path  # the version folder (where it is, or will be, published)
    manifest: dict[str, Any]
    features: Features
    two_tower: TwoTower
    dlrm: DLRM
    index: faiss.Index
    items: pd.DataFrame
    users: pd.DataFrame  # indexed by user_id
    user_table: UserTable  # `users` and their history as arrays, for per-request lookups
    item_content: np.ndarray | None  # (I, E) raw content embeddings of the catalog rows
    sources: Sources | None = None  # None: the DLRM alone ranks (a version from before them)
    item_rows: dict[str, np.ndarray] = field(init=False)  # features.item_table(items)

    def __post_init__(self) -> None:
        self.item_rows = self.features.item_table(self.items, self.item_content)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_version() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-%f")


def save_model(model: nn.Module, folder: Path, cards: dict[str, int]) -> None:
    """<file>.pt (weights) and <file>.json (kind, config and cardinalities: enough to
    rebuild) in `folder`, named by the model's registry entry."""
    s = spec(kind_of(model))
    config: Any = model.cfg  # every registered model keeps its config dataclass as .cfg
    torch.save(model.state_dict(), folder / f"{s.file}.pt")
    (folder / f"{s.file}.json").write_text(json.dumps({
        "kind": s.kind, "config": asdict(config), "cards": cards}))


def load_model(kind: str, folder: Path) -> Any:
    """The `kind` model saved by `save_model` in `folder`, in eval mode."""
    s = spec(kind)
    meta = json.loads((folder / f"{s.file}.json").read_text())
    if meta.get("kind", kind) != kind:  # versions before the registry have no "kind"
        raise ArtifactError(f"{folder / s.file}.json holds a {meta['kind']} model, not {kind}")
    m = build(kind, meta["config"], meta["cards"])
    m.load_state_dict(torch.load(folder / f"{s.file}.pt", weights_only=True))
    return m.eval()


def write_table(frame: pd.DataFrame, expected: pa.Schema, path: Path) -> None:
    """`frame` as parquet, its contract columns cast to `expected` (train/schema.py)."""
    pq.write_table(schema.conform(pa.Table.from_pandas(frame, preserve_index=False),
                                  expected), path)


def publish(root: Path, bundle: Bundle, promote: bool = True) -> Bundle:
    """Write `bundle` as `root/<bundle.version>/`, atomically, and when `promote` point LATEST
    at it (a version that is not promoted stays on disk for inspection, unserved). Returns
    the published version as `load_bundle` would read it."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / bundle.version
    if final.exists():
        raise ArtifactError(f"version {bundle.version} already exists in {root}; pick a new "
                            "name")
    if bundle.sources is not None:
        bundle.sources.check(len(bundle.items), len(bundle.user_table.rows))
    tmp = root / f".{bundle.version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    bundle.features.save(tmp)
    save_model(bundle.two_tower, tmp, bundle.features.cardinalities)
    save_model(bundle.dlrm, tmp, bundle.features.cardinalities)
    save_index(bundle.index, tmp / "index.faiss")
    write_table(bundle.items, schema.ITEMS, tmp / "items.parquet")
    write_table(bundle.users.reset_index(), schema.USERS, tmp / "users.parquet")
    bundle.user_table.save(tmp / "user_history.npz")
    if bundle.item_content is not None:
        np.save(tmp / "item_content.npy", bundle.item_content)
    if bundle.sources is not None:
        bundle.sources.save(tmp)
    manifest = {
        "format": FORMAT,
        "version": bundle.version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_window": bundle.manifest.get("data_window", {}),
        "metrics": bundle.manifest.get("metrics", {}),
        "files": {p.name: sha256(p) for p in sorted(tmp.iterdir())},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=float))
    tmp.rename(final)
    if promote:
        (root / ".LATEST.tmp").write_text(bundle.version)
        os.replace(root / ".LATEST.tmp", root / "LATEST")
    return replace(bundle, path=final, manifest=json.loads((final / MANIFEST).read_text()))


def resolve(path: Path) -> Path:
    """An artifact root (follow LATEST) or a version folder -> the version folder."""
    if (path / MANIFEST).exists():
        return path
    if (path / "LATEST").exists():
        return path / (path / "LATEST").read_text().strip()
    raise ArtifactError(
        f"{path} holds no trained version (no {MANIFEST} and no LATEST); "
        f"run `warmstart train` first or pass a version folder")


def verify(folder: Path) -> dict[str, Any]:  # the version's manifest.json
    """The manifest of `folder`, after checking that every file matches its checksum."""
    mpath = folder / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{folder} has no {MANIFEST}: not a published version; "
                            "run `warmstart train` to publish one") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{mpath} is not valid JSON ({e}); the version is damaged, "
                            "publish a new one with `warmstart train`") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mpath} has format {manifest.get('format')}, this warmstart "
                            f"reads format {FORMAT}; retrain with this version")
    for name, digest in manifest.get("files", {}).items():
        p = folder / name
        if not p.exists():
            raise ArtifactError(f"{folder}: {name} is listed in the manifest but missing")
        if sha256(p) != digest:
            raise ArtifactError(f"{folder}: {name} does not match its checksum in {MANIFEST}; "
                                "the file changed after publishing, publish a new version")
    required = {"features.json", "features.joblib", "user_history.npz", "index.faiss",
                "items.parquet", "users.parquet"}
    required |= {f"{s.file}{ext}" for s in MODELS.values() for ext in (".pt", ".json")}
    if missing := required - set(manifest.get("files", {})):
        raise ArtifactError(f"{mpath} does not list {sorted(missing)}; the version is incomplete")
    return manifest


def load_bundle(path: Path) -> Bundle:
    """Load and verify a version (or the LATEST under an artifact root)."""
    folder = resolve(path)
    manifest = verify(folder)
    try:
        features = Features.load(folder)
    except RuntimeError as e:
        raise ArtifactError(str(e)) from None

    for name, expected, table in (("items.parquet", schema.ITEMS, "items"),
                                  ("users.parquet", schema.USERS, "users")):
        try:
            schema.check(schema.read_schema(folder / name), expected, folder / name, table)
        except schema.SchemaError as e:
            raise ArtifactError(f"{e}; publish a new version with `warmstart train`") from None
    items = pd.read_parquet(folder / "items.parquet")
    users = pd.read_parquet(folder / "users.parquet").set_index("user_id")
    content = folder / "item_content.npy"
    try:
        sources = Sources.load(folder)
    except (FileNotFoundError, ValueError) as e:
        raise ArtifactError(str(e)) from None
    return Bundle(
        version=manifest["version"],
        path=folder,
        manifest=manifest,
        features=features,
        two_tower=load_model("two_tower", folder),
        dlrm=load_model("dlrm", folder),
        index=load_index(folder / "index.faiss"),
        items=items,
        users=users,
        user_table=UserTable.load(users, folder / "user_history.npz"),
        item_content=np.load(content) if content.exists() else None,
        sources=sources,
    )
