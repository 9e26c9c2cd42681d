"""Your own files: interactions, and optionally items and users, from CSV/TSV/TXT or parquet,
with `cfg.columns`, `cfg.item_columns` and `cfg.user_columns` saying which column is which.

An items or users file, when given, defines the entities' attributes: an event naming an id
it lacks is kept, and that id joins the table with no attributes (noted in the report), or,
with `--strict-ids`, is a bad row. Every header is checked against its mapping before any row
is read, so a misspelled column fails at once rather than after a long read."""

from __future__ import annotations

from flows.load import fields
from flows.load.build import (
    Known,
    complete,
    event_columns,
    good_rows,
    item_rows,
    labeler,
    unique,
    user_rows,
    user_table,
)
from flows.load.config import LoadConfig
from flows.load.records import Source, open_table


def read(cfg: LoadConfig) -> Source:
    events_at, items_at, users_at = (cfg.file(p) for p in (
        cfg.interactions_file, cfg.items_file, cfg.users_file))
    assert events_at is not None  # LoadConfig requires it for this preset
    src = cfg.source(events_at.suffix.lstrip(".").lower())
    opened = dict(delimiter=cfg.delimiter, encoding=cfg.encoding)
    events = open_table(events_at, cfg.columns.used(), **opened)
    item_file = open_table(items_at, cfg.item_columns.used(), **opened) if items_at else None
    user_file = (open_table(users_at, cfg.user_columns.used(), rest=True, **opened)
                 if users_at else None)
    items = users = None
    if item_file and items_at:
        items = unique(item_rows(item_file.read(), cfg.item_columns, src, cfg.max_bad_share),
                       "item_id", items_at.name, src, cfg.item_columns.id)
    if user_file and users_at:
        users = user_table(unique(user_rows(user_file.read(), cfg.user_columns, src,
                                            cfg.max_bad_share),
                                  "user_id", users_at.name, src, cfg.user_columns.id))
    recs = events.read()
    columns = event_columns(recs, cfg.columns, labeler(cfg.columns, cfg.like_threshold),
                            fields.timestamp, Known.of("user", users, users_at),
                            Known.of("item", items, items_at), src)
    return complete(src, good_rows(recs, src, cfg.max_bad_share, columns), events_at.name,
                    items, items_at.name if items_at else "", users,
                    users_at.name if users_at else "")
