"""The dataset contract: writers cast to it exactly, readers accept the same kind of type
and refuse anything else with the file and the column named."""

from __future__ import annotations

import pyarrow as pa
import pytest

from train import schema


def events(**over: pa.Array) -> pa.Table:
    cols = {"user_id": pa.array(["u1", "u2"]), "item_id": pa.array(["a", "b"]),
            "ts": pa.array([0, 1000], pa.timestamp("s")), "hour": pa.array([0, 1]),
            "weekday": pa.array([3, 3]), "device": pa.array(["web", "ios"]),
            "label": pa.array([1, 0]), "p_click": pa.array([0.1, 0.2])} | over
    return pa.table(cols)


def test_conform_casts_the_contract_columns_and_keeps_the_rest() -> None:
    t = events(user_id=pa.array(["u1", "u2"]).dictionary_encode())
    out = schema.conform(t, schema.INTERACTIONS)
    for f in schema.INTERACTIONS:
        assert out.schema.field(f.name).type == f.type
    assert out.column("ts").to_pylist() == t.column("ts").cast(pa.timestamp("ms")).to_pylist()
    assert out.schema.field("p_click").type == pa.float64()  # not in the contract: as it was
    with pytest.raises(schema.SchemaError, match=r"without columns \['label'\]"):
        schema.conform(t.drop(["label"]), schema.INTERACTIONS)


def test_readers_accept_the_same_kind_of_type() -> None:
    t = events(user_id=pa.array(["u1", "u2"]).dictionary_encode(),
               ts=pa.array([0, 1], pa.timestamp("us")))
    schema.check(t.schema, schema.INTERACTIONS, "x.parquet", "interactions")  # no error
    users = pa.table({"user_id": ["a"], "age": pa.array([31.0]), "gender": ["F"]})
    schema.check(users.schema, schema.USERS, "u.parquet", "users")  # NaN-able float ages


@pytest.mark.parametrize(("column", "values", "expected"), [
    ("label", pa.array(["yes", "no"]), "expected an integer"),
    ("ts", pa.array([0, 1]), "expected a timestamp"),
    ("user_id", pa.array([1.5, 2.5]), "expected a string or integer id"),
    ("device", pa.array([1, 2]), "expected a string"),
])
def test_readers_refuse_another_type_naming_file_and_column(column: str, values: pa.Array,
                                                             expected: str) -> None:
    t = events(**{column: values})
    with pytest.raises(schema.SchemaError, match=rf"day=00/part-0.parquet: column '{column}' "
                                                 rf"is \w+, {expected}"):
        schema.check(t.schema, schema.INTERACTIONS, "day=00/part-0.parquet", "interactions")


def test_a_missing_column_is_named_with_what_the_table_needs() -> None:
    items = pa.table({"item_id": ["a"], "price": [1.0]})
    with pytest.raises(schema.SchemaError, match=r"items.parquet lacks columns \['category', "
                                                 r"'style'\]; the items table needs"):
        schema.check(items.schema, schema.ITEMS, "items.parquet", "items")
