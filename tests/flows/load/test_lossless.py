"""Lossless loading: a fixture with the defects public ratings dumps have (missing-value
markers of every spelling, ages that are not numbers, events for users and books the side
files lack, no timestamps) loads without losing one event, and every finding is listed.
No test starts Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.layout import Split, available_days, read_interactions, read_items, read_users
from flows.load import load
from flows.load.config import EventColumns, ItemColumns, LoadConfig, UserColumns
from flows.load.write import reason_kind, untimed_days
from tests.flows.load.helpers import cli

# 10 users; ages NULL for 4 of them (40%), in the spellings dumps use, and one that is not a
# number; genders with a marker and one value that is none of M/F.
USERS = """User-ID,Location,Age,Sex
1,"oslo, norway",34,F
2,"rome, italy",NULL,m
3,"lima, peru",NA,
4,"kyoto, japan",n/a,NULL
5,"cork, ireland",None,F
6,"austin, usa",abc,x
7,"lyon, france",51,M
8,"porto, portugal",,F
9,"quito, ecuador",29,None
10,"perth, australia",NaN,M
"""
BOOKS = """ISBN,Title,Price,Genres
b1,Dune,9.99,Fiction|Classics
b2,Emma,NULL,Romance
b3,Ulysses,free,
b4,Walden,5.00,NA
"""
# 30 events, no time column; user 11 and books b8/b9 are in neither side file; user 1 is
# the most active; one event has no user id at all (the only row that must be skipped).
EVENTS = [(str(1 + n % 10), f"b{1 + n % 4}", n % 11) for n in range(24)] + [
    ("11", "b1", 8), ("11", "b8", 9), ("1", "b9", 10), ("1", "b2", 7), ("1", "b3", 6),
    ("", "b1", 5)]


def write_fixture(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "users.csv").write_text(USERS)
    (folder / "books.csv").write_text(BOOKS)
    (folder / "ratings.csv").write_text(
        "User-ID,ISBN,Book-Rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in EVENTS))
    return folder


def cfg(src: Path, out: Path, **kw: object) -> LoadConfig:
    return LoadConfig(
        preset="generic", src=src, out=out, interactions_file=Path("ratings.csv"),
        items_file=Path("books.csv"), users_file=Path("users.csv"), like_threshold=8,
        columns=EventColumns(user="User-ID", item="ISBN", rating="Book-Rating"),
        item_columns=ItemColumns(id="ISBN", title="Title", price="Price", categories="Genres"),
        user_columns=UserColumns(id="User-ID", age="Age", gender="Sex"),
        **({"max_bad_share": 0.05} | kw))  # the one row without a user is 1 in 30


def all_events(out: Path) -> pd.DataFrame:
    return read_interactions(out, tuple(available_days(out)))


def test_no_event_is_lost_and_every_finding_is_listed(tmp_path: Path) -> None:
    src, out = write_fixture(tmp_path / "src"), tmp_path / "data"
    report = load(cfg(src, out))

    # Every event with a user and an item is kept: 29 of 30 rows (one has no user id).
    ev = all_events(out)
    assert len(ev) == report["interactions"] == 29
    assert [(b["line"], b["column"], b["reason"]) for b in report["bad"]] == [
        (31, "User-ID", "empty")]
    kept = sorted(zip(ev["user_id"], ev["item_id"], strict=True))
    assert kept == sorted((u, i) for u, i, _ in EVENTS if u)
    assert (ev["user_id"] == "1").sum() == 6  # the most active user keeps all of theirs

    # Missing markers are unknown attributes, never bad rows; users are all kept.
    users = read_users(out)
    assert len(users) == 11  # the 10 of users.csv and user 11, added from the events
    assert users["age"].isna().tolist() == [False, True, True, True, True, True, False, True,
                                            False, True, True]
    assert users.loc["1", "Location"] == "oslo, norway"
    assert users["gender"].tolist() == ["F", "M", "", "", "F", "", "M", "F", "", "M", ""]
    # A value that does not parse is dropped (its user kept) and listed with its line.
    dropped = {(d["file"], d["line"], d["column"]): d["reason"] for d in report["dropped"]}
    assert dropped == {
        ("books.csv", 4, "Price"): "'free' is not a number; the value is dropped, the row kept",
        ("users.csv", 7, "Age"): "'abc' is not an integer; the value is dropped, the row kept",
        ("users.csv", 7, "Sex"): "'X' is not M, F, male or female; the value is dropped, the "
                                 "row kept"}

    # Books the books file lacks join the catalog with no attributes.
    items = read_items(out).set_index("item_id")
    assert list(items.index) == ["b1", "b2", "b3", "b4", "b8", "b9"]
    assert items.loc["b2", "price"] == 0.0 and items.loc["b4", "category"] == "unknown"
    assert items.loc["b9", ["name", "category"]].tolist() == ["", "unknown"]
    assert report["created_users"] == 1 and report["created_items"] == 2
    created = {(c["line"], c["column"]): c["reason"] for c in report["created"]}
    assert created[(26, "user_id")].startswith("user '11' is not in users.csv: kept its 2 ")
    assert (27, "item_id") in created and (28, "item_id") in created

    # No timestamps: no time context invented, days by the seeded random rule.
    assert report["untimed_interactions"] == 29 and report["untimed_split"] == "random"
    assert ev["ts"].isna().all() and (ev["hour"] == -1).all() and (ev["weekday"] == -1).all()
    assert sum(report["per_day"]) == 29

    # The terminal's summary: one line per kind of finding, with a count and first line.
    summary = {(r["file"], r["column"], r["action"]): (r["count"], r["first_line"])
               for r in report["summary"]}
    assert summary == {
        ("ratings.csv", "User-ID", "row skipped"): (1, 31),
        ("users.csv", "Age", "value dropped"): (1, 7),
        ("users.csv", "Sex", "value dropped"): (1, 7),
        ("books.csv", "Price", "value dropped"): (1, 4),
        ("ratings.csv", "user_id", "entity added"): (1, 26),
        ("ratings.csv", "item_id", "entity added"): (2, 27)}
    assert json.loads((out / "load_report.json").read_text())["summary"] == report["summary"]


def test_strict_ids_skips_the_events_of_unknown_ids_and_counts_them(tmp_path: Path) -> None:
    src, out = write_fixture(tmp_path / "src"), tmp_path / "data"
    report = load(cfg(src, out, strict_ids=True, max_bad_share=0.5))
    bad = sorted((b["line"], b["column"], b["reason"]) for b in report["bad"])
    assert bad == [(26, "User-ID", "user '11' is not in users.csv"),
                   (27, "User-ID", "user '11' is not in users.csv"),
                   (28, "ISBN", "item 'b9' is not in books.csv"),
                   (31, "User-ID", "empty")]
    assert report["interactions"] == 26 and report["created"] == []
    assert len(read_users(out)) == 10


def test_leave_last_out_puts_each_users_last_event_in_a_test_day(tmp_path: Path) -> None:
    src, out = write_fixture(tmp_path / "src"), tmp_path / "data"
    load(cfg(src, out, untimed_split="last"))
    split = Split()
    ev = pd.concat([read_interactions(out, (d,)).assign(day=d) for d in available_days(out)])
    rows = [(u, i) for u, i, _ in EVENTS if u]
    for user in {u for u, _ in rows}:
        mine = [i for u, i in rows if u == user]  # file order
        days = ev[ev["user_id"] == user]
        last = days[days["item_id"] == mine[-1]]["day"]
        if len(mine) >= 2:  # the last event tests
            assert set(last) & set(split.test), user
        if len(mine) >= 3:  # the one before it validates (or repeats an item that tests)
            assert days["day"].isin(split.val).sum() == 1, user
        assert days["day"].isin(split.test).sum() == (len(mine) >= 2), user


def test_untimed_rules_on_known_users() -> None:
    users = np.array(["a", "b", "a", "c", "a", "b"], dtype=object)
    split = Split()
    day = untimed_days(users, "last", 14, seed=3)
    # a: 3 events -> train, val, test; b: 2 -> train, test; c: 1 -> train
    assert [d in split.train for d in day] == [True, True, False, True, False, False]
    assert day[2] in split.val and day[4] in split.test and day[5] in split.test
    random = untimed_days(users, "random", 14, seed=3)
    assert ((random >= 0) & (random < 14)).all()
    assert (random == untimed_days(users, "random", 14, seed=3)).all()


def test_na_values_are_configurable(tmp_path: Path) -> None:
    src = write_fixture(tmp_path / "src")
    (src / "users.csv").write_text(USERS.replace("abc", "?"))
    report = load(cfg(src, tmp_path / "default"))
    assert any(d["column"] == "Age" and "'?'" in d["reason"] for d in report["dropped"])
    report = load(cfg(src, tmp_path / "marked", na_values=("NULL", "NA", "n/a", "None", "NaN",
                                                           "?")))
    assert not any(d["column"] == "Age" for d in report["dropped"])
    assert read_users(tmp_path / "marked")["age"].isna().sum() == 8  # 7 and user 11


def test_the_cli_prints_one_summary_table(tmp_path: Path, capsys) -> None:
    src = write_fixture(tmp_path / "src")
    cli(["generic", "--src", str(src), "--out", str(tmp_path / "data"),
         "--interactions", "ratings.csv", "--items", "books.csv", "--users", "users.csv",
         "--map", "user=User-ID,item=ISBN,rating=Book-Rating", "--like-threshold", "8",
         "--item-map", "id=ISBN,title=Title,price=Price,categories=Genres",
         "--user-map", "id=User-ID,age=Age,gender=Sex", "--max-bad-share", "0.05"])
    out = capsys.readouterr().out
    assert "loaded 29 interactions" in out and "29 without a time" in out
    assert "1 rows skipped, 3 values dropped, 1 users and 2 items added from events" in out
    table = out[out.index("\nfile") + 1:].splitlines()
    assert table[0].split()[:3] == ["file", "column", "what"]
    assert len([line for line in table if line.startswith(("ratings", "users", "books"))]) == 6
    assert "line 7" in out and "'abc' is not an integer" in out


@pytest.mark.parametrize(("reason", "kind"), [
    ("'five' is not a number", "… is not a number"),
    ("user '11' is not in users.csv: kept its 2 event(s)", "user … is not in users.csv: kept "
                                                           "its … event(s)"),
    ("5 fields where the header has 4", "… fields where the header has …"),
    ("empty", "empty")])
def test_reasons_group_by_kind(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind
