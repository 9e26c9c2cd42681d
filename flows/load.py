"""`warmstart load`: public datasets and your own files into the project's layout, split by time.

Each preset reads one dataset's own files into a `Source` (items, users, events with a label,
and review texts where the source has them), and `write_dataset` turns any `Source` into the
layout `flows.data` reads:

    items.parquet        item_id, name, category, style, price, description, categories
    users.parquet        user_id, age (<NA> when unknown), gender ("M", "F", "" when unknown)
    interactions/day=00 .. day=NN/        user_id, item_id, ts, hour, weekday, device, label
    reviews.parquet      user_id, item_id, ts, summary, text (only when the source has reviews)
    load_report.json     what was read, and every row that was skipped

The presets (`PRESETS`; a new one is a function `(LoadConfig) -> Source`):

    movielens          MovieLens-100K: RecBole atomic files or the GroupLens originals
    generic            your CSV/TSV/TXT or parquet files, with a column mapping (`ColumnMap`)
    amazon-books       Kaggle "Amazon Books Reviews": Books_rating.csv and books_data.csv
    retail-demo-store  the Retail Demo Store's products.yaml and its generator's interactions.csv

Events are cut into `days` buckets of equal count by timestamp, so the standard `Split`
(days 0-8 train, 9-11 validate, 12-13 test) becomes a time-based split: with 14 buckets the
latest ~14% of events are the test set. There is no `truth/` folder: evaluation on loaded
data is beside popularity only.

A row that does not parse is logged and listed in `load_report.json` with its file, line and
column (the source's own column name), then skipped; when more than `max_bad_share` of a
file's rows are bad the load stops, since that means a wrong file or format rather than a few
damaged lines.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import json
import logging
import math
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple, Self, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.data import check_out
from flows.synthetic import load_catalog

log = logging.getLogger(__name__)

N_DAYS = 14
REPORT = "load_report.json"
REVIEWS = "reviews.parquet"
TEXT_SUFFIXES = (".csv", ".tsv", ".txt")  # read with the csv module; .parquet with pyarrow
USER_FIELDS = ("user_id", "age", "gender")

Fields = dict[str, str]  # the named fields of one source row, as text
R = TypeVar("R")


# --- Configuration --------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnMap:
    """Which source column holds each field of one file ("" = the file has none). The generic
    preset takes these from the command line as `key=column,key=column`."""

    @classmethod
    def parse(cls, spec: str, flag: str = "--map") -> Self:
        """`user=User_id,item=Id`; a key whose default is a tuple (`text`) may repeat."""
        defaults = {f.name: f.default for f in fields(cls)}
        given: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, eq, column = (s.strip() for s in part.partition("="))
            if not (eq and column and key in defaults):
                raise ValueError(f"{flag} {spec!r}: {part!r} is not KEY=COLUMN with KEY one of "
                                 f"{', '.join(defaults)} (a column name cannot hold a comma)")
            if isinstance(defaults[key], tuple):
                given[key] = (*given.get(key, ()), column)
            elif key in given:
                raise ValueError(f"{flag} {spec!r}: {key} is given twice")
            else:
                given[key] = column
        return cls(**given)

    def used(self) -> list[str]:
        """The source columns this map reads, each once, in field order."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            out += [c for c in (value if isinstance(value, tuple) else (value,))
                    if c and c not in out]
        return out


@dataclass(frozen=True)
class EventColumns(ColumnMap):
    """The interactions file (`--map`): exactly one of rating and label."""

    user: str = "user_id"
    item: str = "item_id"
    rating: str = ""  # a number: label = rating >= like_threshold
    label: str = ""  # 0/1 or false/true
    ts: str = ""  # unix seconds, or ISO 8601 (UTC unless it names a zone); none: file order
    review: str = ""  # review text: an event with one is also written to reviews.parquet
    summary: str = ""  # the review's title, beside its text


@dataclass(frozen=True)
class ItemColumns(ColumnMap):
    """The optional items file (`--item-map`)."""

    id: str = "item_id"
    title: str = ""  # -> name
    text: tuple[str, ...] = ()  # joined into description
    categories: str = ""  # "['A', 'B']" or "A|B": category is the first, style the second
    price: str = ""  # 0.0 where empty


@dataclass(frozen=True)
class UserColumns(ColumnMap):
    """The optional users file (`--user-map`); its other columns are kept as text."""

    id: str = "user_id"
    age: str = ""  # an integer; empty is unknown
    gender: str = ""  # M, F, male or female (any case); empty is unknown


