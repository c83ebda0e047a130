"""The bulk-load paths every loader uses: `bulk_upsert`, and `bulk_replace` for rows owned by a parent row.

PostgreSQL: rows stream through `COPY` into a temporary table, then set statements (``INSERT ... SELECT ...
ON CONFLICT``, and for `bulk_replace` one ``DELETE``) move them into the target, all in one transaction.
SQLite: `bulk_upsert` is one `executemany` of ``INSERT ... ON CONFLICT``; `bulk_replace` stages the rows in a
temporary table first, since its delete needs them as a set. Either way a call is all or nothing, the last
row wins when a key repeats within a call, and rows whose values did not change are left untouched (so
`touch` columns such as `updated_at` move only on a real change).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
SQLITE_BATCH_ROWS = 5_000
CARDINALITY_VIOLATION = "21000"  # ON CONFLICT DO UPDATE met the same key twice in one statement
_SEQ = "_bulk_seq"  # the input-order column of a PostgreSQL staging table
_PARENTS_STAGING = "_bulk_parents"


class BulkLoadError(ValueError):
    """Rows handed to `bulk_upsert` or `bulk_replace` do not fit the target table."""


@dataclass(frozen=True)
class _Load:
    """One validated load: the target table, the rows' columns and what a key conflict does."""

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    update: tuple[str, ...]
    touch: tuple[str, ...]
    refresh: tuple[str, ...]

    @property
    def insert_columns(self) -> tuple[str, ...]:
        return self.columns + tuple(c for c in self.touch if c not in self.columns)

    def select_list(self, now: str) -> str:
        """What an INSERT ... SELECT from the staging table selects: the columns, then `now` per touch column."""
        return ", ".join(self.columns + (now,) * (len(self.insert_columns) - len(self.columns)))

    def conflict_clause(self, *, postgres: bool, now: str) -> str:
        key = ", ".join(self.key)
        if not self.update and not self.refresh:
            return f"ON CONFLICT ({key}) DO NOTHING"
        excluded, table = ("EXCLUDED" if postgres else "excluded"), self.table
        # A NULL read time says "not read now", not "never read": the stored one stays.
        refreshed = [f"COALESCE({excluded}.{c}, {table}.{c})" for c in self.refresh]
        assignments = [f"{c} = {excluded}.{c}" for c in self.update]
        assignments += [f"{c} = {value}" for c, value in zip(self.refresh, refreshed, strict=True)]
        touched = [c for c in self.touch if c not in self.update]
        if self.update:
            content_changed = _differs(
                [f"{table}.{c}" for c in self.update], [f"{excluded}.{c}" for c in self.update], postgres
            )
            # Refreshed columns are written on every read; only a change of content moves the touch columns.
            for c in touched:
                value = f"CASE WHEN {content_changed} THEN {now} ELSE {table}.{c} END" if self.refresh else now
                assignments.append(f"{c} = {value}")
        written = [*self.update, *self.refresh]
        anything_changed = _differs(
            [f"{table}.{c}" for c in written], [f"{excluded}.{c}" for c in self.update] + refreshed, postgres
        )
        return f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(assignments)} WHERE {anything_changed}"


def _differs(old: Sequence[str], new: Sequence[str], postgres: bool) -> str:
    distinct = "IS DISTINCT FROM" if postgres else "IS NOT"
    # Row values need at least two members on SQLite; a one-column list compares plain values.
    if len(old) == 1:
        return f"{old[0]} {distinct} {new[0]}"
    return f"({', '.join(old)}) {distinct} ({', '.join(new)})"


def _plan(
    table: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    key: Sequence[str],
    update: Sequence[str] | None,
    touch: Sequence[str],
    refresh: Sequence[str],
) -> tuple[_Load, Iterator[Mapping[str, Any]]] | None:
    """The load described by the arguments and the rows (columns from the first row), or None without rows."""
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return None
    columns = tuple(first.keys())
    for name in [table, *columns, *key, *(update or ()), *touch, *refresh]:
        if not _IDENTIFIER.match(name):
            raise BulkLoadError(f"not a plain SQL identifier: {name!r}")
    missing_keys = [k for k in key if k not in columns]
    if missing_keys:
        raise BulkLoadError(f"{table}: key column(s) {missing_keys} missing from the rows")
    missing_refresh = [c for c in refresh if c not in columns]
    if missing_refresh:
        raise BulkLoadError(f"{table}: refresh column(s) {missing_refresh} missing from the rows")
    update_columns = [c for c in columns if c not in key and c not in refresh] if update is None else list(update)
    both = sorted(set(update_columns) & set(refresh))
    if both:
        raise BulkLoadError(f"{table}: column(s) {both} both updated and refreshed")
    load = _Load(table, columns, tuple(key), tuple(update_columns), tuple(touch), tuple(refresh))
    return load, itertools.chain([first], iterator)


def bulk_upsert(
    bind: sa.Engine | sa.Connection,
    table: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    key: Sequence[str],
    update: Sequence[str] | None = None,
    touch: Sequence[str] = (),
    refresh: Sequence[str] = (),
) -> int:
    """Insert `rows` into `table`, updating existing rows that share `key`. Returns the number of rows read.

    `update`: columns overwritten on conflict (default: every non-key, non-`refresh` column in the rows;
    empty: keep the existing row). `touch`: timestamp columns set to the current time whenever a row is
    inserted or its `update` columns change. `refresh`: columns written on every conflict whether or not
    anything else changed, such as the time a row was last read (a NULL keeps the stored value); they do
    not move `touch` columns. With an Engine the call runs in its own transaction; with a Connection it
    joins the caller's transaction, so several loads can commit together.
    """
    plan = _plan(table, rows, key=key, update=update, touch=touch, refresh=refresh)
    if plan is None:
        return 0
    load, all_rows = plan
    with _transaction(bind) as conn, _driver_errors(conn, f"bulk upsert into {table}"):
        cursor = conn.connection.driver_connection.cursor()
        try:
            if conn.dialect.name == "postgresql":
                staging = _staging_name(table)
                count = _stage_postgres(cursor, staging, table, load.columns, all_rows)
                _merge_postgres(cursor, load, staging, conn.dialect.loaded_dbapi.Error)
                cursor.execute(f"DROP TABLE {staging}")
                return count
            return _upsert_sqlite(cursor, load, all_rows)
        finally:
            cursor.close()


def bulk_replace(
    bind: sa.Engine | sa.Connection,
    table: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    key: Sequence[str],
    parent: str,
    parents: Iterable[Any],
) -> int:
    """Make the rows of `table` whose `parent` column is one of `parents` exactly the `rows` given for them.

    For rows owned by a parent and replaced whole on every write of it (a track's artists by position):
    rows of those parents whose `key` is not among `rows` are deleted, then `rows` are upserted as by
    `bulk_upsert` (changed rows only, the last row wins for a repeated key). A parent without rows loses
    all of its rows; rows of parents not in `parents` are upserted and nothing of theirs is deleted.
    Returns the number of rows read. Transactions as for `bulk_upsert`.
    """
    for name in (table, parent, *key):
        if not _IDENTIFIER.match(name):
            raise BulkLoadError(f"not a plain SQL identifier: {name!r}")
    plan = _plan(table, rows, key=key, update=None, touch=(), refresh=())
    load, all_rows = plan if plan is not None else (None, iter(()))
    # Without rows there is nothing to upsert, and an empty staging table of the key columns lets the same
    # delete remove every row of the parents.
    staged_columns = load.columns if load is not None else tuple(key)
    parent_rows = ({parent: value} for value in parents)
    with _transaction(bind) as conn, _driver_errors(conn, f"bulk replace into {table}"):
        postgres = conn.dialect.name == "postgresql"
        stage = _stage_postgres if postgres else _stage_sqlite
        cursor = conn.connection.driver_connection.cursor()
        try:
            staging = _staging_name(table)
            count = stage(cursor, staging, table, staged_columns, all_rows)
            stage(cursor, _PARENTS_STAGING, table, (parent,), parent_rows)
            if postgres:
                # A temporary table has no statistics: without them the planner guesses a few thousand
                # parents and scans the whole target even for a handful, instead of probing its index.
                cursor.execute(f"ANALYZE {_PARENTS_STAGING}")
            else:
                # SQLite looks up each target row's key in the staged rows below: give it an index to do so.
                cursor.execute(f"CREATE INDEX temp.{staging}_key ON {staging} ({', '.join(key)})")
            matches = " AND ".join(f"s.{k} = t.{k}" for k in key)
            cursor.execute(
                f"DELETE FROM {table} AS t WHERE t.{parent} IN (SELECT {parent} FROM {_PARENTS_STAGING}) "
                f"AND NOT EXISTS (SELECT 1 FROM {staging} AS s WHERE {matches})"
            )
            if load is not None and postgres:
                _merge_postgres(cursor, load, staging, conn.dialect.loaded_dbapi.Error)
            elif load is not None:
                _merge_sqlite(cursor, load, staging)
            cursor.execute(f"DROP TABLE {staging}")
            cursor.execute(f"DROP TABLE {_PARENTS_STAGING}")
            return count
        finally:
            cursor.close()


