"""The suite's duplicate checks can fail. Each duplicate they look for is planted directly in a migrated
warehouse (SQLite and PostgreSQL) that holds a small, consistent enrichment, and the check for it, and only
that one, counts it; look-alikes that are right (the same track for two different songs, a miss retried on
another day, yesterday's snapshot of a track matched no more, an artist on two tracks) count nothing. The
keys the checks replaced are shown refused by the database itself: counting them could never fail."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import catalog_key
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline_tests.reliability.conftest import NO_DUPLICATES, natural_key_duplicates

pytestmark = pytest.mark.reliability

DAY = dt.date(2026, 3, 2)
YESTERDAY = DAY - dt.timedelta(days=1)
SONGS = {
    1: ("Restless Heart", "Wren Reyes", "Quiet Garden", "ITQEG7624339"),
    2: ("Björk's Song", "Aurélien & the Kingdom", None, None),
}


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


def _ts(conn: sa.Connection, moment: dt.datetime) -> Any:
    """A timestamp as each backend stores it (aware on PostgreSQL, UTC text on SQLite, as the pipeline)."""
    return moment if conn.dialect.name == "postgresql" else moment.strftime("%Y-%m-%d %H:%M:%S")


def _song(conn: sa.Connection, song_id: int, title: str, artist: str, album: str | None, isrc: str | None,
          key: str | None = None) -> None:
    conn.execute(
        sa.text("INSERT INTO songs (id, title, artist, album, isrc, catalog_key) "
                "VALUES (:id, :title, :artist, :album, :isrc, :key)"),
        {"id": song_id, "title": title, "artist": artist, "album": album, "isrc": isrc,
         "key": key or catalog_key(title, artist, album, isrc)},
    )


def _match(conn: sa.Connection, song_id: int, track_id: str, method: str = "isrc") -> None:
    conn.execute(
        sa.text("INSERT INTO spotify_track_matches (song_id, track_id, method, confidence) VALUES (:s, :t, :m, 1.0)"),
        {"s": song_id, "t": track_id, "m": method},
    )


def _attempt(conn: sa.Connection, song_id: int, at: dt.datetime, outcome: str = "matched",
             track_id: str | None = None) -> None:
    conn.execute(
        sa.text("INSERT INTO spotify_match_attempts (song_id, attempted_at, method, outcome, track_id, confidence) "
                "VALUES (:s, :at, 'search', :o, :t, :c)"),
        {"s": song_id, "at": _ts(conn, at), "o": outcome, "t": track_id, "c": 0.9 if track_id else 0.0},
    )


def _track(conn: sa.Connection, track_id: str, served_track_id: str | None = None) -> None:
    conn.execute(
        sa.text("INSERT INTO spotify_tracks (track_id, name, album_id, served_track_id) "
                "VALUES (:t, :t, 'AL1', :served)"),
        {"t": track_id, "served": served_track_id},
    )


def _snapshot(conn: sa.Connection, day: dt.date, track_id: str, popularity: int) -> None:
    conn.execute(
        sa.text("INSERT INTO spotify_popularity_snapshots (snapshot_date, track_id, popularity, captured_at) "
                "VALUES (:d, :t, :p, :at)"),
        {"d": day.isoformat(), "t": track_id, "p": popularity, "at": _ts(conn, _at(day, 6))},
    )


def _credit(conn: sa.Connection, track_id: str, position: int, artist_id: str) -> None:
    conn.execute(
        sa.text("INSERT INTO spotify_track_artists (track_id, position, artist_id) VALUES (:t, :p, :a)"),
        {"t": track_id, "p": position, "a": artist_id},
    )


@pytest.fixture
def warehouse(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """Two songs matched to two tracks, as a completed daily run leaves them on DAY (and the day before)."""
    # PostgreSQL sessions 14 hours ahead of UTC: a day taken in the session's time zone, not UTC, shows.
    monkeypatch.setenv("PGTZ", "Pacific/Kiritimati")
    engine = create_engine(database_url)
    migrate(engine)
    with engine.begin() as conn:
        for song_id, fields in SONGS.items():
            _song(conn, song_id, *fields)
        conn.execute(sa.text("INSERT INTO spotify_albums (album_id, name) VALUES ('AL1', 'Quiet Garden')"))
        conn.execute(sa.text("INSERT INTO spotify_artists (artist_id, name) VALUES ('AR1', 'Wren Reyes'), "
                             "('AR2', 'Aurélien & the Kingdom')"))
        for track_id in ("T1", "T2"):
            _track(conn, track_id)
        _credit(conn, "T1", 0, "AR1")
        _credit(conn, "T1", 1, "AR2")  # a featured artist ...
        _credit(conn, "T2", 0, "AR2")  # ... with a track of their own: one link per track, no duplicate
        _match(conn, 1, "T1")
        _match(conn, 2, "T2")
        _attempt(conn, 1, _at(DAY, 6), track_id="T1")
        _attempt(conn, 2, _at(YESTERDAY, 6), outcome="no_candidates")  # a miss, retried the next day
        _attempt(conn, 2, _at(DAY, 6), track_id="T2")
        for day, popularity in ((YESTERDAY, 40), (DAY, 41)):
            _snapshot(conn, day, "T1", popularity)
            _snapshot(conn, day, "T2", popularity + 20)
    yield engine
    engine.dispose()


def _plant(engine: sa.Engine, *plants) -> dict[str, int]:
    """The checks' counts after `plants` (callables taking a connection) ran in one transaction."""
    with engine.begin() as conn:
        for plant in plants:
            plant(conn)
    return natural_key_duplicates(engine, DAY)


