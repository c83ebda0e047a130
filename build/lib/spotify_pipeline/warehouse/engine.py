"""Engines for the two warehouse backends, configured so the same SQL behaves the same on both."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

#: Seconds a PostgreSQL connection attempt may take before it fails (libpq waits for the operating system's
#: TCP timeout otherwise, minutes on a server that does not answer). A `connect_timeout` in the URL wins.
POSTGRES_CONNECT_TIMEOUT_S = 10


class DatabaseUrlError(ValueError):
    """The warehouse URL cannot be parsed, or names a backend the warehouse does not support."""


def create_engine(database_url: str, **kwargs) -> sa.Engine:
    """An engine for `database_url`: `sqlite:///path` (file created on first use) or `postgresql://...`."""
    try:
        url = make_url(database_url)
    except sa.exc.ArgumentError:
        raise DatabaseUrlError(
            "DATABASE_URL is not a database URL: expected sqlite:///path/to/warehouse.db or "
            "postgresql://user@host:5432/database"
        ) from None
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if url.get_backend_name() == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg2")
        connect_args = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S} if "connect_timeout" not in url.query else {}
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    raise DatabaseUrlError(
        f"DATABASE_URL must be a sqlite:/// or postgresql:// URL, got {url.render_as_string(hide_password=True)!r}"
    )


def dialect_of(bind: sa.Engine | sa.Connection) -> str:
    """'sqlite' or 'postgresql': selects the migration folder and the backend-specific load path."""
    return bind.dialect.name


def read_timestamp(value: Any) -> dt.datetime | None:
    """A timestamp column's value as an aware UTC datetime: PostgreSQL returns datetimes, SQLite the UTC
    text that CURRENT_TIMESTAMP writes."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromisoformat(str(value))
    return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _sqlite_engine(url: sa.URL, **kwargs) -> sa.Engine:
    if url.database and url.database != ":memory:":
        folder = Path(url.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUrlError(
                f"cannot create the folder {folder} for the SQLite warehouse ({exc.strerror}): check DATABASE_URL"
            ) from None
    engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_conn: sqlite3.Connection, _record) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so DDL is transactional.
        dbapi_conn.isolation_level = None
        # No SQL functions are registered here: analysts open the same file with the sqlite3 shell, and
        # anything the schema computed with a Python function would disagree with what the shell writes.
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine
