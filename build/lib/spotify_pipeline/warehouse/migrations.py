"""Versioned SQL migrations: `sql/<dialect>/NNNN_name.sql`, recorded in `schema_migrations`.

- Files are applied in version order; both dialects carry the same versions.
- Each applied file is recorded with a SHA-256 checksum; an applied file that changed afterwards makes
  `migrate` refuse, naming the file, because the database no longer matches the code.
- A file runs in one transaction with its `schema_migrations` row, unless its header says
  `-- migrate: no-transaction` (needed for `CREATE INDEX CONCURRENTLY`). Such a file runs statement by
  statement, so each of its statements must be safe to run again after a failure.
- On PostgreSQL a session advisory lock serializes concurrent `migrate` processes; the second one waits,
  then finds nothing left to do.
- A migration may need data that SQL cannot compute, such as text folded by Python's Unicode rules. Its
  *post-migration step* (POST_MIGRATION_STEPS, keyed by version) runs right after the file's statements,
  on the same connection: inside the file's transaction, or in autocommit mode for a no-transaction file,
  where each of its statements commits on its own. The version is recorded only once the step has
  finished, so a step must be safe to run again, like the statements of a no-transaction file.
- Migrations only go forward: `target` must be a version that exists and is not below what is applied.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from spotify_pipeline.warehouse.catalog import backfill_search_keys
from spotify_pipeline.warehouse.engine import dialect_of

log = logging.getLogger(__name__)

# Shipped inside the package (package data), so a wheel or a container image can migrate.
SQL_ROOT = Path(__file__).resolve().parent / "sql"
FILE_PATTERN = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
NO_TRANSACTION_MARKER = "-- migrate: no-transaction"
# Arbitrary constant naming this project's migration lock among other users of pg advisory locks.
ADVISORY_LOCK_KEY = 7_301_402_219
LOCK_NOT_AVAILABLE = "55P03"
LOCK_RETRIES = 20
LOCK_WAIT_S = 600

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


class MigrationError(RuntimeError):
    """A migration could not be applied, or the applied history does not match the files."""


class MigrationConnection(Protocol):
    """What a post-migration step receives: the migration's own DB-API connection. Statements take `?`
    placeholders on both backends."""

    dialect: str

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]: ...

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> None: ...


PostMigrationStep = Callable[[MigrationConnection], Any]
#: Python that completes a migration after its SQL, by version (see the module docstring).
POST_MIGRATION_STEPS: Mapping[int, PostMigrationStep] = {
    14: backfill_search_keys,  # 0014_songs_search_keys: fold the search keys of the songs already there
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def transactional(self) -> bool:
        return NO_TRANSACTION_MARKER not in self.sql.split("\n", 3)[:3]

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: str


def discover(dialect: str, root: Path = SQL_ROOT) -> list[Migration]:
    """The migrations for `dialect` ('sqlite' or 'postgresql'), in version order."""
    folder = root / ("postgres" if dialect == "postgresql" else dialect)
    if not folder.is_dir():
        raise MigrationError(f"no migrations folder for {dialect!r} at {folder}")
    migrations: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_lower_snake_name.sql")
        raw = path.read_bytes()
        migrations.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                path=path,
                sql=raw.decode("utf-8"),
                checksum=hashlib.sha256(raw).hexdigest(),
            )
        )
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise MigrationError(f"duplicate migration versions in {folder}: {duplicates}")
    return migrations


def applied(engine: sa.Engine) -> list[AppliedMigration]:
    """What `schema_migrations` records, in version order (empty before the first migrate)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("schema_migrations"):
            return []
        rows = conn.execute(
            sa.text("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
        )
        return [AppliedMigration(*row) for row in rows]


def migrate(
    engine: sa.Engine,
    *,
    target: int | None = None,
    on_apply: Callable[[Migration, float], None] | None = None,
    root: Path = SQL_ROOT,
    steps: Mapping[int, PostMigrationStep] = POST_MIGRATION_STEPS,
) -> list[Migration]:
    """Apply every pending migration up to `target` (default: all). Returns those applied, in order.

    `root` and `steps` name the migrations and their post-migration steps (default: the shipped ones).
    """
    dialect = dialect_of(engine)
    available = discover(dialect, root)
    if target is not None and target not in {m.version for m in available}:
        last = available[-1].filename if available else "none"
        raise MigrationError(f"there is no migration {target:04d} to migrate to; the last available is {last}")
    migrations = [m for m in available if target is None or m.version <= target]
    # Through a Connection rather than engine.raw_connection(), so that a failure to connect is raised as
    # SQLAlchemy's error, like any other query's.
    with engine.connect() as conn:
        driver_conn = conn.connection.driver_connection
        if dialect == "postgresql":
            driver_conn.autocommit = True
        try:
            return _apply(_Runner(driver_conn, dialect, steps), migrations, target, on_apply)
        finally:
            if dialect == "postgresql":
                driver_conn.autocommit = False  # the connection goes back to the pool


def _apply(
    runner: _Runner,
    migrations: list[Migration],
    target: int | None,
    on_apply: Callable[[Migration, float], None] | None,
) -> list[Migration]:
    with runner.lock():
        runner.execute(_CREATE_TABLE)
        done = runner.applied_checksums()
        _verify_history(migrations, done)
        if target is not None and done and max(done) > target:
            raise MigrationError(
                f"the warehouse is already at version {max(done):04d}, past {target:04d}; migrations only "
                "go forward (going back means restoring a backup)"
            )
        newly_applied = []
        for migration in migrations:
            if migration.version in done:
                continue
            started = time.perf_counter()
            runner.apply(migration)
            elapsed = time.perf_counter() - started
            log.info("applied migration %s in %.2fs", migration.filename, elapsed)
            if on_apply:
                on_apply(migration, elapsed)
            newly_applied.append(migration)
        return newly_applied


def latest_version(dialect: str, root: Path = SQL_ROOT) -> int:
    """The version of the newest migration this release ships for `dialect`."""
    return max(m.version for m in discover(dialect, root))


def _verify_history(migrations: list[Migration], done: dict[int, tuple[str, str]]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(done.items()):
        migration = by_version.get(version)
        if migration is None:
            continue  # applied beyond `target`, or by a newer release: not ours to judge here
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.filename} was changed after it was applied (recorded checksum {checksum[:12]}, "
                f"file now {migration.checksum[:12]}); write a new migration instead of editing an applied one"
            )


class _Runner:
    """Executes migration SQL on one DB-API connection in autocommit mode, with explicit transactions."""

    def __init__(self, conn, dialect: str, steps: Mapping[int, PostMigrationStep]) -> None:
        self.conn = conn
        self.dialect = dialect
        self.steps = steps

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.conn.cursor()
        try:
            if params:
                cursor.execute(self._placeholders(statement), params)
            else:
                cursor.execute(statement)
            return cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        cursor = self.conn.cursor()
        try:
            cursor.executemany(self._placeholders(statement), rows)
        finally:
            cursor.close()

    def _placeholders(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgresql" else statement

    def applied_checksums(self) -> dict[int, tuple[str, str]]:
        rows = self.execute("SELECT version, name, checksum FROM schema_migrations")
        return {version: (name, checksum) for version, name, checksum in rows}

    def lock(self):
        return _AdvisoryLock(self) if self.dialect == "postgresql" else _NoLock()

    def apply(self, migration: Migration) -> None:
        statements = split_statements(migration.sql, self.dialect)
        record = (
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
            (migration.version, migration.name, migration.checksum, datetime.now(timezone.utc).isoformat()),
        )
        if migration.transactional:
            # SQLite: IMMEDIATE takes the write lock up front, so a second migrate process waits here and
            # then sees this version as applied instead of applying it twice.
            self.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
            try:
                if self.dialect == "sqlite" and self._recorded(migration.version):
                    self.execute("ROLLBACK")
                    return
                for statement in statements:
                    self._run(migration, statement)
                self._run_post_migration_step(migration)
                self.execute(*record)
                self.execute("COMMIT")
            except BaseException:
                self.execute("ROLLBACK")
                raise
        else:
            try:
                for statement in statements:
                    self._run_with_lock_retries(migration, statement)
                if self.dialect == "postgresql":
                    # The file's session settings (a short lock_timeout, meant for its DDL) are not the
                    # step's: its row updates may wait for a writer without holding up any reader.
                    self.execute("RESET ALL")
                self._run_post_migration_step(migration)
                self.execute(*record)
            finally:
                if self.dialect == "postgresql":
                    self.execute("RESET ALL")

    def _run_post_migration_step(self, migration: Migration) -> None:
        step = self.steps.get(migration.version)
        if step is None:
            return
        started = time.perf_counter()
        try:
            outcome = step(self)
        except Exception as exc:
            raise MigrationError(f"{migration.filename}, step {step.__name__}: {exc}".strip()) from exc
        elapsed = time.perf_counter() - started
        log.info("%s: post-migration step %s returned %s in %.2fs", migration.filename, step.__name__, outcome, elapsed)

    def _recorded(self, version: int) -> bool:
        return bool(self.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)))

    def _run(self, migration: Migration, statement: str) -> None:
        try:
            self.execute(statement)
        except Exception as exc:
            raise MigrationError(f"{migration.filename}: {exc}".strip()) from exc

    def _run_with_lock_retries(self, migration: Migration, statement: str) -> None:
        # A short lock_timeout makes DDL give up instead of queueing readers behind it; give up only after
        # several tries, with backoff, so a busy table delays the migration rather than failing it.
        for attempt in range(1, LOCK_RETRIES + 1):
            try:
                self.execute(statement)
                return
            except Exception as exc:
                if getattr(exc, "pgcode", None) == LOCK_NOT_AVAILABLE and attempt < LOCK_RETRIES:
                    log.warning("%s: lock not available, retrying (%d/%d)", migration.filename, attempt, LOCK_RETRIES)
                    time.sleep(min(0.1 * 2**attempt, 5.0))
                    continue
                raise MigrationError(f"{migration.filename}: {exc}".strip()) from exc


