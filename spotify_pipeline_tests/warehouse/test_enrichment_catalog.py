"""`upsert_catalog`, the daily job's write of the normalized catalogue, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.bulk import bulk_upsert
from spotify_pipeline.warehouse.enrichment import db_timestamp, upsert_catalog
from spotify_pipeline.warehouse.migrations import migrate

CATALOG_TABLES = {
    "spotify_albums": "album_id",
    "spotify_artists": "artist_id",
    "spotify_tracks": "track_id",
    "spotify_track_artists": "track_id, position",
}
NOT_TOUCHED = "2000-01-01 00:00:00"
T1 = dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.timezone.utc)
T2 = T1 + dt.timedelta(days=1)
T3 = T1 + dt.timedelta(days=2)
T4 = T1 + dt.timedelta(days=3)

Upsert = Callable[..., dict[str, int]]


def row_by_row_upsert_catalog(
    conn: sa.Connection,
    *,
    albums: Sequence[Mapping[str, Any]],
    artists: Sequence[Mapping[str, Any]],
    tracks: Sequence[Mapping[str, Any]],
    track_artists: Sequence[Mapping[str, Any]],
) -> dict[str, int]:
    """`upsert_catalog` as it was before it became set-based (one UPDATE per read time, every link of the
    tracks deleted and inserted again): the reference its results must equal."""
    counts = {
        "albums": bulk_upsert(conn, "spotify_albums", albums, key=["album_id"], touch=["updated_at"]),
        "artists": bulk_upsert(conn, "spotify_artists", artists, key=["artist_id"], touch=["updated_at"]),
        "tracks": bulk_upsert(
            conn, "spotify_tracks", tracks, key=["track_id"],
            update=[c for c in (tracks[0] if tracks else {}) if c not in ("track_id", "fetched_at")],
            touch=["updated_at"],
        ),
    }
    if tracks:
        by_time: dict[Any, list[str]] = {}
        for t in tracks:
            if t.get("fetched_at"):
                by_time.setdefault(db_timestamp(conn, t["fetched_at"]), []).append(t["track_id"])
        for fetched_at, ids in by_time.items():
            conn.execute(
                sa.text("UPDATE spotify_tracks SET fetched_at = :fetched_at WHERE track_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"fetched_at": fetched_at, "ids": ids},
            )
        conn.execute(
            sa.text("DELETE FROM spotify_track_artists WHERE track_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": [t["track_id"] for t in tracks]},
        )
    counts["track_artists"] = bulk_upsert(conn, "spotify_track_artists", track_artists, key=["track_id", "position"])
    return counts


# -- rows as normalize_tracks shapes them --------------------------------------------------------------------


def album(album_id: str, name: str = "An Album") -> dict[str, Any]:
    return {"album_id": album_id, "name": name, "album_type": "album", "release_date": "2001-02-03",
            "release_date_precision": "day", "total_tracks": 10, "image_url": None, "uri": f"spotify:album:{album_id}"}


def artist(artist_id: str, name: str | None = None) -> dict[str, Any]:
    return {"artist_id": artist_id, "name": name or f"Artist {artist_id}", "uri": f"spotify:artist:{artist_id}"}


def track(track_id: str, fetched_at: dt.datetime | None, *, name: str | None = None, album_id: str = "al1",
          popularity: int | None = 50) -> dict[str, Any]:
    return {
        "track_id": track_id, "name": name or f"Track {track_id}", "album_id": album_id, "duration_ms": 200_000,
        "explicit": False, "isrc": None, "disc_number": 1, "track_number": 1, "preview_url": None,
        "uri": f"spotify:track:{track_id}", "served_track_id": None, "popularity": popularity,
        "popularity_read_at": fetched_at if popularity is not None else None, "fetched_at": fetched_at,
    }


def links(track_id: str, *artist_ids: str) -> list[dict[str, Any]]:
    return [{"track_id": track_id, "position": p, "artist_id": a} for p, a in enumerate(artist_ids)]


def catalog(tracks: list[dict[str, Any]], track_artists: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {
        "albums": [album("al1"), album("al2", "Second")],
        "artists": [artist(a) for a in ("ar1", "ar2", "ar3", "ar4")],
        "tracks": tracks,
        "track_artists": track_artists,
    }


# Each call as the daily job (or the user-library assets) would make it, in order.
CALLS: list[dict[str, list[dict[str, Any]]]] = [
    # first read
    catalog([track("t1", T1), track("t2", T1), track("t3", T1)],
            links("t1", "ar1", "ar2", "ar3") + links("t2", "ar2") + links("t3", "ar4")),
    # read again, same content: the read times move (fetched_at, and popularity_read_at with it)
    catalog([track("t1", T2), track("t2", T2), track("t3", T2)],
            links("t1", "ar1", "ar2", "ar3") + links("t2", "ar2") + links("t3", "ar4")),
    # t1's artists change order and shrink, t2 is renamed, t3 comes back with no artists, t4 is new
    catalog([track("t1", T3), track("t2", T3, name="Renamed"), track("t3", T3), track("t4", T3, album_id="al2")],
            links("t1", "ar3", "ar1") + links("t2", "ar2") + links("t4", "ar1", "ar2")),
    # a partial read: only t3 (with an artist again) and t4 without a read time and without popularity (the
    # user-library path); a link of t2, which is not in this call, is added and nothing of t2's goes
    catalog([track("t3", T4), track("t4", None, album_id="al2", popularity=None)],
            links("t3", "ar1") + links("t4", "ar2") + [{"track_id": "t2", "position": 1, "artist_id": "ar4"}]),
    # the same read once more, then a call naming one position twice (the later row wins)
    catalog([track("t3", T4)], links("t3", "ar1")),
    catalog([track("t1", T4)], links("t1", "ar2", "ar3") + links("t1", "ar4")),
    # a track read with no artists at all, alone in its call
    catalog([track("t2", T4)], []),
    # no tracks at all: albums and artists only
    catalog([], []),
]


def snapshot(conn: sa.Connection) -> dict[str, list[tuple]]:
    """Every catalogue row in key order, its `updated_at` reduced to whether this call moved it."""
    tables = {}
    for table, order in CATALOG_TABLES.items():
        result = conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {order}"))
        names = list(result.keys())
        tables[table] = [
            tuple(_touch_state(v) if name == "updated_at" else v for name, v in zip(names, row, strict=True))
            for row in result
        ]
    return tables


def _touch_state(updated_at: Any) -> str:
    return "kept" if str(updated_at).startswith(NOT_TOUCHED[:10]) else "moved"


def run_calls(engine: sa.Engine, upsert: Upsert) -> list[tuple[dict[str, int], dict[str, list[tuple]]]]:
    """Apply every call in its own transaction from empty tables; the counts and tables after each."""
    with engine.begin() as conn:
        for table in reversed(CATALOG_TABLES):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    states = []
    for call in CALLS:
        with engine.begin() as conn:
            counts = upsert(conn, **call)
        with engine.begin() as conn:
            states.append((counts, snapshot(conn)))
            for table in CATALOG_TABLES:
                if table != "spotify_track_artists":  # backdate, so the next call shows what it moved
                    conn.execute(sa.text(f"UPDATE {table} SET updated_at = '{NOT_TOUCHED}'"))
    return states


def test_set_based_upsert_leaves_exactly_what_the_row_by_row_one_left(engine) -> None:
    expected = run_calls(engine, row_by_row_upsert_catalog)
    actual = run_calls(engine, upsert_catalog)
    for n, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert got == want, f"after call {n}"
    final = actual[-1][1]
    t1_links = [r for r in final["spotify_track_artists"] if r[0] == "t1"]
    assert t1_links == [("t1", 0, "ar4"), ("t1", 1, "ar3")]  # the last row per key won
    assert [r for r in actual[2][1]["spotify_track_artists"] if r[0] in ("t1", "t3")] == [
        ("t1", 0, "ar3"), ("t1", 1, "ar1"),  # reordered and shrunk
    ]
    assert [r[0] for r in final["spotify_track_artists"]] == ["t1", "t1", "t3", "t4"]  # t2's all gone


def test_fetched_at_moves_on_every_read_and_updated_at_only_on_a_change(engine) -> None:
    def read(conn: sa.Connection, track_id: str) -> tuple[Any, Any]:
        return conn.execute(
            sa.text("SELECT fetched_at, updated_at FROM spotify_tracks WHERE track_id = :t"), {"t": track_id}
        ).one()

    # Without popularity (Development Mode, user libraries): with it, its read time is content and changes.
    first = [track("t1", T1, popularity=None), track("t2", T1, popularity=None)]
    again = [track("t1", T2, popularity=None), track("t2", T2, popularity=None, name="New name")]
    with engine.begin() as conn:
        upsert_catalog(conn, **catalog(first, links("t1", "ar1") + links("t2", "ar2")))
        conn.execute(sa.text(f"UPDATE spotify_tracks SET updated_at = '{NOT_TOUCHED}'"))
    with engine.begin() as conn:
        upsert_catalog(conn, **catalog(again, links("t1", "ar1") + links("t2", "ar2")))
    with engine.connect() as conn:
        unchanged_fetched, unchanged_updated = read(conn, "t1")
        changed_fetched, changed_updated = read(conn, "t2")
        t2 = db_timestamp(conn, T2)
    assert str(unchanged_fetched) == str(t2) and str(unchanged_updated).startswith("2000-01-01")
    assert str(changed_fetched) == str(t2) and not str(changed_updated).startswith("2000-01-01")


def test_a_bad_row_anywhere_writes_nothing(engine) -> None:
    with engine.begin() as conn:
        upsert_catalog(conn, **catalog([track("t1", T1)], links("t1", "ar1", "ar2")))
    # The tracks and the first track's new links are fine; the new track's link names an unknown artist.
    bad = catalog([track("t1", T2, name="Renamed"), track("t9", T2)], links("t1", "ar3") + links("t9", "nobody"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        upsert_catalog(conn, **bad)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT track_id, name FROM spotify_tracks")).all() == [("t1", "Track t1")]
        links_left = conn.execute(sa.text("SELECT artist_id FROM spotify_track_artists ORDER BY position"))
        assert links_left.scalars().all() == ["ar1", "ar2"]


def test_no_statement_binds_a_parameter_per_track(sqlite_url) -> None:
    """SQLite caps the parameters of one statement (32,766 by default): a catalogue write must bind a fixed
    number per statement, whatever the number of tracks. Here the cap is lowered to 100 for 1,000 tracks."""
    engine = create_engine(sqlite_url)

    @sa.event.listens_for(engine, "connect")
    def _few_parameters(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)

    migrate(engine)
    n = 1_000
    track_artists = [link for i in range(n) for link in links(f"t{i}", "ar1", "ar2")[: 1 + i % 2]]
    with engine.begin() as conn:
        counts = upsert_catalog(conn, **catalog([track(f"t{i}", T1) for i in range(n)], track_artists))
    assert counts == {"albums": 2, "artists": 4, "tracks": n, "track_artists": len(track_artists)}
    with engine.begin() as conn:
        upsert_catalog(conn, **catalog([track(f"t{i}", T2) for i in range(n)], links("t0", "ar3")))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT track_id, artist_id FROM spotify_track_artists")).all() == [("t0", "ar3")]
        assert conn.execute(sa.text("SELECT DISTINCT fetched_at FROM spotify_tracks")).scalars().all() == [
            db_timestamp(conn, T2)
        ]
    engine.dispose()
