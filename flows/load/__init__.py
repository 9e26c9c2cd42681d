"""`warmstart load`: public datasets and your own files into the project's layout, split by time.

Each preset (a module here) reads one dataset's own files into a `Source` (items, users,
events with a label, and review texts where the source has them), and `write_dataset` turns
any `Source` into the layout of flows/layout.py, every table cast to train/schema.py:

    items.parquet        item_id, name, category, style, price, description, categories
    users.parquet        user_id, age (<NA> when unknown), gender ("M", "F", "" when unknown)
    interactions/day=00 .. day=NN/        user_id, item_id, ts, hour, weekday, device, label
    reviews.parquet      user_id, item_id, ts, summary, text (only when the source has reviews)
    load_report.json     what was read, and every row that was skipped

    movielens          MovieLens, any release (100K, 1M, 10M, 20M, 25M, latest): the GroupLens
                       originals or RecBole atomic files, told apart by their file names
    generic            your CSV/TSV/TXT or parquet files, with a column mapping (`ColumnMap`)
    amazon-books       Kaggle "Amazon Books Reviews": Books_rating.csv and books_data.csv
    retail-demo-store  the Retail Demo Store's products.yaml and its generator's interactions.csv

Files are read column by column (flows/load/records.py, fields.py): parquet columns keep
their types, text files are parsed once per distinct value. Events are cut into `days`
buckets of equal count by timestamp, so the standard `Split` (days 0-8 train, 9-11 validate,
12-13 test) becomes a time-based split: with 14 buckets the latest ~14% of events are the
test set. Events without a time have no hour or weekday (-1, unknown to the models) and are
placed by `LoadConfig.untimed_split`: a seeded random day, or per-user leave-last-out. There
is no `truth/` folder: evaluation on loaded data is beside popularity only.

Nothing a user would expect kept is lost:
    - a missing-value marker (empty, NULL, NA, NaN, None, N/A; `--na-values`) makes that
      attribute unknown, never a bad row;
    - an attribute value that does not parse (an age of "abc") is dropped, not its entity;
    - an event naming a user or item its table lacks is kept, and the id joins the table
      with no attributes (`--strict-ids` skips such events instead);
    - only a row without its required fields (ids, rating or label) is skipped.
Every finding is listed in `load_report.json` with its file, line, column (the source's own
name) and reason; the terminal gets one summary line per kind (`summary_table`). When more
than `max_bad_share` of a file's rows are skipped the load stops, since that means a wrong
file or format rather than a few damaged lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from flows.layout import LOAD_REPORT, REVIEWS, check_out
from flows.load import amazon_books, generic, movielens, retail_demo_store
from flows.load.config import (
    PRESETS,
    UNTIMED_SPLITS,
    EventColumns,
    ItemColumns,
    LoadConfig,
    UserColumns,
)
from flows.load.records import Source
from flows.load.write import summary_table, write_dataset
from train.storage import location

READERS: dict[str, Callable[[LoadConfig], Source]] = {
    "movielens": movielens.read,
    "generic": generic.read,
    "amazon-books": amazon_books.read,
    "retail-demo-store": retail_demo_store.read,
}
assert tuple(READERS) == PRESETS


def load(cfg: LoadConfig) -> dict:
    """Read `cfg.src` with its preset and write the layout into `cfg.out`; returns the report
    (counts per file and day, and every skipped row)."""
    check_out(cfg.out, cfg.overwrite, (LOAD_REPORT, REVIEWS))  # before reading, not after
    return write_dataset(READERS[cfg.preset](cfg), cfg)


def load_movielens(src: Path, out: Path, overwrite: bool = False,
                   max_bad_share: float = LoadConfig.max_bad_share) -> Path:
    """MovieLens (any release, GroupLens or RecBole files) into `out`; returns `out`.

    Every rating is an impression: label 1 when the rating is 4 or more, 0 otherwise, so "not
    clicked" here means "watched and rated below 4", not "shown and ignored". Days are 14
    equal-count time buckets, so the standard split tests on the latest ~14% of ratings.
    Skipped rows are logged and listed in `out/load_report.json`.
    """
    load(LoadConfig(src=src, out=out, preset="movielens", overwrite=overwrite,
                    max_bad_share=max_bad_share))
    return out


# A URI location is mirrored locally for the run and uploaded after (train/storage.py).
LOCATIONS = {"src": "read", "out": "write"}


def add_args(p: argparse.ArgumentParser) -> None:
    d = LoadConfig  # its defaults, read off the class: an instance would need --src
    p.add_argument("preset", choices=PRESETS,
                   help="movielens, amazon-books and retail-demo-store read their own files "
                        "from --src; generic reads --interactions (and --items, --users)")
    p.add_argument("--src", type=location, default=None,
                   help="folder with the dataset's files; relative file flags are read from it")
    p.add_argument("--out", type=location, default=d.out,
                   help="output folder or URI (s3://bucket/prefix; default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--max-bad-share", type=float, default=d.max_bad_share,
                   help="stop when more than this share of a file's rows do not parse "
                        "(default %(default)s)")
    p.add_argument("--like-threshold", type=float, default=d.like_threshold,
                   help="a rating >= this is a positive label (default %(default)s)")
    p.add_argument("--na-values", default=",".join(d.na_values),
                   help="cells that mean 'no value', comma-separated, any case (default "
                        "%(default)r; a blank cell always is one)")
    p.add_argument("--strict-ids", action="store_true",
                   help="skip events whose user or item the users/items file lacks (default: "
                        "keep them, the id added with no attributes)")
    p.add_argument("--untimed-split", choices=UNTIMED_SPLITS, default=d.untimed_split,
                   help="days for events without a time: random (seeded) or last (per user, "
                        "the last event tests, the one before validates) (default "
                        "%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="of the untimed split")
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
                        f"(default user={d.columns.user},item={d.columns.item}; no ts: events "
                        "keep file order)")
    g.add_argument("--item-map", default="", metavar="KEY=COLUMN,...",
                   help="items: id=, title=, text= (may repeat), categories=, price= "
                        f"(default id={d.item_columns.id})")
    g.add_argument("--user-map", default="", metavar="KEY=COLUMN,...",
                   help=f"users: id=, age=, gender= (default id={d.user_columns.id}); other "
                        "columns are kept")
    g.add_argument("--delimiter", default=d.delimiter,
                   help="of text files (default: tab for .tsv, comma otherwise; a tab: '\\t')")
    g.add_argument("--encoding", default=d.encoding,
                   help="of text files (default %(default)s: utf-8 with or without a BOM)")


def config(args: argparse.Namespace) -> LoadConfig:
    return LoadConfig(
        src=args.src, out=args.out, preset=args.preset, overwrite=args.overwrite,
        max_bad_share=args.max_bad_share, like_threshold=args.like_threshold,
        interactions_file=args.interactions, items_file=args.items, users_file=args.users,
        columns=EventColumns.parse(args.map, "--map"),
        item_columns=ItemColumns.parse(args.item_map, "--item-map"),
        user_columns=UserColumns.parse(args.user_map, "--user-map"),
        delimiter="\t" if args.delimiter in ("\\t", "tab") else args.delimiter,
        encoding=args.encoding, na_values=tuple(args.na_values.split(",")),
        strict_ids=args.strict_ids, untimed_split=args.untimed_split, seed=args.seed)


def run(args: argparse.Namespace) -> None:
    cfg = config(args)
    r = load(cfg)
    reviews = f" and {r['reviews']:,} reviews" if r["reviews"] else ""
    untimed = (f"; {r['untimed_interactions']:,} without a time, placed by the "
               f"{r['untimed_split']} split" if r["untimed_interactions"] else "")
    print(f"loaded {r['interactions']:,} interactions ({r['positive_share']:.1%} positive)"
          f"{reviews} for {r['users']:,} users and {r['items']:,} items from {r['format']} "
          f"files{untimed}")
    print(f"{r['bad_rows']:,} rows skipped, {r['dropped_values']:,} values dropped, "
          f"{r['created_users']:,} users and {r['created_items']:,} items added from events "
          f"(every one listed in {cfg.out / LOAD_REPORT}):")
    print(summary_table(r))
    print(f"-> {cfg.out}")
