"""The event path: the durable log (file and Redis stream) survives its process or server
being killed, and `EventSink` acknowledges an event only once it is logged, then lets each
effect degrade on its own. Also the interest shift, with worked numbers."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bench.redis_server import RedisServer
from serve.event_log import Event, EventLog, EventLogConfig, LocalLog, RedisStreamLog, open_log
from serve.events import ActivityConfig, EventReceipt, EventSink, shift_interest
from serve.popularity import Popularity
from serve.stores import StoreUnavailable
from tests.helpers import REPO

T0 = dt.datetime(2026, 1, 19, 9, 30)


def event(n: int, kind: str = "click", device: str | None = "ios") -> Event:
    return Event(user_id=f"u{n % 3}", item_id=f"i{n}", event=kind,  # type: ignore[arg-type]
                 device=device, ts=T0 + dt.timedelta(seconds=n))


# --- Event ----------------------------------------------------------------------------------

def test_clicks_and_purchases_are_positive_views_are_not() -> None:
    assert [event(0, k).label for k in ("view", "click", "purchase")] == [0, 1, 1]


def test_an_event_refuses_unknown_kinds_and_zoned_times() -> None:
    with pytest.raises(ValueError, match="send one of view, click, purchase"):
        event(0, "like")
    with pytest.raises(ValueError, match="naive UTC"):
        Event("u", "i", "view", None, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


# --- both logs: ids, reading after an id, trimming -----------------------------------------

@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), durable=True)
    yield server
    server.stop()


@pytest.fixture(params=["local", "redis"])
def any_log(request: pytest.FixtureRequest, tmp_path: Path) -> EventLog:
    if request.param == "local":
        return open_log(EventLogConfig(backend="local", path=tmp_path / "events.jsonl"))
    server = request.getfixturevalue("redis")
    return open_log(EventLogConfig(backend="redis", url=server.url, key=tmp_path.name))


def test_a_log_reads_back_in_order_after_an_id_and_forgets_what_is_trimmed(
        any_log: EventLog) -> None:
    ids = [any_log.append(event(n, device=None if n == 1 else "web")) for n in range(5)]
    assert len(set(ids)) == 5
    got = any_log.read(None, 10)
    assert [i for i, _ in got] == ids and [e for _, e in got] == [
        event(n, device=None if n == 1 else "web") for n in range(5)]
    assert [i for i, _ in any_log.read(ids[1], 2)] == ids[2:4]  # after: exclusive
    any_log.trim(ids[2])  # upto: inclusive
    assert [i for i, _ in any_log.read(None, 10)] == ids[3:]
    any_log.trim(ids[4])
    assert any_log.read(None, 10) == []
    later = any_log.append(event(9))
    assert later not in ids and [i for i, _ in any_log.read(None, 10)] == [later]


def test_local_ids_keep_increasing_after_the_log_is_emptied(tmp_path: Path) -> None:
    """A drained file is named after its ids: ids restarting at 1 would overwrite it."""
    path = tmp_path / "events.jsonl"
    ids = [LocalLog(path).append(event(n)) for n in range(3)]
    LocalLog(path).trim(ids[-1])
    assert LocalLog(path).append(event(3)) == "4"


# --- durability -----------------------------------------------------------------------------

APPENDER = """
import datetime as dt, sys
from serve.event_log import Event, LocalLog
log = LocalLog(sys.argv[1])
for n in range(10**9):
    i = log.append(Event(f"u{n}", f"i{n}", "click", None, dt.datetime(2026, 1, 5) +
                         dt.timedelta(seconds=n)))
    print(i, flush=True)  # acknowledged