@dataclass(frozen=True)
class LoadConfig:
    src: Path | None = None  # the dataset's folder; relative file paths below are read from it
    out: Path = Path("data")
    preset: str = "movielens"
    days: int = N_DAYS  # equal-count time buckets, written as day=00 .. day=days-1
    like_threshold: float = 4.0  # rating >= this is a positive label (MovieLens: 4 of 5)
    max_bad_share: float = 0.01  # of one file's rows; more bad rows than this stops the load
    overwrite: bool = False  # replace a dataset already in `out`
    # generic: the files to read (interactions required); amazon-books and retail-demo-store:
    # other names than the dataset's own
    interactions_file: Path | None = None
    items_file: Path | None = None
    users_file: Path | None = None
    # generic only: which source column is which
    columns: EventColumns = EventColumns()
    item_columns: ItemColumns = ItemColumns()
    user_columns: UserColumns = UserColumns()
    delimiter: str | None = None  # of text files; None: tab for .tsv, comma otherwise
    encoding: str = "utf-8-sig"  # of text files; utf-8 that drops a byte-order mark

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not 1 <= self.days <= 60:
            raise ValueError(f"days must be between 1 and 60, got {self.days}")
        if not 0.0 <= self.max_bad_share < 1.0:
            raise ValueError(f"max_bad_share must be in [0, 1), got {self.max_bad_share}")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {self.delimiter!r} "
                             "(write a tab as '\\t')")
        if self.preset == "generic":
            if self.interactions_file is None:
                raise ValueError("the generic preset reads --interactions FILE (.csv, .tsv, "
                                 ".txt or .parquet); pass it, and --src for relative paths")
            if bool(self.columns.rating) == bool(self.columns.label):
                raise ValueError("--map must name exactly one of rating=COLUMN (label = rating "
                                 ">= --like-threshold) and label=COLUMN (a 0/1 column)")
            if self.columns.summary and not self.columns.review:
                raise ValueError("--map names summary= without review=; reviews.parquet holds "
                                 "events with review text, so map the text column too")
            return
        if self.src is None:
            raise ValueError(f"the {self.preset} preset reads its files from --src DIR; pass it")
        if (self.columns, self.item_columns, self.user_columns) != (
                EventColumns(), ItemColumns(), UserColumns()):
            raise ValueError(f"--map, --item-map and --user-map are for the generic preset; "
                             f"{self.preset} knows its own columns")
        if self.preset == "movielens" and (self.interactions_file or self.items_file
                                           or self.users_file):
            raise ValueError("movielens reads its own file names from --src; drop "
                             "--interactions, --items and --users")

    def file(self, given: Path | None, default: str = "") -> Path | None:
        """`given` (under `src` when relative and `src` is set), else `src / default`."""
        if given is not None:
            return self.src / given if self.src and not given.is_absolute() else given
        return self.src / default if self.src and default else None


# --- Rows and bad rows ----------------------------------------------------------------------

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
    events: user_id, item_id (both str), ts (int64 seconds since the epoch, UTC), label (0/1);
    reviews: user_id, item_id, ts, summary, text, or None when the source has no review text.
    """

    format: str
    items: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame
    rows_read: dict[str, int] = field(default_factory=dict)  # data rows per source file
    bad: list[BadRow] = field(default_factory=list)
    reviews: pd.DataFrame | None = None


def _empty(fmt: str) -> Source:
    return Source(fmt, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())


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


def _parse(path: Path, records: Iterable[tuple[int, R]], src: Source, max_bad_share: float,
           row: Callable[[R], dict]) -> pd.DataFrame:
    """`row(record)` for every (line, record) of `path`, with the line in column `_line`;
    records that raise `_Skip` are recorded as bad rows, and too many of them stop the load, as
    does a file without a good row. Collected column by column: a list of dicts would cost
    several times the memory on millions of reviews."""
    columns: dict[str, list] = {}
    rows = _Rows(path, src)
    for n, record in records:
        rows.n += 1
        try:
            values = row(record) | {"_line": n}
        except _Skip as e:
            rows.bad(n, e.column, e.reason)
            continue
        for name, value in values.items():
            columns.setdefault(name, []).append(value)
    rows.close(max_bad_share)
    if not columns:
        raise ValueError(f"{path}: no rows could be read ({rows.n} rows, all skipped)")
    return pd.DataFrame(columns)


def _pick(parts: list[str], positions: dict[str, int]) -> Fields:
    """The named fields of one row; a row too short for a column is bad in that column."""
    for column, n in positions.items():
        if n >= len(parts):
            raise _Skip(column, f"missing field (the line has {len(parts)} fields)")
    return {column: parts[n] for column, n in positions.items()}


def _unique(rows: pd.DataFrame, key: str, file: str, src: Source,
            column: str | None = None) -> pd.DataFrame:
    """Keep the first row of a repeated id; each repeat is a bad row (reported, not merged) in
    `column`, the source's name for `key`."""
    dup = rows[key].duplicated()
    for line, value in zip(rows.loc[dup, "_line"], rows.loc[dup, key], strict=True):
        bad = BadRow(file, int(line), column or key,
                     f"{value!r} appears more than once; kept the first")
        src.bad.append(bad)
        log.warning("skipping %s", bad)
    return rows[~dup].drop(columns="_line").reset_index(drop=True)


# --- Fields ---------------------------------------------------------------------------------

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


_GENDERS = {"M": "M", "F": "F", "MALE": "M", "FEMALE": "F"}


def _gender(value: str, column: str) -> str:
    value = value.strip().upper()
    if value not in _GENDERS:
        raise _Skip(column, f"{value!r} is not M, F, male or female")
    return _GENDERS[value]


