"""Warehouse operations of the daily enrichment: matches, raw partitions, catalogue, popularity, songs.

Plain SQL through SQLAlchemy on both backends; every write that replaces a partition does so in one
transaction (delete the partition, load it again), so a reader sees the old partition or the new one,
never a mix, and a failed run leaves the old one in place.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from spotify_pipeline.warehouse.bulk import bulk_replace, bulk_upsert


@dataclass(frozen=True)
class CatalogSong:
    """A local song as the matcher sees it."""

    song_id: int
    title: str
    artist: str
    album: str | None
    duration_ms: int | None
    isrc: str | None
    release_year: int | None


@dataclass(frozen=True)
class MatchAttempt:
    """One attempt to match a song, as recorded in `spotify_match_attempts`."""

    song_id: int
    method: str
    outcome: str
    track_id: str | None
    confidence: float | None
    reason: str | None
    candidates: list[dict[str, Any]] | None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _expanding(statement: str, *names: str) -> sa.TextClause:
    return sa.text(statement).bindparams(*(sa.bindparam(n, expanding=True) for n in names))


# -- matching ---------------------------------------------------------------------------------------------

#: SQL condition on `songs AS s`: the song may be tried by the matcher. It has no current match and no
#: override, and no miss since `:retry_before` (a miss is searched again only after the retry delay).
NEEDS_MATCH = """
    NOT EXISTS (SELECT 1 FROM spotify_track_matches AS m WHERE m.song_id = s.id)
    AND NOT EXISTS (SELECT 1 FROM spotify_match_overrides AS o WHERE o.song_id = s.id)
    AND NOT EXISTS (
        SELECT 1 FROM spotify_match_attempts AS a
        WHERE a.song_id = s.id AND a.outcome <> 'matched' AND a.attempted_at >= :retry_before
    )
