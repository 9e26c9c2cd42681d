"""Loading your own files (generic): the rows that do not parse become bad rows with their
file, line and column, and the rest reads back through flows/layout.py. Every fixture is
written here with its answer known. No test starts Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.layout import read_interactions, read_items, read_reviews, read_users
from flows.load import load
from flows.load.config import EventColumns, ItemColumns, LoadConfig
from tests.flows.load.helpers import (
    GENERIC_ARGS,
    T9,
    bad_rows,
    cli,
    events,
    found,
    generic_src,
)


def test_generic_csv_bad_rows_have_their_lines_and_the_rest_loads(tmp_path: Path,
                                                                  capsys) -> None:
    src, out = generic_src(tmp_path / "src"), tmp_path / "data"
    cli(["generic", "--src", str(src), "--out", str(out), *GENERIC_ARGS])
    printed = capsys.readouterr().out
    assert "loaded 6 interactions (66.7% positive) and 5 reviews" in printed
    assert "1 without a time, placed by the random split" in printed
    report = json.loads((out / "load_report.json").read_text())

    # The quoted field of line 3 runs on to line 4, so the findings are on lines 6-8: a
    # rating that is not a number skips its row; a time that does not parse and a book the
    # books file lacks keep theirs.
    assert bad_rows(report) == [("ratings.csv", 6, "review/score")]
    assert found(report, "dropped") == [("ratings.csv", 7, "review/time")]
    assert found(report, "created") == [("ratings.csv", 8, "item_id")]
    assert report["created"][0]["reason"].startswith("item 'b9' is not in books.csv: kept its "
                                                     "1 event(s)")
    assert report["rows_read"] == {"books.csv": 3, "people.csv": 3, "ratings.csv": 7}
    # One summary line per kind of finding, each with its first line.
    assert [(r["action"], r["count"], r["first_line"]) for r in report["summary"]] == [
        ("row skipped", 1, 6), ("value dropped", 1, 7), ("entity added", 1, 8)]
    assert "review/score  row skipped" in printed and "line 6" in printed

    ev = events(out)
    assert list(ev.index) == [("u1", "b1"), ("u1", "b3"), ("u2", "b2"), ("u3", "b2"),
                              ("u3", "b3"), ("u3", "b9")]
    assert list(ev["label"]) == [1, 1, 0, 0, 1, 1]  # scores 5, 4.5, 2, 3, 4, 5 against 4
    # the ISO date is 1e9 seconds; "yesterday" is no time at all, and no hour or weekday
    assert list(ev["t"]) == [T9 - 1, T9 + 2, T9, pd.NA, T9 + 6, T9 + 5]
    assert ev.loc[("u3", "b2"), ["hour", "weekday"]].tolist() == [-1, -1]

    items = read_items(out).set_index("item_id")
    assert items.loc["b1", ["name", "category", "style", "price", "description",
                            "categories"]].tolist() == [
        "Dune, Part 1", "Fiction", "Classics", 9.99, "Sand, spice.", "Fiction|Classics"]
    assert items.loc["b2", ["category", "style", "price"]].tolist() == ["Food", "Home", 0.0]
    assert items.loc["b3", ["category", "style"]].tolist() == ["unknown", "none"]
    assert items.loc["b9", ["name", "category", "price"]].tolist() == ["", "unknown", 0.0]

    users = read_users(out)
    assert users.loc["u1", ["age", "gender", "city"]].tolist() == [34, "F", "Oslo"]
    assert pd.isna(users.loc["u2", "age"]) and users.loc["u2", "gender"] == "M"
    assert users.loc["u3", "gender"] == ""
    # Training reads ages this way: unknown must come out as NaN, not as an age.
    assert np.isnan(users["age"].to_numpy(dtype=float, na_value=np.nan)).tolist() == [
        False, True, False]

    reviews = read_reviews(out).set_index(["user_id", "item_id"]).sort_index()
    assert reviews["text"].tolist() == ["Loved it", "Too long,\nand slow", "bad timestamp",
                                        'Short, "sharp"', "no such book"]
    assert reviews["ts"].astype("Int64").tolist() == [T9 - 1, T9, pd.NA, T9 + 6, T9 + 5]
    assert (reviews["summary"] == "").all()


def test_generic_parquet_with_a_label_column_and_no_times(tmp_path: Path) -> None:
    path = tmp_path / "clicks.parquet"
    pd.DataFrame({"user": [7, 8, 9, 7, 8, 9], "item": ["c", "b", "a", "a", "c", "b"],
                  "clicked": [1, 0, 2, 0, 1, 1]}).to_parquet(path)
    out = tmp_path / "data"
    report = load(LoadConfig(
        preset="generic", out=out, interactions_file=path, days=2, max_bad_share=0.5,
        columns=EventColumns(user="user", item="item", label="clicked")))

    # Row 3 (index 2) is "line" 4: parquet rows count as if a header line came first.
    assert report["bad"] == [{"file": "clicks.parquet", "line": 4, "column": "clicked",
                              "reason": "'2' is not 0 or 1"}]
    # No timestamp: no time context is invented (ts null, hour and weekday -1), and each
    # event is in a day drawn with the seed, in file order within its day.
    ev = read_interactions(out, (0, 1))
    assert report["untimed_interactions"] == 5 and report["untimed_split"] == "random"
    assert ev["ts"].isna().all() and (ev["hour"] == -1).all() and (ev["weekday"] == -1).all()
    assert sorted(zip(ev["user_id"], ev["item_id"], ev["label"], strict=True)) == [
        ("7", "a", 0), ("7", "c", 1), ("8", "b", 0), ("8", "c", 1), ("9", "b", 1)]
    again = tmp_path / "again"
    load(LoadConfig(preset="generic", out=again, interactions_file=path, days=2,
                    max_bad_share=0.5,
                    columns=EventColumns(user="user", item="item", label="clicked")))
    for d in (0, 1):  # the seed decides: the same files give the same days
        pd.testing.assert_frame_equal(read_interactions(out, (d,)),
                                      read_interactions(again, (d,)))
    items = read_items(out)  # made from the ids seen, in order of appearance
    assert list(items["item_id"]) == ["c", "b", "a"] and (items["category"] == "unknown").all()
    users = read_users(out)
    assert list(users.index) == ["7", "8", "9"] and users["age"].isna().all()
    assert read_reviews(out) is None


def test_generic_delimiter_and_encoding_flags(tmp_path: Path) -> None:
    path, out = tmp_path / "events.txt", tmp_path / "data"
    path.write_bytes("user;item;liked;when\nzoë;x;1;2024-01-31\nzoë;y;0;1706659200000\n"
                     .encode("latin-1"))
    args = ["generic", "--interactions", str(path), "--out", str(out), "--encoding", "latin-1",
            "--map", "user=user,item=item,label=liked,ts=when", "--max-bad-share", "0.5"]
    with pytest.raises(ValueError, match=r"header \['user;item;liked;when'\] \(one column: "
                                         r"wrong --delimiter\?\)"):
        cli(args)
    cli([*args, "--delimiter", ";"])
    report = json.loads((out / "load_report.json").read_text())
    # milliseconds, not seconds: the time is dropped, the event kept without one
    assert bad_rows(report) == [] and found(report, "dropped") == [("events.txt", 3, "when")]
    assert "milliseconds?" in report["dropped"][0]["reason"]
    ev = events(out)
    assert list(ev.index) == [("zoë", "x"), ("zoë", "y")]
    assert list(ev["t"]) == [1_706_659_200, pd.NA]  # 2024-01-31


def test_mapping_a_missing_column_fails_before_reading(tmp_path: Path) -> None:
    src, out = generic_src(tmp_path / "src"), tmp_path / "data"
    cfg = dict(src=src, out=out, preset="generic", interactions_file=Path("ratings.csv"),
               columns=EventColumns(user="User_id", item="Id", rating="review/score"))
    with pytest.raises(ValueError, match=r"books.csv: no column\(s\) \['Cover'\] in its header "
                                         r"\['Id', 'Title', 'description', 'categories', "
                                         r"'price'\]"):
        load(LoadConfig(**cfg, items_file=Path("books.csv"),
                        item_columns=ItemColumns(id="Id", text=("description", "Cover"))))
    with pytest.raises(ValueError, match=r"ratings.csv: no column\(s\) \['score'\]"):
        load(LoadConfig(**cfg | {"columns": EventColumns(user="User_id", item="Id",
                                                           rating="score")}))
    assert not out.exists()
    with pytest.raises(ValueError, match="exactly one of rating=COLUMN"):
        LoadConfig(**cfg | {"columns": EventColumns(user="User_id", item="Id")})
    with pytest.raises(ValueError, match=r"'colour=x' is not KEY=COLUMN with KEY one of id, "
                                         r"title, text, categories, price"):
        ItemColumns.parse("id=Id,colour=x", "--item-map")
    assert ItemColumns.parse("id=Id,text=a,text=b").text == ("a", "b")


