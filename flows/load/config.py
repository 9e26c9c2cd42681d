"""What `warmstart load` reads: the preset, the files, and (for your own files) which source
column holds each field."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Self

from flows.layout import DATA, N_DAYS, Split
from flows.load.records import NA_VALUES, Source

# The presets, each a module of this package (flows/load/<name with _>.py).
PRESETS = ("movielens", "generic", "amazon-books", "retail-demo-store")
UNTIMED_SPLITS = ("random", "last")


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
    ts: str = ""  # unix seconds, or ISO 8601 (UTC unless it names a zone); none: no time
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
    age: str = ""  # an integer; empty or a missing-value marker is unknown
    gender: str = ""  # M, F, male or female (any case); empty or a marker is unknown


@dataclass(frozen=True)
class LoadConfig:
    src: Path | None = None  # the dataset's folder; relative file paths below are read from it
    out: Path = DATA
    preset: str = "movielens"  # one of PRESETS
    days: int = N_DAYS  # equal-count time buckets, written as day=00 .. day=days-1
    like_threshold: float = 4.0  # rating >= this is a positive label (MovieLens: 4 of 5)
    max_bad_share: float = 0.01  # of one file's rows; more bad rows than this stops the load
    overwrite: bool = False  # replace a dataset already in `out`
    # Cells meaning "no value", compared case-insensitively (a blank cell always is one): an
    # attribute holding one is missing, and the models read it as unknown (OOV).
    na_values: tuple[str, ...] = NA_VALUES
    # An event whose user or item the users/items file lacks: kept with an attribute-less
    # entity (False), or skipped as a bad row (True, `--strict-ids`).
    strict_ids: bool = False
    # Events without a time (no ts column, or an empty or unreadable cell) have no hour or
    # weekday and are placed in days by this rule: "random", each event in a day drawn with
    # `seed`; "last", per user in file order, the last event in a test day, the one before
    # it in a validation day, the rest in training days (layout.Split).
    untimed_split: Literal["random", "last"] = "random"
    seed: int = 0
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
        if self.untimed_split not in UNTIMED_SPLITS:
            raise ValueError(f"unknown untimed split {self.untimed_split!r}; choose one of "
                             f"{', '.join(UNTIMED_SPLITS)}")
        if self.untimed_split == "last" and self.days != N_DAYS:
            raise ValueError(f"the 'last' split places events in the standard split's days "
                             f"({Split()}), which needs days={N_DAYS}, got {self.days}")
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

    def source(self, fmt: str) -> Source:
        """An empty `Source` that reads cells with this config's missing-value markers."""
        return Source(fmt, na=frozenset({"", *(v.strip().lower() for v in self.na_values)}),
                      strict_ids=self.strict_ids)

    def file(self, given: Path | None, default: str = "") -> Path | None:
        """`given` (under `src` when relative and `src` is set), else `src / default`."""
        if given is not None:
            return self.src / given if self.src and not given.is_absolute() else given
        return self.src / default if self.src and default else None