"""


def songs_to_match(
    conn: sa.Connection, *, now: dt.datetime, miss_retry_days: float, song_ids: Sequence[int] | None = None
) -> list[CatalogSong]:
    """Songs with no current match and no override, whose last miss (if any) is older than the retry delay.

    With `song_ids`, only those songs (an on-demand request), still skipping overridden ones.
    """
    scope = "AND s.id IN :song_ids" if song_ids else ""
    statement = f"""
        SELECT s.id, s.title, s.artist, s.album, s.duration_ms, s.isrc, s.release_year
        FROM songs AS s
        WHERE {NEEDS_MATCH}
          {scope}
        ORDER BY s.id
    """
    params: dict[str, Any] = {"retry_before": db_timestamp(conn, now - dt.timedelta(days=miss_retry_days))}
    query = sa.text(statement)
    if song_ids:
        query = _expanding(statement, "song_ids")
        params["song_ids"] = list(song_ids)
    return [CatalogSong(*row) for row in conn.execute(query, params)]


def apply_overrides(conn: sa.Connection, *, now: dt.datetime) -> int:
    """Make every manual override the current match (or no match); returns the rows changed."""
    ts = db_timestamp(conn, now)
    removed = conn.execute(
        sa.text(
            "DELETE FROM spotify_track_matches WHERE song_id IN "
            "(SELECT song_id FROM spotify_match_overrides WHERE track_id IS NULL)"
        )
    ).rowcount
    overrides = conn.execute(
        sa.text(
            "SELECT o.song_id, o.track_id FROM spotify_match_overrides AS o "
            "LEFT JOIN spotify_track_matches AS m ON m.song_id = o.song_id "
            "WHERE o.track_id IS NOT NULL AND (m.track_id IS NULL OR m.track_id <> o.track_id "
            "OR m.method <> 'override')"
        )
    ).all()
    bulk_upsert(
        conn,
        "spotify_track_matches",
        ({"song_id": s, "track_id": t, "method": "override", "confidence": 1.0, "matched_at": ts} for s, t in overrides),
        key=["song_id"],
    )
    return removed + len(overrides)


def record_match_attempts(conn: sa.Connection, attempts: Iterable[MatchAttempt], *, now: dt.datetime) -> dict[str, int]:
    """Store every attempt and make the successful ones current matches; returns counts per outcome."""
    ts = db_timestamp(conn, now)
    attempts = list(attempts)
    if attempts:
        conn.execute(
            sa.text(
                "INSERT INTO spotify_match_attempts "
                "(song_id, attempted_at, method, outcome, track_id, confidence, reason, candidates) "
                "VALUES (:song_id, :attempted_at, :method, :outcome, :track_id, :confidence, :reason, :candidates)"
            ),
            [
                {
                    "song_id": a.song_id,
                    "attempted_at": ts,
                    "method": a.method,
                    "outcome": a.outcome,
                    "track_id": a.track_id,
                    "confidence": a.confidence,
                    "reason": a.reason,
                    "candidates": None if a.candidates is None else json.dumps(a.candidates, ensure_ascii=False),
                }
                for a in attempts
            ],
        )
    bulk_upsert(
        conn,
        "spotify_track_matches",
        (
            {"song_id": a.song_id, "track_id": a.track_id, "method": a.method,
             "confidence": float(a.confidence or 0.0), "matched_at": ts}
            for a in attempts
            if a.outcome == "matched" and a.track_id
        ),
        key=["song_id"],
    )
    counts: dict[str, int] = {}
    for a in attempts:
        counts[a.outcome] = counts.get(a.outcome, 0) + 1
    return counts


def matched_tracks(conn: sa.Connection, song_ids: Sequence[int] | None = None) -> list[tuple[int, str]]:
    """(song id, track id) of every current match, optionally only for `song_ids`."""
    if song_ids:
        query = _expanding(
            "SELECT song_id, track_id FROM spotify_track_matches WHERE song_id IN :song_ids ORDER BY song_id",
            "song_ids",
        )
        return [tuple(r) for r in conn.execute(query, {"song_ids": list(song_ids)})]
    return [tuple(r) for r in conn.execute(sa.text("SELECT song_id, track_id FROM spotify_track_matches ORDER BY song_id"))]


def match_summary(conn: sa.Connection) -> dict[str, int]:
    songs = conn.execute(sa.text("SELECT count(*) FROM songs")).scalar_one()
    matched = conn.execute(sa.text("SELECT count(*) FROM spotify_track_matches")).scalar_one()
    return {"songs": songs, "matched": matched}


# -- raw partitions ---------------------------------------------------------------------------------------


def land_raw_partition(
    conn: sa.Connection,
    pull_date: dt.date,
    endpoint: str,
    responses: Iterable[Mapping[str, Any]],
    *,
    replace: bool = True,
) -> int:
    """Write one (pull date, endpoint) partition of `spotify_raw_responses`.

    Each response: request_key, status, fetched_at, body (a JSON-able object or None). `replace` drops
    the partition's other rows (a full pull); otherwise the responses are upserted beside them (a pull
    of a few requested songs must not drop the rest).
    """
    if replace:
        conn.execute(
            sa.text("DELETE FROM spotify_raw_responses WHERE pull_date = :d AND endpoint = :e"),
            {"d": pull_date.isoformat(), "e": endpoint},
        )
    return bulk_upsert(
        conn,
        "spotify_raw_responses",
        (
            {"pull_date": pull_date.isoformat(), "endpoint": endpoint, "request_key": r["request_key"],
             "status": r["status"], "fetched_at": db_timestamp(conn, r["fetched_at"]), "body": r["body"]}
            for r in responses
        ),
        key=["pull_date", "endpoint", "request_key"],
    )


def raw_partition(conn: sa.Connection, pull_date: dt.date, endpoint: str) -> list[tuple[str, int, Any, Any]]:
    """(request key, status, fetched_at, body as parsed JSON) of one raw partition, in key order."""
    rows = conn.execute(
        sa.text(
            "SELECT request_key, status, fetched_at, body FROM spotify_raw_responses "
            "WHERE pull_date = :d AND endpoint = :e ORDER BY request_key"
        ),
        {"d": pull_date.isoformat(), "e": endpoint},
    )
    return [(key, status, fetched, json.loads(body) if isinstance(body, str) else body) for key, status, fetched, body in rows]


# -- normalized catalogue ---------------------------------------------------------------------------------


def upsert_catalog(
    conn: sa.Connection,
    *,
    albums: Sequence[Mapping[str, Any]],
    artists: Sequence[Mapping[str, Any]],
    tracks: Sequence[Mapping[str, Any]],
    track_artists: Sequence[Mapping[str, Any]],
) -> dict[str, int]:
    """Upsert the normalized catalogue (albums and artists first, for the foreign keys) in the caller's
    transaction; returns the rows read per table.

    `updated_at` moves only when a row's content changes, but a track's `fetched_at` moves on every read.
    A track's artist list is replaced whole, since positions can change between reads: links of the given
    tracks that are not in `track_artists` any more are deleted. Every table is written set-wise (a few
    statements per table, whatever the number of rows).
    """
    read_time = ["fetched_at"] if tracks and "fetched_at" in tracks[0] else []
    return {
        "albums": bulk_upsert(conn, "spotify_albums", albums, key=["album_id"], touch=["updated_at"]),
        "artists": bulk_upsert(conn, "spotify_artists", artists, key=["artist_id"], touch=["updated_at"]),
        "tracks": bulk_upsert(
            conn, "spotify_tracks", tracks, key=["track_id"], refresh=read_time, touch=["updated_at"]
        ),
        "track_artists": bulk_replace(
            conn, "spotify_track_artists", track_artists, key=["track_id", "position"],
            parent="track_id", parents=(t["track_id"] for t in tracks),
        ),
    }


# -- popularity -------------------------------------------------------------------------------------------


def write_popularity_snapshot(
    conn: sa.Connection, snapshot_date: dt.date, rows: Sequence[Mapping[str, Any]], *, replace: bool = True
) -> int:
    """Write one day of `spotify_popularity_snapshots` (rows: track_id, popularity, captured_at).

    `replace` drops the day's other rows (a full capture); otherwise the rows are upserted beside them.
    The same readings become the current popularity of `spotify_tracks`.
    """
    if replace:
        conn.execute(
            sa.text("DELETE FROM spotify_popularity_snapshots WHERE snapshot_date = :d"), {"d": snapshot_date.isoformat()}
        )
    records = [
        {"snapshot_date": snapshot_date.isoformat(), "track_id": r["track_id"], "popularity": r["popularity"],
         "captured_at": db_timestamp(conn, r["captured_at"])}
        for r in rows
    ]
    written = bulk_upsert(conn, "spotify_popularity_snapshots", records, key=["snapshot_date", "track_id"])
    if records:
        conn.execute(
            sa.text(
                "UPDATE spotify_tracks SET popularity = s.popularity, popularity_read_at = s.captured_at "
                "FROM spotify_popularity_snapshots AS s "
                "WHERE s.track_id = spotify_tracks.track_id AND s.snapshot_date = :d"
            ),
            {"d": snapshot_date.isoformat()},
        )
    return written


def popularity_frame(conn: sa.Connection, since: dt.date, until: dt.date) -> pd.DataFrame:
    """Snapshots between two days (inclusive) as a DataFrame: snapshot_date (date), track_id, popularity."""
    frame = pd.read_sql(
        sa.text(
            "SELECT snapshot_date, track_id, popularity FROM spotify_popularity_snapshots "
            "WHERE snapshot_date BETWEEN :since AND :until"
        ),
        conn,
        params={"since": since.isoformat(), "until": until.isoformat()},
    )
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"]).dt.date
    return frame


def replace_movers(conn: sa.Connection, snapshot_date: dt.date, movers: pd.DataFrame) -> int:
    conn.execute(sa.text("DELETE FROM spotify_popularity_movers WHERE snapshot_date = :d"), {"d": snapshot_date.isoformat()})
    records = [
        {k: (None if pd.isna(v) else (v.isoformat() if isinstance(v, dt.date) else v)) for k, v in row.items()}
        for row in movers.to_dict("records")
    ]
    return bulk_upsert(conn, "spotify_popularity_movers", records, key=["snapshot_date", "track_id"])


# -- songs ------------------------------------------------------------------------------------------------

_SPOTIFY_COLUMNS = (
    "spotify_track_id", "spotify_uri", "spotify_popularity", "spotify_popularity_read_at", "spotify_preview_url",
    "spotify_album_image_url", "spotify_explicit", "spotify_match_method", "spotify_match_confidence",
    "spotify_synced_at",
)


def enrich_songs(conn: sa.Connection, *, now: dt.datetime, song_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Write the Spotify columns of `songs` from the current matches and the normalized catalogue.

    Only the Spotify columns are written, never the catalogue's own. A song whose match was withdrawn
    (an override saying "not on Spotify") has its Spotify columns cleared. Songs whose track has not been
    read from Spotify yet are left as they are.
    """
    ts = db_timestamp(conn, now)
    scope = "AND songs.id IN :song_ids" if song_ids else ""
    params: dict[str, Any] = {"now": ts}
    if song_ids:
        params["song_ids"] = list(song_ids)
    updated = conn.execute(
        _expanding(
            f"""
            UPDATE songs SET
                spotify_track_id = m.track_id,
                spotify_uri = t.uri,
                spotify_popularity = t.popularity,
                spotify_popularity_read_at = t.popularity_read_at,
                spotify_preview_url = t.preview_url,
                spotify_album_image_url = al.image_url,
                spotify_explicit = t.explicit,
                spotify_match_method = m.method,
                spotify_match_confidence = m.confidence,
                spotify_synced_at = :now
            FROM spotify_track_matches AS m
            JOIN spotify_tracks AS t ON t.track_id = m.track_id
            LEFT JOIN spotify_albums AS al ON al.album_id = t.album_id
            WHERE songs.id = m.song_id {scope}
            """,
            *(["song_ids"] if song_ids else []),
        ),
        params,
    ).rowcount
    cleared = conn.execute(
        _expanding(
            "UPDATE songs SET " + ", ".join(f"{c} = NULL" for c in _SPOTIFY_COLUMNS)
            + " WHERE spotify_track_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM spotify_track_matches AS m WHERE m.song_id = songs.id) " + scope,
            *(["song_ids"] if song_ids else []),
        ),
        {k: v for k, v in params.items() if k != "now"},
    ).rowcount
    return {"songs_enriched": updated, "songs_cleared": cleared}


