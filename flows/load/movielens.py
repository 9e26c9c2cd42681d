"""MovieLens, every release GroupLens publishes and its RecBole atomic form, told apart by the
file names in the folder (`LAYOUTS`):

    grouplens       ML-100K: u.data (tab), u.item (`|`, 19 genre flags), u.user (`|`)
    grouplens-dat   ML-1M, ML-10M: ratings.dat, movies.dat, users.dat (ML-1M only), `::`
    grouplens-csv   ML-20M, ML-25M, ml-latest(-small): ratings.csv, movies.csv (with headers)
    recbole-atomic  any of them as RecBole atomic files: NAME.inter, NAME.item, NAME.user

Every layout gives the same tables: every rating is an impression, labeled 1 when rating >=
like_threshold (half stars compare as numbers); a title's "(1995)" suffix becomes the year;
timestamps are unix seconds. The users file is optional (only ML-100K and ML-1M have one):
without it, users are made from the ids the ratings use, with no attributes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from flows.load import fields
from flows.load.build import Known, complete, event_columns, good_rows, item, labeler, unique
from flows.load.config import EventColumns, LoadConfig
from flows.load.records import Records, Source, open_table, split_lines

GROUPLENS_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
                    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
NO_GENRES = "(no genres listed)"  # ML-10M and later, for a film without genres
# ML-1M's users.dat gives occupations as codes; its README names them.
OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin",
               "college/grad student", "customer service", "doctor/health care",
               "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
               "programmer", "retired", "sales/marketing", "scientist", "self-employed",
               "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
_TITLE_YEAR = re.compile(r"^(.*\S)\s+\((\d{4})\)$")
RATINGS = EventColumns(user="user_id", item="item_id", rating="rating", ts="timestamp")
CSV_RATINGS = EventColumns(user="userId", item="movieId", rating="rating", ts="timestamp")
DAT_RATINGS = {"user_id": 0, "item_id": 1, "rating": 2, "timestamp": 3}


def movie(item_id: str, title: str, year: int | None, genres: list[str]) -> dict:
    """One item row. Every layout gives the same row: the GroupLens title loses its "(1995)"
    suffix, which the atomic format already keeps in its own column."""
    genres = genres or ["unknown"]
    when = f" ({year})" if year is not None else ""
    return item(item_id, title, [f"{title}{when}. Genres: {', '.join(genres)}."], genres) | {
        "year": year, "genres": " ".join(genres)}


def _split_titles(cells: np.ndarray) -> tuple[np.ndarray, list[int | None]]:
    """Titles without their "(1995)" suffix, and the year it gave (None without one)."""
    titles, years = [], []
    for title in cells:
        year = None
        if m := _TITLE_YEAR.match(title):
            title, year = m.group(1), int(m.group(2))
        titles.append(title)
        years.append(year)
    return np.array(titles, dtype=object), years


def _genres(cells: np.ndarray) -> list[list[str]]:
    """Genres from "Action|Comedy" (GroupLens) or "Action Comedy" (RecBole); a film with
    "(no genres listed)" has none."""
    return [[g for g in c.replace(NO_GENRES, "").split("|" if "|" in c else None) if g.strip()]
            for c in cells]


def _encoding(path: Path) -> str:
    """utf-8 when the whole file decodes as it, else latin-1 (ML-100K's and ML-1M's side
    files); read only for the small side files, the ratings being ASCII."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _atomic(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Records:
    """A RecBole atomic file, its columns found by a header such as `user_id:token<TAB>
    rating:float`: every `required` column, and those of `optional` the header has."""
    with path.open(encoding="utf-8") as f:
        head = f.readline().rstrip("\r\n").split("\t")
    pos = {name.split(":")[0]: n for n, name in enumerate(head)}
    missing = [c for c in required if c not in pos]
    if missing:
        raise ValueError(f"{path}: header {head} lacks column(s) {missing}; expected a RecBole "
                         "atomic file whose first line names typed columns like `user_id:token`")
    return split_lines(path, "utf-8", "\t", True,
                       {c: pos[c] for c in (*required, *optional) if c in pos})


def _people(recs: Records, src: Source, max_share: float) -> pd.DataFrame:
    """Users: an age or gender that is missing or does not parse is unknown, the user kept.
    An occupation given as a number is ML-1M's code, kept as its name."""
    n = len(recs)
    gender = (recs.attribute("gender", fields.per_value(fields.gender_text), src.na)
              if "gender" in recs.columns else np.full(n, None, object))
    columns = {
        "user_id": recs.parse("user_id", fields.token),
        "age": (recs.attribute("age", fields.integer, src.na) if "age" in recs.columns
                else np.full(n, None, object)),
        "gender": np.array(["" if g is None else g for g in gender], dtype=object),
    }
    if "occupation" in recs.columns:
        columns["occupation"] = np.array(
            [OCCUPATIONS[int(o)] if o.isdigit() and int(o) < len(OCCUPATIONS) else o
             for o in fields.text(recs.columns["occupation"])], dtype=object)
    return good_rows(recs, src, max_share, columns)


