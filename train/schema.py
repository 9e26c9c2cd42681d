"""The dataset contract: the columns every items, users and interactions table has, and their
types. Every writer (`warmstart generate`, `warmstart load`, a published version) casts its
tables to these schemas, and every reader checks a file against them before using it, so a
table from elsewhere fails with the file and the column that do not match, not deep inside
training.

A table may carry more columns than these (the generator's `p_click`, an item's `name` and
`description`); they travel along unchecked. Readers accept the same kind of type where the
exact one differs (any integer width for `label`, a dictionary-encoded string for an id, any
timestamp unit), so files written by other tools still load.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

INTERACTIONS = pa.schema([
    pa.field("user_id", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("ts", pa.timestamp("ms")),  # naive UTC; null where the source had no time
    pa.field("hour", pa.int8()),  # 0-23, of `ts`; -1 unknown
    pa.field("weekday", pa.int8()),  # Monday = 0; -1 unknown
    pa.field("device", pa.string()),  # web, ios, android; "unknown" where the source has none
    pa.field("label", pa.int8()),  # 1 = clicked (or liked), 0 = shown and not
])
ITEMS = pa.schema([
    pa.field("item_id", pa.string()),
    pa.field("category", pa.string()),
    pa.field("style", pa.string()),  # the sub-category within `category`; "none" if absent
    pa.field("price", pa.float64()),  # 0.0 where unknown
])
USERS = pa.schema([
    pa.field("user_id", pa.string()),
    pa.field("age", pa.int16()),  # null where unknown
    pa.field("gender", pa.string()),  # "F", "M", or "" where unknown
])


class SchemaError(ValueError):
    """A table whose columns do not follow its schema."""


def _is_string(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_string(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _kind(t: pa.DataType) -> tuple[str, Callable[[pa.DataType], bool]]:
    """What a reader accepts in place of type `t`, and its name for messages."""
    if pa.types.is_string(t):
        return "a string", _is_string
    if pa.types.is_integer(t):
        return "an integer", pa.types.is_integer
    if pa.types.is_floating(t):
        return "a number", _is_number
    if pa.types.is_timestamp(t):
        return "a timestamp", pa.types.is_timestamp
    raise TypeError(f"no reader rule for {t}")


def _is_id(t: pa.DataType) -> bool:
    return _is_string(t) or pa.types.is_integer(t)


# Ids may be integers (readers turn them into text); age may be a float column where pandas
# wrote NaN for unknown ages.
_ID = ("a string or integer id", _is_id)
_LENIENT = {("users", "age"): ("a number", _is_number), ("users", "user_id"): _ID,
            ("items", "item_id"): _ID, ("interactions", "user_id"): _ID,
            ("interactions", "item_id"): _ID}


def read_schema(path: Path | str) -> pa.Schema:
    """The schema of parquet file `path`, or a SchemaError naming the file when it cannot be
    read as parquet (a truncated write, another format under a .parquet name)."""
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise SchemaError(f"{path} is not a readable parquet file ({e}); write it again, or "
                          "point at the right file") from None


def check(schema: pa.Schema, expected: pa.Schema, path: Path | str, table: str) -> None:
    """Raise SchemaError naming `path` and the column when `schema` (a file's) lacks a column
    of `expected` or holds it with another kind of type."""
    missing = [f.name for f in expected if f.name not in schema.names]
    if missing:
        raise SchemaError(f"{path} lacks columns {missing}; the {table} table needs "
                          f"{expected.names} (see train/schema.py)")
    for f in expected:
        name, ok = _LENIENT.get((table, f.name)) or _kind(f.type)
        actual = schema.field(f.name).type
        if not (ok(actual) or pa.types.is_null(actual)):  # null: every value missing
            raise SchemaError(f"{path}: column {f.name!r} is {actual}, expected {name} "
                              f"({f.type}, see train/schema.py); rewrite that column or "
                              "reload the data with `warmstart load`")


def conform(table: pa.Table, expected: pa.Schema) -> pa.Table:
    """`table` with every column of `expected` cast to its type (extra columns kept as they
    are): what a writer stores."""
    missing = [f.name for f in expected if f.name not in table.column_names]
    if missing:
        raise SchemaError(f"cannot write a table without columns {missing}")
    for f in expected:
        i = table.column_names.index(f.name)
        if table.schema.field(i).type != f.type:
            table = table.set_column(i, f, table.column(i).cast(f.type))
    return table