def search_view_summary(conn: sa.Connection) -> dict[str, Any]:
    """Rows of `songs_search` and the share in each enrichment status."""
    rows = dict(
        conn.execute(sa.text("SELECT enrichment_status, count(*) FROM songs_search GROUP BY enrichment_status")).all()
    )
    total = sum(rows.values())
    share = (lambda n: round(n / total, 4) if total else 0.0)
    return {
        "rows": total,
        "share_enriched": share(rows.get("matched", 0)),
        "share_stale": share(rows.get("stale", 0)),
        "share_unmatched": share(rows.get("unmatched", 0)),
    }


# -- API usage --------------------------------------------------------------------------------------------


def record_api_usage(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Upsert usage rows keyed by (run, asset, endpoint): what one step of a run spent, per endpoint. A step
    that records again (a retried step) replaces its own rows and never touches another step's."""
    keyed = [{"asset": "", **dict(r)} for r in rows if r.get("run_id")]
    return bulk_upsert(conn, "spotify_api_usage", keyed, key=["run_id", "asset", "endpoint"], touch=["recorded_at"])


def db_timestamp(conn: sa.Connection, value: dt.datetime | None) -> Any:
    """A timestamp as the backend stores it: aware datetime on PostgreSQL, UTC text on SQLite."""
    if value is None or conn.dialect.name == "postgresql":
        return value
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="seconds")
