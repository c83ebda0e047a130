"""Warehouse writes for connected users' libraries: saved tracks and listening history."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from spotify_pipeline.warehouse.bulk import bulk_upsert
from spotify_pipeline.warehouse.enrichment import db_timestamp


def sync_saved_tracks(
    conn: sa.Connection, account: str, saved: Sequence[Mapping[str, Any]], *, now: dt.datetime
) -> dict[str, int]:
    """Make `spotify_saved_tracks` match a complete pull of the account's library (rows: track_id, added_at).

    Saved tracks are upserted (a re-saved track is saved again); tracks absent from the pull are marked
    removed on today's UTC date, never deleted.
    """
    seen = db_timestamp(conn, now)
    before = set(
        conn.execute(
            sa.text("SELECT track_id FROM spotify_saved_tracks WHERE account = :a AND removed_on IS NULL"),
            {"a": account},
        ).scalars()
    )
    bulk_upsert(
        conn,
        "spotify_saved_tracks",
        (
            {"account": account, "track_id": s["track_id"], "added_at": db_timestamp(conn, s["added_at"]),
             "last_seen_at": seen, "removed_on": None}
            for s in saved
        ),
        key=["account", "track_id"],
        update=["added_at", "last_seen_at", "removed_on"],
    )
    current = {s["track_id"] for s in saved}
    gone = sorted(before - current)
    if gone:
        conn.execute(
            sa.text("UPDATE spotify_saved_tracks SET removed_on = :day WHERE account = :a AND track_id = :t"),
            [{"day": now.date().isoformat(), "a": account, "t": track_id} for track_id in gone],
        )
    return {"saved": len(current), "added": len(current - before), "removed": len(gone)}


def last_played_at_ms(conn: sa.Connection, account: str) -> int | None:
    """The cursor for the next recently-played pull: the newest stored play of `account`."""
    return conn.execute(
        sa.text("SELECT max(played_at_ms) FROM spotify_recently_played WHERE account = :a"), {"a": account}
    ).scalar_one()


def add_plays(conn: sa.Connection, account: str, plays: Sequence[Mapping[str, Any]]) -> int:
    """Store plays (played_at, played_at_ms, track_id, context_uri); one already stored is left as is.

    Returns how many were new.
    """
    before = conn.execute(
        sa.text("SELECT count(*) FROM spotify_recently_played WHERE account = :a"), {"a": account}
    ).scalar_one()
    bulk_upsert(
        conn,
        "spotify_recently_played",
        (
            {"account": account, "played_at": db_timestamp(conn, p["played_at"]), "played_at_ms": p["played_at_ms"],
             "track_id": p["track_id"], "context_uri": p["context_uri"]}
            for p in plays
        ),
        key=["account", "played_at_ms"],
        update=[],
    )
    after = conn.execute(
        sa.text("SELECT count(*) FROM spotify_recently_played WHERE account = :a"), {"a": account}
    ).scalar_one()
    return after - before
