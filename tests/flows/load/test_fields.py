"""Column-wise parsing: parquet columns are used with their own types, text columns are
parsed once per distinct value, and both give the same values, the same bad rows and the
same reasons for the same data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.load import fields, load
from flows.load.config import EventColumns, ItemColumns, LoadConfig
from tests.flows.load.helpers import bad_rows, events

T = 1_700_000_000  # 2023-11-14T22:13:20Z


def parsed(parser: fields.Parser, values: list, typ: pa.DataType | None = None
           ) -> tuple[list, list]:
    p = parser(pa.array(values, typ), "col")
    return [v for v, b in zip(p.values.tolist(), p.bad, strict=True) if not b], \
        [r for r in p.reasons.tolist() if r is not None]


def test_typed_and_text_columns_give_the_same_values_and_reasons() -> None:
    assert parsed(fields.number, [4, 4.5, None]) == ([4.0, 4.5], ["'' is not a number"])
    assert parsed(fields.number, ["4", "4.5", "", "inf"]) == (
        [4.0, 4.5], ["'' is not a number", "'inf' is not a finite number"])
    assert parsed(fields.flag, [1, 0, 2]) == parsed(fields.flag, ["1", "0", "2"]) == (
        [1, 0], ["'2' is not 0 or 1"])
    assert parsed(fields.flag, [True, False]) == ([1, 0], [])
    assert parsed(fields.integer, [34, 35.0, 35.5]) == ([34, 35], ["'35.5' is not an integer"])
    assert parsed(fields.token, [7, 8.0, None]) == (["7", "8"], ["empty"])  # ids as text
    assert parsed(fields.price, [9.99, None, -1.0]) == (
        [9.99, 0.0], ["'-1' is a negative price"])
    assert parsed(fields.price, ["$9.99", "", "-1"]) == (
        [9.99, 0.0], ["'-1' is a negative price"])


def test_timestamps_from_instants_numbers_and_text_agree() -> None:
    when = dt.datetime.fromtimestamp(T, dt.UTC)
    want = [T, T + 3600]
    assert parsed(fields.timestamp, [when, when + dt.timedelta(hours=1)])[0] == want
    naive = [when.replace(tzinfo=None), (when + dt.timedelta(hours=1)).replace(tzinfo=None)]
    assert parsed(fields.timestamp, naive, pa.timestamp("ms"))[0] == want  # naive = UTC
    assert parsed(fields.timestamp, [T, T + 3600.5])[0] == want  # floats floor to seconds
    assert parsed(fields.timestamp, [str(T), when.isoformat(timespec="seconds")])[0] == [T, T]
    assert parsed(fields.timestamp, [dt.date(2023, 11, 14)])[0] == [T - (T % 86400)]
    _, reasons = parsed(fields.timestamp, [T * 1000, None])
    assert reasons[0].startswith(f"'{T * 1000}' is too large for unix seconds; milliseconds?")
    assert reasons[1] == "empty"


def test_names_come_from_list_columns_or_text() -> None:
    assert parsed(fields.names, [["Fiction", " Classics "], None])[0] == [
        ["Fiction", "Classics"], []]
    assert parsed(fields.names, ["['Fiction', 'Classics']", "Food|Home", ""])[0] == [
        ["Fiction", "Classics"], ["Food", "Home"], []]
    _, reasons = parsed(fields.names, ["['unclosed"])
    assert reasons == ["\"['unclosed\" looks like a list but does not parse as one"]


def test_text_rules_run_once_per_distinct_value() -> None:
    calls: list[str] = []

    def rule(value: str, column: str) -> int:
        calls.append(value)
        return len(value)

    p = fields.per_value(rule, np.int64)(pa.array(["ab", "c", "ab", None, "ab"]), "col")
    assert p.values.tolist() == [2, 1, 2, 0, 2] and sorted(calls) == ["", "ab", "c"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_same_events_as_csv_and_as_typed_parquet_load_alike(tmp_path: Path,
                                                                suffix: str) -> None:
    """One dataset, written once as text and once with native parquet types (integer ids,
    float ratings, a timestamp column, list categories): the loaded layouts are equal and
    the bad rows are the same, with the same lines, columns and reasons."""
    stamp = pd.to_datetime([T, T + 60, T + 120, T + 180, T + 240], unit="s")
    ev = pd.DataFrame({"user": [1, 2, 1, 3, 2], "item": [10, 11, 12, 10, 99],
                       "stars": [5.0, 2.0, 4.5, np.nan, 4.0], "when": stamp})
    items = pd.DataFrame({"id": [10, 11, 12], "title": ["Dune", "Emma", "Ulysses"],
                          "genres": [["Fiction", "Classics"], ["Romance"], []],
                          "cost": [9.5, 0.0, 12.0]})
    if suffix == ".csv":
        ev.assign(when=ev["when"].dt.strftime("%Y-%m-%dT%H:%M:%S")).to_csv(
            tmp_path / "ev.csv", index=False)
        items.assign(genres=items["genres"].map("|".join)).to_csv(tmp_path / "it.csv",
                                                                   index=False)
    else:
        pq.write_table(pa.Table.from_pandas(ev, preserve_index=False), tmp_path / "ev.parquet")
        pq.write_table(pa.Table.from_pandas(items, preserve_index=False),
                       tmp_path / "it.parquet")
        assert pa.types.is_timestamp(pq.read_schema(tmp_path / "ev.parquet").field("when").type)
    out = tmp_path / "data"
    report = load(LoadConfig(
        preset="generic", src=tmp_path, out=out, interactions_file=Path(f"ev{suffix}"),
        items_file=Path(f"it{suffix}"), max_bad_share=0.5, days=1,
        columns=EventColumns(user="user", item="item", rating="stars", ts="when"),
        item_columns=ItemColumns(id="id", title="title", categories="genres", price="cost")))
    assert bad_rows(report) == [(f"ev{suffix}", 5, "stars")]
    assert [b["reason"] for b in report["bad"]] == ["'' is not a number"]
    assert report["created"][0]["reason"].startswith(f"item '99' is not in it{suffix}")
    got = events(out)
    assert list(got.index) == [("1", "10"), ("1", "12"), ("2", "11"), ("2", "99")]
    assert got["label"].tolist() == [1, 1, 0, 1]
    assert got["t"].tolist() == [T, T + 120, T + 60, T + 240]
    from flows.layout import read_items

    cat = read_items(out).set_index("item_id")
    assert cat.loc["10", ["category", "style", "price"]].tolist() == ["Fiction", "Classics", 9.5]
    assert cat.loc["12", "category"] == "unknown"


def test_a_truncated_parquet_file_is_named_before_anything_is_written(tmp_path: Path) -> None:
    events = tmp_path / "ev.parquet"
    pq.write_table(pa.table({"u": ["a"], "i": ["b"], "l": [1]}), events)
    events.write_bytes(events.read_bytes()[:-20])  # a write cut short
    with pytest.raises(ValueError, match=r"ev.parquet is not a readable parquet file"):
        load(LoadConfig(preset="generic", out=tmp_path / "out", interactions_file=events,
                        columns=EventColumns(user="u", item="i", label="l")))
    assert not (tmp_path / "out").exists()


def test_categorical_and_large_string_columns_parse_as_text() -> None:
    ids = fields.token(pa.array(["u1", None, "u2"]).dictionary_encode(), "user")
    assert ids.values.tolist() == ["u1", None, "u2"] and ids.reasons.tolist() == [
        None, "empty", None]
    stars = fields.number(pa.array(["5", "4.5"]).dictionary_encode(), "stars")
    assert stars.values.tolist() == [5.0, 4.5]
    assert fields.token(pa.array([" a "], pa.large_string()), "c").values.tolist() == ["a"]