"""


def test_local_log_keeps_every_acknowledged_event_when_its_process_is_killed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = [proc.stdout.readline().strip() for _ in range(40)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    got = LocalLog(path).read(None, 10**6)
    ids = [i for i, _ in got]
    assert ids[:40] == acked == [str(n) for n in range(1, 41)]
    # The appender kept going while this process read: later events may be there too, each
    # whole and in order (a torn last line is skipped, never read as an event).
    assert ids == [str(n) for n in range(1, len(ids) + 1)]
    assert got[39][1] == Event("u39", "i39", "click", None, dt.datetime(2026, 1, 5, 0, 0, 39))

    # A crash in the middle of a write: the torn line is skipped, then cut off.
    with open(path, "ab") as f:
        f.write(b'{"id": 99, "user_id": "u')
    with caplog.at_level(logging.WARNING):
        assert [i for i, _ in LocalLog(path).read(None, 10**6)] == ids
    assert "torn line" in caplog.text
    nxt = LocalLog(path).append(event(0))
    assert nxt == str(len(ids) + 1)
    assert [i for i, _ in LocalLog(path).read(None, 10**6)] == ids + [nxt]


def test_redis_log_keeps_every_acknowledged_event_across_a_server_kill(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", durable=True)
    try:
        log = RedisStreamLog(server.url)
        ids = [log.append(event(n)) for n in range(50)]
        server.kill()  # SIGKILL: only what the AOF fsync'd survives
        with pytest.raises(StoreUnavailable, match="check that the Redis/Valkey server is up"):
            log.append(event(50))
        server.restart()
        got = RedisStreamLog(server.url).read(None, 1000)
        assert [i for i, _ in got] == ids
        assert [e for _, e in got] == [event(n) for n in range(50)]
    finally:
        server.stop()


def test_unknown_backend_says_which_exist() -> None:
    with pytest.raises(ValueError, match="use 'local'"):
        EventLogConfig(backend="kafka")  # type: ignore[arg-type]


# --- shift_interest -------------------------------------------------------------------------

def test_a_click_moves_a_fifth_of_the_shares_to_its_category() -> None:
    history = np.array([0.0, 0.5, 0.3, 0.2])
    shares, top = shift_interest(history, category=3, label=1, cfg=ActivityConfig(weight=0.2))
    # 0.8 * [0, .5, .3, .2] + [0, 0, 0, .2] = [0, .4, .24, .36]: category 1 still leads
    np.testing.assert_allclose(shares, [0.0, 0.4, 0.24, 0.36], atol=1e-6)
    assert top == 1
    shares, top = shift_interest(shares, category=3, label=1, cfg=ActivityConfig(weight=0.2))
    # 0.8 * [0, .4, .24, .36] + [0, 0, 0, .2] = [0, .32, .192, .488]: now category 3
    np.testing.assert_allclose(shares, [0.0, 0.32, 0.192, 0.488], atol=1e-6)
    assert top == 3


def test_a_view_moves_the_shares_less_and_a_new_user_starts_from_zeros() -> None:
    cfg = ActivityConfig(weight=0.2, view_weight=0.05)
    shares, top = shift_interest(np.array([0.0, 1.0, 0.0]), 2, label=0, cfg=cfg)
    np.testing.assert_allclose(shares, [0.0, 0.95, 0.05], atol=1e-6)  # 0.95 * 1, 0.05
    assert top == 1
    shares, top = shift_interest(np.zeros(3), 2, label=0, cfg=cfg)
    np.testing.assert_allclose(shares, [0.0, 0.0, 0.05], atol=1e-6)
    assert top == 2
    with pytest.raises(ValueError, match="must come from one version"):
        shift_interest(np.zeros(3), 3, label=1, cfg=cfg)


# --- EventSink ------------------------------------------------------------------------------

class Recorder:
    """A fake store: records calls in a shared journal, or raises StoreUnavailable."""

    def __init__(self, name: str, journal: list[tuple[Any, ...]], down: bool = False) -> None:
        self.name, self.journal, self.down = name, journal, down
        self.users: dict[str, SimpleNamespace] = {}

    def _call(self, *args: Any) -> None:
        if self.down:
            raise StoreUnavailable(f"{self.name} is down")
        self.journal.append((self.name, *args))

    def append(self, e: Event) -> str:
        self._call("append", e.item_id)
        return str(len(self.journal))

    def add(self, user_id: str, item_ids: list[str]) -> None:
        self._call("add", user_id, list(item_ids))

    def user(self, user_id: str) -> SimpleNamespace | None:
        self._call("user", user_id)
        return self.users.get(user_id)

    def push(self, user_id: str, top_category: int, history: np.ndarray) -> None:
        self._call("push", user_id, top_category, np.round(history, 6).tolist())
        self.users[user_id] = SimpleNamespace(history=history, top_category=top_category)


class FakePopularity(Popularity):
    def __init__(self, journal: list[tuple[Any, ...]], down: bool = False) -> None:
        super().__init__(np.zeros((3, 2, 4)), np.array([0, 1, 1]))
        self.recorder = Recorder("popularity", journal, down)

    def record(self, row: int, device: int, hour: int, weight: float = 1.0) -> None:
        self.recorder._call("record", row, device, hour)


def sink(journal: list[tuple[Any, ...]], down: tuple[str, ...] = ()) -> EventSink:
    return EventSink(log=Recorder("log", journal, "log" in down),
                     seen=Recorder("seen", journal, "seen" in down),
                     online=Recorder("online", journal, "online" in down),
                     popularity=FakePopularity(journal, "popularity" in down),
                     item_pos={"i0": 0, "i1": 1, "i2": 2}, item_category=np.array([0, 1, 1]),
                     activity=ActivityConfig(weight=0.5, view_weight=0.25))


def test_an_event_is_logged_first_then_applies_every_effect() -> None:
    journal: list[tuple[Any, ...]] = []
    s = sink(journal)
    out = s.handle(event(1), device=1, hour=10)
    assert out == EventReceipt(id="1")
    assert journal == [("log", "append", "i1"), ("seen", "add", "u1", ["i1"]),
                       ("online", "user", "u1"),
                       ("online", "push", "u1", 1, [0.0, 0.5]),  # zeros, then 0.5 -> cat 1
                       ("popularity", "record", 1, 1, 10)]
    journal.clear()
    s.handle(Event("u1", "i2", "view", None, T0), device=0, hour=3)  # i2: category 1 too
    # no popularity for a view; shares 0.75 * [0, .5] + [0, .25] = [0, .625]
    assert journal[-1] == ("online", "push", "u1", 1, [0.0, 0.625])


def test_a_failing_log_fails_the_event_and_applies_nothing() -> None:
    journal: list[tuple[Any, ...]] = []
    with pytest.raises(StoreUnavailable, match="log is down"):
        sink(journal, down=("log",)).handle(event(1), device=1, hour=10)
    assert journal == []


def test_degraded_effects_are_reported_and_counted_the_rest_still_apply(
        caplog: pytest.LogCaptureFixture) -> None:
    journal: list[tuple[Any, ...]] = []
    s = sink(journal, down=("seen", "popularity"))
    with caplog.at_level(logging.WARNING):
        out = s.handle(event(1), device=1, hour=10)
        s.handle(event(2), device=1, hour=10)
    assert out.degraded == ("seen", "popularity")
    assert s.degraded == {"seen": 2, "popularity": 2}
    assert [j[:2] for j in journal if j[0] != "online"] == [("log", "append")] * 2
    assert ("online", "push", "u1", 1, [0.0, 0.5]) in journal
    assert "seen effect skipped" in caplog.text


def test_an_unknown_item_is_refused_before_anything_is_written() -> None:
    journal: list[tuple[Any, ...]] = []
    with pytest.raises(ValueError, match="'nope' is not in the catalog"):
        sink(journal).handle(Event("u", "nope", "click", None, T0), device=0, hour=0)
    assert journal == []


def test_a_damaged_line_inside_the_log_is_refused_with_its_line_not_dropped(
        tmp_path: Path) -> None:
    """Only a torn last line was never acknowledged. A damaged line before it held an event
    the client was told is safe: reading (and so draining and trimming) stops there and
    names the file and line, instead of trimming it away."""
    path = tmp_path / "events.jsonl"
    log_ = LocalLog(path)
    for n in range(3):
        log_.append(event(n))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"id": 2, "user_id": "u1", "item_id": \n'
    path.write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=r"events\.jsonl:2: not an event record"):
        LocalLog(path).read(None, 10)
    with pytest.raises(ValueError, match=r"events\.jsonl:2"):
        LocalLog(path).trim("3")
    assert path.read_bytes() == b"".join(lines)  # nothing rewritten, nothing lost
