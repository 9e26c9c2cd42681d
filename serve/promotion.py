"""Promotion and rollback: which published version serves, switched while traffic flows.

    check(root, version)   load the version and verify it before anything changes: its
                           manifest checksums (load_bundle), one index vector per catalog
                           item, the feature schema it was fitted with; a PromotionError
                           says why it cannot serve
    prepare(...)           the online store materialized for it (Feast keeps one project
                           per version) before any replica switches
    record(root, version)  LATEST points at it, and the promotion is appended to
                           `promotions.jsonl`, the history rollback reads
    previous(root)         the version served before the current one

The switch itself is Serve's: the running app's config gets the new version in its
`user_config` (serve/deploy.py `set_version`), and every replica's reconfigure() loads it and
swaps it in with one assignment (serve/pipeline.py `Pipeline.swap`), so a request that
started on the old version finishes on it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from train.artifacts import MANIFEST, ArtifactError, Bundle, load_bundle

HISTORY = "promotions.jsonl"  # under the artifact root, beside LATEST


class PromotionError(ValueError):
    """A version that cannot be served: the reason, and the old version keeps serving."""


def check(root: Path, version: str) -> Bundle:
    """The verified bundle of `root/version`, or a PromotionError naming what is wrong."""
    folder = root / version
    if not (folder / MANIFEST).exists():
        known = sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}"))[-5:]
        raise PromotionError(f"{folder} is not a published version (no {MANIFEST}); the "
                             f"newest under {root}: {known}")
    try:
        bundle = load_bundle(folder)  # every file against its checksum, tables against schema
    except (ArtifactError, ValueError, OSError) as e:
        raise PromotionError(f"version {version} fails verification: {e}") from None
    if bundle.index.ntotal != len(bundle.items):
        raise PromotionError(f"version {version}: its index holds {bundle.index.ntotal} "
                             f"vectors for {len(bundle.items)} catalog items")
    ids = bundle.items["item_id"].astype(str)
    if ids.duplicated().any():
        raise PromotionError(f"version {version}: item ids repeat in its catalog "
                             f"(e.g. {ids[ids.duplicated()].iloc[0]!r})")
    missing = set(bundle.features.vocab["item"]) - set(ids)
    if missing:
        raise PromotionError(f"version {version}: {len(missing)} items of its vocabulary are "
                             f"not in its catalog (e.g. {sorted(missing)[:3]})")
    return bundle


def record(root: Path, version: str, previous: str | None) -> None:
    """LATEST -> `version`, atomically, and one line of history."""
    tmp = root / ".LATEST.tmp"
    tmp.write_text(version)
    os.replace(tmp, root / "LATEST")
    with (root / HISTORY).open("a") as f:
        f.write(json.dumps({"version": version, "previous": previous,
                            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
                + "\n")


def history(root: Path) -> list[dict[str, str | None]]:
    path = root / HISTORY
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def previous(root: Path, current: str) -> str:
    """The version that served before `current` (the last promotion away from it)."""
    for entry in reversed(history(root)):
        if entry["version"] == current and entry["previous"]:
            return str(entry["previous"])
    raise PromotionError(f"no version served before {current} under {root} "
                         f"({HISTORY} has no promotion to it); promote a version by name")