def _movies(recs: Records, src: Source, max_share: float, ids: np.ndarray,
            titles: np.ndarray, years: list[int | None], genres: list[list[str]]
            ) -> pd.DataFrame:
    ok = recs.close(src, max_share)
    rows = [movie(ids[i], titles[i], years[i], genres[i]) for i in np.flatnonzero(ok)]
    return pd.DataFrame(rows).assign(_line=recs.lines[ok])


@dataclass(frozen=True)
class Files:
    """The files of one release found in a folder; `users` None when it has none."""

    ratings: Path
    movies: Path
    users: Path | None


def _read_atomic(cfg: LoadConfig, files: Files) -> Source:
    src = cfg.source("recbole-atomic")
    recs = _atomic(files.movies, ("item_id", "movie_title"), ("release_year", "genre", "class"))
    ids = recs.parse("item_id", fields.token)
    titles, suffix_years = _split_titles(fields.text(recs.columns["movie_title"]))
    year_text = (fields.text(recs.columns["release_year"]) if "release_year" in recs.columns
                 else np.full(len(recs), "", object))  # "unkonwn" for one ML-100K film
    years = [int(y) if y.isdigit() else s for y, s in zip(year_text, suffix_years, strict=True)]
    genre = next((c for c in ("genre", "class") if c in recs.columns), None)
    genres = (_genres(fields.text(recs.columns[genre])) if genre
              else [[] for _ in range(len(recs))])
    items = _movies(recs, src, cfg.max_bad_share, ids, titles, years, genres)
    users = _people(_atomic(files.users, ("user_id",), ("age", "gender", "occupation")), src,
                    cfg.max_bad_share) if files.users else None
    ratings = _atomic(files.ratings, ("user_id", "item_id", "rating", "timestamp"))
    return _finish(src, cfg, files, items, users, ratings, fields.number)


def _read_grouplens(cfg: LoadConfig, files: Files) -> Source:
    """ML-100K's u.* files: ratings tab-separated, the side files `|`-separated latin-1."""
    src = cfg.source("grouplens")
    cols = ("movie_id", "title", "release_date", "video_release_date", "imdb_url",
            *(f"genre {g}" for g in GROUPLENS_GENRES))
    recs = split_lines(files.movies, "latin-1", "|", False, {c: k for k, c in enumerate(cols)})
    flags = {g: recs.attribute(f"genre {g}", fields.integer, src.na)
             for g in GROUPLENS_GENRES}
    ids = recs.parse("movie_id", fields.token)
    titles, years = _split_titles(fields.text(recs.columns["title"]))
    released = fields.text(recs.columns["release_date"])
    years = [int(r[-4:]) if y is None and r[-4:].isdigit() else y  # like 01-Jan-1995
             for y, r in zip(years, released, strict=True)]
    genres = [[g for g in GROUPLENS_GENRES if flags[g][i]] for i in range(len(recs))]
    items = _movies(recs, src, cfg.max_bad_share, ids, titles, years, genres)
    users = _people(split_lines(
        files.users, "latin-1", "|", False,
        {"user_id": 0, "age": 1, "gender": 2, "occupation": 3}),  # then zip_code, not kept
        src, cfg.max_bad_share) if files.users else None
    ratings = split_lines(files.ratings, "latin-1", "\t", False, DAT_RATINGS)
    return _finish(src, cfg, files, items, users, ratings, fields.integer)


def _read_dat(cfg: LoadConfig, files: Files) -> Source:
    """ML-1M's and ML-10M's `::`-separated files: MovieID::Title (Year)::Genre|Genre,
    UserID::Gender::Age::Occupation::Zip-code (ML-1M: age is its range's code, 1 for under
    18, 18 for 18-24, ...), UserID::MovieID::Rating::Timestamp (ML-10M: half stars)."""
    src = cfg.source("grouplens-dat")
    recs = split_lines(files.movies, _encoding(files.movies), "::", False,
                       {"movie_id": 0, "title": 1, "genres": 2})
    ids = recs.parse("movie_id", fields.token)
    titles, years = _split_titles(fields.text(recs.columns["title"]))
    items = _movies(recs, src, cfg.max_bad_share, ids, titles, years,
                    _genres(fields.text(recs.columns["genres"])))
    users = _people(split_lines(
        files.users, _encoding(files.users), "::", False,
        {"user_id": 0, "gender": 1, "age": 2, "occupation": 3}),  # then zip-code, not kept
        src, cfg.max_bad_share) if files.users else None
    ratings = split_lines(files.ratings, "latin-1", "::", False, DAT_RATINGS)
    return _finish(src, cfg, files, items, users, ratings, fields.number)


