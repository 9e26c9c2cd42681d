"""`warmstart load`: public datasets into the project's layout, split by time.

Each preset reads one dataset's own files into a `Source` (items, users, events with a
label), and `write_dataset` turns any `Source` into the layout `flows.data` reads:

    items.parquet, users.parquet          item_id, category, style, price (+ name, description)
    interactions/day=00 .. day=NN/        user_id, item_id, ts, hour, weekday, device, label
    load_report.json                      what was read, and every row that was skipped

Events are cut into `days` buckets of equal count by timestamp, so the standard `Split`
(days 0-8 train, 9-11 validate, 12-13 test) becomes a time-based split: with 14 buckets the
latest ~14% of events are the test set. There is no `truth/` folder: evaluation on loaded
data is beside popularity only.

A row that does not parse is logged and listed in `load_report.json` with its file, line and
column, then skipped; when more than `max_bad_share` of a file's rows are bad the load stops,
since that means a wrong file or format rather than a few damaged lines. A new preset (a
generic CSV, Amazon Books, the Retail Demo Store) is a function `(LoadConfig) -> Source`
added to `PRESETS`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.data import check_out

log = logging.getLogger(__name__)

N_DAYS = 14
REPORT = "load_report.json"


@dataclass(frozen=True)
class LoadConfig:
    src: Path
    out: Path = Path("data")
    preset: str = "movielens"
    days: int = N_DAYS  # equal-count time buckets, written as day=00 .. day=days-1
    like_threshold: float = 4.0  # rating >= this is a positive label (MovieLens: 4 of 5)
    max_bad_share: float = 0.01  # of one file's rows; more bad rows than this stops the load
    overwrite: bool = False  # replace a dataset already in `out`

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not 1 <= self.days <= 60:
            raise ValueError(f"days must be between 1 and 60, got {self.days}")
        if not 0.0 <= self.max_bad_share < 1.0:
            raise ValueError(f"max_bad_share must be in [0, 1), got {self.max_bad_share}")


@dataclass(frozen=True)
class BadRow:
    """One skipped source row; `line` is 1-based and counts a header line if there is one."""

    file: str
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: column {self.column}: {self.reason}"


@dataclass
class Source:
    """A dataset read by a preset, before bucketing into days.

    items: item_id, category, style, price, name, description (+ any other columns);
    users: user_id, age, gender (+ any other columns);
    events: user_id, item_id (both str), ts (int64 seconds since the epoch, UTC), label (0/1).
    """

    format: str
    items: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame
    rows_read: dict[str, int] = field(default_factory=dict)  # data rows per source file
    bad: list[BadRow] = field(default_factory=list)


class _Rows:
    """Collects bad rows of one file and enforces the configured share."""

    def __init__(self, path: Path, source: Source) -> None:
        self.path, self.source, self.n = path, source, 0

    def bad(self, line: int, column: str, reason: str) -> None:
        row = BadRow(self.path.name, line, column, reason)
        self.source.bad.append(row)
        log.warning("skipping %s", row)

    def close(self, max_share: float) -> None:
        self.source.rows_read[self.path.name] = self.n
        n_bad = sum(b.file == self.path.name for b in self.source.bad)
        if self.n and n_bad / self.n > max_share:
            first = next(b for b in self.source.bad if b.file == self.path.name)
            raise ValueError(
                f"{self.path}: {n_bad} of {self.n} rows do not parse (more than "
                f"{max_share:.1%}), e.g. {first}; is this the right file and format? "
                "Raise max_bad_share to load it anyway")


class _Skip(Exception):
    """A field that does not parse: (column, reason)."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(column, reason)
        self.column, self.reason = column, reason


