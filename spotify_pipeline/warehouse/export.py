"""Record and replay: the warehouse's raw track pulls, written as a catalogue file the emulator serves.

`raw_spotify_tracks` lands one row per requested track id and UTC pull date in `spotify_raw_responses`
(endpoint `tracks`): status 200 with the track object exactly as Spotify sent it, or 404 with no body when
Spotify no longer has the track. The export takes every track id's latest row (on or before a pull date,
if one is given) and writes the objects of the tracks found, one JSON object per line in track id order,
gzipped when the file name ends in `.gz`. `spotify-pipeline emulator --catalog FILE` serves that file, so a
production run can be reproduced offline. A track whose latest row is a 404 is left out: replayed, it is
not found either.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

#: The endpoint under which `raw_spotify_tracks` lands its rows.
TRACKS_ENDPOINT = "tracks"
_ROWS_PER_FETCH = 2_000


class NothingToExportError(ValueError):
    """The warehouse holds no track object to export (none pulled yet, or none on or before the date)."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    tracks: int  # track objects written
    not_found: int  # track ids whose latest pull found nothing (left out)


def latest_raw_tracks(conn: sa.Connection, as_of: dt.date | None = None) -> Iterator[tuple[str, int, Any]]:
    """(track id as requested, status, body as parsed JSON or None) of each track id's latest raw row, on or
    before the pull date `as_of` if given, in track id order."""
    params = {"endpoint": TRACKS_ENDPOINT}
    date_filter = ""
    if as_of is not None:
        params["as_of"] = as_of.isoformat()
        date_filter = "AND pull_date <= :as_of"
    rows = conn.execution_options(yield_per=_ROWS_PER_FETCH).execute(
        sa.text(
            "SELECT request_key, status, body FROM ("
            "  SELECT request_key, status, body, ROW_NUMBER() OVER ("
            "    PARTITION BY request_key ORDER BY pull_date DESC, fetched_at DESC) AS newest"
            f"  FROM spotify_raw_responses WHERE endpoint = :endpoint {date_filter}"
            ") AS latest WHERE newest = 1 ORDER BY request_key"
        ),
        params,
    )
    for key, status, body in rows:
        # PostgreSQL's driver parses jsonb; SQLite hands back the text.
        yield key, status, json.loads(body) if isinstance(body, str) else body


def export_raw_tracks(engine: sa.Engine, path: Path, as_of: dt.date | None = None) -> ExportReport:
    """Write the latest track objects (see the module docstring) to `path`, replacing it only once complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = not_found = 0
    handle, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as raw_file, _writer(raw_file, compress=path.name.endswith(".gz")) as out:
            with engine.connect() as conn:
                for _key, status, body in latest_raw_tracks(conn, as_of):
                    if status != 200 or body is None:
                        not_found += 1
                        continue
                    out.write(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
                    written += 1
        if written == 0:
            when = f" on or before {as_of.isoformat()}" if as_of is not None else ""
            raise NothingToExportError(
                f"the warehouse holds no track objects pulled{when}: materialize raw_spotify_tracks first"
            )
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return ExportReport(path, written, not_found)


def _writer(raw_file: IO[bytes], *, compress: bool) -> IO[bytes]:
    # mtime=0: the same pulls give the same bytes, so two exports can be compared.
    return gzip.GzipFile(fileobj=raw_file, mode="wb", mtime=0) if compress else raw_file
