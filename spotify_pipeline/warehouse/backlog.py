"""The Spotify work the warehouse says is waiting, and the plans runs make of it.

Backlog (what the planner, `spotify_pipeline.planning`, divides a run's request budget between), one query per
kind, each returning the kind's items as `BacklogColumns` (arrays, so a million items stay cheap):

* ``on_demand``: songs someone asked to have enriched (`spotify_requested_songs`) that are still unmatched
  and were not tried since they were asked for; ranked by when they were asked for.
* ``unmatched``: songs the matcher may try (`enrichment.NEEDS_MATCH`: no match, no override, no miss within
  the retry delay), except those waiting on demand; ranked by their last attempt (never tried first).
* ``stale_metadata``: matched tracks whose metadata is older than the track TTL, or was never read, and that
  Spotify did not answer "not found" for within the TTL; ranked by their last read, with their popularity.
* ``popularity``: matched tracks Spotify has (in `spotify_tracks`) without a snapshot on the given day;
  ranked by their last popularity reading, with their popularity.

Plans: `save_plan` stores a run's plan once (`spotify_refresh_runs`, `spotify_refresh_kinds`,
`spotify_refresh_plan_items`), whichever of the run's processes gets there first; `load_plan` and
`planned_songs` / `planned_tracks` read it back in the planned order.

Plain SQL on both backends; no Dagster, no Spotify client.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from spotify_pipeline.planning import PRIORITY, BacklogColumns, ColumnPlan, WorkKind
from spotify_pipeline.warehouse.bulk import bulk_upsert
from spotify_pipeline.warehouse.consistency import as_utc
from spotify_pipeline.warehouse.enrichment import NEEDS_MATCH, CatalogSong, db_timestamp

#: The raw endpoint the daily pull lands track objects under.
RAW_TRACKS_ENDPOINT = "tracks"
#: Kinds whose keys are local song ids (the others are Spotify track ids).
SONG_KINDS = frozenset({WorkKind.ON_DEMAND, WorkKind.UNMATCHED})
#: Planned items of runs older than this are dropped when a new plan is saved (the per-run figures stay).
PLAN_ITEMS_KEPT = dt.timedelta(days=7)
#: The measured searches per song is the mean over at least this many attempted songs (else the default).
MIN_SONGS_MEASURED = 50
#: ... from this many of the latest runs that matched anything.
RUNS_MEASURED = 30

#: SQL condition on `spotify_requested_songs AS r`: the request is still waiting (the song has no match and
#: no override, and was not tried since it was asked for).
_REQUEST_WAITING = """
    NOT EXISTS (SELECT 1 FROM spotify_track_matches AS m WHERE m.song_id = r.song_id)
    AND NOT EXISTS (SELECT 1 FROM spotify_match_overrides AS o WHERE o.song_id = r.song_id)
    AND NOT EXISTS (
        SELECT 1 FROM spotify_match_attempts AS a WHERE a.song_id = r.song_id AND a.attempted_at >= r.requested_at
    )
"""


# -- backlog ------------------------------------------------------------------------------------------------


def on_demand_backlog(conn: sa.Connection) -> BacklogColumns:
    """Songs asked for on demand and not tried since, ranked by when they were asked for."""
    rows = conn.execute(
        sa.text(
            f"SELECT r.song_id, r.requested_at FROM spotify_requested_songs AS r WHERE {_REQUEST_WAITING} "
            "ORDER BY r.song_id"
        )
    ).all()
    return _columns(rows, song_keys=True)


def unmatched_backlog(conn: sa.Connection, *, now: dt.datetime, miss_retry_days: float) -> BacklogColumns:
    """Songs the matcher may try now (none waiting on demand), ranked by their last attempt (never first)."""
    rows = conn.execute(
        sa.text(
            f"""
            SELECT s.id,
                   (SELECT max(a.attempted_at) FROM spotify_match_attempts AS a WHERE a.song_id = s.id)
            FROM songs AS s
            WHERE {NEEDS_MATCH}
              AND NOT EXISTS (
                  SELECT 1 FROM spotify_requested_songs AS r WHERE r.song_id = s.id AND {_REQUEST_WAITING}
              )
            ORDER BY s.id
            """
        ),
        {"retry_before": db_timestamp(conn, now - dt.timedelta(days=miss_retry_days))},
    ).all()
    return _columns(rows, song_keys=True)


def stale_metadata_backlog(conn: sa.Connection, *, now: dt.datetime, track_ttl: dt.timedelta) -> BacklogColumns:
    """Matched tracks last read longer than `track_ttl` ago or never, ranked by that read (never first).

    A track Spotify answered "not found" for within the TTL (a 404 row in a recent raw pull) waits like a
    fresh one, so a track Spotify removed is asked for once per TTL, not by every run."""
    stale_before = now - track_ttl
    rows = conn.execute(
        sa.text(
            """
            SELECT m.track_id, t.fetched_at, t.popularity
            FROM (SELECT DISTINCT track_id FROM spotify_track_matches) AS m
            LEFT JOIN spotify_tracks AS t ON t.track_id = m.track_id
            LEFT JOIN (
                SELECT request_key, max(fetched_at) AS tried_at FROM spotify_raw_responses
                WHERE endpoint = :endpoint AND pull_date >= :since_day AND status <> 200
                GROUP BY request_key
            ) AS r ON r.request_key = m.track_id
            WHERE (t.fetched_at IS NULL OR t.fetched_at < :stale_before)
              AND (r.tried_at IS NULL OR r.tried_at < :stale_before)
            ORDER BY m.track_id
            """
        ),
        {
            "endpoint": RAW_TRACKS_ENDPOINT,
            "since_day": stale_before.date().isoformat(),
            "stale_before": db_timestamp(conn, stale_before),
        },
    ).all()
    return _columns(rows, song_keys=False)


def popularity_backlog(conn: sa.Connection, *, day: dt.date) -> BacklogColumns:
    """Matched tracks Spotify has with no popularity snapshot on `day`, ranked by their last reading."""
    rows = conn.execute(
        sa.text(
            """
            SELECT t.track_id, t.popularity_read_at, t.popularity
            FROM spotify_tracks AS t
            WHERE EXISTS (SELECT 1 FROM spotify_track_matches AS m WHERE m.track_id = t.track_id)
              AND NOT EXISTS (
                  SELECT 1 FROM spotify_popularity_snapshots AS p
                  WHERE p.snapshot_date = :day AND p.track_id = t.track_id
              )
            ORDER BY t.track_id
            """
        ),
        {"day": day.isoformat()},
    ).all()
    return _columns(rows, song_keys=False)


def measure_backlog(
    conn: sa.Connection,
    kinds: Sequence[WorkKind],
    *,
    now: dt.datetime,
    miss_retry_days: float,
    track_ttl: dt.timedelta,
    day: dt.date,
) -> dict[WorkKind, BacklogColumns]:
    """The backlog of each of `kinds` (see the module docstring)."""
    queries = {
        WorkKind.ON_DEMAND: lambda: on_demand_backlog(conn),
        WorkKind.UNMATCHED: lambda: unmatched_backlog(conn, now=now, miss_retry_days=miss_retry_days),
        WorkKind.STALE_METADATA: lambda: stale_metadata_backlog(conn, now=now, track_ttl=track_ttl),
        WorkKind.POPULARITY: lambda: popularity_backlog(conn, day=day),
    }
    return {kind: queries[kind]() for kind in PRIORITY if kind in kinds}


def _columns(rows: Sequence[Any], *, song_keys: bool) -> BacklogColumns:
    """(key, waiting since[, popularity]) rows as columns: times in epoch seconds, NaN for never/unknown."""
    keys = np.array([row[0] for row in rows], dtype=np.int64 if song_keys else np.str_)
    since = np.array([np.nan if row[1] is None else as_utc(row[1]).timestamp() for row in rows], dtype=np.float64)
    popularity = (
        np.array([np.nan if row[2] is None else float(row[2]) for row in rows], dtype=np.float64)
        if rows and len(rows[0]) > 2
        else None
    )
    if not rows:
        keys = np.array([], dtype=np.int64 if song_keys else np.str_)
    return BacklogColumns.of(keys, since, popularity)


# -- on-demand requests -------------------------------------------------------------------------------------


def record_requested_songs(conn: sa.Connection, song_ids: Sequence[int], *, now: dt.datetime) -> int:
    """Remember that someone asked for these songs now (unknown song ids are ignored); returns the rows."""
    known = _existing_songs(conn, song_ids)
    return bulk_upsert(
        conn,
        "spotify_requested_songs",
        ({"song_id": song_id, "requested_at": db_timestamp(conn, now)} for song_id in known),
        key=["song_id"],
    )


def settle_requested_songs(conn: sa.Connection) -> int:
    """Forget the requests that no longer wait (matched, overridden or tried since); returns how many."""
    return conn.execute(
        sa.text(f"DELETE FROM spotify_requested_songs WHERE song_id IN ("
                f"SELECT r.song_id FROM spotify_requested_songs AS r WHERE NOT ({_REQUEST_WAITING}))")
    ).rowcount


def _existing_songs(conn: sa.Connection, song_ids: Sequence[int]) -> list[int]:
    wanted = sorted({int(i) for i in song_ids})
    found: list[int] = []
    query = sa.text("SELECT id FROM songs WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
    for start in range(0, len(wanted), 10_000):  # SQLite caps the parameters of one statement
        found.extend(conn.execute(query, {"ids": wanted[start : start + 10_000]}).scalars())
    return sorted(found)


# -- plans --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindFigures:
    """One kind of work in a run's plan: what was selected and what it leaves (items, estimated requests)."""

    planned_items: int
    planned_requests: int
    backlog_items: int
    backlog_requests: int


@dataclass(frozen=True)
class StoredPlan:
    """A run's plan as stored: its figures per kind (the items are read with `planned_songs`/`planned_tracks`)."""

    run_id: str
    planned_at: dt.datetime
    app_mode: str
    run_budget: int
    available: int
    searches_per_song: float
    miss_retry_days: float
    kinds: Mapping[WorkKind, KindFigures]

    def planned_requests(self, *kinds: WorkKind) -> int:
        return sum(self.kinds[k].planned_requests for k in kinds if k in self.kinds)

    @property
    def total_planned_requests(self) -> int:
        return self.planned_requests(*PRIORITY)

    def eta_days(self) -> float:
        """Days the backlog this plan leaves takes at the run's budget a day (one daily run)."""
        return sum(f.backlog_requests for f in self.kinds.values()) / self.run_budget


def save_plan(
    conn: sa.Connection,
    run_id: str,
    plan: ColumnPlan,
    backlog: Mapping[WorkKind, BacklogColumns],
    *,
    planned_at: dt.datetime,
    app_mode: str,
    run_budget: int,
    searches_per_song: float,
    miss_retry_days: float,
) -> bool:
    """Store the plan of `run_id` with its items, in the caller's transaction, unless the run already has
    one; returns whether this call stored it. The items of plans older than `PLAN_ITEMS_KEPT` are dropped."""
    inserted = conn.execute(
        sa.text(
            "INSERT INTO spotify_refresh_runs (run_id, planned_at, app_mode, run_budget, available, searches_per_song, "
            "miss_retry_days) VALUES (:run_id, :planned_at, :app_mode, :run_budget, :available, :searches_per_song, "
            ":miss_retry_days) "
            "ON CONFLICT (run_id) DO NOTHING"
        ),
        {"run_id": run_id, "planned_at": db_timestamp(conn, planned_at), "app_mode": app_mode,
         "run_budget": run_budget, "available": plan.budget, "searches_per_song": searches_per_song,
         "miss_retry_days": miss_retry_days},
    ).rowcount
    if not inserted:
        return False
    kinds = [kind for kind in PRIORITY if kind in backlog]
    conn.execute(
        sa.text(
            "INSERT INTO spotify_refresh_kinds (run_id, kind, planned_items, planned_requests, backlog_items, "
            "backlog_requests) VALUES (:run_id, :kind, :planned_items, :planned_requests, :backlog_items, "
            ":backlog_requests)"
        ),
        [
            {"run_id": run_id, "kind": kind.value, "planned_items": len(plan.selected_positions[kind]),
             "planned_requests": plan.planned_requests[kind], "backlog_items": plan.backlog_items[kind],
             "backlog_requests": plan.backlog_requests[kind]}
            for kind in kinds
        ],
    )
    bulk_upsert(
        conn,
        "spotify_refresh_plan_items",
        (
            {"run_id": run_id, "kind": kind.value, "position": position,
             "song_id": int(key) if kind in SONG_KINDS else None,
             "track_id": None if kind in SONG_KINDS else str(key)}
            for kind in kinds
            for position, key in enumerate(backlog[kind].keys[plan.selected_positions[kind]].tolist())
        ),
        key=["run_id", "kind", "position"],
    )
    conn.execute(
        sa.text(
            "DELETE FROM spotify_refresh_plan_items WHERE run_id IN "
            "(SELECT run_id FROM spotify_refresh_runs WHERE planned_at < :before)"
        ),
        {"before": db_timestamp(conn, planned_at - PLAN_ITEMS_KEPT)},
    )
    return True


def load_plan(conn: sa.Connection, run_id: str) -> StoredPlan | None:
    """The stored plan of `run_id`, or None if the run made none."""
    head = conn.execute(
        sa.text(
            "SELECT planned_at, app_mode, run_budget, available, searches_per_song, miss_retry_days "
            "FROM spotify_refresh_runs "
            "WHERE run_id = :r"
        ),
        {"r": run_id},
    ).one_or_none()
    if head is None:
        return None
    kinds = {
        WorkKind(kind): KindFigures(int(pi), int(pr), int(bi), int(br))
        for kind, pi, pr, bi, br in conn.execute(
            sa.text(
                "SELECT kind, planned_items, planned_requests, backlog_items, backlog_requests "
                "FROM spotify_refresh_kinds WHERE run_id = :r"
            ),
            {"r": run_id},
        )
    }
    planned_at, app_mode, run_budget, available, searches, miss_retry_days = head
    return StoredPlan(
        run_id=run_id,
        planned_at=as_utc(planned_at),
        app_mode=str(app_mode),
        run_budget=int(run_budget),
        available=int(available),
        searches_per_song=float(searches),
        miss_retry_days=float(miss_retry_days),
        kinds={kind: kinds[kind] for kind in PRIORITY if kind in kinds},
    )


def planned_songs(
    conn: sa.Connection, run_id: str, kind: WorkKind, *, not_tried_since: dt.datetime
) -> list[CatalogSong]:
    """The songs `run_id` planned to match as `kind`, in the planned order, that still need it: one matched,
    overridden or tried at or after `not_tried_since` (the plan's time: by another run meanwhile) is left out."""
    if kind not in SONG_KINDS:
        raise ValueError(f"{kind} work is about tracks, not songs")
    rows = conn.execute(
        sa.text(
            f"""
            SELECT s.id, s.title, s.artist, s.album, s.duration_ms, s.isrc, s.release_year
            FROM spotify_refresh_plan_items AS i
            JOIN songs AS s ON s.id = i.song_id
            WHERE i.run_id = :run_id AND i.kind = :kind AND {NEEDS_MATCH}
            ORDER BY i.position
            """
        ),
        {"run_id": run_id, "kind": kind.value, "retry_before": db_timestamp(conn, not_tried_since)},
    ).all()
    return [CatalogSong(*row) for row in rows]


def planned_tracks(conn: sa.Connection, run_id: str, kind: WorkKind) -> list[str]:
    """The track ids `run_id` planned as `kind`, in the planned order."""
    if kind in SONG_KINDS:
        raise ValueError(f"{kind} work is about songs, not tracks")
    return list(
        conn.execute(
            sa.text(
                "SELECT track_id FROM spotify_refresh_plan_items WHERE run_id = :r AND kind = :k ORDER BY position"
            ),
            {"r": run_id, "k": kind.value},
        ).scalars()
    )


def tracks_matched_since(conn: sa.Connection, since: dt.datetime) -> list[str]:
    """Tracks matched at or after `since` that were never read (not in `spotify_tracks`), by track id: the
    new matches a run reads after its matching step."""
    return list(
        conn.execute(
            sa.text(
                "SELECT DISTINCT m.track_id FROM spotify_track_matches AS m WHERE m.matched_at >= :since "
                "AND NOT EXISTS (SELECT 1 FROM spotify_tracks AS t WHERE t.track_id = m.track_id) ORDER BY m.track_id"
            ),
            {"since": db_timestamp(conn, since)},
        ).scalars()
    )


