"""Loading the local catalogue (`songs`) from CSV.

Bad rows are reported with their line numbers and skipped; good rows load in one all-or-nothing upsert
keyed on each song's natural key, so loading the same file twice adds nothing.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from spotify_pipeline.warehouse.bulk import bulk_upsert

REQUIRED_COLUMNS = ("title", "artist")
KNOWN_COLUMNS = ("title", "artist", "album", "duration_ms", "isrc", "release_year")
MAX_FIELD_CHARS = 500
ISRC_PATTERN = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")  # ASCII digits only, as the table's CHECK
#: The largest duration the warehouse's INTEGER column holds (about 24 days).
MAX_DURATION_MS = 2**31 - 1


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


def load_catalog(engine: sa.Engine, path: Path | str | None = None) -> LoadReport:
    """Load a catalogue CSV (default: the shipped sample) into `songs`; returns what happened."""
    path = Path(path) if path is not None else sample_catalog_path()
    if not path.is_file():
        raise CatalogFileError(f"no such file: {path}")
    report = LoadReport()
    # utf-8-sig: spreadsheet programs save "CSV UTF-8" with a byte-order mark before the header.
    with path.open(encoding="utf-8-sig", newline="") as stream, engine.begin() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM songs")).scalar_one()
        report.rows_loaded = bulk_upsert(
            conn,
            "songs",
            parse_catalog(stream, report),
            key=["catalog_key"],
            update=["title", "artist", "album", "duration_ms", "isrc", "release_year"],
            touch=["updated_at"],
        )
        report.songs_added = conn.execute(sa.text("SELECT count(*) FROM songs")).scalar_one() - before
    return report
