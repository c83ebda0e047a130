"""`SQLiteCache`: the local profile's `Cache`, a small SQLite file shared by every process on one machine.

Without Redis the cache must still outlive the process (a second `make demo` reuses the tracks and the app
token of the first) and be shared by the processes of a multiprocess Dagster run. This is the stdlib
``sqlite3`` on its own file: it is not the warehouse, and the client knows nothing of the warehouse.

* Values are stored as compact JSON text, exactly as `InMemoryCache` and `RedisCache` encode them.
* Every entry has an absolute expiry (``clock.time() + ttl_s``, wall time, so comparable between the
  processes sharing the file). Reads ignore expired rows; writes purge them lazily (at most once per
  ``purge_every_s`` per handle), so the file does not grow without bound.
* `lock()` is a real cross-process lock: a row in ``cache_locks`` inserted only if absent, inside a
  ``BEGIN IMMEDIATE`` transaction, with a lease of ``timeout_s`` (like the Redis lock: a crashed holder
  cannot block the others for longer). Threads of one process first queue on an in-process lock.
* WAL journal (readers never block the writer) and a busy timeout; one connection per thread (and per
  process: a forked child opens its own).
* The file holds the app's access token, so only its owner may read it: it is created with mode 0600
  (SQLite gives its -wal, -shm and -journal files the mode of the database file), and an existing file or
  companion readable by others is tightened to 0600 when opened.

Like `RedisCache`, it never fails a run because of the cache: once open, an SQLite error degrades reads to
misses, writes to no-ops and `lock()` to an in-process lock, with a warning. Opening the file (a bad
path, a directory that is not writable) does raise, so a misconfiguration is reported at start-up.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from spotify_pipeline.spotify.cache import InMemoryCache, decode_value, encode_value, iter_chunks
from spotify_pipeline.spotify.clock import Clock, SystemClock
from spotify_pipeline.spotify.logs import get_logger

T = TypeVar("T")

log = get_logger(__name__)

SCHEMA_VERSION = 1
PRIVATE_FILE_MODE = 0o600
#: Files SQLite keeps beside the database, created with the database file's mode.
_COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")
#: Keys per ``SELECT ... IN (...)``: well under SQLite's bound-parameter limit on every build.
_CHUNK = 500
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cache_entries ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS cache_entries_expires_at ON cache_entries (expires_at)",
    "CREATE TABLE IF NOT EXISTS cache_locks ("
    " name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID",
)


def _make_private(path: Path) -> None:
    """Create the cache file readable by its owner only, or narrow an existing one (and its companions)
    that others can read or write."""
    try:
        # Created here, with the private mode, rather than by SQLite with the default one (0644 under the
        # usual umask); O_EXCL leaves an existing file to the check below.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        pass
    except OSError:
        return  # sqlite3.connect reports why the path cannot be opened, as for any other bad path
    for file in (path, *(path.with_name(path.name + suffix) for suffix in _COMPANION_SUFFIXES)):
        try:
            mode = file.stat().st_mode
            if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o077:
                file.chmod(PRIVATE_FILE_MODE)
        except FileNotFoundError:
            continue
        except OSError as exc:  # owned by someone else: say so rather than leave a readable token unnoticed
            log.warning("cannot make the SQLite cache file %s private (%s: %s)", file, type(exc).__name__, exc)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def retry_while_busy(op: Callable[[], T], timeout_s: float) -> T:
    """Run ``op``, retrying for up to ``timeout_s`` while another connection holds a lock SQLite's busy
    handler does not wait for (switching to WAL needs a moment alone with the file)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return op()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


@contextlib.contextmanager
def committed(conn: sqlite3.Connection) -> Iterator[None]:
    """Commit if the block (which starts with BEGIN IMMEDIATE) succeeds, roll back otherwise."""
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


