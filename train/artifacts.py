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
        popularity.npy       clicks per item, device and hour bucket (I, D, H), decayed by age:
                             the popularity serving conditions on the request context
        demographic.npy      clicks per item, age bucket and gender (I, A, G): the popularity
                             of a brand-new user's demographic cell
        item_item.npz        the item-item weights (EASE or co-occurrence, train/item_item.py)
        user_items.npz       each user's items (catalog rows), rows in users.parquet's order
        blend.json           the blend of every signal, per user segment (train/blend.py)
    artifacts/LATEST         name of the newest published version

A version is written to a temporary folder and renamed into place, so a reader never sees a
half-written one; `load_bundle` refuses a folder whose manifest or checksums don't match.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
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
from train.blend import Blend
from train.dlrm import DLRM
from train.features import Features, UserTable
from train.item_item import Histories, ItemItem
from train.registry import MODELS, build, kind_of, spec
from train.two_tower import TwoTower

MANIFEST = "manifest.json"
FORMAT = 2


class ArtifactError(RuntimeError):
    """An artifact folder that cannot be served as it is."""


@dataclass
class Bundle:
    """A loaded, verified version: what serving and evaluation work from."""

    version: str
    path: Path
    manifest: dict[str, Any]
    features: Features
    two_tower: TwoTower
    dlrm: DLRM
    index: faiss.Index
    items: pd.DataFrame
    users: pd.DataFrame  # indexed by user_id
    user_table: UserTable  # `users` and their history as arrays, for per-request lookups
    item_content: np.ndarray | None  # (I, E) raw content embeddings of the catalog rows
    popularity: np.ndarray | None = None  # (I, D, H) clicks per item, device, hour bucket
    demographic: np.ndarray | None = None  # (I, A, G) clicks per item, age bucket, gender
    item_item: ItemItem | None = None
    histories: Histories | None = None  # rows in user_table's order
    blend: Blend | None = None  # None: the DLRM alone ranks (a version from before blends)
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


def publish(root: Path, version: str, *, features: Features, two_tower: TwoTower, dlrm: DLRM,
            index: faiss.Index, items: pd.DataFrame, users: pd.DataFrame, user_table: UserTable,
            item_content: np.ndarray | None, data_window: dict[str, Any],
            metrics: dict[str, Any], popularity: np.ndarray | None = None,
            demographic: np.ndarray | None = None, item_item: ItemItem | None = None,
            histories: Histories | None = None, blend: Blend | None = None,
            promote: bool = True) -> Path:
    """Write a complete version folder atomically and, when `promote`, point LATEST at it
    (a version that is not promoted stays on disk for inspection, unserved)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        raise ArtifactError(f"version {version} already exists in {root}; pick a new name")
    tmp = root / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    features.save(tmp)
    save_model(two_tower, tmp, features.cardinalities)
    save_model(dlrm, tmp, features.cardinalities)
    save_index(index, tmp / "index.faiss")
    write_table(items, schema.ITEMS, tmp / "items.parquet")
    write_table(users.reset_index(), schema.USERS, tmp / "users.parquet")
    user_table.save(tmp / "user_history.npz")
    if item_content is not None:
        np.save(tmp / "item_content.npy", item_content)
    if popularity is not None:
        if popularity.shape[0] != len(items):
            raise ValueError(f"popularity has {popularity.shape[0]} rows for {len(items)} items")
        np.save(tmp / "popularity.npy", popularity.astype(np.float32))
    if demographic is not None:
        np.save(tmp / "demographic.npy", demographic.astype(np.float32))
    if item_item is not None:
        if item_item.n_items != len(items):
            raise ValueError(f"item-item weights for {item_item.n_items} items, catalog has "
                             f"{len(items)}")
        item_item.save(tmp / "item_item.npz")
    if histories is not None:
        if len(histories) != len(user_table.rows):
            raise ValueError(f"{len(histories)} histories for {len(user_table.rows)} users")
        histories.save(tmp / "user_items.npz")
    if blend is not None:
        blend.save(tmp / "blend.json")
    files = {p.name: sha256(p) for p in sorted(tmp.iterdir())}
    manifest = {
        "format": FORMAT,
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_window": data_window,
        "metrics": metrics,
        "files": files,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=float))
    tmp.rename(final)
    if promote:
        (root / ".LATEST.tmp").write_text(version)
        os.replace(root / ".LATEST.tmp", root / "LATEST")
    return final


def resolve(path: Path) -> Path:
    """An artifact root (follow LATEST) or a version folder -> the version folder."""
    if (path / MANIFEST).exists():
        return path
    if (path / "LATEST").exists():
        return path / (path / "LATEST").read_text().strip()
    raise ArtifactError(
        f"{path} holds no trained version (no {MANIFEST} and no LATEST); "
        f"run `warmstart train` first or pass a version folder")


def verify(folder: Path) -> dict[str, Any]:
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
    popularity = folder / "popularity.npy"
    demographic, item_item = folder / "demographic.npy", folder / "item_item.npz"
    histories, blend = folder / "user_items.npz", folder / "blend.json"
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
        popularity=np.load(popularity) if popularity.exists() else None,
        demographic=np.load(demographic) if demographic.exists() else None,
        item_item=ItemItem.load(item_item) if item_item.exists() else None,
        histories=Histories.load(histories) if histories.exists() else None,
        blend=Blend.load(blend) if blend.exists() else None,
    )
