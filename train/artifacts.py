"""The artifact folder: one trained version, everything serving needs, and its manifest.

    artifacts/<version>/
        manifest.json        version, created time, data window, metrics, sha256 of each file
        features.json        fitted vocabularies and normalizers
        two_tower.pt/.json   retrieval model weights and its config + cardinalities
        dlrm.pt/.json        ranking model weights and its config + cardinalities
        index.faiss          item-tower vectors, positions = rows of items.parquet
        items.parquet        the catalog as served (ids, attributes)
        users.parquet        user attributes for feature lookup (age, gender)
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
import torch

from index.faiss_index import load_index, save_index
from train.dlrm import DLRM, DLRMConfig
from train.features import Features, UserTable
from train.two_tower import TwoTower, TwoTowerConfig

MANIFEST = "manifest.json"
FORMAT = 1


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
    item_rows: dict[str, np.ndarray]  # features.item_table(items)
    user_table: UserTable = field(init=False)  # `users` as arrays, for per-request lookups

    def __post_init__(self) -> None:
        self.user_table = UserTable.from_frame(self.users)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_version() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-%f")


def publish(root: Path, version: str, *, features: Features, two_tower: TwoTower, dlrm: DLRM,
            index: faiss.Index, items: pd.DataFrame, users: pd.DataFrame,
            data_window: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write a complete version folder atomically and point LATEST at it."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        raise ArtifactError(f"version {version} already exists in {root}; pick a new name")
    tmp = root / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    features.save(tmp / "features.json")
    for name, model in (("two_tower", two_tower), ("dlrm", dlrm)):
        torch.save(model.state_dict(), tmp / f"{name}.pt")
        (tmp / f"{name}.json").write_text(json.dumps(
            {"config": asdict(model.cfg), "cards": features.cardinalities}))
    save_index(index, tmp / "index.faiss")
    items.to_parquet(tmp / "items.parquet", index=False)
    users.reset_index().to_parquet(tmp / "users.parquet", index=False)
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
    latest = root / "LATEST"
    (root / ".LATEST.tmp").write_text(version)
    os.replace(root / ".LATEST.tmp", latest)
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
    required = {"features.json", "two_tower.pt", "two_tower.json", "dlrm.pt", "dlrm.json",
                "index.faiss", "items.parquet", "users.parquet"}
    if missing := required - set(manifest.get("files", {})):
        raise ArtifactError(f"{mpath} does not list {sorted(missing)}; the version is incomplete")
    return manifest


def load_bundle(path: Path) -> Bundle:
    """Load and verify a version (or the LATEST under an artifact root)."""
    folder = resolve(path)
    manifest = verify(folder)
    features = Features.load(folder / "features.json")

    def model(name: str) -> Any:
        meta = json.loads((folder / f"{name}.json").read_text())
        if name == "two_tower":
            m: Any = TwoTower(TwoTowerConfig(**meta["config"]), meta["cards"])
        else:
            m = DLRM(DLRMConfig.from_dict(meta["config"]), meta["cards"])
        m.load_state_dict(torch.load(folder / f"{name}.pt", weights_only=True))
        return m.eval()

    items = pd.read_parquet(folder / "items.parquet")
    return Bundle(
        version=manifest["version"],
        path=folder,
        manifest=manifest,
        features=features,
        two_tower=model("two_tower"),
        dlrm=model("dlrm"),
        index=load_index(folder / "index.faiss"),
        items=items,
        users=pd.read_parquet(folder / "users.parquet").set_index("user_id"),
        item_rows=features.item_table(items),
    )