class SQLiteCache:
    """Persistent TTL cache on an SQLite file, shared by the threads and processes of one machine."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "",
        clock: Clock | None = None,
        busy_timeout_s: float = 10.0,
        purge_every_s: float = 300.0,
        warn_every_s: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self._prefix = prefix
        self._clock = clock or SystemClock()
        self._busy_timeout_s = busy_timeout_s
        self._purge_every_s = purge_every_s
        self._warn_every_s = warn_every_s
        self._last_warning = 0.0
        self._last_purge = float("-inf")
        self._tls = threading.local()
        self._conns_mutex = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._local_locks = InMemoryCache()  # threads of this process queue here before polling the file
        self._conn()  # open now: a bad path or an unwritable directory fails at start-up, not mid-run

    def __repr__(self) -> str:
        return f"SQLiteCache({str(self.path)!r}, prefix={self._prefix!r})"

    # -- connections ---------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        pid = os.getpid()
        held = getattr(self._tls, "conn", None)
        if held is not None and held[0] == pid:
            return held[1]
        _make_private(self.path)
        conn = sqlite3.connect(
            str(self.path),
            timeout=self._busy_timeout_s,
            isolation_level=None,  # autocommit; write transactions are explicit BEGIN IMMEDIATE
            check_same_thread=False,  # used by its own thread only, but close() may run elsewhere
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough for a cache, far fewer fsyncs
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")  # concurrent first openers take turns; IF NOT EXISTS does the rest
                with self._write(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        self._tls.conn = (pid, conn)
        with self._conns_mutex:
            self._conns.append(conn)
        return conn

    def _retry_busy(self, op: Callable[[], T]) -> T:
        return retry_while_busy(op, self._busy_timeout_s)

    def _write(self, conn: sqlite3.Connection) -> contextlib.AbstractContextManager[None]:
        return committed(conn)

    def _degraded(self, op: str, exc: Exception) -> None:
        now = time.monotonic()
        if self._last_warning == 0.0 or now - self._last_warning >= self._warn_every_s:
            self._last_warning = now
            log.warning(
                "SQLite cache %s unavailable during %s (%s: %s): treating as a miss",
                self.path, op, type(exc).__name__, exc,
            )

    def close(self) -> None:
        """Close every connection this handle opened (it reopens on next use)."""
        with self._conns_mutex:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._tls = threading.local()

    # -- Cache ---------------------------------------------------------------------------------------------
    def get(self, key: str) -> Any | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        if not keys:
            return []
        now = self._clock.time()
        found: dict[str, str] = {}
        try:
            conn = self._conn()
            for chunk in iter_chunks([self._prefix + k for k in dict.fromkeys(keys)], _CHUNK):
                rows = conn.execute(
                    f"SELECT key, value FROM cache_entries WHERE key IN ({','.join('?' * len(chunk))})"
                    " AND expires_at > ?",
                    (*chunk, now),
                ).fetchall()
                found.update(rows)
        except sqlite3.Error as exc:
            self._degraded("get", exc)
            return [None] * len(keys)
        return [decode_value(found.get(self._prefix + key)) for key in keys]

    def set(self, key: str, value: Any, ttl_s: float) -> None:
        self.set_many({key: value}, ttl_s)

    def set_many(self, items: Mapping[str, Any], ttl_s: float) -> None:
        if not items:
            return
        now = self._clock.time()
        expires = now + ttl_s
        rows = [(self._prefix + k, encode_value(v), expires) for k, v in items.items()]
        purge = time.monotonic() - self._last_purge >= self._purge_every_s
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            with self._write(conn):
                if purge:
                    conn.execute("DELETE FROM cache_entries WHERE expires_at <= ?", (now,))
                    conn.execute("DELETE FROM cache_locks WHERE expires_at <= ?", (now,))
                conn.executemany("INSERT OR REPLACE INTO cache_entries (key, value, expires_at) VALUES (?, ?, ?)", rows)
        except sqlite3.Error as exc:
            self._degraded("set", exc)
            return
        if purge:
            self._last_purge = time.monotonic()

    def delete(self, key: str) -> None:
        try:
            self._conn().execute("DELETE FROM cache_entries WHERE key = ?", (self._prefix + key,))
        except sqlite3.Error as exc:
            self._degraded("delete", exc)

    @contextlib.contextmanager
    def lock(self, name: str, timeout_s: float = 30.0) -> Iterator[None]:
        """Mutual exclusion across threads and processes sharing the file; `TimeoutError` after ``timeout_s``.

        The holder's lease is ``timeout_s`` (as for the Redis lock): a holder that dies keeps the others
        out for at most that long.
        """
        deadline = time.monotonic() + timeout_s
        with self._local_locks.lock(name, timeout_s):
            full = self._prefix + name
            owner = uuid.uuid4().hex
            try:
                acquired: bool | None = self._acquire(full, owner, timeout_s, deadline)
            except sqlite3.Error as exc:
                self._degraded("lock", exc)
                acquired = None  # the file is unusable: the in-process lock held here is all there is
            if acquired is False:
                raise TimeoutError(f"could not acquire SQLite lock {name!r} within {timeout_s} s")
            try:
                yield
            finally:
                if acquired:
                    self._release(full, owner)

    def _acquire(self, full: str, owner: str, lease_s: float, deadline: float) -> bool:
        delay = 0.005
        while True:
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
                with self._write(conn):
                    now = self._clock.time()
                    conn.execute("DELETE FROM cache_locks WHERE name = ? AND expires_at <= ?", (full, now))
                    taken = conn.execute(
                        "INSERT OR IGNORE INTO cache_locks (name, owner, expires_at) VALUES (?, ?, ?)",
                        (full, owner, now + lease_s),
                    ).rowcount
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                taken = 0  # the file is busy beyond the busy timeout: same as "held", try again
            if taken == 1:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)

    def _release(self, full: str, owner: str) -> None:
        try:
            gone = self._conn().execute(
                "DELETE FROM cache_locks WHERE name = ? AND owner = ?", (full, owner)
            ).rowcount
        except sqlite3.Error as exc:
            self._degraded("unlock", exc)
            return
        if gone == 0:
            log.warning("SQLite cache lock %r was held past its lease and may have been taken by another holder", full)
