"""Tables every preset builds the same way: items, users and events from parsed Records, ids
checked against the tables that define them, and the `Source` completed from them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flows.load import fields
from flows.load.config import EventColumns, ItemColumns, UserColumns
from flows.load.records import BadRow, Records, Source

USER_FIELDS = ("user_id", "age", "gender")


def item(item_id: str, name: str, texts: Iterable[str], categories: list[str],
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


def good_rows(recs: Records, src: Source, max_share: float, columns: dict[str, np.ndarray]
              ) -> pd.DataFrame:
    """The rows of `columns` (full-length arrays of `recs`) that parsed, with their `_line`."""
    ok = recs.close(src, max_share)
    return pd.DataFrame({name: v[ok] for name, v in columns.items()} | {"_line": recs.lines[ok]})


def item_rows(recs: Records, cols: ItemColumns, src: Source, max_share: float) -> pd.DataFrame:
    """Items of a mapped items file (the generic preset). Only the id is required: a price
    or category list that is missing or does not parse leaves that attribute unknown."""
    n = len(recs)
    ids = recs.parse(cols.id, fields.token)
    title = fields.text(recs.columns[cols.title]) if cols.title else np.full(n, "", object)
    texts = [fields.text(recs.columns[c], strip=False) for c in cols.text]
    cats = (recs.attribute(cols.categories, fields.names, src.na) if cols.categories
            else np.full(n, None, object))
    price = (recs.attribute(cols.price, fields.price, src.na) if cols.price
             else np.full(n, None, object))
    ok = recs.close(src, max_share)
    rows = [item(ids[i], title[i], [t[i] for t in texts], cats[i] or [],
                 float(price[i] or 0.0)) for i in np.flatnonzero(ok)]
    return pd.DataFrame(rows).assign(_line=recs.lines[ok])


def user_rows(recs: Records, cols: UserColumns, src: Source, max_share: float) -> pd.DataFrame:
    """Users of a mapped users file: age and gender when given (unknown: None and ""), and
    the file's other columns as they are. Only the id is required: an age or gender that is
    missing or does not parse is unknown, and the user is kept."""
    n = len(recs)
    ids = recs.parse(cols.id, fields.token)
    age = (recs.attribute(cols.age, fields.integer, src.na) if cols.age
           else np.full(n, None, object))
    gender = (recs.attribute(cols.gender, fields.per_value(fields.gender_text), src.na)
              if cols.gender else np.full(n, None, object))
    known = {*cols.used(), *USER_FIELDS}
    rest = {c: (fields.text(a, strip=False) if fields.is_text(a) else
                a.to_pandas().to_numpy(dtype=object))
            for c, a in recs.columns.items() if c not in known}
    gender = np.array(["" if g is None else g for g in gender], dtype=object)
    return good_rows(recs, src, max_share,
                     {"user_id": ids, "age": age, "gender": gender} | rest)


def user_table(users: pd.DataFrame) -> pd.DataFrame:
    """Ages as nullable integers: training reads <NA> as unknown (normalized 0, bucket OOV),
    where a number such as -1 would be taken for an age."""
    users["age"] = users["age"].astype("Int16")
    return users


def unique(rows: pd.DataFrame, key: str, file: str, src: Source,
           column: str | None = None) -> pd.DataFrame:
    """Keep the first row of a repeated id; each repeat is a bad row (reported, not merged) in
    `column`, the source's name for `key`."""
    dup = rows[key].duplicated()
    for line, value in zip(rows.loc[dup, "_line"], rows.loc[dup, key], strict=True):
        src.skip(BadRow(file, int(line), column or key,
                        f"{value!r} appears more than once; kept the first"))
    return rows[~dup].drop(columns="_line").reset_index(drop=True)


@dataclass(frozen=True)
class Known:
    """The ids a source's item or user table defines, to check events against; `ids` None:
    the source has no such table, and it is made from the ids the events use."""

    what: str  # item or user
    file: str = ""
    ids: frozenset[str] | None = None

    @classmethod
    def of(cls, what: str, table: pd.DataFrame | None, path: Path | None) -> Known:
        if table is None or path is None:
            return cls(what)
        return cls(what, path.name, frozenset(table[f"{what}_id"]))

    def check(self, recs: Records, column: str, values: np.ndarray, strict: bool) -> None:
        """With `strict`, mark the rows whose id the table lacks; otherwise `complete` keeps
        them and gives the table an attribute-less row for each such id."""
        if self.ids is None or not strict:
            return
        missing = ~pd.Index(values).isin(list(self.ids))
        reasons = np.array([f"{self.what} {v!r} is not in {self.file}" if m else None
                            for v, m in zip(values, missing, strict=True)], dtype=object)
        recs.mark(np.asarray(missing), column, reasons)


