"""Fixture files and readers shared by the loader tests: a small generic CSV dataset whose
bad rows are known, the command line of `warmstart load`, and the loaded events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import flows.load
from flows.cli import module_parser
from flows.layout import available_days, read_interactions


def cli(argv: list[str]) -> None:
    """`warmstart load ARGV` without the one-line error handling: errors raise."""
    flows.load.run(module_parser("load").parse_args(argv))


T9 = 1_000_000_000  # 2001-09-09T01:46:40Z


def events(out: Path) -> pd.DataFrame:
    """All loaded events, with ts back in unix seconds (<NA> where an event has no time),
    keyed by (user_id, item_id)."""
    ev = read_interactions(out, tuple(available_days(out)))
    seconds = ev["ts"].astype("datetime64[s]").astype(np.int64)
    ev["t"] = pd.array(np.where(ev["ts"].isna(), 0, seconds), dtype="Int64")
    ev.loc[ev["ts"].isna(), "t"] = pd.NA
    return ev.set_index(["user_id", "item_id"]).sort_index()


def found(report: dict, kind: str) -> list[tuple[str, int, str]]:
    """(file, line, column) of the report's `kind` list: bad, dropped or created."""
    return [(b["file"], b["line"], b["column"]) for b in report[kind]]


def bad_rows(report: dict) -> list[tuple[str, int, str]]:
    return [(b["file"], b["line"], b["column"]) for b in report["bad"]]


RATINGS_CSV = f"""User_id,Id,review/score,review/time,review/text
u1,b1,5,{T9 - 1},"Loved it"
u2,b2,2,2001-09-09T01:46:40Z,"Too long,
and slow"
u1,b3,4.5,{T9 + 2},
u2,b1,five,{T9 + 3},bad rating
u3,b2,3,yesterday,bad timestamp
u3,b9,5,{T9 + 5},no such book
u3,b3,4,{T9 + 6},"Short, \"\"sharp\"\"\"
"""
BOOKS_CSV = """Id,Title,description,categories,price
b1,"Dune, Part 1","Sand, spice.","['Fiction', 'Classics']",9.99
b2,Cooking,,Food|Home,
b3,Plain,Short.,,
"""
PEOPLE_CSV = "uid,years,sex,city\nu1,34,F,Oslo\nu2,,male,Rome\nu3,51,,Lima\n"
GENERIC_ARGS = [
    "--interactions", "ratings.csv", "--items", "books.csv", "--users", "people.csv",
    "--map", "user=User_id,item=Id,rating=review/score,ts=review/time,review=review/text",
    "--item-map", "id=Id,title=Title,text=description,categories=categories,price=price",
    "--user-map", "id=uid,age=years,gender=sex", "--max-bad-share", "0.5"]


def generic_src(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, text in (("ratings.csv", RATINGS_CSV), ("books.csv", BOOKS_CSV),
                       ("people.csv", PEOPLE_CSV)):
        (folder / name).write_text(text)
    return folder
