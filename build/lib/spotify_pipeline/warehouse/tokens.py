"""The encrypted store of users' Spotify tokens (`spotify_oauth_tokens`).

- Ciphertext only: both tokens are encrypted with Fernet (`cryptography`) before they reach the table.
  The key comes from SPOTIFY_TOKEN_KEY; several comma-separated keys form a MultiFernet, whose first key
  encrypts and every key decrypts, so a key can be rotated: put the new key first, keep the old one after
  it, run `rotate_keys()` (``spotify-pipeline auth rotate-key``), then drop the old key.
- A missing, malformed or wrong key raises `TokenKeyError`, whose message names SPOTIFY_TOKEN_KEY; no
  base64 or padding traceback ever reaches the user.
- Refreshing (`refreshing(account)`): one refresher at a time per account across processes, and no
  transaction open while Spotify is asked for new tokens (an HTTP call that may last the read timeout
  plus retries). The refresher holds a lock, not a transaction, across that call. PostgreSQL: a
  session-level advisory lock keyed by the account, on a connection of its own in autocommit mode. SQLite:
  a Redis lock when a Redis URL is given, else an exclusive file lock next to the database file (a thread
  lock for an in-memory database). Each lock is waited for at most ``lock_timeout_s``.
  Under the lock, the stored tokens are read in one short transaction and the new ones written in
  another, as a compare-and-set on the refresh token the refresh started from: a logout or a new login
  that happened meanwhile wins over the refresh. So SQLite's database-wide write lock, and PostgreSQL's
  row locks, are only ever held for a few statements.

`SqlTokenStore` matches the `spotify_pipeline.spotify.user_auth.TokenStore` protocol by shape (the
warehouse does not import the client): records go in as any object with `StoredTokens`' attributes and
come out as `StoredTokens`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from spotify_pipeline.warehouse.engine import dialect_of

if TYPE_CHECKING:  # pragma: no cover
    from spotify_pipeline.settings import Settings

log = logging.getLogger(__name__)

TABLE = "spotify_oauth_tokens"
KEY_VARIABLE = "SPOTIFY_TOKEN_KEY"
DEFAULT_LOCK_TIMEOUT_S = 60.0
_LOCK_POLL_S = 0.02
# Arbitrary int4 naming the refresh locks among other users of PostgreSQL advisory locks; the account's id
# is the second key. The two-key form never meets the migrations' one-key (bigint) lock.
_REFRESH_LOCK_NAMESPACE = 730_140_222
_GENERATE_HINT = "generate one with `spotify-pipeline auth generate-key`"


class TokenStoreError(RuntimeError):
    """The token store cannot be used (no table, lock not obtained, ...)."""


class TokenKeyError(TokenStoreError):
    """SPOTIFY_TOKEN_KEY is missing, malformed, or cannot decrypt the stored tokens."""


class TokenLockTimeout(TokenStoreError):
    """Another process held the account's refresh lock for longer than the lock timeout."""


# -- records ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTokens:
    """One account's tokens, decrypted (the tokens are left out of ``repr``). Datetimes are aware UTC."""

    account: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...]
    access_token_expires_at: datetime
    consented_at: datetime
    refresh_token_expires_at: datetime
    spotify_user_id: str | None = None
    needs_reauth: bool = False
    updated_at: datetime | None = None


@dataclass(frozen=True)
class TokenSummary:
    """What `auth status` shows about an account: never a token. ``readable``: whether the configured key
    decrypts its tokens (None when no key is configured)."""

    account: str
    spotify_user_id: str | None
    scopes: tuple[str, ...]
    access_token_expires_at: datetime
    consented_at: datetime
    refresh_token_expires_at: datetime
    needs_reauth: bool
    updated_at: datetime | None
    readable: bool | None


class _TokensLike(Protocol):
    """Any record with these attributes can be saved (e.g. the client's `UserTokens`)."""

    account: str
    access_token: str
    refresh_token: str
    scopes: str | Iterable[str]
    access_token_expires_at: datetime
    consented_at: datetime
    refresh_token_expires_at: datetime


# -- keys ---------------------------------------------------------------------------------------------------


def generate_token_key() -> str:
    """A new random Fernet key (44 characters of url-safe base64)."""
    return Fernet.generate_key().decode("ascii")


