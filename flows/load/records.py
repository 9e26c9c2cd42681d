"""Reading one source file into `Records`: its rows column by column, each with the line it
came from, and the rows that did not parse with the column and the reason.

    delimited text (.csv, .tsv, .txt)  the csv module: quoted fields may hold the delimiter
                                       and line breaks; a row's line is the physical line it
                                       starts on, the header being line 1
    parquet                            pyarrow, only the columns asked for, with their types;
                                       row n (1-based) is "line" n + 1, as if a header line
                                       came first, so it has the same number in its CSV export
    split lines                        MovieLens' own files: one row a line, split on a fixed
                                       separator, no quoting
    JSON list                          a list of objects; a row's line is its position (1-based)

A header is checked against the columns a mapping needs before any row is read, so a
misspelled column fails at once rather than after a long read.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.load.fields import Parsed, Parser, optional, text_of
from train import schema

log = logging.getLogger("flows.load")

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")  # read with the csv module; .parquet with pyarrow


@dataclass(frozen=True)
class BadRow:
    """One finding in a source row; `line` is 1-based and counts a header line if there is
    one. What was done about it is the list it sits in (`Source.bad`, `dropped`, `created`)."""

    file: str
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: column {self.column}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Cells that mean "no value" (compared case-insensitively, surrounding space removed): an
# attribute holding one is missing (OOV at training), never a bad row.
NA_VALUES = ("", "null", "na", "n/a", "nan", "none")


@dataclass
class Source:
    """A dataset read by a preset, before bucketing into days.

    items: item_id, category, style, price, name, description (+ any other columns);
    users: user_id, age, gender (+ any other columns);
    events: user_id, item_id (both str), ts (int64 seconds since the epoch, UTC), label (0/1);
    reviews: user_id, item_id, ts, summary, text, or None when the source has no review text.
    """

    format: str
    na: frozenset[str] = frozenset(NA_VALUES)  # lower-case missing-value markers
    strict_ids: bool = False  # refuse events whose user or item the tables lack
    items: pd.DataFrame = field(default_factory=pd.DataFrame)
    users: pd.DataFrame = field(default_factory=pd.DataFrame)
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    rows_read: dict[str, int] = field(default_factory=dict)  # data rows per source file
    bad: list[BadRow] = field(default_factory=list)  # rows skipped
    dropped: list[BadRow] = field(default_factory=list)  # values dropped, their row kept
    created: list[BadRow] = field(default_factory=list)  # entities made from an event
    reviews: pd.DataFrame | None = None

    def skip(self, row: BadRow) -> None:
        self.bad.append(row)
        log.debug("skipping %s", row)


class Records:
    """One file's rows, column by column. Parsing a required column (`parse`) marks the rows
    whose value does not parse; a row keeps the first column that failed, in parse order, as
    the one it is reported under. Parsing an attribute (`attribute`) never fails a row: a
    missing-value marker is None, a value that does not parse is dropped (None) and noted.
    `close` reports both and returns the good rows' mask."""

    def __init__(self, path: Path, lines: np.ndarray, columns: dict[str, pa.Array]) -> None:
        self.path, self.lines, self.columns = path, lines, columns
        n = len(lines)
        self.bad = np.zeros(n, bool)
        self.bad_column = np.full(n, None, dtype=object)
        self.bad_reason = np.full(n, None, dtype=object)
        self.dropped: list[tuple[np.ndarray, str, np.ndarray]] = []  # (rows, column, reasons)

    def __len__(self) -> int:
        return len(self.lines)

    def mark(self, rows: np.ndarray, column: str, reasons: np.ndarray | str) -> None:
        """Rows (bool) bad in `column`, unless an earlier column already failed them."""
        new = rows & ~self.bad
        self.bad_column[new] = column
        self.bad_reason[new] = reasons[new] if isinstance(reasons, np.ndarray) else reasons
        self.bad |= new

    def mark_rows(self, found: list[tuple[int, str, str]]) -> None:
        """(row, column, reason) of rows found bad while the file was read."""
        if not found:
            return
        rows = np.array([row for row, _, _ in found], dtype=np.int64)
        mask = np.zeros(len(self), bool)
        mask[rows] = True
        reasons = np.full(len(self), None, dtype=object)
        columns = np.full(len(self), "", dtype=object)
        reasons[rows] = [reason for _, _, reason in found]
        columns[rows] = [column for _, column, _ in found]
        new = mask & ~self.bad
        self.bad_column[new], self.bad_reason[new] = columns[new], reasons[new]
        self.bad |= new

    def parse(self, column: str, parser: Parser) -> np.ndarray:
        """(N,) parsed values of a required source column; rows that fail are marked."""
        p: Parsed = parser(self.columns[column], column)
        self.mark(p.bad, column, p.reasons)
        return p.values

    def attribute(self, column: str, parser: Parser, na: frozenset[str]) -> np.ndarray:
        """(N,) object values of an optional column: None where the cell is empty or a
        missing-value marker of `na`, and where the value does not parse (that value is
        dropped and reported; its row stays)."""
        p: Parsed = optional(parser, na)(self.columns[column], column)
        values = p.values.astype(object)
        values[p.bad] = None
        if p.bad.any():
            self.dropped.append((p.bad, column, p.reasons))
        return values

    def close(self, src: Source, max_share: float) -> np.ndarray:
        """Report the bad rows and dropped values to `src` (in line order) and return the
        (N,) mask of good rows. More than `max_share` bad rows, or none good, stop the load:
        that means a wrong file or format rather than a few damaged lines."""
        name = self.path.name
        src.rows_read[name] = len(self)
        bad = np.flatnonzero(self.bad)
        for i in bad:
            src.skip(BadRow(name, int(self.lines[i]), str(self.bad_column[i]),
                            str(self.bad_reason[i])))
        dropped = [(int(i), column, str(reasons[i])) for rows, column, reasons in self.dropped
                   for i in np.flatnonzero(rows & ~self.bad)]
        for i, column, reason in sorted(dropped):
            src.dropped.append(BadRow(name, int(self.lines[i]), column,
                                      f"{reason}; the value is dropped, the row kept"))
        if len(self) and len(bad) / len(self) > max_share:
            first = next(b for b in src.bad if b.file == name)
            raise ValueError(
                f"{self.path}: {len(bad)} of {len(self)} rows do not parse (more than "
                f"{max_share:.1%}), e.g. {first}; is this the right file and format? "
                "Raise max_bad_share to load it anyway")
        if len(bad) == len(self):
            raise ValueError(f"{self.path}: no rows could be read ({len(self)} rows, all "
                             "skipped)")
        return ~self.bad


