"""Kaggle's "Amazon Books Reviews": Books_rating.csv (one review a row) and books_data.csv
(one book a row).

Every review is an impression, labeled 1 when its score is >= like_threshold (4 of 5). The
item is the review's book Id; its description, authors and categories come from
books_data.csv, joined by Title, the only key the files share (a book missing there keeps its
title, with category "unknown"). Price is Books_rating's, empty (0.0) for most books. Users
have no attributes. Every review with text is also written to reviews.parquet. A review
without a User_id is a bad row; the Kaggle release has many, so the full file may need a
higher --max-bad-share (the error says how many)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flows.load import fields
from flows.load.build import Known, complete, event_columns, good_rows, item, labeler, unique
from flows.load.config import EventColumns, LoadConfig
from flows.load.records import Records, Source, open_table

FILES = ("Books_rating.csv", "books_data.csv")
EVENTS = EventColumns(user="User_id", item="Id", rating="review/score", ts="review/time",
                      review="review/text", summary="review/summary")
BOOKS = ("Title", "description", "authors", "categories")


def _books(recs: Records, src: Source, max_share: float) -> pd.DataFrame:
    authors = fields.or_empty(recs.attribute("authors", fields.names, src.na))
    title = recs.parse("Title", fields.token)
    description = fields.text(recs.columns["description"], strip=False)
    categories = fields.or_empty(recs.attribute("categories", fields.names, src.na))
    texts = np.empty(len(recs), dtype=object)
    texts[:] = [[d, f"By {', '.join(a)}." if a else ""] for d, a in
                zip(description, authors, strict=True)]
    return good_rows(recs, src, max_share, {"title": title, "text": texts,
                                            "categories": categories})


def read(cfg: LoadConfig) -> Source:
    ratings_at = cfg.file(cfg.interactions_file, FILES[0])
    books_at = cfg.file(cfg.items_file, FILES[1])
    assert ratings_at is not None and books_at is not None  # --src is required here
    src = cfg.source("amazon-books")
    opened = dict(delimiter=cfg.delimiter, encoding=cfg.encoding)
    ratings = open_table(ratings_at, [*EVENTS.used(), "Title", "Price"], **opened)
    books = open_table(books_at, BOOKS, **opened)
    about = unique(_books(books.read(), src, cfg.max_bad_share), "title", books_at.name, src,
                   "Title").set_index("title")
    recs = ratings.read()
    columns = event_columns(recs, EVENTS, labeler(EVENTS, cfg.like_threshold),
                            fields.timestamp, Known("user"), Known("item"), src)
    columns["title"] = fields.text(recs.columns["Title"])
    columns["price"] = np.array([p or 0.0 for p in recs.attribute("Price", fields.price, src.na)])
    rows = good_rows(recs, src, cfg.max_bad_share, columns)
    items = []
    for item_id, title, price in rows.drop_duplicates("item_id")[
            ["item_id", "title", "price"]].itertuples(index=False):
        book = about.loc[title] if title in about.index else None
        items.append(item(item_id, title, [] if book is None else book["text"],
                          [] if book is None else book["categories"], float(price)))
    return complete(src, rows, ratings_at.name, pd.DataFrame(items), books_at.name)
