"""The data folder's readers: every table is checked against train/schema.py when read, and
a file that does not follow it fails with its path and the column, before any work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.layout import (
    Split,
    available_days,
    count_rows,
    read_interactions,
    read_items,
    read_users,
)
from train import schema


def write_day(data: Path, day: int, **over: list) -> Path:
    cols = {"user_id": ["u1", "u2"], "item_id": ["a", "b"],
            "ts": pa.array([0, 1000], pa.timestamp("ms")), "hour": pa.array([0, 1], pa.int8()),
            "weekday": pa.array([3, 3], pa.int8()), "device": ["web", "ios"],
            "label": pa.array([1, 0], pa.int8())} | over
    folder = data / "interactions" / f"day={day:02d}"
    folder.mkdir(parents=True)
    pq.write_table(pa.table(cols), folder / "part-0.parquet")
    return folder / "part-0.parquet"


def test_tables_that_follow_the_schema_read_back(tmp_path: Path) -> None:
    pd.DataFrame({"item_id": [1, 2], "category": ["x", "y"], "style": ["s", "t"],
                  "price": [1, 2]}).to_parquet(tmp_path / "items.parquet")  # ints: accepted
    pd.DataFrame({"user_id": ["u1"], "age": [None], "gender": [""]}).to_parquet(
        tmp_path / "users.parquet")
    for d in range(2):
        write_day(tmp_path, d)
    assert read_items(tmp_path)["item_id"].tolist() == ["1", "2"]  # ids are text
    assert pd.isna(read_users(tmp_path).loc["u1", "age"])
    assert available_days(tmp_path) == [0, 1] and count_rows(tmp_path, (0, 1)) == 4
    got = read_interactions(tmp_path, (0, 1))
    assert list(got.columns) == list(schema.INTERACTIONS.names) and len(got) == 4


def test_a_day_with_a_wrong_column_type_is_named(tmp_path: Path) -> None:
    write_day(tmp_path, 0)
    bad = write_day(tmp_path, 1, label=[0.5, 1.0])
    read_interactions(tmp_path, (0,))  # the good day alone reads
    with pytest.raises(schema.SchemaError, match=rf"{bad}: column 'label' is double, "
                                                 "expected an integer"):
        read_interactions(tmp_path, (0, 1))


def test_items_without_the_contract_columns_are_refused(tmp_path: Path) -> None:
    pd.DataFrame({"item_id": ["a"], "price": [1.0]}).to_parquet(tmp_path / "items.parquet")
    with pytest.raises(ValueError, match=r"items.parquet lacks columns \['category', 'style'\]"):
        read_items(tmp_path)


def test_missing_tables_say_how_to_make_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="item table not found.*warmstart generate"):
        read_items(tmp_path)
    with pytest.raises(FileNotFoundError, match="interactions folder not found"):
        available_days(tmp_path)
    write_day(tmp_path, 0)
    with pytest.raises(ValueError, match=r"no day\(s\) \[5\]; available: \[0\]"):
        read_interactions(tmp_path, (0, 5))


def test_the_standard_split_covers_the_days_once() -> None:
    s = Split()
    days = s.train + s.val + s.test
    assert sorted(days) == list(range(14)) and max(s.train) < min(s.val) < min(s.test)


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    (tmp_path / "items.parquet").write_text("id,category\n1,x\n")  # a CSV under the name
    with pytest.raises(schema.SchemaError, match=r"items.parquet is not a readable parquet "
                                                 "file"):
        read_items(tmp_path)