def _read_csv(cfg: LoadConfig, files: Files) -> Source:
    """ML-20M's, ML-25M's and ml-latest's CSV files: movieId,title,genres (a title holding a
    comma is quoted) and userId,movieId,rating,timestamp; no users file."""
    src = cfg.source("grouplens-csv")
    ratings = open_table(files.ratings, CSV_RATINGS.used(), ",", cfg.encoding)
    recs = open_table(files.movies, ("movieId", "title", "genres"), ",", cfg.encoding).read()
    ids = recs.parse("movieId", fields.token)
    titles, years = _split_titles(fields.text(recs.columns["title"]))
    items = _movies(recs, src, cfg.max_bad_share, ids, titles, years,
                    _genres(fields.text(recs.columns["genres"])))
    return _finish(src, cfg, files, items, None, ratings.read(), fields.number, CSV_RATINGS)


def _finish(src: Source, cfg: LoadConfig, files: Files, items: pd.DataFrame,
            users: pd.DataFrame | None, ratings: Records, number: fields.Parser,
            cols: EventColumns = RATINGS) -> Source:
    """Tables from parsed rows, then the ratings against them: every rating is an
    impression, labeled 1 when rating >= like_threshold. Without a users file the users are
    the ids the ratings use."""
    item_file, user_file = files.movies.name, files.users.name if files.users else ""
    items = unique(items, "item_id", item_file, src)
    items["year"] = items["year"].astype("Int16")
    if users is not None:
        users = unique(users, "user_id", user_file, src)
        users["age"] = users["age"].astype("Int16")  # <NA> where unknown

    def when(arr: pa.Array, column: str) -> fields.Parsed:
        p = number(arr, column)
        return fields.Parsed(p.values.astype(np.int64), p.bad, p.reasons)

    columns = event_columns(ratings, cols, labeler(cols, cfg.like_threshold, number), when,
                            Known.of("user", users, files.users),
                            Known.of("item", items, files.movies), src)
    return complete(src, good_rows(ratings, src, cfg.max_bad_share, columns),
                    ratings.path.name, items, item_file, users, user_file)


Reader = Callable[[LoadConfig, Files], Source]


@dataclass(frozen=True)
class Layout:
    """One distribution's file names, "*" standing for the dataset's name (ml-1m.inter): the
    ratings and movies files are required, the users file ("" for none) is read when there."""

    releases: str  # what it is, for messages
    ratings: str
    movies: str
    users: str
    read: Reader

    def find(self, folder: Path) -> Files | None:
        """This layout's files in `folder`, or None when a required one is missing."""
        names = [p.stem for p in folder.glob(self.ratings)] if "*" in self.ratings else [""]
        found = [n for n in names if (folder / self.movies.replace("*", n)).is_file()
                 and (folder / self.ratings.replace("*", n)).is_file()]
        if len(found) > 1:
            raise ValueError(f"{folder} holds several {self.releases} ({', '.join(sorted(found))}"
                             "); point --src at a folder with one of them")
        if not found:
            return None
        users = folder / self.users.replace("*", found[0]) if self.users else None
        return Files(folder / self.ratings.replace("*", found[0]),
                     folder / self.movies.replace("*", found[0]),
                     users if users and users.is_file() else None)

    def expects(self) -> str:
        users = f" and optionally {self.users}" if self.users else ""
        return f"{self.ratings}, {self.movies}{users} ({self.releases})"


# Tried in this order; the first whose required files are all there reads the folder.
LAYOUTS = (
    Layout("RecBole atomic files, * being the dataset's name such as ml-1m", "*.inter",
           "*.item", "*.user", _read_atomic),
    Layout("GroupLens ML-100K", "u.data", "u.item", "u.user", _read_grouplens),
    Layout("GroupLens ML-1M or ML-10M", "ratings.dat", "movies.dat", "users.dat", _read_dat),
    Layout("GroupLens ML-20M, ML-25M or ml-latest", "ratings.csv", "movies.csv", "", _read_csv),
)


def _holds_one(folder: Path) -> bool:
    """Whether `folder` holds a release (or several), for the hint of a folder that does not."""
    try:
        return any(layout.find(folder) for layout in LAYOUTS)
    except ValueError:
        return True


def read(cfg: LoadConfig) -> Source:
    """Any MovieLens release, its layout found by the file names in `cfg.src`."""
    assert cfg.src is not None
    if not cfg.src.is_dir():
        raise FileNotFoundError(f"MovieLens source folder {cfg.src} does not exist")
    for layout in LAYOUTS:
        if files := layout.find(cfg.src):
            return layout.read(cfg, files)
    present = sorted(p.name for p in cfg.src.iterdir())
    inside = [p.name for p in sorted(cfg.src.iterdir()) if p.is_dir() and _holds_one(p)]
    hint = f"; pass --src {cfg.src / inside[0]}, which holds one" if inside else ""
    raise ValueError(f"{cfg.src} is not a MovieLens folder: expected "
                     f"{'; or '.join(layout.expects() for layout in LAYOUTS)}; found "
                     f"{present[:20] or 'nothing'}{hint}")