def records(path: Path, rows: Iterable[tuple[int, list[str]]], positions: dict[str, int],
            header: list[str] | None = None) -> Records:
    """Records of text rows (line, fields), keeping the fields at `positions`. A row too short
    for a column is bad in the first column it lacks; with a `header`, a row with more fields
    than it names is bad in the header's last column, since its columns have moved."""
    lines: list[int] = []
    cols: dict[str, list[str]] = {c: [] for c in positions}
    early: list[tuple[int, str, str]] = []  # (row, column, reason) found while reading
    width = len(header) if header else None
    for line, parts in rows:
        n = len(lines)
        lines.append(line)
        if header and width is not None and len(parts) > width:
            early.append((n, header[-1], f"{len(parts)} fields where the header has {width}: "
                                         "a delimiter inside an unquoted field?"))
        else:
            for column, k in positions.items():
                if k >= len(parts):
                    early.append((n, column, f"missing field (the line has {len(parts)} "
                                             "fields)"))
                    break
        for column, k in positions.items():
            cols[column].append(parts[k] if k < len(parts) else "")
    out = Records(path, np.array(lines, dtype=np.int64),
                  {c: pa.array(v, pa.string()) for c, v in cols.items()})
    out.mark_rows(early)
    return out


def split_lines(path: Path, encoding: str, separator: str, header: bool,
                positions: dict[str, int]) -> Records:
    """A file of one row per line split on `separator` (MovieLens' own formats); blank lines
    are not rows."""

    def rows() -> Iterator[tuple[int, list[str]]]:
        with path.open(encoding=encoding, newline="") as f:
            for n, line in enumerate(f, start=1):
                if header and n == 1:
                    continue
                line = line.rstrip("\r\n")
                if line.strip():
                    yield n, line.split(separator)

    return records(path, rows(), positions)