_FLAGS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}


def _flag(value: str, column: str) -> int:
    try:
        return _FLAGS[value.strip().lower()]
    except KeyError:
        raise _Skip(column, f"{value!r} is not 0 or 1") from None


def _timestamp(value: str, column: str) -> int:
    """Seconds since the epoch from unix seconds (int or float) or ISO 8601 text, which is
    taken as UTC unless it names a zone. A number is never read as a date (20240131 is
    seconds), so a column of unix times cannot be misread; one past the year 5000 is taken
    for milliseconds and refused, rather than dating every event millennia ahead."""
    text = _token(value, column)
    try:
        float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise _Skip(column, f"{text!r} is neither unix seconds nor an ISO 8601 date"
                        ) from None
        return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())
    seconds = math.floor(_number(text, column))
    if abs(seconds) > 95_617_584_000:  # 5000-01-01
        raise _Skip(column, f"{text!r} is too large for unix seconds; milliseconds? Convert "
                    "the column to seconds")
    return seconds


def _price(value: str, column: str) -> float:
    """0.0 where empty: most catalogs leave some prices out, and the models read 0 as none."""
    if not value.strip():
        return 0.0
    x = _number(value.strip().removeprefix("$"), column)
    if x < 0:
        raise _Skip(column, f"{value!r} is a negative price")
    return x


def _list(value: str, column: str) -> list[str]:
    """Names from "['Fiction', 'History']" (a Python list written as text, as the Amazon data
    has them) or from "Fiction|History"; empty gives []."""
    text = value.strip()
    if not text.startswith("["):
        return [p.strip() for p in text.split("|") if p.strip()]
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        names = None
    if not isinstance(names, list | tuple):
        raise _Skip(column, f"{text[:60]!r} looks like a list but does not parse as one")
    return [str(n).strip() for n in names if str(n).strip()]


def _text(value: object) -> str:
    """A parquet or JSON value as the text a CSV would hold: null is empty, 3.0 is "3" (ids
    with a null among them are floats in pandas-written files), dates are ISO 8601."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --- Delimited text and parquet -------------------------------------------------------------

class _Table(NamedTuple):
    """An open CSV or parquet file whose header has been checked against the columns wanted.

    `records` gives (line, fields). CSV: the physical line a record starts on, counting the
    header as line 1 (`reader.line_num` based, so a quoted field spanning lines moves the next
    record down). Parquet: the row's 1-based number + 1, as if a header line came first, so a
    row has the same number in a parquet file and in its CSV export."""

    path: Path
    header: list[str]
    records: Iterator[tuple[int, list[str]]]
    positions: dict[str, int]

    def rows(self, src: Source, max_bad_share: float,
             row: Callable[[Fields], dict]) -> pd.DataFrame:
        """`row(fields)` of every record (see `_parse`)."""
        width, last = len(self.header), self.header[-1]

        def parse(parts: list[str]) -> dict:
            if len(parts) > width:  # the columns after the stray delimiter have moved
                raise _Skip(last, f"{len(parts)} fields where the header has {width}: a "
                            "delimiter inside an unquoted field?")
            return row(_pick(parts, self.positions))

        return _parse(self.path, self.records, src, max_bad_share, parse)


@contextmanager
def _table(path: Path, cfg: LoadConfig, columns: Iterable[str],
           rest: bool = False) -> Iterator[_Table]:
    """`path` opened by its suffix, failing before any row is read when its header lacks one
    of `columns`; `rest` also picks every other column of the header."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check --src and the file flags "
                                "(--interactions, --items, --users)")
    suffix = path.suffix.lower()
    with ExitStack() as stack:
        if suffix == ".parquet":
            pf = stack.enter_context(pq.ParquetFile(path))
            header, records = list(pf.schema_arrow.names), _parquet_records(pf)
        elif suffix in TEXT_SUFFIXES:
            f = stack.enter_context(path.open(encoding=cfg.encoding, newline=""))
            delimiter = cfg.delimiter or ("\t" if suffix == ".tsv" else ",")
            header, records = _csv_records(path, f, delimiter, cfg.encoding)
        else:
            raise ValueError(f"{path}: cannot tell its format from the suffix {path.suffix!r}; "
                             f"name it {', '.join(TEXT_SUFFIXES)} (delimited text) or .parquet")
        columns = list(columns)
        if missing := [c for c in columns if c not in header]:
            hint = " (one column: wrong --delimiter?)" if len(header) == 1 else ""
            raise ValueError(f"{path}: no column(s) {missing} in its header {header}{hint}; "
                             "is this the right file? (generic: fix --map, --item-map or "
                             "--user-map)")
        wanted = columns + [c for c in header if c not in columns] if rest else columns
        yield _Table(path, header, records, {c: header.index(c) for c in wanted})


