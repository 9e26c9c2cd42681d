"""MovieLens-100K in either distribution: RecBole atomic files (`ml-100k.inter`, `.item`,
`.user`) or the GroupLens originals (`u.data`, `u.item`, `u.user`). Both give the same
dataset: every rating is an impression, labeled 1 when rating >= like_threshold."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from flows.load import fields
from flows.load.build import Known, complete, event_columns, good_rows, item, labeler, unique
from flows.load.config import EventColumns, LoadConfig
from flows.load.records import Records, Source, split_lines

GROUPLENS_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
                    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
ATOMIC_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
_TITLE_YEAR = re.compile(r"^(.*\S)\s+\((\d{4})\)$")
RATINGS = EventColumns(user="user_id", item="item_id", rating="rating", ts="timestamp")


def movie(item_id: str, title: str, year: int | None, genres: list[str]) -> dict:
    """One item row. Both formats give the same row: the GroupLens title loses its "(1995)"
    suffix, which the atomic format already keeps in its own column."""
    genres = genres or ["unknown"]
    when = f" ({year})" if year is not None else ""
    return item(item_id, title, [f"{title}{when}. Genres: {', '.join(genres)}."], genres) | {
        "year": year, "genres": " ".join(genres)}


def _atomic_header(path: Path, required: tuple[str, ...]) -> dict[str, int]:
    """Column positions from a RecBole header such as `user_id:token<TAB>rating:float`."""
    with path.open(encoding="utf-8") as f:
        head = f.readline().rstrip("\r\n").split("\t")
    pos = {name.split(":")[0]: n for n, name in enumerate(head)}
    missing = [c for c in required if c not in pos]
    if missing:
        raise ValueError(f"{path}: header {head} lacks column(s) {missing}; expected a RecBole "
                         "atomic file whose first line names typed columns like `user_id:token`")
    return {c: pos[c] for c in required}


def _people(recs: Records, src: Source, max_share: float) -> pd.DataFrame:
    """Users: an age or gender that is missing or does not parse is unknown, the user kept."""
    gender = recs.attribute("gender", fields.per_value(fields.gender_text), src.na)
    return good_rows(recs, src, max_share, {
        "user_id": recs.parse("user_id", fields.token),
        "age": recs.attribute("age", fields.integer, src.na),
        "gender": np.array(["" if g is None else g for g in gender], dtype=object),
        "occupation": fields.text(recs.columns["occupation"]),
    })


def _movies(recs: Records, src: Source, max_share: float, ids: np.ndarray,
            titles: np.ndarray, years: list[int | None], genres: list[list[str]]
            ) -> pd.DataFrame:
    ok = recs.close(src, max_share)
    rows = [movie(ids[i], titles[i], years[i], genres[i]) for i in np.flatnonzero(ok)]
    return pd.DataFrame(rows).assign(_line=recs.lines[ok])


def _read_atomic(cfg: LoadConfig) -> Source:
    assert cfg.src is not None
    inter, item_file, user_file = (cfg.src / f for f in ATOMIC_FILES)
    src = cfg.source("recbole-atomic")

    recs = split_lines(item_file, "utf-8", "\t", True, _atomic_header(
        item_file, ("item_id", "movie_title", "release_year", "class")))
    ids = recs.parse("item_id", fields.token)
    year_text = fields.text(recs.columns["release_year"])  # "unkonwn" for one film
    years = [int(y) if y.isdigit() else None for y in year_text]
    genres = [g.split() for g in fields.text(recs.columns["class"], strip=False)]
    items = _movies(recs, src, cfg.max_bad_share, ids, fields.text(recs.columns["movie_title"]),
                    years, genres)
    users = _people(split_lines(user_file, "utf-8", "\t", True, _atomic_header(
        user_file, ("user_id", "age", "gender", "occupation"))), src, cfg.max_bad_share)
    ratings = split_lines(inter, "utf-8", "\t", True, _atomic_header(
        inter, ("user_id", "item_id", "rating", "timestamp")))
    return _finish(src, cfg, items, item_file.name, users, user_file.name, ratings,
                   fields.number)


def _read_grouplens(cfg: LoadConfig) -> Source:
    assert cfg.src is not None
    data, item_file, user_file = (cfg.src / f for f in GROUPLENS_FILES)
    src = cfg.source("grouplens")

    cols = ("movie_id", "title", "release_date", "video_release_date", "imdb_url",
            *(f"genre {g}" for g in GROUPLENS_GENRES))
    recs = split_lines(item_file, "latin-1", "|", False, {c: k for k, c in enumerate(cols)})
    flags = {g: recs.attribute(f"genre {g}", fields.integer, src.na)
             for g in GROUPLENS_GENRES}
    ids = recs.parse("movie_id", fields.token)
    titles, years = [], []
    for title, released in zip(fields.text(recs.columns["title"]),
                               fields.text(recs.columns["release_date"]), strict=True):
        year = None
        if m := _TITLE_YEAR.match(title):
            title, year = m.group(1), int(m.group(2))
        elif released[-4:].isdigit():  # like 01-Jan-1995
            year = int(released[-4:])
        titles.append(title)
        years.append(year)
    genres = [[g for g in GROUPLENS_GENRES if flags[g][i]] for i in range(len(recs))]
    items = _movies(recs, src, cfg.max_bad_share, ids, np.array(titles, dtype=object), years,
                    genres)
    users = _people(split_lines(user_file, "latin-1", "|", False,
                                {"user_id": 0, "age": 1, "gender": 2, "occupation": 3}),
                    src, cfg.max_bad_share)  # then zip_code, not kept
    ratings = split_lines(data, "latin-1", "\t", False,
                          {"user_id": 0, "item_id": 1, "rating": 2, "timestamp": 3})
    return _finish(src, cfg, items, item_file.name, users, user_file.name, ratings,
                   fields.integer)


def _finish(src: Source, cfg: LoadConfig, items: pd.DataFrame, item_file: str,
            users: pd.DataFrame, user_file: str, ratings: Records, number: fields.Parser
            ) -> Source:
    """Tables from parsed rows, then the ratings (tab-separated in both formats) against
    them: every rating is an impression, labeled 1 when rating >= like_threshold."""
    items = unique(items, "item_id", item_file, src)
    users = unique(users, "user_id", user_file, src)
    items["year"] = items["year"].astype("Int16")
    users["age"] = users["age"].astype("Int16")  # <NA> where unknown

    def when(arr: pa.Array, column: str) -> fields.Parsed:
        p = number(arr, column)
        return fields.Parsed(p.values.astype(np.int64), p.bad, p.reasons)

    columns = event_columns(ratings, RATINGS, labeler(RATINGS, cfg.like_threshold, number),
                            when, Known("user", user_file, frozenset(users["user_id"])),
                            Known("item", item_file, frozenset(items["item_id"])), src)
    return complete(src, good_rows(ratings, src, cfg.max_bad_share, columns),
                    ratings.path.name, items, item_file, users, user_file)


def read(cfg: LoadConfig) -> Source:
    """MovieLens-100K in either format, found by its file names in `cfg.src`."""
    assert cfg.src is not None
    if not cfg.src.is_dir():
        raise FileNotFoundError(f"MovieLens source folder {cfg.src} does not exist")
    for names, reader in ((ATOMIC_FILES, _read_atomic), (GROUPLENS_FILES, _read_grouplens)):
        if all((cfg.src / f).is_file() for f in names):
            return reader(cfg)
    present = sorted(p.name for p in cfg.src.iterdir())[:10]
    raise ValueError(f"{cfg.src} is not a MovieLens-100K folder: expected either "
                     f"{', '.join(ATOMIC_FILES)} (RecBole atomic) or {', '.join(GROUPLENS_FILES)} "
                     f"(GroupLens); found {present or 'nothing'}")
