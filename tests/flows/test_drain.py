"""Draining the serving event log into the data folder before fine-tuning: each event lands
once in its day's partition with the interactions schema, the log is trimmed only after the
files are written, and a drain stopped in between neither loses nor doubles an event."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.redis_server import RedisServer
from flows.finetune import FinetuneConfig, add_args, config, drain_events, plan_days
from flows.layout import event_days, read_interactions
from serve.event_log import Event, EventLog, LocalLog, RedisStreamLog
from train import schema

DAY0 = dt.datetime(2026, 1, 5)  # a Monday, as the generator's FIRST_DAY


def dataset(tmp_path: Path) -> Path:
    """Day 0 as the generator writes it (with an extra column), its first event at 06:00."""
    data = tmp_path / "data"
    folder = data / "interactions" / "day=00"
    folder.mkdir(parents=True)
    ms = [int((DAY0 + dt.timedelta(hours=h) - dt.datetime(1970, 1, 1)).total_seconds() * 1000)
          for h in (6, 7)]
    table = pa.table({"user_id": ["a", "b"], "item_id": ["x", "y"],
                      "ts": pa.array(ms, pa.int64()).cast(pa.timestamp("ms")),
                      "hour": pa.array([6, 7], pa.int8()),
                      "weekday": pa.array([0, 0], pa.int8()), "device": ["web", "ios"],
                      "label": pa.array([1, 0], pa.int8()), "p_click": [0.5, 0.1]})
    pq.write_table(schema.conform(table, schema.INTERACTIONS), folder / "part-0.parquet")
    return data


EVENTS = [
    Event("u1", "i1", "click", "ios", DAY0 + dt.timedelta(hours=10)),  # day 0
    Event("u2", "i2", "view", None, DAY0 + dt.timedelta(days=2, hours=23, minutes=59)),  # 2
    Event("u1", "i3", "purchase", "web", DAY0 + dt.timedelta(days=2, hours=1)),  # day 2
    Event("u3", "i1", "view", "android", DAY0 + dt.timedelta(days=15, hours=5)),  # day 15
]


def logged(tmp_path: Path, events: list[Event] = EVENTS) -> LocalLog:
    log = LocalLog(tmp_path / "events.jsonl")
    for e in events:
        log.append(e)
    return log


def event_files(data: Path) -> list[str]:
    return sorted(str(p.relative_to(data / "interactions"))
                  for p in (data / "interactions").glob("day=*/events-*.parquet"))


def test_events_land_in_their_day_with_the_interactions_schema(tmp_path: Path) -> None:
    data, log = dataset(tmp_path), logged(tmp_path)
    out = drain_events(log, data)
    assert out["events"] == 4 and out["days"] == [0, 2, 15]
    assert event_files(data) == ["day=00/events-1-4.parquet", "day=02/events-1-4.parquet",
                                 "day=15/events-1-4.parquet"]
    day2 = read_interactions(data, (2,)).sort_values("ts").reset_index(drop=True)
    assert day2[["user_id", "item_id", "device", "label"]].values.tolist() == [
        ["u1", "i3", "web", 1], ["u2", "i2", "unknown", 0]]
    assert day2["hour"].tolist() == [1, 23] and day2["weekday"].tolist() == [2, 2]  # Wed
    assert day2["ts"].iloc[1] == DAY0 + dt.timedelta(days=2, hours=23, minutes=59)
    assert len(read_interactions(data, (0,))) == 3  # the generated two and one event
    for f in (data / "interactions").glob("day=*/events-*.parquet"):
        assert pq.read_schema(f).remove_metadata() == schema.INTERACTIONS
    assert log.read(None, 10) == []  # trimmed once written
    # What finetune finds again when a run drained and then stopped before training.
    assert event_days(data) == [0, 2, 15]


def test_a_second_drain_writes_nothing(tmp_path: Path) -> None:
    data, log = dataset(tmp_path), logged(tmp_path)
    drain_events(log, data)
    before = event_files(data)
    assert drain_events(log, data) == {"events": 0, "days": [], "files": []}
    assert event_files(data) == before


def test_large_logs_drain_batch_by_batch(tmp_path: Path) -> None:
    data, log = dataset(tmp_path), logged(tmp_path, EVENTS[:1] * 5)
    assert drain_events(log, data, batch=2)["events"] == 5
    assert event_files(data) == ["day=00/events-1-2.parquet", "day=00/events-3-4.parquet",
                                 "day=00/events-5-5.parquet"]
    assert len(read_interactions(data, (0,))) == 2 + 5


class CrashBeforeTrim:
    """The log of a drain that dies after writing its files, before trimming."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def read(self, after: str | None, count: int) -> list[tuple[str, Event]]:
        return self.log.read(after, count)

    def append(self, event: Event) -> str:
        return self.log.append(event)

    def trim(self, upto: str) -> None:
        raise KeyboardInterrupt("killed between write and trim")