def token_cipher(keys: str | Sequence[str] | None, *, source: str = KEY_VARIABLE) -> MultiFernet:
    """A MultiFernet from comma-separated keys (the first one encrypts); `TokenKeyError` naming ``source``."""
    if keys is None:
        parts: list[str] = []
    elif isinstance(keys, str):
        parts = [k.strip() for k in keys.split(",") if k.strip()]
    else:
        parts = [k.strip() for k in keys if k and k.strip()]
    if not parts:
        raise TokenKeyError(
            f"{source} is not set: user tokens are stored encrypted and need a Fernet key; {_GENERATE_HINT} "
            f"and set {KEY_VARIABLE} (the local profile's `make demo` writes one into .data/token.key)"
        )
    fernets: list[Fernet] = []
    for number, key in enumerate(parts, 1):
        try:
            fernets.append(Fernet(key.encode("ascii")))
        except (ValueError, TypeError, UnicodeEncodeError):
            which = f"key {number} of {len(parts)} in " if len(parts) > 1 else ""
            raise TokenKeyError(
                f"{which}{source} is not a Fernet key (it must be 32 bytes in url-safe base64, 44 characters); "
                f"{_GENERATE_HINT}"
            ) from None
    return MultiFernet(fernets)


def ensure_local_token_key(path: str | os.PathLike[str], *, configured_key: str | None = None) -> bool:
    """Make sure the local profile has a token key: when no key is configured (``configured_key``, i.e.
    SPOTIFY_TOKEN_KEY) and ``path`` does not exist, write a new key there with file mode 0600.

    Returns True when a key was generated. An existing file is checked (a valid key, mode tightened to
    0600 when it was looser) and kept: replacing it would make every stored token unreadable.
    """
    if configured_key and configured_key.strip():
        return False
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if os.name == "posix" and target.stat().st_mode & 0o077:
            os.chmod(target, 0o600)
        token_cipher(target.read_text(encoding="ascii"), source=f"{KEY_VARIABLE} (unset; key read from {target})")
        return False
    try:
        os.write(fd, (generate_token_key() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.name == "posix":
        os.chmod(target, 0o600)  # whatever the umask did
    return True


# -- the store ------------------------------------------------------------------------------------------------

_COLUMNS = (
    "account, spotify_user_id, scopes, access_token_ciphertext, refresh_token_ciphertext, "
    "access_token_expires_at, consented_at, refresh_token_expires_at, needs_reauth, updated_at"
)


class SqlTokenStore:
    """Encrypted user tokens in the warehouse (SQLite or PostgreSQL)."""

    def __init__(
        self,
        engine: sa.Engine,
        token_key: str | Sequence[str] | None,
        *,
        key_source: str = KEY_VARIABLE,
        redis_url: str | None = None,
        redis_key_prefix: str = "",
        lock_path: str | os.PathLike[str] | None = None,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.dialect = dialect_of(engine)
        self.key_source = key_source
        self._cipher: MultiFernet | None = None
        self._key_error: TokenKeyError | None = None
        try:
            self._cipher = token_cipher(token_key, source=key_source)
        except TokenKeyError as exc:  # raised when a token must be encrypted or decrypted, not before
            self._key_error = exc
        self.lock_timeout_s = lock_timeout_s
        self.redis_url = redis_url
        self.redis_key_prefix = redis_key_prefix
        self._redis: Any = None
        self._thread_lock = threading.Lock()
        self.lock_path: Path | None = None
        if self.dialect == "sqlite" and redis_url is None:
            database = engine.url.database
            if lock_path is not None:
                self.lock_path = Path(lock_path)
            elif database and database != ":memory:":
                self.lock_path = Path(database).with_name(Path(database).name + ".token-refresh.lock")

    @classmethod
    def from_settings(cls, settings: Settings, engine: sa.Engine | None = None, **kwargs: Any) -> SqlTokenStore:
        """The store of the configured warehouse, key from SPOTIFY_TOKEN_KEY (else the local key file);
        on SQLite the refresh lock is a Redis lock when REDIS_URL is set, a file lock otherwise."""
        from spotify_pipeline.warehouse.engine import create_engine

        key = settings.token_key()
        source = KEY_VARIABLE
        if key is not None and not settings.spotify_token_key:
            source = f"{KEY_VARIABLE} (unset; key read from {settings.spotify_token_key_file})"
        kwargs.setdefault("redis_url", settings.redis_url)
        kwargs.setdefault("redis_key_prefix", settings.redis_key_prefix)
        return cls(engine or create_engine(settings.database_url), key, key_source=source, **kwargs)

    # -- encryption ------------------------------------------------------------------------------------
    @property
    def has_key(self) -> bool:
        return self._cipher is not None

    def _require_cipher(self) -> MultiFernet:
        if self._cipher is None:
            assert self._key_error is not None
            raise self._key_error
        return self._cipher

    def _encrypt(self, value: str) -> bytes:
        if not isinstance(value, str) or not value:
            raise ValueError("tokens must be non-empty strings")
        return self._require_cipher().encrypt(value.encode("utf-8"))

    def _decrypt(self, ciphertext: Any, account: str) -> str:
        cipher = self._require_cipher()
        try:
            return cipher.decrypt(bytes(ciphertext)).decode("utf-8")
        except (InvalidToken, TypeError, ValueError):
            raise self._wrong_key(account) from None

    def _wrong_key(self, account: str) -> TokenKeyError:
        return TokenKeyError(
            f"cannot decrypt the stored Spotify tokens of account {account!r} with {self.key_source}: the key is "
            f"wrong, or the key that encrypted them is no longer listed (during a rotation {KEY_VARIABLE} must "
            "hold the new key first and the old one after it, comma-separated); or run "
            f"`spotify-pipeline auth logout --account {account}` and log in again"
        )

    # -- TokenStore protocol -------------------------------------------------------------------------
    def load(self, account: str) -> StoredTokens | None:
        with self._translate_errors(), self.engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM {TABLE} WHERE account = :a"), {"a": account}).first()
        return None if row is None else self._record(row)

    def save(self, tokens: _TokensLike) -> None:
        """Insert or replace the account's tokens (a login): ``needs_reauth`` is cleared."""
        values = self._values(tokens, needs_reauth=False)
        with self._translate_errors(), self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (:account, :spotify_user_id, :scopes, :access, :refresh, "
                    ":access_exp, :consented, :refresh_exp, :needs_reauth, :updated_at) "
                    "ON CONFLICT (account) DO UPDATE SET spotify_user_id = excluded.spotify_user_id, "
                    "scopes = excluded.scopes, access_token_ciphertext = excluded.access_token_ciphertext, "
                    "refresh_token_ciphertext = excluded.refresh_token_ciphertext, "
                    "access_token_expires_at = excluded.access_token_expires_at, "
                    "consented_at = excluded.consented_at, refresh_token_expires_at = excluded.refresh_token_expires_at, "
                    "needs_reauth = excluded.needs_reauth, updated_at = excluded.updated_at"
                ),
                values,
            )

    def delete(self, account: str) -> bool:
        with self._translate_errors(), self.engine.begin() as conn:
            result = conn.execute(sa.text(f"DELETE FROM {TABLE} WHERE account = :a"), {"a": account})
        return bool(result.rowcount)

    def mark_needs_reauth(self, account: str) -> bool:
        with self._translate_errors(), self.engine.begin() as conn:
            return _mark(conn, account)

    @contextlib.contextmanager
    def refreshing(self, account: str) -> Iterator[_LockedRefresh]:
        """Lock ``account`` against every other refresher, in every process, until the block ends.

        Yields an object with ``current`` (the stored tokens, read once the lock is taken, or None),
        ``save(tokens)`` and ``mark_needs_reauth()``. The lock is not a transaction: each of those reads and
        writes runs in a short transaction of its own, so nothing stays open while the caller waits for
        Spotify. A save is committed when it happens (the old refresh token is spent by then); an exception
        before it writes nothing. Both writes give way to a logout or a new login made since ``current``
        was read (see `_LockedRefresh`).
        """
        self._require_cipher()
        with self._translate_errors(), self._refresh_lock(account):
            yield _LockedRefresh(self, account, self.load(account))

    # -- administration --------------------------------------------------------------------------------
    def accounts(self) -> list[str]:
        with self._translate_errors(), self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(f"SELECT account FROM {TABLE} ORDER BY account"))]

    def summaries(self) -> list[TokenSummary]:
        """Every connected account without its tokens; ``readable`` tells whether the key decrypts them."""
        with self._translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM {TABLE} ORDER BY account")).all()
        out: list[TokenSummary] = []
        for row in rows:
            readable: bool | None = None
            if self._cipher is not None:
                try:
                    self._decrypt(row.access_token_ciphertext, row.account)
                    self._decrypt(row.refresh_token_ciphertext, row.account)
                    readable = True
                except TokenKeyError:
                    readable = False
            out.append(
                TokenSummary(
                    account=row.account,
                    spotify_user_id=row.spotify_user_id,
                    scopes=_scopes(row.scopes),
                    access_token_expires_at=self._datetime(row.access_token_expires_at),
                    consented_at=self._datetime(row.consented_at),
                    refresh_token_expires_at=self._datetime(row.refresh_token_expires_at),
                    needs_reauth=bool(row.needs_reauth),
                    updated_at=self._datetime(row.updated_at) if row.updated_at is not None else None,
                    readable=readable,
                )
            )
        return out

    def verify(self) -> None:
        """Raise unless tokens can be stored: the table exists, the key is set and decrypts every stored row."""
        self._require_cipher()
        for summary in self.summaries():
            if not summary.readable:
                raise self._wrong_key(summary.account)

    def rotate_keys(self) -> int:
        """Re-encrypt every row with the first key (all or nothing); returns the number of accounts."""
        cipher = self._require_cipher()
        with self._translate_errors(), self.engine.connect() as conn:
            with conn.begin():
                for_update = self._prepare_read_for_update(conn)
                rows = conn.execute(
                    sa.text(f"SELECT account, access_token_ciphertext, refresh_token_ciphertext FROM {TABLE}{for_update}")
                ).all()
                for row in rows:
                    try:
                        access = cipher.rotate(bytes(row.access_token_ciphertext))
                        refresh = cipher.rotate(bytes(row.refresh_token_ciphertext))
                    except (InvalidToken, TypeError, ValueError):
                        raise self._wrong_key(row.account) from None
                    conn.execute(
                        sa.text(
                            f"UPDATE {TABLE} SET access_token_ciphertext = :a, refresh_token_ciphertext = :r "
                            "WHERE account = :account"
                        ),
                        {"a": access, "r": refresh, "account": row.account},
                    )
        return len(rows)

    # -- internals ----------------------------------------------------------------------------------------
    def _record(self, row: Any) -> StoredTokens:
        return StoredTokens(
            account=row.account,
            access_token=self._decrypt(row.access_token_ciphertext, row.account),
            refresh_token=self._decrypt(row.refresh_token_ciphertext, row.account),
            scopes=_scopes(row.scopes),
            access_token_expires_at=self._datetime(row.access_token_expires_at),
            consented_at=self._datetime(row.consented_at),
            refresh_token_expires_at=self._datetime(row.refresh_token_expires_at),
            spotify_user_id=row.spotify_user_id,
            needs_reauth=bool(row.needs_reauth),
            updated_at=self._datetime(row.updated_at) if row.updated_at is not None else None,
        )

    def _values(self, tokens: _TokensLike, *, needs_reauth: bool) -> dict[str, Any]:
        return {
            "account": tokens.account,
            "spotify_user_id": getattr(tokens, "spotify_user_id", None),
            "scopes": " ".join(_scopes(tokens.scopes)),
            "access": self._encrypt(tokens.access_token),
            "refresh": self._encrypt(tokens.refresh_token),
            "access_exp": self._bind_datetime(tokens.access_token_expires_at),
            "consented": self._bind_datetime(tokens.consented_at),
            "refresh_exp": self._bind_datetime(tokens.refresh_token_expires_at),
            "needs_reauth": needs_reauth,
            "updated_at": self._bind_datetime(datetime.now(UTC)),
        }

    def _bind_datetime(self, value: datetime) -> Any:
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("token timestamps must be timezone-aware datetimes")
        value = value.astimezone(UTC).replace(microsecond=0)
        # SQLite: UTC text in CURRENT_TIMESTAMP's format, so values compare as strings.
        return value if self.dialect == "postgresql" else value.replace(tzinfo=None).isoformat(sep=" ")

    @staticmethod
    def _datetime(value: Any) -> datetime:
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(str(value))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def _prepare_read_for_update(self, conn: sa.Connection, account: str | None = None) -> str:
        """Keep every other writer off the rows that ``conn``'s transaction reads next (``account``'s, or all)
        until it ends, so that none slips in between reading and updating them. Returns the suffix the SELECT
        needs.

        PostgreSQL: ``FOR UPDATE`` locks the rows read, waiting at most the lock timeout. SQLite: a first
        write takes the database's write lock at once; taken at the later UPDATE instead, it would fail on
        a snapshot that another writer's commit had made stale.
        """
        if self.dialect == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(self.lock_timeout_s * 1000)}")
            return " FOR UPDATE"
        if account is None:
            conn.execute(sa.text(f"UPDATE {TABLE} SET account = account"))
        else:
            conn.execute(sa.text(f"UPDATE {TABLE} SET account = account WHERE account = :a"), {"a": account})
        return ""

    def _lock_timeout(self, account: str) -> TokenLockTimeout:
        return TokenLockTimeout(
            f"another process has been refreshing the Spotify tokens of account {account!r} for more than "
            f"{self.lock_timeout_s:g} s; try again later"
        )

    def _wait_for_lock(self, try_acquire: Callable[[], bool], account: str) -> None:
        """Call ``try_acquire`` until it takes the lock; `TokenLockTimeout` after the lock timeout."""
        deadline = time.monotonic() + self.lock_timeout_s
        while not try_acquire():
            if time.monotonic() >= deadline:
                raise self._lock_timeout(account)
            time.sleep(_LOCK_POLL_S)

    @contextlib.contextmanager
    def _refresh_lock(self, account: str) -> Iterator[None]:
        """The lock every refresher of ``account`` takes, in this process and the others."""
        if self.dialect == "postgresql":
            with self._advisory_lock(account):
                yield
        elif self.redis_url is not None:
            with self._redis_lock(account):
                yield
        elif self.lock_path is not None:
            with self._file_lock(account):
                yield
        else:  # an in-memory database lives in this process only
            if not self._thread_lock.acquire(timeout=self.lock_timeout_s):
                raise self._lock_timeout(account)
            try:
                yield
            finally:
                self._thread_lock.release()

    @contextlib.contextmanager
    def _advisory_lock(self, account: str) -> Iterator[None]:
        """PostgreSQL: a session-level advisory lock on a connection of its own. That connection is in
        autocommit mode, so while the lock is held (across the HTTP call) it sits idle, not idle in a
        transaction: no snapshot, no row lock, nothing that holds back vacuum or a migration."""
        key = {"namespace": _REFRESH_LOCK_NAMESPACE, "account": _account_lock_id(account)}
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")

            # Polled with the try-lock rather than blocking in pg_advisory_lock(): a session blocked inside a
            # statement holds a snapshot for as long as it waits (see the migrations' lock), and polling
            # gives the same lock timeout as the other locks.
            def try_lock() -> bool:
                return bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:namespace, :account)"), key).scalar())

            self._wait_for_lock(try_lock, account)
            try:
                yield
            finally:
                try:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:namespace, :account)"), key)
                except sa.exc.DBAPIError:
                    # Never return a connection that may still hold the lock to the pool: closing the
                    # session releases every lock it holds.
                    conn.invalidate()

    @contextlib.contextmanager
    def _file_lock(self, account: str) -> Iterator[None]:
        import fcntl  # POSIX; the local profile runs on Linux and macOS

        assert self.lock_path is not None
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)

        def try_flock() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        try:
            self._wait_for_lock(try_flock, account)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _redis_lock(self, account: str) -> Iterator[None]:
        import redis

        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)
        name = _account_digest(account).hex()[:24]
        lock = self._redis.lock(
            f"{self.redis_key_prefix}spotify:v1:lock:user-token:{name}",
            timeout=self.lock_timeout_s + 30,  # expires on its own if this process dies holding it
            blocking_timeout=self.lock_timeout_s,
        )
        try:
            acquired = lock.acquire()
        except (redis.RedisError, OSError) as exc:
            raise TokenStoreError(
                f"the Redis lock guarding token refreshes is unavailable ({type(exc).__name__}); check REDIS_URL"
            ) from None
        if not acquired:
            raise self._lock_timeout(account)
        try:
            yield
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                lock.release()

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            text = str(exc.orig).lower()
            if TABLE in text and ("no such table" in text or "does not exist" in text):
                raise TokenStoreError(
                    f"the warehouse has no {TABLE} table: run `spotify-pipeline migrate` first"
                ) from None
            raise