class _AdvisoryLock:
    def __init__(self, runner: _Runner) -> None:
        self.runner = runner

    def __enter__(self) -> None:
        # Poll with short try-lock statements instead of blocking in pg_advisory_lock(): a session blocked
        # inside a statement holds a snapshot, and CREATE INDEX CONCURRENTLY in the lock holder would wait
        # for that snapshot forever (a deadlock).
        deadline = time.monotonic() + LOCK_WAIT_S
        while not self.runner.execute(f"SELECT pg_try_advisory_lock({ADVISORY_LOCK_KEY})")[0][0]:
            if time.monotonic() > deadline:
                raise MigrationError(f"another migrate process held the migration lock for over {LOCK_WAIT_S} s")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.runner.execute(f"SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})")


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def split_statements(sql: str, dialect: str) -> list[str]:
    """Split a migration file into statements (DB-API drivers execute one at a time)."""
    if dialect == "sqlite":
        return _split_sqlite(sql)
    return _split_postgres(sql)


def _split_sqlite(sql: str) -> list[str]:
    # sqlite3.complete_statement knows SQLite's grammar, including `BEGIN ... END;` in triggers.
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if _strip_comments(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if _strip_comments(buffer):
        raise MigrationError(f"incomplete SQL statement at end of file: {buffer.strip()[:80]!r}")
    return statements


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip().strip(";")


_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]*\$")


def _split_postgres(sql: str) -> list[str]:
    """Split on `;` outside quotes, dollar-quoted bodies and comments."""
    statements: list[str] = []
    start = i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif ch == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif ch in ("'", '"'):
            end = sql.find(ch, i + 1)
            while end != -1 and sql.startswith(ch * 2, end):  # doubled quote escapes itself
                end = sql.find(ch, end + 2)
            i = n if end == -1 else end + 1
        elif ch == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(tag.group(), tag.end())
            i = n if end == -1 else end + len(tag.group())
        elif ch == ";":
            statement = sql[start:i]
            if _strip_comments(statement):
                statements.append(statement.strip())
            start = i = i + 1
        else:
            i += 1
    if _strip_comments(sql[start:]):
        statements.append(sql[start:].strip())
    return statements
