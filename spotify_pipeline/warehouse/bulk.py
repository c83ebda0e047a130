"""The one bulk-upsert path every loader uses.

PostgreSQL: rows stream through `COPY` into a temporary table, then one `INSERT ... SELECT ... ON CONFLICT`
moves them into the target, all in one transaction. SQLite: one `executemany` of
`INSERT ... ON CONFLICT` in one transaction. Either way a call is all or nothing, the last row wins when a
key repeats within a call, and rows whose values did not change are left untouched (so `touch` columns
such as `updated_at` move only on a real change).
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
from typing import Any

import sqlalchemy as sa

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
SQLITE_BATCH_ROWS = 5_000
CARDINALITY_VIOLATION = "21000"  # ON CONFLICT DO UPDATE met the same key twice in one statement


class BulkLoadError(ValueError):
    """Rows handed to `bulk_upsert` do not fit the target table."""


def bulk_upsert(
    bind: sa.Engine | sa.Connection,
    table: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    key: Sequence[str],
    update: Sequence[str] | None = None,
    touch: Sequence[str] = (),
) -> int:
    """Insert `rows` into `table`, updating existing rows that share `key`. Returns the number of rows read.

    `update`: columns overwritten on conflict (default: every non-key column in the rows; empty: keep the
    existing row). `touch`: timestamp columns set to the current time whenever a row is inserted or changed.
    With an Engine the call runs in its own transaction; with a Connection it joins the caller's
    transaction, so several loads can commit together.
    """
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return 0
    columns = list(first.keys())
    for name in [table, *columns, *key, *(update or ()), *touch]:
        if not _IDENTIFIER.match(name):
            raise BulkLoadError(f"not a plain SQL identifier: {name!r}")
    missing_keys = [k for k in key if k not in columns]
    if missing_keys:
        raise BulkLoadError(f"{table}: key column(s) {missing_keys} missing from the rows")
    update_columns = [c for c in columns if c not in key] if update is None else list(update)
    all_rows = itertools.chain([first], iterator)
    with _transaction(bind) as conn:
        upsert = _upsert_postgres if conn.dialect.name == "postgresql" else _upsert_sqlite
        try:
            return upsert(conn, table, columns, all_rows, key, update_columns, touch)
        except conn.dialect.loaded_dbapi.Error as exc:
            # Raw driver cursors are used for speed; surface their errors as SQLAlchemy's, like any query.
            raise sa.exc.DBAPIError.instance(
                f"bulk upsert into {table}", None, exc, conn.dialect.loaded_dbapi.Error
            ) from exc


@contextmanager
def _transaction(bind: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            yield conn
    else:
        yield bind


def _conflict_clause(
    table: str, key: Sequence[str], update: Sequence[str], touch: Sequence[str], now: str, excluded: str
) -> str:
    if not update:
        return f"ON CONFLICT ({', '.join(key)}) DO NOTHING"
    assignments = [f"{c} = {excluded}.{c}" for c in update] + [f"{c} = {now}" for c in touch if c not in update]
    old = ", ".join(f"{table}.{c}" for c in update)
    new = ", ".join(f"{excluded}.{c}" for c in update)
    distinct = "IS DISTINCT FROM" if excluded == "EXCLUDED" else "IS NOT"
    # Row values need at least two members on SQLite; a one-column list compares plain values.
    changed = f"({old}) {distinct} ({new})" if len(update) > 1 else f"{old} {distinct} {new}"
    return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(assignments)} WHERE {changed}"


def _upsert_sqlite(conn, table, columns, rows, key, update, touch) -> int:
    insert_columns = columns + [c for c in touch if c not in columns]
    values = ["?"] * len(columns) + ["CURRENT_TIMESTAMP"] * (len(insert_columns) - len(columns))
    sql = (
        f"INSERT INTO {table} ({', '.join(insert_columns)}) VALUES ({', '.join(values)}) "
        + _conflict_clause(table, key, update, touch, "CURRENT_TIMESTAMP", "excluded")
    )
    cursor = conn.connection.driver_connection.cursor()
    count = 0
    try:
        values_iter = (_row_values(row, columns, _sqlite_value) for row in rows)
        while batch := list(itertools.islice(values_iter, SQLITE_BATCH_ROWS)):
            cursor.executemany(sql, batch)
            count += len(batch)
    finally:
        cursor.close()
    return count


def _upsert_postgres(conn, table, columns, rows, key, update, touch) -> int:
    staging = f"_bulk_{table}"
    seq = "_bulk_seq"
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(f"DROP TABLE IF EXISTS {staging}")
        cursor.execute(
            f"CREATE TEMP TABLE {staging} ON COMMIT DROP AS "
            f"SELECT {', '.join(columns)}, 0::bigint AS {seq} FROM {table} WITH NO DATA"
        )
        stream = _CopyStream(_csv_blocks(rows, columns))
        try:
            cursor.copy_expert(
                f"COPY {staging} ({', '.join(columns)}, {seq}) FROM STDIN WITH (FORMAT csv)", stream, COPY_READ_CHARS
            )
        except Exception:
            if stream.error is not None:  # the driver reports our own error as "COPY failed"; raise ours
                raise stream.error from None
            raise
        insert_columns = columns + [c for c in touch if c not in columns]
        select_columns = columns + ["now()"] * (len(insert_columns) - len(columns))
        insert = f"INSERT INTO {table} ({', '.join(insert_columns)}) SELECT {', '.join(select_columns)} FROM "
        conflict = _conflict_clause(table, key, update, touch, "now()", "EXCLUDED")
        key_list = ", ".join(key)
        # DISTINCT ON keeps the last row per key (ON CONFLICT may not touch one target row twice); the
        # outer ORDER BY inserts in input order, so generated ids follow the input as they do on SQLite.
        latest = (
            f"(SELECT DISTINCT ON ({key_list}) * FROM {staging} ORDER BY {key_list}, {seq} DESC) AS latest "
            f"ORDER BY {seq} "
        )
        if update and not _has_generated_columns(cursor, table):
            # Keys nearly always come unique, and then the two sorts above are pure cost (a third of the
            # time at a million rows). Insert straight from the staging table; a repeated key makes
            # ON CONFLICT DO UPDATE fail (cardinality violation) before anything commits, and the load is
            # redone with DISTINCT ON. Not for DO NOTHING (a repeat would silently keep the first row, not
            # the last), nor for tables with generated ids (a failed attempt would consume sequence values).
            cursor.execute("SAVEPOINT _bulk_unique_keys")
            try:
                cursor.execute(insert + f"{staging} " + conflict)
            except conn.dialect.loaded_dbapi.Error as exc:
                if getattr(exc, "pgcode", None) != CARDINALITY_VIOLATION:
                    raise
                cursor.execute("ROLLBACK TO SAVEPOINT _bulk_unique_keys")
                cursor.execute(insert + latest + conflict)
            cursor.execute("RELEASE SAVEPOINT _bulk_unique_keys")
        else:
            cursor.execute(insert + latest + conflict)
        cursor.execute(f"DROP TABLE {staging}")
    finally:
        cursor.close()
    return stream.rows


def _has_generated_columns(cursor, table: str) -> bool:
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