def _lines(path: Path, encoding: str, header: bool) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of the data lines; blank lines are not rows."""
    with path.open(encoding=encoding, newline="") as f:
        for n, line in enumerate(f, start=1):
            if header and n == 1:
                continue
            line = line.rstrip("\r\n")
            if line.strip():
                yield n, line


def _parse(path: Path, encoding: str, header: bool, src: Source, max_bad_share: float,
           row: Callable[[str], dict]) -> list[dict]:
    """`row(line)` for every data line of `path`, each tagged with its line number; lines
    that raise `_Skip` are recorded as bad rows, and too many of them stop the load."""
    out, rows = [], _Rows(path, src)
    for n, line in _lines(path, encoding, header):
        rows.n += 1
        try:
            out.append(row(line) | {"_line": n})
        except _Skip as e:
            rows.bad(n, e.column, e.reason)
    rows.close(max_bad_share)
    return out


def _pick(line: str, sep: str, positions: dict[str, int]) -> dict[str, str]:
    """The named fields of one line; a line too short for a column is bad in that column."""
    parts = line.split(sep)
    for column, n in positions.items():
        if n >= len(parts):
            raise _Skip(column, f"missing field (the line has {len(parts)} fields)")
    return {column: parts[n] for column, n in positions.items()}


def _int(value: str, column: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise _Skip(column, f"{value!r} is not an integer") from None


def _number(value: str, column: str) -> float:
    try:
        x = float(value.strip())
    except ValueError:
        raise _Skip(column, f"{value!r} is not a number") from None
    if not math.isfinite(x):
        raise _Skip(column, f"{value!r} is not a finite number")
    return x


def _token(value: str, column: str) -> str:
    value = value.strip()
    if not value:
        raise _Skip(column, "empty")
    return value


def _gender(value: str, column: str) -> str:
    value = value.strip().upper()
    if value not in ("M", "F"):
        raise _Skip(column, f"{value!r} is not M or F")
    return value


# --- MovieLens-100K -------------------------------------------------------------------------

GROUPLENS_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
                    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
ATOMIC_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
_TITLE_YEAR = re.compile(r"^(.*\S)\s+\((\d{4})\)$")


def _movie(item_id: str, title: str, year: int | None, genres: list[str]) -> dict:
    """One item row. Both formats give the same row: the GroupLens title loses its "(1995)"
    suffix, which the atomic format already keeps in its own column."""
    genres = genres or ["unknown"]
    when = f" ({year})" if year is not None else ""
    return {
        "item_id": item_id,
        "name": title,
        "category": genres[0],
        "style": genres[1] if len(genres) > 1 else "none",
        "price": 0.0,  # MovieLens has no prices
        "year": year,
        "genres": " ".join(genres),
        "description": f"{title}{when}. Genres: {', '.join(genres)}.",
    }


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


def _read_movielens_atomic(cfg: LoadConfig) -> Source:
    inter, item, user = (cfg.src / f for f in ATOMIC_FILES)
    src = Source("recbole-atomic", pd.DataFrame(), pd.DataFrame(), pd.DataFrame())

    pos = _atomic_header(item, ("item_id", "movie_title", "release_year", "class"))

    def movie(line: str) -> dict:
        f = _pick(line, "\t", pos)
        year = f["release_year"].strip()  # "unkonwn" for one film: a missing year
        return _movie(_token(f["item_id"], "item_id"), f["movie_title"].strip(),
                      int(year) if year.isdigit() else None, f["class"].split())

    items = _parse(item, "utf-8", True, src, cfg.max_bad_share, movie)
    upos = _atomic_header(user, ("user_id", "age", "gender", "occupation"))
    users = _parse(user, "utf-8", True, src, cfg.max_bad_share,
                   lambda line: _person(_pick(line, "\t", upos)))

    pos = _atomic_header(inter, ("user_id", "item_id", "rating", "timestamp"))
    return _finish(src, cfg, items, item.name, users, user.name, inter, header=True, sep="\t",
                   positions=pos, encoding="utf-8", number=_number)


def _read_movielens_grouplens(cfg: LoadConfig) -> Source:
    data, item, user = (cfg.src / f for f in GROUPLENS_FILES)
    src = Source("grouplens", pd.DataFrame(), pd.DataFrame(), pd.DataFrame())

    cols = ("movie_id", "title", "release_date", "video_release_date", "imdb_url",
            *(f"genre {g}" for g in GROUPLENS_GENRES))
    positions = {c: k for k, c in enumerate(cols)}

    def movie(line: str) -> dict:
        f = _pick(line, "|", positions)
        genres = [g for g in GROUPLENS_GENRES if _int(f[f"genre {g}"], f"genre {g}")]
        title, year = f["title"].strip(), None
        if m := _TITLE_YEAR.match(title):
            title, year = m.group(1), int(m.group(2))
        elif f["release_date"].strip()[-4:].isdigit():  # like 01-Jan-1995
            year = int(f["release_date"].strip()[-4:])
        return _movie(_token(f["movie_id"], "movie_id"), title, year, genres)

    items = _parse(item, "latin-1", False, src, cfg.max_bad_share, movie)
    ucols = {"user_id": 0, "age": 1, "gender": 2, "occupation": 3}  # then zip_code, not kept
    users = _parse(user, "latin-1", False, src, cfg.max_bad_share,
                   lambda line: _person(_pick(line, "|", ucols)))

    pos = {"user_id": 0, "item_id": 1, "rating": 2, "timestamp": 3}
    return _finish(src, cfg, items, item.name, users, user.name, data, header=False, sep="\t",
                   positions=pos, encoding="latin-1", number=lambda v, c: float(_int(v, c)))


def _person(f: dict[str, str]) -> dict:
    return {"user_id": _token(f["user_id"], "user_id"), "age": _int(f["age"], "age"),
            "gender": _gender(f["gender"], "gender"), "occupation": f["occupation"].strip()}


def _finish(src: Source, cfg: LoadConfig, items: list[dict], item_file: str, users: list[dict],
            user_file: str, ratings: Path, header: bool, sep: str, positions: dict[str, int],
            encoding: str, number: Callable[[str, str], float]) -> Source:
    """Tables from parsed rows, then the ratings against them: every rating is an impression,
    labeled 1 when rating >= like_threshold."""
    src.items = _unique(items, "item_id", item_file, src)
    src.users = _unique(users, "user_id", user_file, src)
    src.items["year"] = src.items["year"].astype("Int16")
    src.users["age"] = src.users["age"].astype(np.int16)
    known_items, known_users = set(src.items["item_id"]), set(src.users["user_id"])

    events: dict[str, list] = {"user_id": [], "item_id": [], "ts": [], "label": []}
    rows = _Rows(ratings, src)
    for n, line in _lines(ratings, encoding, header):
        rows.n += 1
        try:
            f = _pick(line, sep, positions)
            user, item = _token(f["user_id"], "user_id"), _token(f["item_id"], "item_id")
            rating = number(f["rating"], "rating")
            ts = number(f["timestamp"], "timestamp")
            if user not in known_users:
                raise _Skip("user_id", f"user {user!r} is not in {user_file}")
            if item not in known_items:
                raise _Skip("item_id", f"item {item!r} is not in {item_file}")
        except _Skip as e:
            rows.bad(n, e.column, e.reason)
            continue
        events["user_id"].append(user)
        events["item_id"].append(item)
        events["ts"].append(int(ts))
        events["label"].append(int(rating >= cfg.like_threshold))
    rows.close(cfg.max_bad_share)
    src.events = pd.DataFrame({
        "user_id": pd.Series(events["user_id"], dtype=object),
        "item_id": pd.Series(events["item_id"], dtype=object),
        "ts": np.asarray(events["ts"], dtype=np.int64),
        "label": np.asarray(events["label"], dtype=np.int8),
    })
    if src.events.empty:
        raise ValueError(f"{ratings}: no ratings could be read")
    return src


def _unique(rows: list[dict], key: str, file: str, src: Source) -> pd.DataFrame:
    """Keep the first row of a repeated id; each repeat is a bad row (reported, not merged)."""
    if not rows:
        raise ValueError(f"{file}: no rows could be read")
    df = pd.DataFrame(rows)
    dup = df[key].duplicated()
    for line, value in zip(df.loc[dup, "_line"], df.loc[dup, key], strict=True):
        bad = BadRow(file, int(line), key, f"{value!r} appears more than once; kept the first")
        src.bad.append(bad)
        log.warning("skipping %s", bad)
    return df[~dup].drop(columns="_line").reset_index(drop=True)


def read_movielens(cfg: LoadConfig) -> Source:
    """MovieLens-100K in either distribution: RecBole atomic files (`ml-100k.inter`, `.item`,
    `.user`) or the GroupLens originals (`u.data`, `u.item`, `u.user`)."""
    if not cfg.src.is_dir():
        raise FileNotFoundError(f"MovieLens source folder {cfg.src} does not exist")
    for files, read in ((ATOMIC_FILES, _read_movielens_atomic),
                        (GROUPLENS_FILES, _read_movielens_grouplens)):
        if all((cfg.src / f).is_file() for f in files):
            return read(cfg)
    present = sorted(p.name for p in cfg.src.iterdir())[:10]
    raise ValueError(f"{cfg.src} is not a MovieLens-100K folder: expected either "
                     f"{', '.join(ATOMIC_FILES)} (RecBole atomic) or {', '.join(GROUPLENS_FILES)} "
                     f"(GroupLens); found {present or 'nothing'}")


PRESETS: dict[str, Callable[[LoadConfig], Source]] = {
    "movielens": read_movielens,
}


# --- Writing the layout ---------------------------------------------------------------------

def day_buckets(ts: np.ndarray, days: int) -> np.ndarray:
    """(N,) day of each event: `days` buckets of equal count in time order (ties broken by
    position, so a bucket boundary may fall inside one second; every day-k event is still no
    later than any day-k+1 event)."""
    order = np.argsort(ts, kind="stable")  # N
    day = np.empty(len(ts), dtype=np.int64)
    day[order] = np.arange(len(ts)) * days // max(len(ts), 1)
    return day


def write_dataset(src: Source, cfg: LoadConfig) -> dict:
    """Write `src` under `cfg.out`; returns the report also saved as `load_report.json`."""
    check_out(cfg.out, cfg.overwrite, (REPORT,))
    ev = src.events
    day = day_buckets(ev["ts"].to_numpy(), cfg.days)
    sec = ev["ts"].to_numpy()  # N, seconds since the epoch, UTC
    # Naive UTC at millisecond resolution: what `generate` leaves on disk (Parquet has no
    # seconds unit, so its timestamp[s] is stored as ms).
    when = (sec * 1000).astype("datetime64[ms]")
    hour = (sec // 3600) % 24  # N
    weekday = (sec // 86400 + 3) % 7  # N, Monday = 0 (1970-01-01 was a Thursday)

    for sub in ("interactions", "truth"):  # only with overwrite, see check_out
        shutil.rmtree(cfg.out / sub, ignore_errors=True)
    cfg.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(src.items, preserve_index=False), cfg.out / "items.parquet")
    pq.write_table(pa.Table.from_pandas(src.users, preserve_index=False), cfg.out / "users.parquet")
    counts = []
    for d in range(cfg.days):
        on = np.flatnonzero(day == d)
        on = on[np.argsort(when[on], kind="stable")]
        table = pa.table({
            "user_id": pa.array(ev["user_id"].to_numpy()[on], pa.string()),
            "item_id": pa.array(ev["item_id"].to_numpy()[on], pa.string()),
            "ts": pa.array(when[on], pa.timestamp("ms")),
            "hour": pa.array(hour[on], pa.int8()),
            "weekday": pa.array(weekday[on], pa.int8()),
            "device": pa.array(["unknown"] * len(on), pa.string()),  # no device in the source
            "label": pa.array(ev["label"].to_numpy()[on], pa.int8()),
        })
        folder = cfg.out / "interactions" / f"day={d:02d}"
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "part-0.parquet")
        counts.append(len(on))

    report = {
        "preset": cfg.preset, "format": src.format, "src": str(cfg.src),
        "rows_read": src.rows_read, "bad_rows": len(src.bad),
        "items": len(src.items), "users": len(src.users), "interactions": len(ev),
        "positive_share": float(ev["label"].mean()),
        "per_day": counts,
        "first_ts_per_day": [str(when[day == d].min()) if counts[d] else None
                             for d in range(cfg.days)],
        "bad": [asdict(b) for b in src.bad],
    }
    (cfg.out / REPORT).write_text(json.dumps(report, indent=1))
    return report


def load(cfg: LoadConfig) -> dict:
    """Read `cfg.src` with its preset and write the layout into `cfg.out`; returns the report
    (counts per file and day, and every skipped row)."""
    check_out(cfg.out, cfg.overwrite, (REPORT,))  # before reading 100k lines, not after
    return write_dataset(PRESETS[cfg.preset](cfg), cfg)


def load_movielens(src: Path, out: Path, overwrite: bool = False,
                   max_bad_share: float = 0.01) -> Path:
    """MovieLens-100K (either format) into `out`; returns `out`.

    Every rating is an impression: label 1 when the rating is 4 or 5, 0 otherwise, so "not
    clicked" here means "watched and rated 3 or lower", not "shown and ignored". Days are 14
    equal-count time buckets, so the standard split tests on the latest ~14% of ratings.
    Skipped rows are logged and listed in `out/load_report.json`.
    """
    load(LoadConfig(src=src, out=out, preset="movielens", overwrite=overwrite,
                    max_bad_share=max_bad_share))
    return out


# --- Command line ---------------------------------------------------------------------------

def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", choices=list(PRESETS), help="which dataset's files --src holds")
    p.add_argument("--src", type=Path, required=True, help="folder with the dataset's files")
    p.add_argument("--out", type=Path, default=Path("data"), help="output folder (default data)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--max-bad-share", type=float, default=LoadConfig.max_bad_share,
                   help="stop when more than this share of a file's rows do not parse")


def run(args: argparse.Namespace) -> None:
    cfg = LoadConfig(src=args.src, out=args.out, preset=args.preset, overwrite=args.overwrite,
                     max_bad_share=args.max_bad_share)
    r = load(cfg)  # each skipped row is logged as a warning as it is met
    print(f"loaded {r['interactions']:,} interactions ({r['positive_share']:.1%} positive) for "
          f"{r['users']:,} users and {r['items']:,} items from {r['format']} files; "
          f"{r['bad_rows']} bad rows skipped (listed in load_report.json) -> {cfg.out}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m flows.load", description=__doc__.splitlines()[0])
    add_args(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
