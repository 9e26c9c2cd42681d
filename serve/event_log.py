"""The durable log of acknowledged events: what `POST /events` writes before it answers, and
what `warmstart finetune --events` drains into training data.

An event counts as acknowledged only once `append` has returned its id, and `append` returns
only once the event would survive the process (or the Redis server) dying. Everything else an
event does (seen filter, interests, popularity) may degrade; the log may not.

    LocalLog        JSON lines in one file, fsync'd per append: the embedded default
    RedisStreamLog  a Redis/Valkey stream: shared by every replica and the drain job
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from serve.stores import connect, unavailable

log = logging.getLogger(__name__)

EventKind = Literal["view", "click", "purchase"]
EVENT_KINDS: tuple[str, ...] = ("view", "click", "purchase")
_POSITIVE = ("click", "purchase")


@dataclass(frozen=True)
class Event:
    user_id: str
    item_id: str
    event: EventKind
    device: str | None
    ts: dt.datetime  # naive UTC

    def __post_init__(self) -> None:
        if self.event not in EVENT_KINDS:
            raise ValueError(f"unknown event {self.event!r}; send one of {', '.join(EVENT_KINDS)}")
        if self.ts.tzinfo is not None:
            raise ValueError(f"event time {self.ts} carries a timezone; convert it to naive UTC "
                             "(ts.astimezone(datetime.UTC).replace(tzinfo=None))")

    @property
    def label(self) -> int:
        """The training label: a click or a purchase is positive, a view is an impression."""
        return int(self.event in _POSITIVE)

    def to_json(self) -> dict[str, Any]:  # one JSON line of the log
        return {"user_id": self.user_id, "item_id": self.item_id, "event": self.event,
                "device": self.device, "ts": self.ts.isoformat()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Event:
        return cls(user_id=str(d["user_id"]), item_id=str(d["item_id"]), event=d["event"],
                   device=d.get("device"), ts=dt.datetime.fromisoformat(d["ts"]))


class EventLog(Protocol):
    def append(self, event: Event) -> str:
        """The event's id, returned only once the event is durable."""
        ...

    def read(self, after: str | None, count: int) -> list[tuple[str, Event]]:
        """Up to `count` events after id `after` (from the start when None), oldest first."""
        ...

    def trim(self, upto: str) -> None:
        """Forget every event up to and including id `upto`."""
        ...