def json_list(path: Path, columns: list[str], what: str) -> Records:
    """A JSON (or .json.gz) list of objects, `columns` of each as text; an entry that is not
    an object is bad in the first column."""
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz"
              else path.open(encoding="utf-8")) as f:
            entries = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}; expected {what}") from e
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected {what}, got a {type(entries).__name__}")
    cols: dict[str, list[str]] = {c: [] for c in columns}
    not_objects = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            not_objects.append((n, type(entry).__name__))
            entry = {}
        for c in columns:
            cols[c].append(text_of(entry.get(c)))
    out = Records(path, np.arange(1, len(entries) + 1, dtype=np.int64),
                  {c: pa.array(v, pa.string()) for c, v in cols.items()})
    out.mark_rows([(n, columns[0], f"a {kind}, not an object") for n, kind in not_objects])
    return out


@dataclass(frozen=True)
class Table:
    """A CSV or parquet file whose header has been checked against the columns wanted; `read`
    gives its Records."""

    path: Path
    header: list[str]
    wanted: list[str]
    delimiter: str | None  # None: parquet
    encoding: str

    def read(self) -> Records:
        if self.delimiter is None:
            return _parquet(self.path, self.wanted)
        positions = {c: self.header.index(c) for c in self.wanted}
        with self.path.open(encoding=self.encoding, newline="") as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            next(reader, None)  # the header, checked when the table was opened
            return records(self.path, _csv_rows(self.path, reader, self.encoding), positions,
                           self.header)


def open_table(path: Path, columns: Iterable[str], delimiter: str | None, encoding: str,
               rest: bool = False) -> Table:
    """`path` by its suffix, failing before any row is read when its header lacks one of
    `columns`; `rest` also keeps every other column of the header."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check --src and the file flags "
                                "(--interactions, --items, --users)")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        header, sep = list(schema.read_schema(path).names), None
    elif suffix in TEXT_SUFFIXES:
        sep = delimiter or ("\t" if suffix == ".tsv" else ",")
        header = _csv_header(path, sep, encoding)
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
    return Table(path, header, wanted, sep, encoding)


def _unreadable(path: Path, line: int, e: Exception, encoding: str) -> ValueError:
    hint = (f"is it {encoding} text? pass --encoding (e.g. latin-1)"
            if isinstance(e, UnicodeDecodeError)
            else "a stray quote, or a field longer than csv.field_size_limit()?")
    return ValueError(f"{path}: cannot read past line {line}: {e}; {hint}")


def _csv_header(path: Path, delimiter: str, encoding: str) -> list[str]:
    with path.open(encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None)
        except (UnicodeDecodeError, csv.Error) as e:
            raise _unreadable(path, reader.line_num, e, encoding) from e
    if not header:
        raise ValueError(f"{path}: the first line is empty; expected a header naming the "
                         "columns")
    return [h.strip() for h in header]


def _csv_rows(path: Path, reader: Any, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(line a record starts on, fields) of the records after the header; a blank line is
    not a row."""
    end = reader.line_num  # the line the last record ended on
    try:
        for parts in reader:
            start, end = end + 1, reader.line_num
            if any(p.strip() for p in parts):
                yield start, parts
    except (UnicodeDecodeError, csv.Error) as e:
        raise _unreadable(path, reader.line_num, e, encoding) from e


def _parquet(path: Path, columns: list[str]) -> Records:
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowInvalid) as e:
        raise ValueError(f"{path}: cannot read it as parquet ({e})") from None
    return Records(path, np.arange(2, table.num_rows + 2, dtype=np.int64),
                   {c: table.column(c).combine_chunks() for c in columns})
