"""Writing a loaded `Source` into the data layout (flows/layout.py), every table cast to its
schema (train/schema.py), with `load_report.json` beside it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.layout import INTERACTIONS, ITEMS, LOAD_REPORT, REVIEWS, TRUTH, USERS, check_out
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


def write_dataset(src: Source, cfg: LoadConfig) -> dict:
    """Write `src` under `cfg.out`; returns the report also saved as `load_report.json`."""
    check_out(cfg.out, cfg.overwrite, (LOAD_REPORT, REVIEWS))
    ev = src.events
    day = day_buckets(ev["ts"].to_numpy(), cfg.days)
    sec = ev["ts"].to_numpy()  # N, seconds since the epoch, UTC
    # Naive UTC at millisecond resolution, as the schema says (Parquet has no seconds unit).
    when = (sec * 1000).astype("datetime64[ms]")
    hour = (sec // 3600) % 24  # N
    weekday = (sec // 86400 + 3) % 7  # N, Monday = 0 (1970-01-01 was a Thursday)

    for sub in (INTERACTIONS, TRUTH):  # only with overwrite, see check_out
        shutil.rmtree(cfg.out / sub, ignore_errors=True)
    (cfg.out / REVIEWS).unlink(missing_ok=True)  # the old data's reviews would mislead
    cfg.out.mkdir(parents=True, exist_ok=True)
    for frame, expected, name in ((src.items, schema.ITEMS, ITEMS),
                                  (src.users, schema.USERS, USERS)):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(schema.conform(table, expected), cfg.out / name)
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
        table = pa.table([
            ev["user_id"].to_numpy()[on],
            ev["item_id"].to_numpy()[on],
            when[on],
            hour[on],
            weekday[on],
            np.full(len(on), "unknown", dtype=object),  # no device in the source
            ev["label"].to_numpy()[on],
        ], schema=schema.INTERACTIONS)
        folder = cfg.out / INTERACTIONS / f"day={d:02d}"
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
        "bad": [b.as_dict() for b in src.bad],
    }
    (cfg.out / LOAD_REPORT).write_text(json.dumps(report, indent=1))
    return report
