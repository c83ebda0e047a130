"""Loading the local catalogue (`songs`) from CSV, and writing songs with their search keys.

Bad rows are reported with their line numbers and skipped; good rows load in one all-or-nothing upsert
keyed on each song's natural key, so loading the same file twice adds nothing. Every write of a song's own
fields goes through `upsert_songs`, which adds the folded search keys (see search.py); songs that existed
before those columns get them from `backfill_search_keys`, migration 0014's post-migration step.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import sqlalchemy as sa

from spotify_pipeline.warehouse.bulk import bulk_upsert
from spotify_pipeline.warehouse.search import search_keys

if TYPE_CHECKING:
    from spotify_pipeline.warehouse.migrations import MigrationConnection

REQUIRED_COLUMNS = ("title", "artist")
KNOWN_COLUMNS = ("title", "artist", "album", "duration_ms", "isrc", "release_year")
MAX_FIELD_CHARS = 500
ISRC_PATTERN = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")  # ASCII digits only, as the table's CHECK
#: The largest duration the warehouse's INTEGER column holds (about 24 days).
MAX_DURATION_MS = 2**31 - 1
#: A load reports its progress after this many good rows (and once more when the whole file is read).
PROGRESS_EVERY_ROWS = 10_000
#: Songs folded per statement when backfilling search keys.
BACKFILL_BATCH_ROWS = 10_000


class CatalogFileError(ValueError):
    """The file as a whole cannot be read as a catalogue (missing columns, not CSV, not UTF-8)."""


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class LoadReport:
    rows_read: int = 0
    rows_loaded: int = 0
    songs_added: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def rows_skipped(self) -> int:
        return len(self.errors)


@dataclass(frozen=True)
class LoadProgress:
    """How far a catalogue load has read its file. Once `bytes_read == bytes_total` only the write to the
    warehouse and its commit remain."""

    rows_read: int
    bytes_read: int
    bytes_total: int


def sample_catalog_path() -> Path:
    """The sample catalogue shipped with the package (aligned with the emulator's default catalogue)."""
    return Path(__file__).resolve().parents[1] / "data" / "sample_catalog.csv"


def catalog_key(title: str, artist: str, album: str | None, isrc: str | None) -> str:
    """Natural key of a catalogue entry: case, spacing and Unicode form do not make a new song."""
    parts = [_normalize_key_part(v) for v in (title, artist, album or "", isrc or "")]
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def _normalize_key_part(value: str) -> str:
    return " ".join(unicodedata.normalize("NFC", value).casefold().split())


def parse_catalog(stream: TextIO, report: LoadReport) -> Iterator[dict[str, Any]]:
    """Yield valid song rows from a catalogue CSV, recording each bad row in `report`."""
    reader = csv.DictReader(stream)
    try:
        yield from _parse_rows(reader, report)
    except UnicodeDecodeError as exc:
        raise CatalogFileError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise CatalogFileError(f"line {reader.line_num}: not valid CSV ({exc})") from None


def _parse_rows(reader: csv.DictReader, report: LoadReport) -> Iterator[dict[str, Any]]:
    if reader.fieldnames is None:
        raise CatalogFileError("the file is empty: expected a header row with " + ", ".join(KNOWN_COLUMNS))
    header = [name.strip().lower() for name in reader.fieldnames]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise CatalogFileError(
            f"missing column(s) {', '.join(missing)}; the header must name {', '.join(KNOWN_COLUMNS)}"
        )
    reader.fieldnames = header
    for record in reader:
        report.rows_read += 1
        try:
            yield _validate(record)
        except ValueError as exc:
            report.errors.append(RowError(reader.line_num, str(exc)))


def _validate(record: dict[str, Any]) -> dict[str, Any]:
    if None in record:
        raise ValueError("more fields than the header has columns")
    values = {c: _clean_text(record.get(c)) for c in KNOWN_COLUMNS}
    for column in REQUIRED_COLUMNS:
        if not values[column]:
            raise ValueError(f"missing {column}")
    for column in ("title", "artist", "album"):
        if values[column] and len(values[column]) > MAX_FIELD_CHARS:
            raise ValueError(f"{column} is longer than {MAX_FIELD_CHARS} characters")
    duration = _parse_int(values["duration_ms"], "duration_ms")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration_ms must be positive, got {values['duration_ms']!r}")
    if duration is not None and duration > MAX_DURATION_MS:
        raise ValueError(f"duration_ms is too large: {values['duration_ms']!r} (at most {MAX_DURATION_MS})")
    year = _parse_int(values["release_year"], "release_year")
    if year is not None and not 1000 <= year <= 2999:
        raise ValueError(f"release_year out of range: {year}")
    isrc = None
    if values["isrc"]:
        isrc = values["isrc"].replace("-", "").upper()
        if not ISRC_PATTERN.match(isrc):
            raise ValueError(f"malformed ISRC {values['isrc']!r} (expected CCXXXYYNNNNN, e.g. USRC17607839)")
    return {
        "title": values["title"],
        "artist": values["artist"],
        "album": values["album"],
        "duration_ms": duration,
        "isrc": isrc,
        "release_year": year,
        "catalog_key": catalog_key(values["title"], values["artist"], values["album"], isrc),
    }


def _clean_text(value: Any) -> str | None:
    if value is None:
        return None
    text = unicodedata.normalize("NFC", str(value)).strip()
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise ValueError("contains control characters")
    return text or None


def _parse_int(value: str | None, column: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{column} is not a whole number: {value!r}") from None


def load_catalog(
    engine: sa.Engine,
    path: Path | str | None = None,
    *,
    on_progress: Callable[[LoadProgress], None] | None = None,
) -> LoadReport:
    """Load a catalogue CSV (default: the shipped sample) into `songs`; returns what happened.

    `on_progress`, when given, is called every PROGRESS_EVERY_ROWS good rows and when the file has been read.
    """
    path = Path(path) if path is not None else sample_catalog_path()
    if not path.is_file():
        raise CatalogFileError(f"no such file: {path}")
    report = LoadReport()
    with path.open("rb") as file, engine.begin() as conn:
        # utf-8-sig: spreadsheet programs save "CSV UTF-8" with a byte-order mark before the header.
        stream = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
        rows = parse_catalog(stream, report)
        if on_progress is not None:
            rows = _reporting_progress(rows, report, file, path.stat().st_size, on_progress)
        before = conn.execute(sa.text("SELECT count(*) FROM songs")).scalar_one()
        report.rows_loaded = upsert_songs(conn, rows)
        report.songs_added = conn.execute(sa.text("SELECT count(*) FROM songs")).scalar_one() - before
    return report


def _reporting_progress(
    rows: Iterator[dict[str, Any]],
    report: LoadReport,
    file: BinaryIO,
    bytes_total: int,
    on_progress: Callable[[LoadProgress], None],
) -> Iterator[dict[str, Any]]:
    for good_rows, row in enumerate(rows, start=1):
        yield row
        if good_rows % PROGRESS_EVERY_ROWS == 0:
            # The position of the bytes the text layer has taken so far: ahead of the parser by at most
            # one read-ahead chunk, close enough for a progress figure.
            on_progress(LoadProgress(report.rows_read, min(file.tell(), bytes_total), bytes_total))
    on_progress(LoadProgress(report.rows_read, bytes_total, bytes_total))


def upsert_songs(bind: sa.Engine | sa.Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert songs, or update the ones with the same `catalog_key`, together with their search keys.

    The one way to write songs' own fields (title, artist, album, ...), so that every song can be searched:
    rows hold `catalog_key`, `title`, `artist` and any other `songs` columns (the same in every row), and
    only those columns, with the search keys of the fields among them, are written. Returns the number of
    rows read. Joins `bind`'s transaction when it is a Connection, as `bulk_upsert` does.
    """
    keyed = ({**row, **search_keys(row)} for row in rows)
    return bulk_upsert(bind, "songs", keyed, key=["catalog_key"], touch=["updated_at"])


_BACKFILL_BATCH = "SELECT id, title, artist, album FROM songs WHERE id > ? AND search_title IS NULL ORDER BY id LIMIT ?"
_BACKFILL_SQLITE = "UPDATE songs SET search_title = ?, search_artist = ?, search_album = ? WHERE id = ?"
# One statement per batch, from one array per column: psycopg2 runs executemany as a round trip per row.
_BACKFILL_POSTGRES = (
    "UPDATE songs SET search_title = v.title, search_artist = v.artist, search_album = v.album "
    "FROM unnest(?::text[], ?::text[], ?::text[], ?::bigint[]) AS v(title, artist, album, id) "
    "WHERE songs.id = v.id"
)


def backfill_search_keys(conn: MigrationConnection) -> int:
    """Fold the search keys of every song that has none; returns how many songs it folded.

    Migration 0014's post-migration step (see migrations.py), for the songs written before the search-key
    columns existed. It walks the table in id order, one batch per statement; on PostgreSQL that migration
    runs outside a transaction, so each batch commits on its own, holds its row locks briefly, and a run
    that fails resumes where it stopped.
    """
    folded, last_id = 0, 0
    while rows := conn.execute(_BACKFILL_BATCH, (last_id, BACKFILL_BATCH_ROWS)):
        updates = []
        for song_id, title, artist, album in rows:
            keys = search_keys({"title": title, "artist": artist, "album": album})
            updates.append((keys["search_title"], keys["search_artist"], keys["search_album"], song_id))
        if conn.dialect == "postgresql":
            conn.execute(_BACKFILL_POSTGRES, [list(column) for column in zip(*updates, strict=True)])
        else:
            conn.executemany(_BACKFILL_SQLITE, updates)
        folded += len(rows)
        last_id = rows[-1][0]
    return folded
