"""Coverage and consistency of what the daily enrichment wrote: the facts the asset checks judge.

Each function answers one question a constraint cannot: did the day's raw partition take in every track a pull
read, did the normalized catalogue take in every raw track, does the day's snapshot hold every track a capture
read and how much of the matched tracks it covers, do the Spotify columns of `songs` agree with the current
matches. Plain SQL on both backends; no Dagster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

#: How many offending keys a result carries (for check metadata); the counts are always complete.
SAMPLE_SIZE = 10
_IDS_PER_QUERY = 10_000


@dataclass(frozen=True)
class Coverage:
    """`covered` of `expected` keys present; `missing` samples the absent ones."""

    expected: int
    covered: int
    missing: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return 1.0 if self.expected == 0 else self.covered / self.expected


def raw_keys_coverage(conn: sa.Connection, pull_date: dt.date, endpoint: str, keys: Sequence[str]) -> Coverage:
    """Of `keys` (the requests a pull made), those with a row (found or 404) in the day's raw partition."""
    present = _present(
        conn,
        "SELECT request_key FROM spotify_raw_responses WHERE pull_date = :d AND endpoint = :e AND request_key IN :keys",
        {"d": pull_date.isoformat(), "e": endpoint},
        keys,
    )
    missing = sorted(set(keys) - present)
    return Coverage(len(set(keys)), len(set(keys)) - len(missing), missing[:SAMPLE_SIZE])


def oldest_raw_fetch(conn: sa.Connection, pull_date: dt.date, endpoint: str) -> dt.datetime | None:
    """When Spotify sent the oldest object of the day's pull (None for an empty pull)."""
    value = conn.execute(
        sa.text("SELECT min(fetched_at) FROM spotify_raw_responses WHERE pull_date = :d AND endpoint = :e AND status = 200"),
        {"d": pull_date.isoformat(), "e": endpoint},
    ).scalar_one()
    return None if value is None else as_utc(value)


def catalog_coverage(conn: sa.Connection, pull_date: dt.date, endpoint: str) -> Coverage:
    """Tracks found in the day's raw pull (status 200) that are in `spotify_tracks`, against all of them.

    The raw key is the requested id; a relinked track is stored under the id Spotify served, which the body
    names, so the comparison reads it from the body on the Python side."""
    import json

    rows = conn.execute(
        sa.text("SELECT request_key, body FROM spotify_raw_responses WHERE pull_date = :d AND endpoint = :e AND status = 200"),
        {"d": pull_date.isoformat(), "e": endpoint},
    ).all()
    served: dict[str, str] = {}
    for key, body in rows:
        parsed = json.loads(body) if isinstance(body, str) else body
        served[key] = parsed.get("id", key) if isinstance(parsed, dict) else key
    present = set(conn.execute(sa.text("SELECT track_id FROM spotify_tracks")).scalars())
    missing = sorted(key for key, track_id in served.items() if track_id not in present)
    return Coverage(len(served), len(served) - len(missing), missing[:SAMPLE_SIZE])


def snapshot_coverage(conn: sa.Connection, snapshot_date: dt.date) -> Coverage:
    """Matched tracks with a popularity snapshot on the day, against all matched tracks that Spotify has
    (a matched track whose latest read found nothing cannot have a popularity)."""
    expected, covered = conn.execute(
        sa.text(
            "SELECT count(DISTINCT m.track_id), count(DISTINCT p.track_id) FROM spotify_track_matches AS m "
            "JOIN spotify_tracks AS t ON t.track_id = m.track_id "
            "LEFT JOIN spotify_popularity_snapshots AS p ON p.track_id = m.track_id AND p.snapshot_date = :d"
        ),
        {"d": snapshot_date.isoformat()},
    ).one()
    missing = conn.execute(
        sa.text(
            "SELECT DISTINCT m.track_id FROM spotify_track_matches AS m JOIN spotify_tracks AS t ON t.track_id = m.track_id "
            "WHERE NOT EXISTS (SELECT 1 FROM spotify_popularity_snapshots AS p WHERE p.track_id = m.track_id "
            "AND p.snapshot_date = :d) ORDER BY m.track_id LIMIT :n"
        ),
        {"d": snapshot_date.isoformat(), "n": SAMPLE_SIZE},
    ).scalars().all()
    return Coverage(int(expected), int(covered), list(missing))


def snapshot_keys_coverage(conn: sa.Connection, snapshot_date: dt.date, track_ids: Sequence[str]) -> Coverage:
    """Of `track_ids` (the tracks a capture read), those with a popularity snapshot on the day."""
    present = _present(
        conn,
        "SELECT track_id FROM spotify_popularity_snapshots WHERE snapshot_date = :d AND track_id IN :keys",
        {"d": snapshot_date.isoformat()},
        track_ids,
    )
    missing = sorted(set(track_ids) - present)
    return Coverage(len(set(track_ids)), len(set(track_ids)) - len(missing), missing[:SAMPLE_SIZE])


def _present(conn: sa.Connection, query: str, params: dict[str, object], keys: Sequence[str]) -> set[str]:
    """The `keys` a query with an expanding ``:keys`` parameter finds, asked in chunks (SQLite caps the
    parameters of one statement)."""
    statement = sa.text(query).bindparams(sa.bindparam("keys", expanding=True))
    distinct = sorted(set(keys))
    found: set[str] = set()
    for start in range(0, len(distinct), _IDS_PER_QUERY):
        found.update(conn.execute(statement, {**params, "keys": distinct[start : start + _IDS_PER_QUERY]}).scalars())
    return found


def songs_agreeing_with_matches(conn: sa.Connection) -> Coverage:
    """Songs whose Spotify columns agree with their current match (the matched track, once read from Spotify;
    no track when unmatched), against all songs."""
    disagree = (
        "FROM songs AS s LEFT JOIN spotify_track_matches AS m ON m.song_id = s.id "
        "LEFT JOIN spotify_tracks AS t ON t.track_id = m.track_id "
        "WHERE (m.track_id IS NULL AND s.spotify_track_id IS NOT NULL) "
        "OR (t.track_id IS NOT NULL AND (s.spotify_track_id IS NULL OR s.spotify_track_id <> m.track_id))"
    )
    total = conn.execute(sa.text("SELECT count(*) FROM songs")).scalar_one()
    wrong = conn.execute(sa.text(f"SELECT count(*) {disagree}")).scalar_one()
    sample = conn.execute(sa.text(f"SELECT s.id {disagree} ORDER BY s.id LIMIT :n"), {"n": SAMPLE_SIZE}).scalars().all()
    return Coverage(int(total), int(total) - int(wrong), [str(i) for i in sample])


def track_read_times(conn: sa.Connection, track_ids: list[str]) -> dict[str, dt.datetime]:
    """When Spotify sent the version of each track the catalogue holds (tracks it does not hold are absent)."""
    query = sa.text(
        "SELECT track_id, fetched_at FROM spotify_tracks WHERE track_id IN :ids AND fetched_at IS NOT NULL"
    ).bindparams(sa.bindparam("ids", expanding=True))
    held: dict[str, dt.datetime] = {}
    for start in range(0, len(track_ids), _IDS_PER_QUERY):  # SQLite caps the parameters of one statement
        rows = conn.execute(query, {"ids": track_ids[start : start + _IDS_PER_QUERY]}).all()
        held.update((track_id, as_utc(fetched_at)) for track_id, fetched_at in rows)
    return held


def as_utc(value: object) -> dt.datetime:
    """A timestamp as either backend returns it (aware on PostgreSQL, naive UTC text or datetime on SQLite)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.timezone.utc)