def _csv_records(path: Path, f: IO[str], delimiter: str,
                 encoding: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header and records of a delimited text file (quoted fields may hold the delimiter
    and line breaks); a blank line is not a row."""
    reader = csv.reader(f, delimiter=delimiter)

    def unreadable(e: Exception) -> ValueError:
        hint = (f"is it {encoding} text? pass --encoding (e.g. latin-1)"
                if isinstance(e, UnicodeDecodeError)
                else "a stray quote, or a field longer than csv.field_size_limit()?")
        return ValueError(f"{path}: cannot read past line {reader.line_num}: {e}; {hint}")

    try:
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as e:
        raise unreadable(e) from e
    if not header:
        raise ValueError(f"{path}: the first line is empty; expected a header naming the "
                         "columns")

    def records() -> Iterator[tuple[int, list[str]]]:
        end = reader.line_num  # the line the last record ended on
        try:
            for parts in reader:
                start, end = end + 1, reader.line_num
                if any(p.strip() for p in parts):
                    yield start, parts
        except (UnicodeDecodeError, csv.Error) as e:
            raise unreadable(e) from e

    return [h.strip() for h in header], records()


def _parquet_records(pf: pq.ParquetFile) -> Iterator[tuple[int, list[str]]]:
    line = 1  # the header's line, had the file been a CSV export
    for batch in pf.iter_batches():
        for values in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            line += 1
            yield line, [_text(v) for v in values]


# --- Tables shared by the presets -----------------------------------------------------------

def _item(item_id: str, name: str, texts: Iterable[str], categories: list[str],
          price: float = 0.0) -> dict:
    """One item row: the first category is the `category` the models embed, the second the
    `style` within it; all of them stay in `categories`."""
    categories = categories or ["unknown"]
    return {
        "item_id": item_id,
        "name": name,
        "category": categories[0],
        "style": categories[1] if len(categories) > 1 else "none",
        "price": price,
        "description": " ".join(t.strip() for t in texts if t.strip()),
        "categories": "|".join(categories),
    }


def _item_row(f: Fields, cols: ItemColumns) -> dict:
    return _item(_token(f[cols.id], cols.id),
                 f[cols.title].strip() if cols.title else "",
                 [f[c] for c in cols.text],
                 _list(f[cols.categories], cols.categories) if cols.categories else [],
                 _price(f[cols.price], cols.price) if cols.price else 0.0)


def _user_row(f: Fields, cols: UserColumns) -> dict:
    """Age and gender when given (unknown: None and ""), and the row's other fields as text."""
    age = f[cols.age].strip() if cols.age else ""
    gender = f[cols.gender].strip() if cols.gender else ""
    known = {*cols.used(), *USER_FIELDS}
    return {
        "user_id": _token(f[cols.id], cols.id),
        "age": _int(age, cols.age) if age else None,
        "gender": _gender(gender, cols.gender) if gender else "",
    } | {c: v for c, v in f.items() if c not in known}


def _user_table(users: pd.DataFrame) -> pd.DataFrame:
    """Ages as nullable integers: training reads <NA> as unknown (normalized 0, bucket OOV),
    where a number such as -1 would be taken for an age."""
    users["age"] = users["age"].astype("Int16")
    return users


@dataclass(frozen=True)
class _Known:
    """The ids a source's item or user table defines, to check events against; `ids` None:
    the source has no such table, and it is made from the ids the events use."""

    what: str  # item or user
    file: str = ""
    ids: frozenset[str] | None = None

    @classmethod
    def of(cls, what: str, table: pd.DataFrame | None, path: Path | None) -> _Known:
        if table is None or path is None:
            return cls(what)
        return cls(what, path.name, frozenset(table[f"{what}_id"]))

    def check(self, value: str, column: str) -> str:
        if self.ids is not None and value not in self.ids:
            raise _Skip(column, f"{self.what} {value!r} is not in {self.file}")
        return value


def _labeler(cols: EventColumns, like_threshold: float,
             number: Callable[[str, str], float] = _number) -> Callable[[Fields], int]:
    """The label from a 0/1 column, or rating >= like_threshold: a rated item was seen, so a
    low rating is an impression that was not liked."""
    if cols.label:
        return lambda f: _flag(f[cols.label], cols.label)
    return lambda f: int(number(f[cols.rating], cols.rating) >= like_threshold)


def _event_parser(cols: EventColumns, label: Callable[[Fields], int],
                  when: Callable[[str, str], int], users: _Known, items: _Known,
                  extra: Callable[[Fields], dict] | None = None) -> Callable[[Fields], dict]:
    """One event from a row's fields: ids, label, ts, review text where mapped, and the
    `extra` fields a preset wants; an id its table lacks makes the row bad."""

    def event(f: Fields) -> dict:
        user, item = _token(f[cols.user], cols.user), _token(f[cols.item], cols.item)
        row = {"label": label(f)}
        if cols.ts:
            row["ts"] = when(f[cols.ts], cols.ts)
        if cols.review:
            row["text"] = f[cols.review].strip()
        if cols.summary:
            row["summary"] = f[cols.summary].strip()
        ids = {"user_id": users.check(user, cols.user), "item_id": items.check(item, cols.item)}
        return ids | row | (extra(f) if extra else {})

    return event


def _complete(src: Source, rows: pd.DataFrame, path: Path, items: pd.DataFrame | None,
              users: pd.DataFrame | None) -> Source:
    """`src` with its events (and reviews) from parsed rows. A source without an item or user
    table gets one made from the ids its events use: items of category "unknown" with no
    text, users of unknown age and gender.

    Without a timestamp column, the n-th event of the file gets ts = n seconds after the
    epoch: days are then slices of the file in order, and hour and weekday mean nothing."""
    ts = (rows["ts"].to_numpy(np.int64) if "ts" in rows
          else np.arange(len(rows), dtype=np.int64))  # N
    src.events = pd.DataFrame({
        "user_id": rows["user_id"].astype(object),
        "item_id": rows["item_id"].astype(object),
        "ts": ts,
        "label": rows["label"].to_numpy(np.int8),
    })
    if "text" in rows:
        reviews = src.events[["user_id", "item_id", "ts"]].assign(
            summary=rows["summary"] if "summary" in rows else "", text=rows["text"])
        src.reviews = reviews[reviews["text"] != ""].reset_index(drop=True)
    if items is None:
        items = pd.DataFrame([_item(i, "", [], []) for i in pd.unique(src.events["item_id"])])
    if users is None:
        users = _user_table(pd.DataFrame({"user_id": pd.unique(src.events["user_id"]),
                                          "age": None, "gender": ""}))
    src.items, src.users = items, users
    return src


# --- MovieLens-100K -------------------------------------------------------------------------

GROUPLENS_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
                    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
ATOMIC_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
_TITLE_YEAR = re.compile(r"^(.*\S)\s+\((\d{4})\)$")
_RATINGS = EventColumns(user="user_id", item="item_id", rating="rating", ts="timestamp")


def _movie(item_id: str, title: str, year: int | None, genres: list[str]) -> dict:
    """One item row. Both formats give the same row: the GroupLens title loses its "(1995)"
    suffix, which the atomic format already keeps in its own column."""
    genres = genres or ["unknown"]
    when = f" ({year})" if year is not None else ""
    return _item(item_id, title, [f"{title}{when}. Genres: {', '.join(genres)}."], genres) | {
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


def _read_movielens_atomic(cfg: LoadConfig) -> Source:
    inter, item, user = (cfg.src / f for f in ATOMIC_FILES)
    src = _empty("recbole-atomic")

    pos = _atomic_header(item, ("item_id", "movie_title", "release_year", "class"))

    def movie(line: str) -> dict:
        f = _pick(line.split("\t"), pos)
        year = f["release_year"].strip()  # "unkonwn" for one film: a missing year
        return _movie(_token(f["item_id"], "item_id"), f["movie_title"].strip(),
                      int(year) if year.isdigit() else None, f["class"].split())

    items = _parse(item, _lines(item, "utf-8", True), src, cfg.max_bad_share, movie)
    upos = _atomic_header(user, ("user_id", "age", "gender", "occupation"))
    users = _parse(user, _lines(user, "utf-8", True), src, cfg.max_bad_share,
                   lambda line: _person(_pick(line.split("\t"), upos)))

    pos = _atomic_header(inter, ("user_id", "item_id", "rating", "timestamp"))
    return _finish(src, cfg, items, item.name, users, user.name, inter,
                   _lines(inter, "utf-8", True), positions=pos, number=_number)


def _read_movielens_grouplens(cfg: LoadConfig) -> Source:
    data, item, user = (cfg.src / f for f in GROUPLENS_FILES)
    src = _empty("grouplens")

    cols = ("movie_id", "title", "release_date", "video_release_date", "imdb_url",
            *(f"genre {g}" for g in GROUPLENS_GENRES))
    positions = {c: k for k, c in enumerate(cols)}

    def movie(line: str) -> dict:
        f = _pick(line.split("|"), positions)
        genres = [g for g in GROUPLENS_GENRES if _int(f[f"genre {g}"], f"genre {g}")]
        title, year = f["title"].strip(), None
        if m := _TITLE_YEAR.match(title):
            title, year = m.group(1), int(m.group(2))
        elif f["release_date"].strip()[-4:].isdigit():  # like 01-Jan-1995
            year = int(f["release_date"].strip()[-4:])
        return _movie(_token(f["movie_id"], "movie_id"), title, year, genres)

    items = _parse(item, _lines(item, "latin-1", False), src, cfg.max_bad_share, movie)
    ucols = {"user_id": 0, "age": 1, "gender": 2, "occupation": 3}  # then zip_code, not kept
    users = _parse(user, _lines(user, "latin-1", False), src, cfg.max_bad_share,
                   lambda line: _person(_pick(line.split("|"), ucols)))

    pos = {"user_id": 0, "item_id": 1, "rating": 2, "timestamp": 3}
    return _finish(src, cfg, items, item.name, users, user.name, data,
                   _lines(data, "latin-1", False), positions=pos,
                   number=lambda v, c: float(_int(v, c)))


def _person(f: Fields) -> dict:
    return {"user_id": _token(f["user_id"], "user_id"), "age": _int(f["age"], "age"),
            "gender": _gender(f["gender"], "gender"), "occupation": f["occupation"].strip()}


def _finish(src: Source, cfg: LoadConfig, items: pd.DataFrame, item_file: str,
            users: pd.DataFrame, user_file: str, ratings: Path,
            lines: Iterable[tuple[int, str]], positions: dict[str, int],
            number: Callable[[str, str], float]) -> Source:
    """Tables from parsed rows, then the ratings (tab-separated in both formats) against
    them: every rating is an impression, labeled 1 when rating >= like_threshold."""
    items = _unique(items, "item_id", item_file, src)
    users = _unique(users, "user_id", user_file, src)
    items["year"] = items["year"].astype("Int16")
    users["age"] = users["age"].astype(np.int16)  # every MovieLens user has an age
    event = _event_parser(_RATINGS, _labeler(_RATINGS, cfg.like_threshold, number),
                          lambda v, c: int(number(v, c)),
                          _Known("user", user_file, frozenset(users["user_id"])),
                          _Known("item", item_file, frozenset(items["item_id"])))
    rows = _parse(ratings, lines, src, cfg.max_bad_share,
                  lambda line: event(_pick(line.split("\t"), positions)))
    return _complete(src, rows, ratings, items, users)


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


# --- Your own files -------------------------------------------------------------------------

def read_generic(cfg: LoadConfig) -> Source:
    """Interactions, and optionally items and users, from CSV/TSV/TXT or parquet files, with
    `cfg.columns`, `cfg.item_columns` and `cfg.user_columns` saying which column is which.

    An items or users file, when given, defines the ids: an event naming an id it lacks is a
    bad row, as in MovieLens. Every header is checked against its mapping before any row is
    read, so a misspelled column fails at once rather than after a long read."""
    paths = [cfg.file(p) for p in (cfg.interactions_file, cfg.items_file, cfg.users_file)]
    events_at, items_at, users_at = paths
    src = _empty(events_at.suffix.lstrip(".").lower())
    with ExitStack() as stack:
        events = stack.enter_context(_table(events_at, cfg, cfg.columns.used()))
        item_table = (stack.enter_context(_table(items_at, cfg, cfg.item_columns.used()))
                      if items_at else None)
        user_table = (stack.enter_context(_table(users_at, cfg, cfg.user_columns.used(),
                                                 rest=True)) if users_at else None)
        items = users = None
        if item_table:
            items = _unique(item_table.rows(src, cfg.max_bad_share,
                                            lambda f: _item_row(f, cfg.item_columns)),
                            "item_id", items_at.name, src, cfg.item_columns.id)
        if user_table:
            users = _user_table(_unique(user_table.rows(src, cfg.max_bad_share,
                                                        lambda f: _user_row(f, cfg.user_columns)),
                                        "user_id", users_at.name, src, cfg.user_columns.id))
        parse = _event_parser(cfg.columns, _labeler(cfg.columns, cfg.like_threshold), _timestamp,
                              _Known.of("user", users, users_at),
                              _Known.of("item", items, items_at))
        rows = events.rows(src, cfg.max_bad_share, parse)
    return _complete(src, rows, events_at, items, users)


# --- Amazon Books Reviews (Kaggle) ----------------------------------------------------------

AMAZON_FILES = ("Books_rating.csv", "books_data.csv")
AMAZON_EVENTS = EventColumns(user="User_id", item="Id", rating="review/score", ts="review/time",
                             review="review/text", summary="review/summary")
AMAZON_BOOKS = ("Title", "description", "authors", "categories")


def _book(f: Fields) -> dict:
    authors = _list(f["authors"], "authors")
    return {"title": _token(f["Title"], "Title"),
            "text": [f["description"], f"By {', '.join(authors)}." if authors else ""],
            "categories": _list(f["categories"], "categories")}


def read_amazon_books(cfg: LoadConfig) -> Source:
    """Kaggle's "Amazon Books Reviews": Books_rating.csv (one review a row) and books_data.csv
    (one book a row).

    Every review is an impression, labeled 1 when its score is >= like_threshold (4 of 5).
    The item is the review's book Id; its description, authors and categories come from
    books_data.csv, joined by Title, the only key the files share (a book missing there keeps
    its title, with category "unknown"). Price is Books_rating's, empty (0.0) for most books.
    Users have no attributes. Every review with text is also written to reviews.parquet.
    A review without a User_id is a bad row; the Kaggle release has many, so the full file
    may need a higher --max-bad-share (the error says how many)."""
    ratings_at = cfg.file(cfg.interactions_file, AMAZON_FILES[0])
    books_at = cfg.file(cfg.items_file, AMAZON_FILES[1])
    src = _empty("amazon-books")
    with ExitStack() as stack:
        ratings = stack.enter_context(
            _table(ratings_at, cfg, [*AMAZON_EVENTS.used(), "Title", "Price"]))
        books = stack.enter_context(_table(books_at, cfg, AMAZON_BOOKS))
        about = _unique(books.rows(src, cfg.max_bad_share, _book), "title", books_at.name, src,
                        "Title").set_index("title")
        parse = _event_parser(AMAZON_EVENTS, _labeler(AMAZON_EVENTS, cfg.like_threshold),
                              _timestamp, _Known("user"), _Known("item"),
                              extra=lambda f: {"title": f["Title"].strip(),
                                               "price": _price(f["Price"], "Price")})
        rows = ratings.rows(src, cfg.max_bad_share, parse)
    items = []
    for item_id, title, price in rows.drop_duplicates("item_id")[
            ["item_id", "title", "price"]].itertuples(index=False):
        book = about.loc[title] if title in about.index else None
        items.append(_item(item_id, title, [] if book is None else book["text"],
                           [] if book is None else book["categories"], price))
    return _complete(src, rows, ratings_at, pd.DataFrame(items), None)


# --- Retail Demo Store ----------------------------------------------------------------------

RDS_EVENTS = EventColumns(user="USER_ID", item="ITEM_ID", label="EVENT_TYPE", ts="TIMESTAMP")
# A view is an impression that was not acted on; every later funnel step is a positive. So a
# product viewed and then added to the cart gives two events, labeled 0 and 1.
RDS_LABELS = {"ProductViewed": 0, "ProductAdded": 1, "CartViewed": 1, "CheckoutStarted": 1,
              "OrderCompleted": 1}


def _funnel(f: Fields) -> int:
    kind = f["EVENT_TYPE"].strip()
    if kind not in RDS_LABELS:
        raise _Skip("EVENT_TYPE", f"{kind!r} is not one of {', '.join(RDS_LABELS)}")
    return RDS_LABELS[kind]


def _json_users(path: Path, src: Source, max_bad_share: float) -> pd.DataFrame:
    """users.json (or .json.gz): a list of objects, of which id, age and gender are kept (the
    generator's persona fields would hand the models the answer). A bad row's `line` is the
    object's 1-based position in the list."""
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz"
              else path.open(encoding="utf-8")) as f:
            people = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}; expected the Retail Demo Store's "
                         "users.json, a JSON list of objects with id, age and gender") from e
    if not isinstance(people, list):
        raise ValueError(f"{path}: expected a JSON list of users, got {type(people).__name__}")
    cols = UserColumns(id="id", age="age", gender="gender")

    def person(p: object) -> dict:
        if not isinstance(p, dict):
            raise _Skip("id", f"a {type(p).__name__}, not an object")
        return _user_row({c: _text(p.get(c)) for c in cols.used()}, cols)

    return _user_table(_unique(_parse(path, enumerate(people, start=1), src, max_bad_share,
                                      person), "user_id", path.name, src, "id"))


