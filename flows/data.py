"""Reading the project's parquet layout: items, users, and daily interaction partitions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as pads

INTERACTION_COLUMNS = ("user_id", "item_id", "ts", "hour", "weekday", "device", "label")


@dataclass(frozen=True)
class Split:
    """Which days train, validate and test. Days are the `day=NN` partitions."""

    train: tuple[int, ...] = tuple(range(0, 9))
    val: tuple[int, ...] = (9, 10, 11)
    test: tuple[int, ...] = (12, 13)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}; run `warmstart generate --out "
                                f"{path.parent}` or point --data at a folder that has it")
    return path


def read_items(data: Path) -> pd.DataFrame:
    items = pd.read_parquet(_require(data / "items.parquet", "item table"))
    missing = {"item_id", "category", "style", "price"} - set(items.columns)
    if missing:
        raise ValueError(f"{data / 'items.parquet'} lacks columns {sorted(missing)}")
    items["item_id"] = items["item_id"].astype(str)
    if items["item_id"].duplicated().any():
        dup = items.loc[items["item_id"].duplicated(), "item_id"].iloc[0]
        raise ValueError(f"{data / 'items.parquet'}: item_id {dup!r} appears more than once")
    return items


def read_users(data: Path) -> pd.DataFrame:
    users = pd.read_parquet(_require(data / "users.parquet", "user table"))
    missing = {"user_id", "age", "gender"} - set(users.columns)
    if missing:
        raise ValueError(f"{data / 'users.parquet'} lacks columns {sorted(missing)}")
    users["user_id"] = users["user_id"].astype(str)
    return users.set_index("user_id")


DATASET_OUTPUTS = ("items.parquet", "users.parquet", "interactions", "truth")


def check_out(out: Path, overwrite: bool, extra: tuple[str, ...] = ()) -> None:
    """Refuse to write over an existing dataset (the layout's files and `extra`) unless asked
    to: nothing is lost silently."""
    present = [name for name in DATASET_OUTPUTS + extra if (out / name).exists()]
    if present and not overwrite:
        raise ValueError(f"{out} already holds {', '.join(present)}; pass --overwrite to "
                         "replace that dataset, or choose another --out")


def available_days(data: Path) -> list[int]:
    root = _require(data / "interactions", "interactions folder")
    return sorted(int(p.name.split("=")[1]) for p in root.glob("day=*"))


def data_files(data: Path, days: tuple[int, ...]) -> list[Path]:
    """The parquet files holding the given days."""
    if missing := sorted(set(days) - set(available_days(data))):
        raise ValueError(f"{data / 'interactions'} has no day(s) {missing}; "
                         f"available: {available_days(data)}")
    return [f for d in days
            for f in sorted((data / "interactions" / f"day={d:02d}").glob("*.parquet"))]


def read_interactions(data: Path, days: tuple[int, ...],
                      columns: tuple[str, ...] = INTERACTION_COLUMNS) -> pd.DataFrame:
    """Interactions of the given days as pandas (for fitting and evaluation)."""
    ds = pads.dataset([str(f) for f in data_files(data, days)], format="parquet")
    table = ds.to_table(columns=[c for c in columns if c != "day"])
    df = table.to_pandas()
    for col in ("user_id", "item_id", "device"):
        if col in df:
            df[col] = df[col].astype(str)
    return df


def ray_interactions(data: Path, days: tuple[int, ...]) -> Any:
    """Interactions of the given days as a streaming Ray Dataset."""
    import ray.data
    from ray.data.datasource.partitioning import PathPartitionFilter

    available = set(available_days(data))
    if missing := sorted(set(days) - available):
        raise ValueError(f"{data / 'interactions'} has no day(s) {missing}; "
                         f"available: {sorted(available)}")
    wanted = set(days)
    root = str((data / "interactions").resolve())
    flt = PathPartitionFilter.of(lambda p: int(p["day"]) in wanted, base_dir=root)
    ds = ray.data.read_parquet(root, partition_filter=flt)
    return ds.select_columns(list(INTERACTION_COLUMNS))