def tracks_read_without_snapshot(conn: sa.Connection, day: dt.date) -> list[str]:
    """Matched tracks the day's raw pull read from Spotify (found) with no popularity snapshot that day, by id:
    their objects carried popularity, so capturing it costs nothing while the cache holds them."""
    return list(
        conn.execute(
            sa.text(
                "SELECT r.request_key FROM spotify_raw_responses AS r "
                "WHERE r.pull_date = :day AND r.endpoint = :endpoint AND r.status = 200 "
                "AND EXISTS (SELECT 1 FROM spotify_track_matches AS m WHERE m.track_id = r.request_key) "
                "AND NOT EXISTS (SELECT 1 FROM spotify_popularity_snapshots AS p "
                "WHERE p.snapshot_date = :day AND p.track_id = r.request_key) ORDER BY r.request_key"
            ),
            {"day": day.isoformat(), "endpoint": RAW_TRACKS_ENDPOINT},
        ).scalars()
    )


def record_matching_cost(conn: sa.Connection, run_id: str, *, songs_attempted: int, requests: int) -> None:
    """What the run's matching step attempted and spent (the next plans' measured searches per song)."""
    conn.execute(
        sa.text(
            "UPDATE spotify_refresh_runs SET songs_attempted = coalesce(songs_attempted, 0) + :songs, "
            "matching_requests = coalesce(matching_requests, 0) + :requests WHERE run_id = :r"
        ),
        {"r": run_id, "songs": songs_attempted, "requests": requests},
    )


def measured_searches_per_song(conn: sa.Connection, *, default: float) -> float:
    """Requests per attempted song over the latest runs that matched (`RUNS_MEASURED` of them), or `default`
    while fewer than `MIN_SONGS_MEASURED` songs were attempted in them."""
    songs, requests = conn.execute(
        sa.text(
            "SELECT coalesce(sum(songs_attempted), 0), coalesce(sum(matching_requests), 0) FROM ("
            "SELECT songs_attempted, matching_requests FROM spotify_refresh_runs WHERE songs_attempted > 0 "
            "ORDER BY planned_at DESC LIMIT :n) AS latest"
        ),
        {"n": RUNS_MEASURED},
    ).one()
    if int(songs) < MIN_SONGS_MEASURED or int(requests) <= 0:
        return default
    return round(int(requests) / int(songs), 4)


def requests_recorded(conn: sa.Connection, run_id: str, *, except_endpoint: str) -> int:
    """Requests the run's steps recorded in `spotify_api_usage`, but for those to `except_endpoint` (the token
    endpoint, whose requests are not Web API requests)."""
    return int(
        conn.execute(
            sa.text(
                "SELECT coalesce(sum(requests), 0) FROM spotify_api_usage WHERE run_id = :r AND endpoint <> :e"
            ),
            {"r": run_id, "e": except_endpoint},
        ).scalar_one()
    )


def record_run_outcome(
    conn: sa.Connection,
    run_id: str,
    *,
    finished_at: dt.datetime,
    requests_spent: int,
    eta_days: float,
    remaining: Mapping[WorkKind, tuple[int, int]],
) -> bool:
    """What the run spent and the backlog (items, estimated requests per kind) measured after its work;
    returns False when the run made no plan (nothing is recorded then)."""
    updated = conn.execute(
        sa.text(
            "UPDATE spotify_refresh_runs SET finished_at = :at, requests_spent = :spent, eta_days = :eta "
            "WHERE run_id = :r"
        ),
        {"r": run_id, "at": db_timestamp(conn, finished_at), "spent": requests_spent, "eta": eta_days},
    ).rowcount
    if not updated:
        return False
    for kind, (items, requests) in remaining.items():
        conn.execute(
            sa.text(
                "INSERT INTO spotify_refresh_kinds (run_id, kind, planned_items, planned_requests, backlog_items, "
                "backlog_requests, remaining_items, remaining_requests) "
                "VALUES (:r, :k, 0, 0, :items, :requests, :items, :requests) "
                "ON CONFLICT (run_id, kind) DO UPDATE SET remaining_items = :items, remaining_requests = :requests"
            ),
            {"r": run_id, "k": kind.value, "items": items, "requests": requests},
        )
    return True