def read_retail_demo_store(cfg: LoadConfig) -> Source:
    """The Retail Demo Store (aws-samples/retail-demo-store): the catalog products.yaml, the
    interactions.csv its generator writes (ITEM_ID, USER_ID, EVENT_TYPE, TIMESTAMP in unix
    seconds; DISCOUNT is not kept) and, when present, users.json or users.json.gz (id, age,
    gender). Labels follow `RDS_LABELS`: a view is 0, any later funnel step is 1."""
    products = cfg.file(cfg.items_file, "products.yaml")
    interactions = cfg.file(cfg.interactions_file, "interactions.csv")
    if not products.is_file():
        raise FileNotFoundError(f"{products} does not exist; --src should hold the Retail Demo "
                                "Store's products.yaml (src/products/data/ in its repository), "
                                "or pass --items")
    if not interactions.is_file():
        raise FileNotFoundError(
            f"{interactions} does not exist, and products.yaml holds no interactions: pass "
            "--interactions FILE (the interactions.csv the Retail Demo Store's generator "
            f"writes), or run `warmstart generate --catalog {products}` for synthetic "
            "interactions over this catalog")
    users_at = cfg.file(cfg.users_file) or next(
        (p for p in (cfg.src / "users.json", cfg.src / "users.json.gz") if p.is_file()), None)
    src = _empty("retail-demo-store")
    items = load_catalog(products)  # a bad product stops here, named
    users = _json_users(users_at, src, cfg.max_bad_share) if users_at else None
    with _table(interactions, cfg, RDS_EVENTS.used()) as events:
        parse = _event_parser(RDS_EVENTS, _funnel, _timestamp, _Known.of("user", users, users_at),
                              _Known.of("item", items, products))
        rows = events.rows(src, cfg.max_bad_share, parse)
    return _complete(src, rows, interactions, items, users)