def _only(check: str, count: int = 1) -> dict[str, int]:
    return {**NO_DUPLICATES, check: count}


def test_a_completed_run_has_no_duplicates(warehouse):
    assert natural_key_duplicates(warehouse, DAY) == NO_DUPLICATES


def test_the_same_song_matched_under_a_second_key_is_counted(warehouse):
    """A re-seed under another key normalization adds song 1 again (other spacing and case, a key of its own),
    and the daily job matches it: one song, two current matches. Its unmatched twin and a different song
    matched to the same track (a single and its album cut) count nothing."""
    assert _plant(
        warehouse,
        lambda c: _song(c, 3, "Restless  heart", "WREN REYES", "Quiet Garden", "ITQEG7624339", key="v0:restless heart"),
        lambda c: _match(c, 3, "T1", "search"),
    ) == _only("song_identity_matches")
    assert _plant(
        warehouse,
        lambda c: _song(c, 4, "Restless Heart ", "Wren Reyes", "Quiet Garden", "ITQEG7624339", key="v0:4"),
        lambda c: _song(c, 5, "Restless Heart", "Wren Reyes", "Greatest Hits", "ITQEG7624339"),
        lambda c: _match(c, 5, "T1"),
    ) == _only("song_identity_matches")


def test_a_second_attempt_for_a_song_the_same_day_is_counted(warehouse):
    """The same batch re-sent (its first commit landed, the answer was lost): song 1 attempted twice on DAY."""
    assert _plant(warehouse, lambda c: _attempt(c, 1, _at(DAY, 6, 5), track_id="T1")) == _only(
        "match_attempts_per_song_day"
    )
    # The first and the last minute of a UTC day are the same day; the next minute is another day.
    assert _plant(
        warehouse,
        lambda c: _attempt(c, 2, _at(DAY, 23, 59), track_id="T2"),
        lambda c: _attempt(c, 1, _at(DAY + dt.timedelta(days=1), 0, 0), track_id="T1"),
    ) == _only("match_attempts_per_song_day", 2)


def test_a_snapshot_of_a_track_that_is_no_current_match_is_counted(warehouse):
    """Song 2's match moves from T2 to T3 during DAY, and a capture adds T3 beside T2 instead of replacing the
    day: song 2 has two snapshots on DAY. Yesterday's T2 row is not counted: T2 was the match then."""
    assert _plant(
        warehouse,
        lambda c: _track(c, "T3"),
        lambda c: c.execute(sa.text("UPDATE spotify_track_matches SET track_id = 'T3', method = 'override' "
                                    "WHERE song_id = 2")),
        lambda c: _snapshot(c, DAY, "T3", 70),
    ) == _only("snapshots_without_current_match")


