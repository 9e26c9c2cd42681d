"""Writing a loaded `Source` into the data layout (flows/layout.py), every table cast to its
schema (train/schema.py), with `load_report.json` beside it."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.layout import INTERACTIONS, ITEMS, LOAD_REPORT, REVIEWS, TRUTH, USERS, Split, check_out
from flows.load.config import LoadConfig
from flows.load.records import Source
from train import schema


def day_buckets(ts: np.ndarray, days: int) -> np.ndarray:
    """(N,) day of each event: `days` buckets of equal count in time order (ties broken by
    position, so a bucket boundary may fall inside one second; every day-k event is still no
    later than any day-k+1 event)."""
    order = np.argsort(ts, kind="stable")  # N
    day = np.empty(len(ts), dtype=np.int64)
    day[order] = np.arange(len(ts)) * days // max(len(ts), 1)
    return day


def untimed_days(users: np.ndarray, rule: str, days: int, seed: int) -> np.ndarray:
    """(N,) day of each event that has no time, by `rule` (LoadConfig.untimed_split):

    random  each event in a day drawn uniformly with `seed`: the standard split's shares of
            days (9 train, 3 validate, 2 test of 14) become its shares of events
    last    per user, in file order: the last event in a test day, the one before it in a
            validation day, the rest in training days (a user with one event trains on it,
            with two trains and tests); the day within each part drawn with `seed`
    """
    rng = np.random.default_rng(seed)
    n = len(users)
    if rule == "random":
        return rng.integers(0, days, n)
    split = Split()
    order = np.arange(n)
    codes = pd.factorize(pd.Series(users, dtype=object))[0]
    # position from the end within each user's events, in file order: 0 = the user's last
    from_end = pd.Series(order[::-1]).groupby(codes[::-1]).cumcount().to_numpy()[::-1]
    count = np.bincount(codes)[codes]
    part = np.where(from_end == 0, np.where(count >= 2, 2, 0),
                    np.where((from_end == 1) & (count >= 3), 1, 0))  # 0 train, 1 val, 2 test
    day = np.empty(n, dtype=np.int64)
    for k, pool in enumerate((split.train, split.val, split.test)):
        at = part == k
        day[at] = rng.choice(pool, int(at.sum()))
    return day


def assign_days(ts: pd.Series, users: np.ndarray, cfg: LoadConfig) -> np.ndarray:
    """(N,) day of each event: timed events in equal-count time buckets, events without a
    time by `cfg.untimed_split`."""
    timed = ts.notna().to_numpy()
    day = np.empty(len(ts), dtype=np.int64)
    day[timed] = day_buckets(ts[timed].to_numpy(np.int64), cfg.days)
    day[~timed] = untimed_days(users[~timed], cfg.untimed_split, cfg.days, cfg.seed)
    return day


@dataclass(frozen=True)
class Times:
    """Each event's day and time columns, as the interactions schema has them."""

    day: np.ndarray  # (N,) day partition
    timed: np.ndarray  # (N,) bool: the event has a time
    sec: np.ndarray  # (N,) seconds since the epoch, UTC (0 without a time)
    when: pa.Array  # (N,) naive UTC, ms; null without a time
    hour: np.ndarray  # (N,) 0-23, -1 unknown
    weekday: np.ndarray  # (N,) Monday = 0, -1 unknown

    @classmethod
    def of(cls, ev: pd.DataFrame, cfg: LoadConfig) -> Times:
        timed = ev["ts"].notna().to_numpy()
        sec = ev["ts"].fillna(0).to_numpy(np.int64)
        # Naive UTC at millisecond resolution, as the schema says (Parquet has no seconds
        # unit); null where the event has no time, and then no hour or weekday either.
        return cls(day=assign_days(ev["ts"], ev["user_id"].to_numpy(object), cfg),
                   timed=timed, sec=sec,
                   when=pa.array((sec * 1000).astype("datetime64[ms]"), mask=~timed),
                   hour=np.where(timed, (sec // 3600) % 24, -1),
                   weekday=np.where(timed, (sec // 86400 + 3) % 7, -1))  # 1970-01-01: Thu


def write_dataset(src: Source, cfg: LoadConfig) -> dict:
    """Write `src` under `cfg.out`; returns the report also saved as `load_report.json`."""
    check_out(cfg.out, cfg.overwrite, (LOAD_REPORT, REVIEWS))
    times = Times.of(src.events, cfg)
    for sub in (INTERACTIONS, TRUTH):  # only with overwrite, see check_out
        shutil.rmtree(cfg.out / sub, ignore_errors=True)
    (cfg.out / REVIEWS).unlink(missing_ok=True)  # the old data's reviews would mislead
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_tables(src, cfg.out)
    counts = [write_day(src.events, times, d, cfg.out) for d in range(cfg.days)]
    report = load_report(src, cfg, times, counts)
    (cfg.out / LOAD_REPORT).write_text(json.dumps(report, indent=1))
    return report


def write_tables(src: Source, out: Path) -> None:
    """items.parquet, users.parquet and, when the source has them, reviews.parquet."""
    for frame, expected, name in ((src.items, schema.ITEMS, ITEMS),
                                  (src.users, schema.USERS, USERS)):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(schema.conform(table, expected), out / name)
    if src.reviews is not None:
        r = src.reviews
        pq.write_table(pa.table({
            "user_id": pa.array(r["user_id"].to_numpy(), pa.string()),
            "item_id": pa.array(r["item_id"].to_numpy(), pa.string()),
            "ts": pa.array(r["ts"], pa.int64()),  # seconds since the epoch, UTC; null: none
            "summary": pa.array(r["summary"].to_numpy(), pa.string()),
            "text": pa.array(r["text"].to_numpy(), pa.string()),
        }), out / REVIEWS)


def write_day(ev: pd.DataFrame, times: Times, d: int, out: Path) -> int:
    """Day `d`'s events as `interactions/day=NN/part-0.parquet`; returns how many."""
    on = np.flatnonzero(times.day == d)  # file order, then time order for the timed ones
    on = on[np.lexsort((times.sec[on], ~times.timed[on]))]
    table = pa.table([
        ev["user_id"].to_numpy()[on],
        ev["item_id"].to_numpy()[on],
        times.when.take(pa.array(on)),
        times.hour[on],
        times.weekday[on],
        np.full(len(on), "unknown", dtype=object),  # no device in the source
        ev["label"].to_numpy()[on],
    ], schema=schema.INTERACTIONS)
    folder = out / INTERACTIONS / f"day={d:02d}"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    return len(on)


def load_report(src: Source, cfg: LoadConfig, times: Times, counts: list[int]) -> dict:
    """What was read, written, skipped, dropped and added (`load_report.json`)."""
    ev, timed = src.events, times.timed
    first = [pc.min(times.when.filter(pa.array((times.day == d) & timed))).as_py()
             for d in range(cfg.days)]
    return {
        "preset": cfg.preset, "format": src.format,
        "src": str(cfg.src) if cfg.src else None,
        "rows_read": src.rows_read, "bad_rows": len(src.bad),
        "items": len(src.items), "users": len(src.users), "interactions": len(ev),
        "reviews": 0 if src.reviews is None else len(src.reviews),
        "positive_share": float(ev["label"].mean()),
        "untimed_interactions": int((~timed).sum()),
        "untimed_split": cfg.untimed_split if (~timed).any() else None,
        "dropped_values": len(src.dropped),
        "created_users": sum(c.column == "user_id" for c in src.created),
        "created_items": sum(c.column == "item_id" for c in src.created),
        "per_day": counts,
        "first_ts_per_day": [None if t is None else str(np.datetime64(t, "ms"))
                             for t in first],
        "summary": summarize(src),
        "bad": [b.as_dict() for b in src.bad],
        "dropped": [b.as_dict() for b in src.dropped],
        "created": [b.as_dict() for b in src.created],
    }


ACTIONS = (("bad", "row skipped"), ("dropped", "value dropped"),
           ("created", "entity added"))
_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|\b\d+\b")


def reason_kind(reason: str) -> str:
    """A reason with its quoted values and numbers blanked, so that rows failing the same way
    group: "'five' is not a number" and "'x' is not a number" are both "… is not a
    number"."""
    return _VALUES.sub("…", reason)


def summarize(src: Source) -> list[dict]:
    """One entry per (file, column, what was done, kind of reason): the count and the first
    row's line and reason. Every row itself stays in the report's lists."""
    groups: dict[tuple[str, str, str, str], dict] = {}
    for name, action in ACTIONS:
        for b in getattr(src, name):
            key = (b.file, b.column, action, reason_kind(b.reason))
            g = groups.setdefault(key, {"file": b.file, "column": b.column, "action": action,
                                        "reason": key[3], "count": 0, "first_line": b.line,
                                        "example": b.reason})
            g["count"] += 1
    return list(groups.values())


def summary_table(report: dict) -> str:
    """The report's summary as a table for the terminal: one line per kind of finding."""
    rows = report["summary"]
    if not rows:
        return "nothing skipped, dropped or added"
    head = ("file", "column", "what was done", "count", "first", "reason (first example)")
    body = [(r["file"], r["column"], r["action"], f"{r['count']:,}", f"line {r['first_line']}",
             r["example"]) for r in rows]
    widths = [max(len(str(x[k])) for x in (head, *body)) for k in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    return "\n".join(fmt.format(*r) for r in (head, *body))