PRESETS: dict[str, Callable[[LoadConfig], Source]] = {
    "movielens": read_movielens,
    "generic": read_generic,
    "amazon-books": read_amazon_books,
    "retail-demo-store": read_retail_demo_store,
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
    check_out(cfg.out, cfg.overwrite, (REPORT, REVIEWS))
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
    (cfg.out / REVIEWS).unlink(missing_ok=True)  # the old data's reviews would mislead
    cfg.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(src.items, preserve_index=False), cfg.out / "items.parquet")
    pq.write_table(pa.Table.from_pandas(src.users, preserve_index=False), cfg.out / "users.parquet")
    if src.reviews is not None:
        r = src.reviews
        pq.write_table(pa.table({
            "user_id": pa.array(r["user_id"].to_numpy(), pa.string()),
            "item_id": pa.array(r["item_id"].to_numpy(), pa.string()),
            "ts": pa.array(r["ts"].to_numpy(), pa.int64()),  # seconds since the epoch, UTC
            "summary": pa.array(r["summary"].to_numpy(), pa.string()),
            "text": pa.array(r["text"].to_numpy(), pa.string()),
        }), cfg.out / REVIEWS)
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
        "preset": cfg.preset, "format": src.format,
        "src": str(cfg.src) if cfg.src else None,
        "rows_read": src.rows_read, "bad_rows": len(src.bad),
        "items": len(src.items), "users": len(src.users), "interactions": len(ev),
        "reviews": 0 if src.reviews is None else len(src.reviews),
        "positive_share": float(ev["label"].mean()),
        "per_day": counts,
        "first_ts_per_day": [str(when[day == d].min()) if counts[d] else None
                             for d in range(cfg.days)],
        "bad": [asdict(b) for b in src.bad],
    }
    (cfg.out / REPORT).write_text(json.dumps(report, indent=1))
    return report