def test_one_recording_snapshotted_under_two_track_ids_is_counted(warehouse):
    """Song 3 is matched to T4, an id Spotify relinks to T1 (served_track_id): T1's recording has two rows in
    DAY's snapshot. Yesterday it had one."""
    assert _plant(
        warehouse,
        lambda c: _song(c, 3, "Restless Heart (Remastered)", "Wren Reyes", None, None),
        lambda c: _track(c, "T4", served_track_id="T1"),
        lambda c: _match(c, 3, "T4", "override"),
        lambda c: _snapshot(c, DAY, "T4", 41),
    ) == _only("snapshots_per_recording_day")
    # And when the id Spotify serves was asked for under two other ids, neither of them T1 itself.
    assert _plant(
        warehouse,
        lambda c: _song(c, 4, "Restless Heart (Live)", "Wren Reyes", None, None),
        lambda c: _track(c, "T5", served_track_id="T1"),
        lambda c: _match(c, 4, "T5", "override"),
        lambda c: _snapshot(c, YESTERDAY, "T4", 40),
        lambda c: _snapshot(c, YESTERDAY, "T5", 40),
    ) == _only("snapshots_per_recording_day", 1 + 2)


def test_an_artist_credited_twice_on_a_track_is_counted(warehouse):
    """T1 was read as [AR1, AR2, AR3], then as [AR3, AR1]; the second read upserted by position without
    dropping the rest leaves [AR3, AR1, AR3]: AR3 credited twice on T1."""
    assert _plant(
        warehouse,
        lambda c: c.execute(sa.text("INSERT INTO spotify_artists (artist_id, name) VALUES ('AR3', 'Guest')")),
        lambda c: _credit(c, "T1", 2, "AR3"),
    ) == NO_DUPLICATES
    assert _plant(
        warehouse,
        lambda c: c.execute(sa.text("UPDATE spotify_track_artists SET artist_id = 'AR3' WHERE track_id = 'T1' "
                                    "AND position = 0")),
        lambda c: c.execute(sa.text("UPDATE spotify_track_artists SET artist_id = 'AR1' WHERE track_id = 'T1' "
                                    "AND position = 1")),
    ) == _only("track_artist_repeats")


#: The keys counted before these checks: every one is a primary key or UNIQUE constraint on both backends.
ENFORCED_KEYS = {
    "songs (catalog_key)": "INSERT INTO songs (title, artist, catalog_key) "
    "SELECT 'Other', 'Other', catalog_key FROM songs WHERE id = 1",
    "spotify_track_matches (song_id)": "INSERT INTO spotify_track_matches (song_id, track_id, method, confidence) "
    "VALUES (1, 'T2', 'search', 0.9)",
    "spotify_raw_responses (pull_date, endpoint, request_key)": "INSERT INTO spotify_raw_responses "
    "(pull_date, endpoint, request_key, status) VALUES ('2026-03-02', 'tracks', 'T1', 200), "
    "('2026-03-02', 'tracks', 'T1', 404)",
    "spotify_tracks (track_id)": "INSERT INTO spotify_tracks (track_id, name) VALUES ('T1', 'again')",
    "spotify_artists (artist_id)": "INSERT INTO spotify_artists (artist_id, name) VALUES ('AR1', 'again')",
    "spotify_albums (album_id)": "INSERT INTO spotify_albums (album_id, name) VALUES ('AL1', 'again')",
    "spotify_track_artists (track_id, position)": "INSERT INTO spotify_track_artists (track_id, position, "
    "artist_id) VALUES ('T1', 0, 'AR2')",
    "spotify_popularity_snapshots (snapshot_date, track_id)": "INSERT INTO spotify_popularity_snapshots "
    "(snapshot_date, track_id, popularity) VALUES ('2026-03-02', 'T1', 99)",
    "spotify_popularity_movers (snapshot_date, track_id)": "INSERT INTO spotify_popularity_movers "
    "(snapshot_date, track_id, popularity, direction, rank) VALUES ('2026-03-02', 'M1', 1, 'riser', 1), "
    "('2026-03-02', 'M1', 2, 'riser', 2)",
}


@pytest.mark.parametrize("key", list(ENFORCED_KEYS))
def test_the_keys_counted_before_are_refused_by_the_database(warehouse, key):
    with pytest.raises(sa.exc.IntegrityError), warehouse.begin() as conn:
        conn.execute(sa.text(ENFORCED_KEYS[key]))
    assert natural_key_duplicates(warehouse, DAY) == NO_DUPLICATES