@pytest.mark.parametrize("more_events", [False, True])
def test_a_drain_killed_between_write_and_trim_loses_and_doubles_nothing(
        tmp_path: Path, more_events: bool) -> None:
    data, log = dataset(tmp_path), logged(tmp_path, EVENTS[:3])
    with pytest.raises(KeyboardInterrupt):
        drain_events(CrashBeforeTrim(log), data)
    assert event_files(data) == ["day=00/events-1-3.parquet", "day=02/events-1-3.parquet"]
    if more_events:  # the next drain's first batch is longer: another file name
        log.append(EVENTS[3])
    drain_events(log, data)
    rows = read_interactions(data, (0, 2, 15) if more_events else (0, 2))
    events = rows[rows["user_id"].str.startswith("u")]
    assert len(events) == (4 if more_events else 3)
    assert not events.duplicated(["user_id", "item_id", "ts"]).any()
    last = "4" if more_events else "3"
    assert event_files(data) == sorted(
        [f"day=00/events-1-{last}.parquet", f"day=02/events-1-{last}.parquet"]
        + ([f"day=15/events-1-{last}.parquet"] if more_events else []))


def test_an_event_before_day_zero_stops_the_drain_and_stays_in_the_log(tmp_path: Path) -> None:
    data = dataset(tmp_path)
    log = logged(tmp_path, [Event("u", "i", "click", None, dt.datetime(2025, 12, 31))])
    with pytest.raises(ValueError, match="before day 0 \\(2026-01-05\\)"):
        drain_events(log, data)
    assert len(log.read(None, 10)) == 1 and event_files(data) == []


def test_a_redis_stream_drains_the_same_way(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    try:
        data, log = dataset(tmp_path), RedisStreamLog(server.url)
        ids = [log.append(e) for e in EVENTS]
        drain_events(log, data)
        first, last = (i.replace("-", "_") for i in (ids[0], ids[-1]))
        assert f"day=15/events-{first}-{last}.parquet" in event_files(data)
        assert len(read_interactions(data, (0, 2, 15))) == 2 + 4
        assert log.read(None, 10) == []
    finally:
        server.stop()


def fake_bundle() -> SimpleNamespace:
    return SimpleNamespace(version="v1", manifest={"data_window": {
        "train_days": list(range(9)), "val_days": [9, 10, 11]}})


def test_drained_days_join_the_new_days_unless_already_learned() -> None:
    days = list(range(14))
    assert plan_days(fake_bundle(), FinetuneConfig(), days, drained=(3, 10)) == (
        tuple(range(9)), (9, 10), (11,))
    assert plan_days(fake_bundle(), FinetuneConfig(val_days=(11,)), days + [15],
                     drained=(15,))[1:] == ((9, 15), (11,))
    # Served events are dated by the clock, past every day of the dataset: validation stays
    # on the version's validation days after the asked-for new day.
    assert plan_days(fake_bundle(), FinetuneConfig(), days + [300], drained=(300,))[1:] == (
        (9, 300), (10, 11))
    with pytest.raises(ValueError, match="pass --val-days"):
        plan_days(fake_bundle(), FinetuneConfig(new_days=(11,)), days, drained=())


def test_the_events_flag_names_the_log() -> None:
    import argparse

    p = argparse.ArgumentParser()
    add_args(p)
    assert config(p.parse_args(["--events", "redis://h:6380/0"])).events == "redis://h:6380/0"
    assert config(p.parse_args([])).events is None