def read_reviews(data: Path) -> pd.DataFrame | None:
    """The review texts a loaded dataset came with (user_id, item_id, ts in seconds, summary,
    text), for text features of users and items; None when its source had none."""
    path = data / REVIEWS
    if not path.exists():
        return None
    reviews = pd.read_parquet(path)
    for col in ("user_id", "item_id"):
        reviews[col] = reviews[col].astype(str)
    return reviews


def load(cfg: LoadConfig) -> dict:
    """Read `cfg.src` with its preset and write the layout into `cfg.out`; returns the report
    (counts per file and day, and every skipped row)."""
    check_out(cfg.out, cfg.overwrite, (REPORT, REVIEWS))  # before reading, not after
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
    p.add_argument("preset", choices=list(PRESETS),
                   help="movielens, amazon-books and retail-demo-store read their own files "
                        "from --src; generic reads --interactions (and --items, --users)")
    p.add_argument("--src", type=Path, default=None,
                   help="folder with the dataset's files; relative file flags are read from it")
    p.add_argument("--out", type=Path, default=Path("data"), help="output folder (default data)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--max-bad-share", type=float, default=LoadConfig.max_bad_share,
                   help="stop when more than this share of a file's rows do not parse")
    p.add_argument("--like-threshold", type=float, default=LoadConfig.like_threshold,
                   help="a rating >= this is a positive label (default %(default)s)")
    g = p.add_argument_group(
        "files and columns", "generic: the files and which column is which; amazon-books and "
        "retail-demo-store: other file names than the dataset's own")
    g.add_argument("--interactions", type=Path, help="events: .csv, .tsv, .txt or .parquet")
    g.add_argument("--items", type=Path,
                   help="items (generic: optional; without it items are made from the ids seen)")
    g.add_argument("--users", type=Path,
                   help="users (generic: optional; without it users have no attributes)")
    g.add_argument("--map", default="", metavar="KEY=COLUMN,...",
                   help="interactions: user=, item=, rating= or label=, ts=, review=, summary= "
                        "(default user=user_id,item=item_id; no ts: events keep file order)")
    g.add_argument("--item-map", default="", metavar="KEY=COLUMN,...",
                   help="items: id=, title=, text= (may repeat), categories=, price= "
                        "(default id=item_id)")
    g.add_argument("--user-map", default="", metavar="KEY=COLUMN,...",
                   help="users: id=, age=, gender= (default id=user_id); other columns are kept")
    g.add_argument("--delimiter", default=None,
                   help="of text files (default: tab for .tsv, comma otherwise; a tab: '\\t')")
    g.add_argument("--encoding", default=LoadConfig.encoding,
                   help="of text files (default %(default)s: utf-8 with or without a BOM)")


def run(args: argparse.Namespace) -> None:
    cfg = LoadConfig(
        src=args.src, out=args.out, preset=args.preset, overwrite=args.overwrite,
        max_bad_share=args.max_bad_share, like_threshold=args.like_threshold,
        interactions_file=args.interactions, items_file=args.items, users_file=args.users,
        columns=EventColumns.parse(args.map, "--map"),
        item_columns=ItemColumns.parse(args.item_map, "--item-map"),
        user_columns=UserColumns.parse(args.user_map, "--user-map"),
        delimiter="\t" if args.delimiter in ("\\t", "tab") else args.delimiter,
        encoding=args.encoding)
    r = load(cfg)  # each skipped row is logged as a warning as it is met
    reviews = f" and {r['reviews']:,} reviews" if r["reviews"] else ""
    print(f"loaded {r['interactions']:,} interactions ({r['positive_share']:.1%} positive)"
          f"{reviews} for {r['users']:,} users and {r['items']:,} items from {r['format']} "
          f"files; {r['bad_rows']} bad rows skipped (listed in load_report.json) -> {cfg.out}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m flows.load", description=__doc__.splitlines()[0])
    add_args(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