@contextmanager
def _transaction(bind: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            yield conn
    else:
        yield bind


@contextmanager
def _driver_errors(conn: sa.Connection, what: str) -> Iterator[None]:
    """Raw driver cursors are used for speed; surface their errors as SQLAlchemy's, like any query."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as exc:
        raise sa.exc.DBAPIError.instance(what, None, exc, dbapi_error) from exc


def _staging_name(table: str) -> str:
    return f"_bulk_{table}"


def _upsert_sqlite(cursor: Any, load: _Load, rows: Iterable[Mapping[str, Any]]) -> int:
    values = ["?"] * len(load.columns) + ["CURRENT_TIMESTAMP"] * (len(load.insert_columns) - len(load.columns))
    sql = (
        f"INSERT INTO {load.table} ({', '.join(load.insert_columns)}) VALUES ({', '.join(values)}) "
        + load.conflict_clause(postgres=False, now="CURRENT_TIMESTAMP")
    )
    return _executemany_sqlite(cursor, sql, load.columns, rows)


def _stage_sqlite(
    cursor: Any, staging: str, table: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]
) -> int:
    """Copy `rows` into a new temporary table `staging` with `table`'s `columns`, in input order (rowid);
    returns the number of rows read."""
    cursor.execute(f"DROP TABLE IF EXISTS temp.{staging}")
    cursor.execute(f"CREATE TEMP TABLE {staging} AS SELECT {', '.join(columns)} FROM {table} WHERE false")
    sql = f"INSERT INTO temp.{staging} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    return _executemany_sqlite(cursor, sql, columns, rows)


def _merge_sqlite(cursor: Any, load: _Load, staging: str) -> None:
    """Move the staged rows into the target in input order (a repeated key: the last row wins)."""
    cursor.execute(
        f"INSERT INTO {load.table} ({', '.join(load.insert_columns)}) "
        f"SELECT {load.select_list('CURRENT_TIMESTAMP')} FROM {staging} "
        # WHERE true: SQLite would read ON CONFLICT as a join constraint of the SELECT.
        f"WHERE true ORDER BY rowid {load.conflict_clause(postgres=False, now='CURRENT_TIMESTAMP')}"
    )


def _executemany_sqlite(cursor: Any, sql: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    values_iter = (_row_values(row, columns, _sqlite_value) for row in rows)
    while batch := list(itertools.islice(values_iter, SQLITE_BATCH_ROWS)):
        cursor.executemany(sql, batch)
        count += len(batch)
    return count


def _stage_postgres(
    cursor: Any, staging: str, table: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]
) -> int:
    """COPY `rows` into a new temporary table `staging` with `table`'s `columns` plus their input order
    (`_bulk_seq`); returns the number of rows read. The table goes at commit at the latest."""
    cursor.execute(f"DROP TABLE IF EXISTS {staging}")
    cursor.execute(
        f"CREATE TEMP TABLE {staging} ON COMMIT DROP AS "
        f"SELECT {', '.join(columns)}, 0::bigint AS {_SEQ} FROM {table} WITH NO DATA"
    )
    stream = _CopyStream(_csv_blocks(rows, columns))
    try:
        cursor.copy_expert(
            f"COPY {staging} ({', '.join(columns)}, {_SEQ}) FROM STDIN WITH (FORMAT csv)", stream, COPY_READ_CHARS
        )
    except Exception:
        if stream.error is not None:  # the driver reports our own error as "COPY failed"; raise ours
            raise stream.error from None
        raise
    return stream.rows


def _merge_postgres(cursor: Any, load: _Load, staging: str, dbapi_error: type[Exception]) -> None:
    """Move the staged rows into the target with one INSERT ... SELECT ... ON CONFLICT."""
    insert = f"INSERT INTO {load.table} ({', '.join(load.insert_columns)}) SELECT {load.select_list('now()')} FROM "
    conflict = load.conflict_clause(postgres=True, now="now()")
    key_list = ", ".join(load.key)
    # DISTINCT ON keeps the last row per key (ON CONFLICT may not touch one target row twice); the
    # outer ORDER BY inserts in input order, so generated ids follow the input as they do on SQLite.
    latest = (
        f"(SELECT DISTINCT ON ({key_list}) * FROM {staging} ORDER BY {key_list}, {_SEQ} DESC) AS latest "
        f"ORDER BY {_SEQ} "
    )
    if (load.update or load.refresh) and not _has_generated_columns(cursor, load.table):
        # Keys nearly always come unique, and then the two sorts above are pure cost (a third of the
        # time at a million rows). Insert straight from the staging table; a repeated key makes
        # ON CONFLICT DO UPDATE fail (cardinality violation) before anything commits, and the load is
        # redone with DISTINCT ON. Not for DO NOTHING (a repeat would silently keep the first row, not
        # the last), nor for tables with generated ids (a failed attempt would consume sequence values).
        cursor.execute("SAVEPOINT _bulk_unique_keys")
        try:
            cursor.execute(insert + f"{staging} " + conflict)
        except dbapi_error as exc:
            if getattr(exc, "pgcode", None) != CARDINALITY_VIOLATION:
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT _bulk_unique_keys")
            cursor.execute(insert + latest + conflict)
        cursor.execute("RELEASE SAVEPOINT _bulk_unique_keys")
    else:
        cursor.execute(insert + latest + conflict)


def _has_generated_columns(cursor: Any, table: str) -> bool:
    """Whether `table` has a column filled from a sequence (serial or identity)."""
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute AS a "
        "LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%'))",
        (table,),
    )
    return bool(cursor.fetchone()[0])


def _row_values(row: Mapping[str, Any], columns: Sequence[str], convert) -> tuple:
    if len(row) != len(columns):
        extra = sorted(set(row) - set(columns))
        missing = sorted(set(columns) - set(row))
        raise BulkLoadError(f"every row needs the same columns; extra {extra}, missing {missing}")
    try:
        return tuple(convert(row[c]) for c in columns)
    except KeyError as exc:
        raise BulkLoadError(f"row is missing column {exc.args[0]!r}") from None


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, dt.datetime):
        return _utc_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _utc_text(value: dt.datetime) -> str:
    """SQLite stores timestamps as UTC text in CURRENT_TIMESTAMP's format, so they compare as strings."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="seconds")


# Rows go to COPY in its CSV format, written by the csv module (C code), which costs a fraction of
# formatting every field in Python. Values of these types it writes exactly as PostgreSQL reads them:
# None as the unquoted empty field (CSV's NULL), the others as str() (booleans as True/False).
_CSV_NATIVE = frozenset({str, int, float, bool, type(None), dt.datetime, dt.date})
COPY_BLOCK_ROWS = 1_000
COPY_READ_CHARS = 1 << 18


def _csv_field(value: Any) -> str:
    """One field in COPY's CSV format, for values the csv module cannot be trusted with (or empty strings,
    which must be quoted to differ from NULL)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        value = "\\x" + bytes(value).hex()
    elif isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    else:
        value = str(value)
    return '"' + value.replace('"', '""') + '"'


def _csv_blocks(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Iterator[tuple[str, int]]:
    """COPY CSV text of `rows` plus a sequence-number column, COPY_BLOCK_ROWS rows at a time, with the
    number of rows in each block."""
    get = operator.itemgetter(*columns)
    width = len(columns)
    buffer = io.StringIO()
    # "\r\n": the csv module quotes a field holding \r or \n only when both are in the line terminator.
    writer = csv.writer(buffer, lineterminator="\r\n")
    count = 0
    for seq, row in enumerate(rows):
        if len(row) != width:
            _row_values(row, columns, str)  # raises the precise error
        try:
            values = get(row) if width > 1 else (get(row),)
        except KeyError as exc:
            raise BulkLoadError(f"row is missing column {exc.args[0]!r}") from None
        if _CSV_NATIVE.issuperset(map(type, values)) and "" not in values:
            writer.writerow((*values, seq))
        else:
            buffer.write(",".join(map(_csv_field, values)) + f",{seq}\r\n")
        count += 1
        if count == COPY_BLOCK_ROWS:
            yield _take(buffer), count
            count = 0
    if count:
        yield _take(buffer), count


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    if "\x00" in text:
        raise BulkLoadError("text values cannot contain NUL characters")
    return text


class _CopyStream:
    """A read()-able view of generated COPY text, so a load streams instead of building one big buffer."""

    def __init__(self, blocks: Iterator[tuple[str, int]]) -> None:
        self._blocks = blocks
        self._pending = ""
        self.rows = 0
        self.error: Exception | None = None

    def read(self, size: int = -1) -> str:
        chunks, length = [self._pending], len(self._pending)
        while size < 0 or length < size:
            try:
                block = next(self._blocks, None)
            except Exception as exc:
                self.error = exc
                raise
            if block is None:
                break
            text, count = block
            self.rows += count
            chunks.append(text)
            length += len(text)
        data = "".join(chunks)
        if size < 0:
            self._pending = ""
            return data
        self._pending = data[size:]
        return data[:size]
