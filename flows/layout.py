"""The data folder every flow reads and writes, and where things go by default.

    <data>/items.parquet        the catalog           (columns: train/schema.py ITEMS)
    <data>/users.parquet        user attributes       (USERS)
    <data>/interactions/day=NN/ impressions with labels, one folder a day (INTERACTIONS)
    <data>/truth/               the generator's world (synthetic data only)
    <data>/reviews.parquet      review texts (loaded data that has them)
    <data>/load_report.json     what `warmstart load` read and skipped

Readers check each file against its schema and name the file and the column that does not
match. Days 0-8 train, 9-11 validate, 12-13 test (`Split`), over `N_DAYS` daily partitions.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from train import schema, storage
from train.inputs import ModelInputs, Rows, featurized_dataset, featurized_frame

# Default locations, relative to where a flow runs.
DATA = Path("data")
ARTIFACTS = Path("artifacts")
RUNS = Path("runs")
DEMO = Path("warmstart-demo")  # `warmstart demo`'s data and artifacts
EVENTS = Path("events.jsonl")  # the embedded event log `warmstart serve` appends to

N_DAYS = 14  # daily partitions a dataset is cut into
ITEMS = "items.parquet"
USERS = "users.parquet"
INTERACTIONS = "interactions"
TRUTH = "truth"
REVIEWS = "reviews.parquet"
LOAD_REPORT = "load_report.json"
DATASET_OUTPUTS = (ITEMS, USERS, INTERACTIONS, TRUTH)
INTERACTION_COLUMNS = tuple(schema.INTERACTIONS.names)


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


def _checked(path: Path, expected: Any, table: str) -> Path:
    schema.check(schema.read_schema(path), expected, path, table)
    return path


def read_items(data: Path) -> pd.DataFrame:
    path = _checked(_require(data / ITEMS, "item table"), schema.ITEMS, "items")
    items = pd.read_parquet(path)
    items["item_id"] = items["item_id"].astype(str)
    if items["item_id"].duplicated().any():
        dup = items.loc[items["item_id"].duplicated(), "item_id"].iloc[0]
        raise ValueError(f"{path}: item_id {dup!r} appears more than once")
    return items


def read_users(data: Path) -> pd.DataFrame:
    """The user table indexed by user_id."""
    path = _checked(_require(data / USERS, "user table"), schema.USERS, "users")
    users = pd.read_parquet(path)
    users["user_id"] = users["user_id"].astype(str)
    return users.set_index("user_id")


def read_reviews(data: Path) -> pd.DataFrame | None:
    """The review texts a loaded dataset came with (user_id, item_id, ts in seconds, summary,
    text), for text features of users and items; None when its source had none."""
    path = data / REVIEWS
    if not path.exists():
        return None
    reviews = pd.read_parquet(path)
    for col in ("user_id", "item_id"):
        reviews[col] = reviews[col].astype(str)
    return reviews


def check_out(out: Path, overwrite: bool, extra: tuple[str, ...] = ()) -> None:
    """Refuse to write over an existing dataset (the layout's files and `extra`) unless asked
    to: nothing is lost silently."""
    present = [name for name in DATASET_OUTPUTS + extra if (out / name).exists()]
    if present and not overwrite:
        raise ValueError(f"{out} already holds {', '.join(present)}; pass --overwrite to "
                         "replace that dataset, or choose another --out")


def available_days(data: Path) -> list[int]:
    root = _require(data / INTERACTIONS, "interactions folder")
    return sorted(int(p.name.split("=")[1]) for p in root.glob("day=*"))


def data_files(data: Path, days: tuple[int, ...]) -> list[Path]:
    """The parquet files holding the given days, each checked against the schema."""
    if missing := sorted(set(days) - set(available_days(data))):
        raise ValueError(f"{data / INTERACTIONS} has no day(s) {missing}; "
                         f"available: {available_days(data)}")
    files = [f for d in days
             for f in sorted((data / INTERACTIONS / f"day={d:02d}").glob("*.parquet"))]
    for f in files:
        _checked(f, schema.INTERACTIONS, "interactions")
    return files


def count_rows(data: Path, days: tuple[int, ...]) -> int:
    """Rows in the given days, from parquet metadata (no data is read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in data_files(data, days))


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


def day_zero(data: Path) -> dt.date:
    """The calendar date of day 0: day NN holds the events of day-zero + NN days (the
    generator's days are real dates; a loaded dataset's are equal-count slices of its time
    span, so later events land on the date they happened, past its last slice)."""
    files = data_files(data, (0,))
    ts = pads.dataset([str(f) for f in files], format="parquet").to_table(columns=["ts"])
    first = pc.min(ts.column("ts").cast(pa.timestamp("ms"))).as_py()
    if first is None:
        raise ValueError(f"{data / INTERACTIONS}/day=00 holds no timestamps; day 0's date "
                         "is read from its earliest ts")
    return first.date()


def event_days(data: Path) -> list[int]:
    """Days that hold served events (`events-*.parquet`, written by the event drain)."""
    return sorted({int(p.parent.name.split("=")[1])
                   for p in (data / INTERACTIONS).glob("day=*/events-*.parquet")})


def day_folder(data: Path, day: int) -> Path:
    return data / INTERACTIONS / f"day={day:02d}"


def write_day_file(data: Path, day: int, name: str, table: pa.Table) -> Path:
    """Write `table` (conformed to the interactions schema) as `day=NN/<name>` atomically:
    readers see the whole file or none of it, and writing the same name again replaces it."""
    folder = day_folder(data, day)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = folder / f".{name}.tmp"  # a dot file: not matched by the readers' *.parquet glob
    pq.write_table(schema.conform(table, schema.INTERACTIONS), tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def ray_interactions(data: Path, days: tuple[int, ...]) -> Any:
    """Interactions of the given days as a streaming Ray Dataset, read by Ray's workers from
    the URI when `data` mirrors one (train/storage.py), else from the local folder."""
    import ray.data
    from ray.data.datasource.partitioning import PathPartitionFilter

    data_files(data, days)  # the days exist and their files follow the schema
    wanted = set(days)
    root, fs = storage.ray_path(data / INTERACTIONS)
    flt = PathPartitionFilter.of(lambda p: int(p["day"]) in wanted, base_dir=root)
    ds = ray.data.read_parquet(root, partition_filter=flt, filesystem=fs)
    return ds.select_columns(list(INTERACTION_COLUMNS))


def model_rows(data: Path, days: tuple[int, ...], fn: ModelInputs, clicks_only: bool, *,
               on_ray: bool, cache_max_rows: int = 0, sample: float | None = None,
               seed: int = 0) -> Rows:
    """The given days as model inputs (train/inputs.py): a Ray Dataset that Ray Data reads
    and featurizes (materialized when the days hold at most `cache_max_rows` rows), or
    arrays read and featurized in this process, for data too small to pay for Ray Data's
    workers. `sample` keeps that share of the rows, `clicks_only` the clicks."""
    if on_ray:
        return featurized_dataset(ray_interactions(data, days), fn, clicks_only,
                                  count_rows(data, days) <= cache_max_rows, sample, seed)
    return featurized_frame(read_interactions(data, days), fn, clicks_only, sample, seed)