Labeler = Callable[[Records], np.ndarray]


def labeler(cols: EventColumns, like_threshold: float,
            number: fields.Parser = fields.number) -> Labeler:
    """The label from a 0/1 column, or rating >= like_threshold: a rated item was seen, so a
    low rating is an impression that was not liked."""
    if cols.label:
        return lambda recs: recs.parse(cols.label, fields.flag)
    return lambda recs: (recs.parse(cols.rating, number) >= like_threshold).astype(np.int8)


def event_columns(recs: Records, cols: EventColumns, label: Labeler, when: fields.Parser,
                  users: Known, items: Known, src: Source) -> dict[str, np.ndarray]:
    """One event per row: ids, label, ts, review text where mapped. The ids and the label are
    required; a time that is missing or does not parse leaves the event without one (None).
    With `src.strict_ids`, an id its table lacks makes the row bad. Columns are parsed in
    this order, which decides the column a row with several bad values is reported under."""
    user = recs.parse(cols.user, fields.token)
    item_ids = recs.parse(cols.item, fields.token)
    out = {"user_id": user, "item_id": item_ids, "label": label(recs)}
    if cols.ts:
        out["ts"] = recs.attribute(cols.ts, when, src.na)
    if cols.review:
        out["text"] = fields.text(recs.columns[cols.review])
    if cols.summary:
        out["summary"] = fields.text(recs.columns[cols.summary])
    users.check(recs, cols.user, user, src.strict_ids)
    items.check(recs, cols.item, item_ids, src.strict_ids)
    return out


def complete(src: Source, rows: pd.DataFrame, events_file: str,
             items: pd.DataFrame | None = None, items_file: str = "",
             users: pd.DataFrame | None = None, users_file: str = "") -> Source:
    """`src` with its events (and reviews) from parsed rows. A source without an item or user
    table gets one made from the ids its events use: items of category "unknown" with no
    text, users of unknown age and gender. With a table, an event naming an id it lacks
    keeps its event: the id joins the table with no attributes, noted in `src.created`.

    ts is nullable: None for an event without a time (no ts column, or its cell missing)."""
    ts = (pd.array(rows["ts"].to_numpy(object), dtype="Int64") if "ts" in rows
          else pd.array([None] * len(rows), dtype="Int64"))  # N, unix seconds or <NA>
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
    lines = rows["_line"].to_numpy()
    if items is None:
        items = pd.DataFrame([item(i, "", [], []) for i in pd.unique(src.events["item_id"])])
    else:
        made = _created(src, "item", items["item_id"], src.events["item_id"], lines,
                        events_file, items_file)
        items = pd.concat([items, pd.DataFrame([item(i, "", [], []) for i in made])],
                          ignore_index=True) if len(made) else items
    if users is None:
        users = user_table(pd.DataFrame({"user_id": pd.unique(src.events["user_id"]),
                                         "age": None, "gender": ""}))
    else:
        made = _created(src, "user", users["user_id"], src.events["user_id"], lines,
                        events_file, users_file)
        if len(made):
            extra = pd.DataFrame({"user_id": made, "gender": "",
                                  "age": pd.array([None] * len(made), dtype="Int16")})
            users = user_table(pd.concat([user_table(users), extra], ignore_index=True))
    src.items, src.users = items, users
    return src


def _created(src: Source, what: str, table_ids: pd.Series, event_ids: pd.Series,
             lines: np.ndarray, events_file: str, table_file: str) -> np.ndarray:
    """The ids events use that the table lacks, in order of first use; each is noted in
    `src.created` at the first event line naming it, with how many events name it."""
    absent = ~event_ids.isin(set(table_ids)).to_numpy()
    if not absent.any():
        return np.empty(0, object)
    ids = event_ids.to_numpy(object)[absent]
    made, first, counts = np.unique(ids, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    at = lines[absent]
    for n in order:
        src.created.append(BadRow(
            events_file, int(at[first[n]]), f"{what}_id",
            f"{what} {made[n]!r} is not in {table_file}: kept its {counts[n]} event(s), the "
            f"{what} with no attributes"))
    return made[order]