def _fsync_dir(path: Path) -> None:
    """A new or renamed file survives a crash only once its folder entry is on disk too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalLog:
    """Events as JSON lines in `path`, one `{"id": n, ...}` a line, ids 1, 2, 3, ...

    `append` writes one line, then flush + os.fsync, before it returns: an acknowledged event
    survives the process dying (a power loss too, where the disk honours fsync). A crash in the
    middle of a write leaves a torn last line that was never acknowledged; readers skip it with
    a warning and the next append cuts it off. Processes on one machine may share the file: an
    exclusive lock on `<path>.lock` orders appends and trims, and each append reads the last id
    from the file's tail, so ids stay increasing across processes.

    `trim` rewrites the remaining events into a new file (tmp + rename) whose first line
    records the last id given out, so ids never restart after the log is emptied (a drained
    file named after its ids must never be overwritten by later events). A trim costs one pass
    over what is left: drain in large batches.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, event: Event) -> str:
        with self._locked(exclusive=True):
            created = not self.path.exists()
            with open(self.path, "ab+") as f:
                last = self._cut_torn_tail(f)
                seq = last + 1
                f.write(json.dumps({"id": seq} | event.to_json()).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            if created:
                _fsync_dir(self.path.parent)
        return str(seq)

    def _cut_torn_tail(self, f: Any) -> int:
        """The last id in the open file `f`, after cutting off a torn last line (a write that
        a crash interrupted, never acknowledged) so the next line starts clean."""
        size = f.seek(0, os.SEEK_END)
        chunk, tail = 4096, b""
        while size > 0:
            start = max(0, size - chunk)
            f.seek(start)
            tail = f.read(size - start)
            if b"\n" in tail or start == 0:
                break
            chunk *= 2
        if size and not tail.endswith(b"\n"):
            keep = size - len(tail) + tail.rfind(b"\n") + 1
            log.warning("%s: cutting off a torn last line (%d bytes) left by a crash",
                        self.path, size - keep)
            f.truncate(keep)
            f.seek(0, os.SEEK_END)
            return self._cut_torn_tail(f)
        line = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        if not line:
            return 0
        try:
            rec = json.loads(line)
            return int(rec["id"] if "id" in rec else rec["last_id"])
        except (ValueError, KeyError):  # a damaged line: the slow way, over every line
            log.warning("%s: the last line is not an event; reading every line for the last id",
                        self.path)
            return max((seq for seq, _ in self._lines()), default=0)

    def _lines(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(id, record) of every complete line; the trim marker is skipped, and so is a torn
        last line (a write a crash interrupted, never acknowledged). A damaged line anywhere
        else held an acknowledged event: it is refused with its line number, never dropped."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            lines = f.readlines()
        for n, raw in enumerate(lines, 1):
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("no line end")
                rec = json.loads(raw)
                if "id" in rec:
                    Event.from_json(rec)  # every field present and valid
            except (ValueError, KeyError, TypeError) as e:
                if n == len(lines):
                    log.warning("%s:%d: skipping a torn line at the end (a write a crash "
                                "interrupted, never acknowledged)", self.path, n)
                    continue
                raise ValueError(f"{self.path}:{n}: not an event record ({e!r}); restore the "
                                 "line from a backup or remove it by hand; nothing was read "
                                 "past it") from None
            if "id" in rec:
                yield int(rec["id"]), rec

    def read(self, after: str | None, count: int) -> list[tuple[str, Event]]:
        start = int(after) if after is not None else 0
        out: list[tuple[str, Event]] = []
        with self._locked(exclusive=False):
            for seq, rec in self._lines():
                if seq > start:
                    out.append((str(seq), Event.from_json(rec)))
                    if len(out) >= count:
                        break
        return out

    def trim(self, upto: str) -> None:
        cut = int(upto)
        with self._locked(exclusive=True):
            if not self.path.exists():
                return
            with open(self.path, "rb+") as f:
                last = self._cut_torn_tail(f)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "wb") as out:
                # The marker keeps the id sequence going once every event is trimmed.
                out.write(json.dumps({"trimmed_upto": min(cut, last), "last_id": last}).encode()
                          + b"\n")
                for seq, rec in self._lines():
                    if seq > cut:
                        out.write(json.dumps(rec).encode() + b"\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)


class RedisStreamLog:
    """Events in the Redis/Valkey stream `key`, ids the stream's own (`<ms>-<seq>`).

    XADD returns once the server has the event in memory; it survives a server restart only
    when the server runs with `appendonly yes` and `appendfsync always` (each write on disk
    before it is acknowledged). With the default `appendfsync everysec` up to a second of
    acknowledged events can be lost on a crash; a managed Redis/Valkey needs its durability
    (AOF or replicas with WAIT) set to match. An unreachable server raises StoreUnavailable.
    """

    def __init__(self, url: str, key: str = "events", timeout_s: float = 1.0) -> None:
        self.key = key
        self._redis = connect(url, timeout_s)
        self._url = url

    def _store(self, what: str) -> AbstractContextManager[None]:
        return unavailable(f"event log {self.key!r} at {self._url}: {what}")

    def append(self, event: Event) -> str:
        fields = {k: "" if v is None else v for k, v in event.to_json().items()}
        with self._store("XADD"):
            sid = self._redis.xadd(self.key, fields)
        return sid.decode() if isinstance(sid, bytes) else str(sid)

    def read(self, after: str | None, count: int) -> list[tuple[str, Event]]:
        low = "-" if after is None else f"({after}"  # "(": exclusive of `after`
        with self._store("XRANGE"):
            rows = self._redis.xrange(self.key, min=low, max="+", count=count)
        out = []
        for sid, raw in rows:
            d = {k.decode(): v.decode() for k, v in raw.items()}
            d["device"] = d.get("device") or None
            out.append((sid.decode(), Event.from_json(d)))
        return out

    def trim(self, upto: str) -> None:
        ms, seq = (int(x) for x in upto.split("-"))
        with self._store("XTRIM"):  # MINID keeps ids >= the one right after `upto`
            self._redis.xtrim(self.key, minid=f"{ms}-{seq + 1}", approximate=False)


@dataclass(frozen=True)
class EventLogConfig:
    backend: Literal["local", "redis"] = "local"
    path: Path | None = None  # local: the JSON-lines file (where the flow that serves says)
    url: str = "redis://localhost:6379/0"  # redis: the server holding the stream
    key: str = "events"  # redis: the stream's key

    def __post_init__(self) -> None:
        if self.backend not in ("local", "redis"):
            raise ValueError(f"unknown event log backend {self.backend!r}; use 'local' (a file) "
                             "or 'redis' (a stream)")


def open_log(cfg: EventLogConfig) -> EventLog:
    if cfg.backend == "redis":
        return RedisStreamLog(cfg.url, cfg.key)
    if cfg.path is None:
        raise ValueError("the local event log needs a file: set EventLogConfig.path (e.g. "
                         "<data>/events.jsonl beside the data it will be drained into)")
    return LocalLog(cfg.path)


def log_at(where: str, key: str = "events") -> EventLog:
    """The log at a command-line location: a redis:// (rediss://, valkey://) URL, else a
    file path."""
    if where.startswith(("redis://", "rediss://", "valkey://", "unix://")):
        return open_log(EventLogConfig(backend="redis", url=where, key=key))
    return open_log(EventLogConfig(backend="local", path=Path(where)))
