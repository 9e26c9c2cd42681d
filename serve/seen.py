"""Stage 4, the seen-items filter: which of a request's candidates the user has recently been
shown (`unseen` drops them, with the user's own items when the version leaves those out).

A Bloom filter per user answers "seen?" for ~300 candidates well under a millisecond and in a
few KiB per user (2,000 items at 1% false positives: 2.4 KiB). A false positive hides one
unseen candidate; a false negative cannot happen, so nothing shown is shown again while the
filter lives. The filter lives `ttl_s` after the user's latest add, so a returning user's
history fades instead of hiding items forever.

Three backends behind one interface (`SeenFilter`), picked by `open_seen(SeenConfig)`:

- `MemoryFilter`: rbloom in the replica's memory, the embedded default (one replica, no
  server). Each replica has its own filters.
- `RedisBloomFilter`: BF.* commands (RedisBloom, Valkey 8.1+ bloom, ElastiCache for Valkey),
  shared by every replica. One command a check.
- `BitmapFilter`: the same filter as a plain Redis string, for a server without the module:
  the bits are set with one BITFIELD and read with one GET, tested in NumPy.

Past `capacity` items within one TTL the backends differ: a NONSCALING RedisBloom filter
refuses more, so it starts over with the newest items (the ones most worth hiding); the
bitmap and the memory filter keep accepting at a rising false-positive rate (twice the
capacity: ~15% at the default sizing). Size `capacity` for the users with the most events.

Item ids are hashed with BLAKE2b, which is the same in every process and on every machine:
Python's `hash()` (rbloom's default) is salted per process, so a filter written by one
replica would be noise to another, or to the same one after a restart.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Protocol

import numpy as np
from rbloom import Bloom

from serve.candidates import Candidates
from serve.stores import StoreUnavailable, connect, redis_errors, unavailable

log = logging.getLogger(__name__)

BACKENDS = ("memory", "redis", "bitmap", "bloom", "off")
DAY_S = 86_400


@dataclass(frozen=True)
class SeenConfig:
    """Where a user's seen items are kept and how the filter is sized.

    backend: "memory" (in the replica), "redis" (BF.* when the server has them, else the
    bitmap), "bitmap" or "bloom" (force one), "off" (nothing is ever seen).
    capacity: items per user the filter holds at `error_rate` (within one TTL).
    ttl_s: how long a filter lives after the user's latest add.
    hash_cache: item ids whose hashes are kept, so repeated candidates cost no hashing.
    """

    backend: str = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    capacity: int = 2_000
    error_rate: float = 0.01
    ttl_s: int = 6 * DAY_S
    key_prefix: str = "seen:"
    hash_cache: int = 100_000

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"seen backend {self.backend!r} is unknown; pick one of "
                             f"{', '.join(BACKENDS)}")
        if self.backend in ("redis", "bitmap", "bloom") and not self.url.startswith(
                ("redis://", "rediss://", "unix://")):
            raise ValueError(f"seen url {self.url!r} is not a Redis URL; pass "
                             "redis://host:port/db (rediss:// for TLS, unix:// for a socket)")
        if self.capacity < 1:
            raise ValueError(f"seen capacity is {self.capacity}; pass the number of items a "
                             "user sees within ttl_s (at least 1, e.g. 2000)")
        if not 0 < self.error_rate < 0.5:
            raise ValueError(f"seen error_rate is {self.error_rate}; pass a false-positive "
                             "rate between 0 and 0.5 (exclusive), e.g. 0.01")
        if self.ttl_s < 1:
            raise ValueError(f"seen ttl_s is {self.ttl_s}; pass a lifetime of at least 1 "
                             f"second (default {6 * DAY_S}: six days)")
        if not self.key_prefix:
            raise ValueError("seen key_prefix is empty; pass a prefix such as 'seen:' so the "
                             "filters do not collide with other keys on the server")
        if self.hash_cache < 1:
            raise ValueError(f"seen hash_cache is {self.hash_cache}; pass at least 1 "
                             "(the number of item ids whose hashes are kept)")


class SeenFilter(Protocol):
    """Per-user "has this user been shown these items?". A user with no filter (never added,
    or expired) has seen nothing. Networked backends raise `StoreUnavailable` when the
    server cannot be reached; the caller then serves without the filter."""

    name: str

    def add(self, user_id: str, item_ids: Sequence[str] | np.ndarray) -> None:
        """Remember `item_ids` as seen by `user_id`; the filter lives ttl_s from now."""
        ...

    def seen(self, user_id: str, item_ids: np.ndarray) -> np.ndarray:
        """(N,) bool mask of `item_ids` ((N,) object array of str) the user has seen."""
        ...


def bloom_geometry(capacity: int, error_rate: float) -> tuple[int, int]:
    """(m bits, k hashes) of a Bloom filter holding `capacity` items at `error_rate`:
    m = -n ln p / ln(2)^2, rounded up to whole bytes; k = m/n ln 2."""
    m = math.ceil(-capacity * math.log(error_rate) / math.log(2) ** 2)
    m = -(-m // 8) * 8
    k = max(1, round(m / capacity * math.log(2)))
    return m, k


def item_digest(item_id: str) -> bytes:
    """The 16-byte BLAKE2b digest of an item id: the same in every process and machine."""
    return blake2b(item_id.encode(), digest_size=16).digest()


def item_hash(item_id: str) -> int:
    """The digest as the signed 128-bit integer rbloom's `hash_func` must return."""
    return int.from_bytes(item_digest(item_id), "little", signed=True)


class _Cached:
    """Item id -> `fn(item id)`, bounded. Candidates repeat across requests (a catalog of
    thousands, 300 a request), so most checks hash nothing. When full it starts over: one
    request pays for re-hashing, and no per-entry bookkeeping is needed (dict operations
    stay atomic, so threads may share it without a lock)."""

    def __init__(self, fn: Callable[[str], Any], max_size: int) -> None:
        self.fn = fn
        self.max_size = max_size
        self._values: dict[str, Any] = {}

    def __call__(self, item_id: str) -> Any:
        v = self._values.get(item_id)
        if v is None:
            v = self.fn(item_id)
            if len(self._values) >= self.max_size:
                self._values.clear()
            self._values[item_id] = v
        return v

    def many(self, item_ids: Sequence[str] | np.ndarray) -> list[Any]:
        get = self._values.get
        return [get(i) or self(i) for i in item_ids]


def _store_errors(what: str, url: str) -> AbstractContextManager[None]:
    """Redis/OS errors as `StoreUnavailable`, so a serving stage can answer without us."""
    return unavailable(f"seen filter: {what} at {url}", "check that the server is up, or "
                       "set the seen backend to 'memory' or 'off'")


class MemoryFilter:
    """rbloom filters in this process, one per user, kept in the order of their latest add:
    since every filter lives the same ttl_s after its latest add, the expired ones are
    always at the front and are dropped as they are reached, at no scan of all users.
    Memory: about capacity * 1.2 bytes per user active within ttl_s (2.4 KiB by default).

    The filters hold `item_hash` values, not ids: the stable hashes come from a cache and
    rbloom's `hash_func` is `int`, which returns them as they are. Calling a Python hash
    function from inside rbloom for each of 300 candidates costs four times the whole check.
    A lock guards the users and their filters (rbloom's filters are not to be shared
    between threads unguarded). `clock` is injectable so tests expire filters without
    sleeping."""

    name = "memory"

    def __init__(self, cfg: SeenConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self._hashes = _Cached(item_hash, cfg.hash_cache)
        self._users: OrderedDict[str, tuple[Bloom, float]] = OrderedDict()  # -> (filter, expiry)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Users whose filters are held (expired ones not yet dropped included)."""
        return len(self._users)

    def add(self, user_id: str, item_ids: Sequence[str] | np.ndarray) -> None:
        if len(item_ids) == 0:
            return
        hashes = self._hashes.many(item_ids)
        now = self.clock()
        with self._lock:
            self._drop_expired(now)
            entry = self._users.pop(user_id, None)
            bloom = entry[0] if entry is not None else Bloom(
                self.cfg.capacity, self.cfg.error_rate, hash_func=int)
            bloom.update(hashes)
            self._users[user_id] = (bloom, now + self.cfg.ttl_s)

    def seen(self, user_id: str, item_ids: np.ndarray) -> np.ndarray:
        n = len(item_ids)
        now = self.clock()
        with self._lock:
            entry = self._users.get(user_id)
            if entry is None or entry[1] <= now:
                return np.zeros(n, dtype=bool)
            bloom = entry[0]
            return np.fromiter((h in bloom for h in self._hashes.many(item_ids)), dtype=bool,
                               count=n)

    def _drop_expired(self, now: float) -> None:
        while self._users:
            user, (_, expiry) = next(iter(self._users.items()))
            if expiry > now:
                return
            del self._users[user]


class RedisBloomFilter:
    """BF.* filters on a server with the Bloom commands, one key per user
    (`<key_prefix><user_id>`). An add is one MULTI round trip: BF.INSERT, which creates the
    filter NONSCALING at capacity and error_rate when it is absent (BF.RESERVE and BF.MADD
    in one command, with no "exists" error to ignore), then EXPIRE. A check is one
    BF.MEXISTS.

    A full filter refuses items; it is then replaced by one holding the newest items."""

    name = "bloom"

    def __init__(self, cfg: SeenConfig, client: Any | None = None) -> None:
        self.cfg = cfg
        self.client = client if client is not None else connect(cfg.url)

    def key(self, user_id: str) -> str:
        return f"{self.cfg.key_prefix}{user_id}"

    def add(self, user_id: str, item_ids: Sequence[str] | np.ndarray) -> None:
        if len(item_ids) == 0:
            return
        key, items = self.key(user_id), list(item_ids)
        with _store_errors("BF.INSERT", self.cfg.url):
            added = self._insert(key, items, reset=False)
            failed = next((n for n, r in enumerate(added) if isinstance(r, Exception)), None)
            if failed is None:
                return
            if "full" not in str(added[failed]):
                raise added[failed]
            # This batch's items before `failed` went into the filter being dropped, so the
            # new one gets the newest `capacity` of the whole batch.
            log.info("seen filter of user %s is full at %d items; starting it over",
                     user_id, self.cfg.capacity)
            added = self._insert(key, items[-self.cfg.capacity:], reset=True)
            errors = [r for r in added if isinstance(r, Exception)]
            if errors:
                raise errors[0]

    def _insert(self, key: str, items: list[str], reset: bool) -> list[Any]:
        """BF.INSERT's per-item replies (1, 0 or an error) after an optional DEL."""
        pipe = self.client.pipeline(transaction=True)
        if reset:
            pipe.delete(key)
        pipe.execute_command("BF.INSERT", key, "CAPACITY", self.cfg.capacity,
                             "ERROR", self.cfg.error_rate, "NONSCALING", "ITEMS", *items)
        pipe.expire(key, self.cfg.ttl_s)
        *_, added, expired = pipe.execute(raise_on_error=False)
        for reply in (added, expired):
            if isinstance(reply, Exception):  # the whole command failed (e.g. WRONGTYPE)
                raise reply
        return list(added)

    def seen(self, user_id: str, item_ids: np.ndarray) -> np.ndarray:
        n = len(item_ids)
        if n == 0:
            return np.zeros(0, dtype=bool)
        with _store_errors("BF.MEXISTS", self.cfg.url):
            reply = self.client.execute_command("BF.MEXISTS", self.key(user_id), *item_ids)
        return np.fromiter(reply, dtype=bool, count=n)


class BitmapFilter:
    """A Bloom filter as a plain Redis string of m bits, for servers without the module.

    Position i of an item is (h1 + i*h2) mod m, i < k (double hashing over the two halves
    of its BLAKE2b digest). An add sets every position with one BITFIELD and refreshes the
    TTL, in one MULTI round trip; a check GETs the whole bitmap (2.4 KiB by default) and
    tests the 300 x k positions in NumPy. Keys carry the geometry
    (`<key_prefix>bits:<m>:<k>:<user_id>`), so a new capacity or error rate starts fresh
    filters instead of reading old bits with the wrong positions."""

    name = "bitmap"

    # Redis numbers bits from the most significant bit of each byte (SETBIT, BITFIELD, GET).
    _MASKS = np.array([0x80 >> b for b in range(8)], dtype=np.uint8)

    def __init__(self, cfg: SeenConfig, client: Any | None = None) -> None:
        self.cfg = cfg
        self.client = client if client is not None else connect(cfg.url)
        self.m, self.k = bloom_geometry(cfg.capacity, cfg.error_rate)
        self._digests = _Cached(item_digest, cfg.hash_cache)
        self._steps = np.arange(self.k, dtype=np.uint64)  # (k,)

    def key(self, user_id: str) -> str:
        return f"{self.cfg.key_prefix}bits:{self.m}:{self.k}:{user_id}"

    def positions(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """(N, k) uint64 bit positions of each item; uint64 arithmetic wraps the same way
        in every process, so adds and checks agree."""
        joined = b"".join(self._digests.many(item_ids))
        h = np.frombuffer(joined, dtype="<u8").reshape(-1, 2)  # (N, 2)
        return (h[:, :1] + self._steps * h[:, 1:]) % np.uint64(self.m)  # (N, k)

    def add(self, user_id: str, item_ids: Sequence[str] | np.ndarray) -> None:
        if len(item_ids) == 0:
            return
        key = self.key(user_id)
        ops: list[Any] = []
        for p in np.unique(self.positions(item_ids)).tolist():
            ops += ("SET", "u1", p, 1)
        pipe = self.client.pipeline(transaction=True)
        pipe.execute_command("BITFIELD", key, *ops)
        pipe.expire(key, self.cfg.ttl_s)
        with _store_errors("BITFIELD", self.cfg.url):
            pipe.execute()

    def seen(self, user_id: str, item_ids: np.ndarray) -> np.ndarray:
        n = len(item_ids)
        if n == 0:
            return np.zeros(0, dtype=bool)
        with _store_errors("GET", self.cfg.url):
            raw = self.client.get(self.key(user_id))
        if raw is None:
            return np.zeros(n, dtype=bool)
        bits = np.frombuffer(raw, dtype=np.uint8)
        if len(bits) * 8 < self.m:  # Redis stores the string only up to its highest set bit
            bits = np.concatenate([bits, np.zeros(self.m // 8 - len(bits), dtype=np.uint8)])
        pos = self.positions(item_ids)  # (N, k)
        hit = bits[pos >> np.uint64(3)] & self._MASKS[pos & np.uint64(7)]  # (N, k)
        return hit.all(axis=1)


class NoSeenFilter:
    """backend "off": nothing is remembered, so nothing is hidden."""

    name = "off"

    def add(self, user_id: str, item_ids: Sequence[str] | np.ndarray) -> None:
        return None

    def seen(self, user_id: str, item_ids: np.ndarray) -> np.ndarray:
        return np.zeros(len(item_ids), dtype=bool)


def has_bloom_commands(client: Any, cfg: SeenConfig) -> bool:
    """Whether the server answers BF.EXISTS (RedisBloom, Valkey bloom). Probed with the
    command itself: COMMAND INFO and MODULE LIST are renamed or refused on some managed
    servers, and redis-py fails to parse COMMAND INFO of an unknown command."""
    import redis

    url = cfg.url
    try:  # a key under the prefix, where an ACL limited to the filters' keys allows reads
        client.execute_command("BF.EXISTS", f"{cfg.key_prefix}bloom-probe", "probe")
    except redis.ResponseError as e:
        if "unknown command" in str(e).lower():
            return False
        raise StoreUnavailable(f"seen filter: probing BF.EXISTS at {url} failed ({e}); "
                               "check the server's ACL allows BF.* commands") from e
    except redis_errors() as e:
        raise StoreUnavailable(f"seen filter: {url} cannot be reached ({e}); start the "
                               "server, or set the seen backend to 'memory' or 'off'") from e
    return True


def open_seen(cfg: SeenConfig) -> SeenFilter:
    """The filter `cfg.backend` names. "redis" asks the server once whether it has the
    Bloom commands (raising `StoreUnavailable` when it cannot be reached) and falls back to
    the bitmap; "bloom" insists on them."""
    if cfg.backend == "off":
        return NoSeenFilter()
    if cfg.backend == "memory":
        return MemoryFilter(cfg)
    client = connect(cfg.url)
    if cfg.backend == "bitmap":
        return BitmapFilter(cfg, client)
    if has_bloom_commands(client, cfg):
        return RedisBloomFilter(cfg, client)
    if cfg.backend == "bloom":
        raise ValueError(f"the server at {cfg.url} has no BF.* commands; load RedisBloom "
                         "(or use Valkey 8.1+ with its bloom module), or set the seen backend "
                         "to 'redis' to fall back to the bitmap")
    log.info("seen filter: %s has no BF.* commands; using the bitmap filter", cfg.url)
    return BitmapFilter(cfg, client)


def unseen(seen: SeenFilter, user_id: str | None, item_ids: np.ndarray, cands: Candidates,
           own: np.ndarray, degraded: list[str]) -> tuple[Candidates, np.ndarray, int]:
    """Stage 4: `cands` less the user's `own` items (the version's history and their clicks
    since, when the version leaves them out; else empty) and less what the user was shown in
    the filter's lifetime. Returns the candidates kept, every catalog row left out (what the
    top-up after this stage must not bring back) and how many the filter dropped. A filter
    that cannot be reached is named in `degraded` and nothing is dropped by it."""
    excluded = np.asarray(own, np.int64)
    if len(excluded):
        cands = cands.keep(~np.isin(cands.rows, excluded))
    if user_id is None or not len(cands):
        return cands, excluded, 0
    try:
        mask = seen.seen(user_id, item_ids[cands.rows])
    except StoreUnavailable as e:
        log.warning("seen filter unavailable, answering without it: %s", e)
        degraded.append("seen_filter")
        return cands, excluded, 0
    return cands.keep(~mask), np.union1d(excluded, cands.rows[mask]), int(mask.sum())