_RowSinceRead = Literal["unchanged", "logged out", "logged in again"]


class _LockedRefresh:
    """One refresh of an account, holding its refresh lock (see `SqlTokenStore.refreshing`).

    ``save`` and ``mark_needs_reauth`` are compare-and-sets: each re-reads the row in its own transaction and
    writes only when the row still holds the refresh token this refresh started from. When the account was
    logged out meanwhile, ``save`` writes nothing and raises `TokenStoreError`; when it was logged in again
    (another refresh token), the newer login is kept and this refresh's result dropped.
    """

    def __init__(self, store: SqlTokenStore, account: str, current: StoredTokens | None) -> None:
        self._store = store
        self.account = account
        self.current = current
        # What the row must still hold for a write to go ahead: the refresh token read under the lock, then
        # whatever this refresh saved itself.
        self._expected_refresh_token = None if current is None else current.refresh_token

    def save(self, tokens: _TokensLike) -> None:
        if tokens.account != self.account:
            raise ValueError(f"this refresh holds account {self.account!r}, not {tokens.account!r}")
        values = self._store._values(tokens, needs_reauth=False)
        with self._store._translate_errors(), self._store.engine.begin() as conn:
            row = self._row_since_read(conn)
            if row == "logged out":
                raise TokenStoreError(
                    f"account {self.account!r} was logged out while its tokens were being refreshed; the new "
                    "tokens were not stored"
                )
            if row == "logged in again":
                log.warning(
                    "account %r was logged in again while its tokens were being refreshed; the new login "
                    "is kept and the refreshed tokens dropped",
                    self.account,
                )
                return
            conn.execute(
                sa.text(
                    f"UPDATE {TABLE} SET spotify_user_id = :spotify_user_id, scopes = :scopes, "
                    "access_token_ciphertext = :access, refresh_token_ciphertext = :refresh, "
                    "access_token_expires_at = :access_exp, consented_at = :consented, "
                    "refresh_token_expires_at = :refresh_exp, needs_reauth = :needs_reauth, "
                    "updated_at = :updated_at WHERE account = :account"
                ),
                values,
            )
        self._expected_refresh_token = tokens.refresh_token

    def mark_needs_reauth(self) -> None:
        with self._store._translate_errors(), self._store.engine.begin() as conn:
            row = self._row_since_read(conn)
            if row == "unchanged":
                _mark(conn, self.account)
            else:  # Spotify refused the old refresh token, not the login that replaced it
                log.warning(
                    "account %r was %s while its tokens were being refreshed; it is not marked as needing "
                    "a new login",
                    self.account,
                    row,
                )

    def _row_since_read(self, conn: sa.Connection) -> _RowSinceRead:
        """What became of the account's row since this refresh read it; the row stays locked against other
        writers until ``conn``'s transaction ends."""
        for_update = self._store._prepare_read_for_update(conn, self.account)
        ciphertext = conn.execute(
            sa.text(f"SELECT refresh_token_ciphertext FROM {TABLE} WHERE account = :a{for_update}"),
            {"a": self.account},
        ).scalar()
        if ciphertext is None:
            return "logged out"
        # The plaintext, not the ciphertext: `auth rotate-key` re-encrypts the same token under another key.
        if self._store._decrypt(ciphertext, self.account) != self._expected_refresh_token:
            return "logged in again"
        return "unchanged"


def _mark(conn: sa.Connection, account: str) -> bool:
    result = conn.execute(
        sa.text(f"UPDATE {TABLE} SET needs_reauth = :t, updated_at = :now WHERE account = :a"),
        {"t": True, "a": account, "now": _now_for(conn)},
    )
    return bool(result.rowcount)


def _now_for(conn: sa.Connection) -> Any:
    now = datetime.now(UTC).replace(microsecond=0)
    return now if dialect_of(conn) == "postgresql" else now.replace(tzinfo=None).isoformat(sep=" ")


def _account_digest(account: str) -> bytes:
    return hashlib.sha256(account.encode()).digest()


def _account_lock_id(account: str) -> int:
    """The account's advisory lock key (int4). Two accounts sharing one would only queue behind each other."""
    return int.from_bytes(_account_digest(account)[:4], "big", signed=True)


def _scopes(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    parts = value.split() if isinstance(value, str) else list(value)
    return tuple(sorted({p for p in parts if p}))
