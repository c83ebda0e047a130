"""Engines for the two warehouse backends, configured so the same SQL behaves the same on both."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url


def create_engine(database_url: str, **kwargs) -> sa.Engine:
    """An engine for `database_url`: `sqlite:///path` (file created on first use) or `postgresql://...`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if url.get_backend_name() == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg2")
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)
    raise ValueError(
        f"DATABASE_URL must be a sqlite:/// or postgresql:// URL, got {url.render_as_string(hide_password=True)!r}"
    )


def dialect_of(bind: sa.Engine | sa.Connection) -> str:
    """'sqlite' or 'postgresql': selects the migration folder and the backend-specific load path."""
    return bind.dialect.name


def _sqlite_engine(url: sa.URL, **kwargs) -> sa.Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_conn: sqlite3.Connection, _record) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so DDL is transactional.
        dbapi_conn.isolation_level = None
        # SQLite's built-in lower() folds ASCII only; PostgreSQL's folds all of Unicode. Searching
        # "BJÖRK" must find "Björk" on both, so the warehouse connection folds with Python's rules.
        dbapi_conn.create_function("lower", 1, _unicode_lower, deterministic=True)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _unicode_lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value
