"""`RequestBudget`: how many Web API requests a run may still send, shared by every process of the run.

An app has ``rate limit x 1440`` requests a day (144,000 at 100 a minute). A run gets a budget, and the client
spends 1 from it before every HTTP request it sends to the Web API (retries and the re-send after a refused
token included; requests to the token endpoint are not Web API requests and cost nothing). When the budget
is spent the client raises `SpotifyBudgetExhausted` instead of sending: the caller stops that work, keeps
what it did and ends successfully, and the next run continues where it stopped.

A grant is all or part of what was asked (`try_spend(n)` returns ``min(n, remaining)``), decided atomically,
so concurrent spenders never get the same request twice. The shared ledgers keep two counters and move both
in the same atomic step:

* **the run's ledger**, keyed by app and run id. Every step process of a multiprocess run builds a ledger
  for the same run id and so spends from one counter: the run's budget is spent once, not once per process.
* **the app's day pool**, keyed by app and UTC day, holding ``capacity`` = rate limit x 1440 requests. Every
  run spends through it, so runs together (a scheduled run, one launched by hand, on-demand runs) never
  plan or spend more than the app can send in a day. A run may draw the pool down only to its ``ceiling``:
  scheduled runs to ``capacity x (1 - on-demand reserve)``, on-demand runs to the full capacity. The reserve
  is therefore always left for on-demand work, however many scheduled runs a day sees. The day is the UTC
  day of each spend: a run crossing midnight spends from the new day's pool after it.

``remaining()`` is what the next grants can give: the least of the run's remainder and the pool's remainder
below the ceiling; a run plans its work with it.

Backends (one contract, see the tests):

* `InProcessRequestBudget`: the threads of one process (unit tests, the scale simulation, a client used
  alone). No pool.
* `SQLiteRequestBudget`: the local profile without Redis: a small SQLite file beside the local cache file,
  shared by the step processes of a multiprocess run on this machine.
* `RedisRequestBudget`: production: two keys moved by one Lua script; the run key lives a week after its
  last spend, the day key two days.

When the shared backend fails (Redis down, the file unusable) a ledger raises `RequestBudgetUnavailable`,
naming the backend, unless it was built with ``fallback="local"`` (SPOTIFY_LIMITER_FALLBACK=local): then it
warns once and goes on with an in-process ledger holding what the run had left when last seen.

`CappedRequestBudget` is the share of the run's budget one step was given: it grants at most ``cap`` in all,
and only what the run's ledger grants.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import redis

from spotify_pipeline.spotify.clock import Clock, SystemClock
from spotify_pipeline.spotify.sqlite_cache import committed, retry_while_busy
from spotify_pipeline.spotify.cache import redis_client
from spotify_pipeline.spotify.config import SpotifyClientConfig, redact_url
from spotify_pipeline.spotify.errors import RequestBudgetUnavailable, SpotifyBudgetExhausted
from spotify_pipeline.spotify.logs import get_logger

log = get_logger(__name__)

#: A run's ledger is kept this long after its last spend (a run, even a long one, is over by then).
RUN_KEY_TTL_S = 7 * 86_400
#: A day pool is kept until well after its day ended.
DAY_KEY_TTL_S = 2 * 86_400
KEY_VERSION = "spotify:v1:budget"


@runtime_checkable
class RequestBudget(Protocol):
    """Web API requests one run may send; shared by every thread (and, for the shared ledgers, process) of it."""

    total: int

    def try_spend(self, n: int = 1) -> int:
        """Atomically grant ``min(n, remaining)`` requests (0 when nothing is left) and return the grant."""
        ...

    def spent(self) -> int:
        """Requests granted so far to the run."""
        ...

    def remaining(self) -> int:
        """Requests the next grants can still give (never negative)."""
        ...


def _check_total(total: int) -> int:
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"a request budget must be a whole number of requests, at least 0; got {total!r}")
    return total


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"requests to spend must be a whole number, at least 0; got {n!r}")
    return n


class InProcessRequestBudget:
    """A budget for the threads of one process."""

    def __init__(self, total: int) -> None:
        self.total = _check_total(total)
        self._spent = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"InProcessRequestBudget(total={self.total}, spent={self._spent})"

    def try_spend(self, n: int = 1) -> int:
        _check_n(n)
        with self._lock:
            grant = max(0, min(n, self.total - self._spent))
            self._spent += grant
            return grant

    def spent(self) -> int:
        with self._lock:
            return self._spent

    def remaining(self) -> int:
        with self._lock:
            return max(0, self.total - self._spent)


class CappedRequestBudget:
    """At most ``cap`` requests in all, each also granted by ``parent`` (the run's budget): one step's share."""

    def __init__(self, parent: RequestBudget, cap: int) -> None:
        self.parent = parent
        self.total = _check_total(cap)
        self._spent = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CappedRequestBudget(cap={self.total}, spent={self._spent}, parent={self.parent!r})"

    def try_spend(self, n: int = 1) -> int:
        _check_n(n)
        with self._lock:
            want = min(n, self.total - self._spent)
            if want <= 0:
                return 0
            grant = self.parent.try_spend(want)
            self._spent += grant
            return grant

    def spent(self) -> int:
        with self._lock:
            return self._spent

    def remaining(self) -> int:
        with self._lock:
            own = self.total - self._spent
        return max(0, min(own, self.parent.remaining()))


@dataclass(frozen=True)
class DayPool:
    """The app's requests of one UTC day (``capacity``) and how far this run may draw them down (``ceiling``)."""

    capacity: int
    ceiling: int

    def __post_init__(self) -> None:
        _check_total(self.capacity)
        if not 0 <= self.ceiling <= self.capacity:
            raise ValueError(
                f"a day pool's ceiling must be between 0 and its capacity {self.capacity}, got {self.ceiling}"
            )

    @classmethod
    def for_app(cls, rate_limit_per_minute: int, *, reserve: float = 0.0) -> DayPool:
        """The pool of an app limited to ``rate_limit_per_minute``; ``reserve`` is the share this run must leave
        (the on-demand reserve for a scheduled run, 0 for an on-demand run)."""
        if not 0.0 <= reserve < 1.0:
            raise ValueError(f"reserve must be in [0, 1), got {reserve}")
        capacity = int(rate_limit_per_minute) * 1440
        return cls(capacity=capacity, ceiling=math.floor(round(capacity * (1.0 - reserve), 6)))


def ledger_keys(app_key: str, run_id: str, day: dt.date, prefix: str = "") -> tuple[str, str]:
    """(run ledger key, day pool key) of a run of the app ``app_key`` on ``day``."""
    base = f"{prefix}{KEY_VERSION}:{app_key}"
    return f"{base}:run:{run_id}", f"{base}:day:{day.isoformat()}"


class _SharedRequestBudget:
    """What the Redis and SQLite ledgers share: keys, the grant arithmetic's inputs, and the local fallback."""

    backend = "shared"

    def __init__(
        self,
        total: int,
        *,
        app_key: str,
        run_id: str,
        pool: DayPool | None,
        prefix: str = "",
        clock: Clock | None = None,
        fallback: str | None = None,
    ) -> None:
        if fallback not in (None, "local"):
            raise ValueError("fallback must be None or 'local'")
        if not run_id:
            raise ValueError("a shared request budget needs the run id it belongs to")
        self.total = _check_total(total)
        self.app_key = app_key
        self.run_id = run_id
        self.pool = pool
        self.prefix = prefix
        self.fallback = fallback
        self._clock = clock or SystemClock()
        self._local: InProcessRequestBudget | None = None
        self._last_spent = 0
        self._lock = threading.Lock()

    def _keys(self) -> tuple[str, str]:
        day = dt.datetime.fromtimestamp(self._clock.time(), dt.timezone.utc).date()
        return ledger_keys(self.app_key, self.run_id, day, self.prefix)

    # -- what the backends implement -------------------------------------------------------------------------
    def _spend(self, n: int, run_key: str, day_key: str) -> tuple[int, int]:
        """Atomically grant up to ``n``; returns (grant, run spent after it)."""
        raise NotImplementedError

    def _read(self, run_key: str, day_key: str) -> tuple[int, int]:
        """(run spent, day spent)."""
        raise NotImplementedError

    def _where(self) -> str:
        raise NotImplementedError

    # -- RequestBudget ----------------------------------------------------------------------------------------
    def try_spend(self, n: int = 1) -> int:
        _check_n(n)
        if n == 0:
            return 0
        local = self._local
        if local is None:
            try:
                grant, spent = self._spend(n, *self._keys())
            except (redis.RedisError, sqlite3.Error, OSError) as exc:
                local = self._failed(exc)
            else:
                self._last_spent = spent
                return grant
        return local.try_spend(n)

    def spent(self) -> int:
        local = self._local
        if local is None:
            try:
                spent, _ = self._read(*self._keys())
            except (redis.RedisError, sqlite3.Error, OSError) as exc:
                local = self._failed(exc)
            else:
                self._last_spent = spent
                return spent
        return self._last_spent + local.spent()

    def remaining(self) -> int:
        local = self._local
        if local is None:
            try:
                spent, day_spent = self._read(*self._keys())
            except (redis.RedisError, sqlite3.Error, OSError) as exc:
                local = self._failed(exc)
            else:
                self._last_spent = spent
                left = self.total - spent
                if self.pool is not None:
                    left = min(left, self.pool.ceiling - day_spent)
                return max(0, left)
        return local.remaining()

    def _failed(self, exc: Exception) -> InProcessRequestBudget:
        """The shared counter cannot be used: raise, or (fallback 'local') carry on in this process with what
        the run had left when last seen."""
        if self.fallback != "local":
            raise RequestBudgetUnavailable(
                f"{self._where()} is unusable, so the request budget shared by every process of run "
                f"{self.run_id[:8]} cannot be enforced ({type(exc).__name__}: {exc}). Fix it, or set "
                "SPOTIFY_LIMITER_FALLBACK=local to fall back to a per-process budget."
            ) from exc
        with self._lock:
            if self._local is None:
                log.warning(
                    "%s unusable (%s): the run's request budget is kept per process from now on "
                    "(SPOTIFY_LIMITER_FALLBACK=local)",
                    self._where(),
                    type(exc).__name__,
                )
                self._local = InProcessRequestBudget(max(0, self.total - self._last_spent))
            return self._local


# KEYS: run ledger, day pool. ARGV: n, run total, pool ceiling ('' = no pool), run TTL s, day TTL s.
# Returns {grant, run spent after the grant}.
_SPEND_LUA = """
local n = tonumber(ARGV[1])
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(n, tonumber(ARGV[2]) - spent)
local pooled = ARGV[3] ~= ''
if pooled then
  grant = math.min(grant, tonumber(ARGV[3]) - tonumber(redis.call('GET', KEYS[2]) or '0'))
end
if grant <= 0 then
  return {0, spent}
end
spent = redis.call('INCRBY', KEYS[1], grant)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
if pooled then
  redis.call('INCRBY', KEYS[2], grant)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
end
return {grant, spent}
"""


class RedisRequestBudget(_SharedRequestBudget):
    """The run's ledger and the app's day pool in Redis, shared by every process and machine of a deployment."""

    backend = "redis"

    def __init__(
        self,
        client: redis.Redis,
        total: int,
        *,
        app_key: str,
        run_id: str,
        pool: DayPool | None,
        prefix: str = "",
        clock: Clock | None = None,
        fallback: str | None = None,
    ) -> None:
        super().__init__(
            total, app_key=app_key, run_id=run_id, pool=pool, prefix=prefix, clock=clock, fallback=fallback
        )
        self._r = client
        self._spend_script = client.register_script(_SPEND_LUA)

    def __repr__(self) -> str:
        return f"RedisRequestBudget(total={self.total}, run_id={self.run_id!r}, pool={self.pool})"

    def _where(self) -> str:
        kw = self._r.connection_pool.connection_kwargs
        if "path" in kw:
            where = f"unix://{kw['path']}"
        else:
            where = f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
        return f"Redis ({redact_url(where)})"

    def _spend(self, n: int, run_key: str, day_key: str) -> tuple[int, int]:
        ceiling = "" if self.pool is None else str(self.pool.ceiling)
        grant, spent = self._spend_script(
            keys=[run_key, day_key], args=[n, self.total, ceiling, RUN_KEY_TTL_S, DAY_KEY_TTL_S]
        )
        return int(grant), int(spent)

    def _read(self, run_key: str, day_key: str) -> tuple[int, int]:
        spent, day_spent = self._r.mget([run_key, day_key])
        return int(spent or 0), int(day_spent or 0)


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS budget_counters ("
    " key TEXT PRIMARY KEY, spent INTEGER NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID",
)
_SQLITE_SCHEMA_VERSION = 1


def sqlite_budget_path(cache_path: str | os.PathLike[str]) -> Path:
    """The local ledger file beside the local cache file (``.data/spotify_cache.db`` ->
    ``.data/spotify_cache.budget.db``)."""
    path = Path(cache_path).expanduser()
    return path.with_name(f"{path.stem}.budget{path.suffix or '.db'}")


class SQLiteRequestBudget(_SharedRequestBudget):
    """The run's ledger and the app's day pool in a small SQLite file, shared by the processes of one machine.

    Each grant is one ``BEGIN IMMEDIATE`` transaction (SQLite serializes writers), so step processes of a
    multiprocess run never spend the same request twice. Expired counters are purged now and then.
    """

    backend = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        total: int,
        *,
        app_key: str,
        run_id: str,
        pool: DayPool | None,
        clock: Clock | None = None,
        fallback: str | None = None,
        busy_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(total, app_key=app_key, run_id=run_id, pool=pool, clock=clock, fallback=fallback)
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._tls = threading.local()
        self._conns_mutex = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        try:
            self._conn()  # a bad path fails at start-up, not at the first request
        except (OSError, sqlite3.Error) as exc:
            raise RequestBudgetUnavailable(
                f"cannot open the request budget file {self.path} ({type(exc).__name__}: {exc})"
            ) from None

    def __repr__(self) -> str:
        return f"SQLiteRequestBudget({str(self.path)!r}, total={self.total}, run_id={self.run_id!r}, pool={self.pool})"

    def _where(self) -> str:
        return f"the request budget file {self.path}"

    def _conn(self) -> sqlite3.Connection:
        pid = os.getpid()
        held = getattr(self._tls, "conn", None)
        if held is not None and held[0] == pid:
            return held[1]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(self.path), timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            retry_while_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone(), self._busy_timeout_s)
            if conn.execute("PRAGMA user_version").fetchone()[0] != _SQLITE_SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                with committed(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {_SQLITE_SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        self._tls.conn = (pid, conn)
        with self._conns_mutex:
            self._conns.append(conn)
        return conn

    def _spend(self, n: int, run_key: str, day_key: str) -> tuple[int, int]:
        conn = self._conn()
        now = self._clock.time()
        conn.execute("BEGIN IMMEDIATE")  # the read and the writes below are one step for every process
        with committed(conn):
            spent = self._counter(conn, run_key, now)
            day_spent = self._counter(conn, day_key, now) if self.pool is not None else 0
            grant = min(n, self.total - spent)
            if self.pool is not None:
                grant = min(grant, self.pool.ceiling - day_spent)
            if grant <= 0:
                return 0, spent
            if spent == 0:  # a new run: a good moment to drop the counters nobody reads any more
                conn.execute("DELETE FROM budget_counters WHERE expires_at <= ?", (now,))
            self._set(conn, run_key, spent + grant, now + RUN_KEY_TTL_S)
            if self.pool is not None:
                self._set(conn, day_key, day_spent + grant, now + DAY_KEY_TTL_S)
        return grant, spent + grant

    def _read(self, run_key: str, day_key: str) -> tuple[int, int]:
        conn = self._conn()
        now = self._clock.time()
        return self._counter(conn, run_key, now), self._counter(conn, day_key, now)

    @staticmethod
    def _counter(conn: sqlite3.Connection, key: str, now: float) -> int:
        """A counter's value; an expired one counts as 0 (and is overwritten by the next spend)."""
        row = conn.execute("SELECT spent FROM budget_counters WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _set(conn: sqlite3.Connection, key: str, spent: int, expires_at: float) -> None:
        conn.execute(
            "INSERT INTO budget_counters (key, spent, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET spent = excluded.spent, expires_at = excluded.expires_at",
            (key, spent, expires_at),
        )

    def close(self) -> None:
        with self._conns_mutex:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._tls = threading.local()


class BudgetGate:
    """What the client asks before each Web API request: one request from the current budget.

    ``budget`` None means no budget (every request may go). `limit` narrows it, for the duration of a block,
    to a share of what is left (one step's allowance)."""

    def __init__(self, budget: RequestBudget | None = None) -> None:
        self.budget = budget

    def spend_one(self) -> None:
        """Take one request from the budget, or raise `SpotifyBudgetExhausted` (nothing is sent then)."""
        budget = self.budget
        if budget is not None and budget.try_spend(1) < 1:
            raise SpotifyBudgetExhausted(budget=budget.total, spent=budget.spent())

    @contextlib.contextmanager
    def limit(self, requests: int) -> Iterator[RequestBudget]:
        """Within the block, at most ``requests`` more requests (each one still granted by the run's budget)."""
        outer = self.budget
        capped = CappedRequestBudget(outer if outer is not None else InProcessRequestBudget(requests), requests)
        self.budget = capped
        try:
            yield capped
        finally:
            self.budget = outer


def open_request_budget(
    config: SpotifyClientConfig,
    total: int,
    *,
    run_id: str | None,
    reserve: float = 0.0,
    clock: Clock | None = None,
    redis_conn: redis.Redis | None = None,
) -> RequestBudget:
    """The budget of run ``run_id`` on the backend `build_client` would use for the cache.

    Redis when ``redis_url`` is set; else the SQLite ledger beside the local cache file; else (an in-process
    cache, or no run id: a client used alone) an in-process budget, which the processes of a multiprocess
    run do not share. ``reserve`` is the share of the app's day this run must leave (see `DayPool.for_app`).
    """
    if not run_id:
        return InProcessRequestBudget(total)
    pool = DayPool.for_app(config.rate_limit_per_minute, reserve=reserve)
    if config.redis_url:
        return RedisRequestBudget(
            redis_conn or redis_client(config.redis_url),
            total,
            app_key=config.app_key,
            run_id=run_id,
            pool=pool,
            prefix=config.redis_key_prefix,
            clock=clock,
            fallback=config.limiter_fallback,
        )
    if (cache_path := config.sqlite_cache_path) is not None:
        return SQLiteRequestBudget(
            sqlite_budget_path(cache_path),
            total,
            app_key=config.app_key,
            run_id=run_id,
            pool=pool,
            clock=clock,
            fallback=config.limiter_fallback,
        )
    return InProcessRequestBudget(total)
