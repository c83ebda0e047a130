"""The backlog queries and the stored plans (`warehouse/backlog.py`), on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa

from spotify_pipeline.planning import BacklogColumns, CostModel, WorkKind, plan_columns
from spotify_pipeline.warehouse.backlog import (
    load_plan,
    measure_backlog,
    measured_searches_per_song,
    on_demand_backlog,
    planned_songs,
    planned_tracks,
    popularity_backlog,
    record_matching_cost,
    record_requested_songs,
    record_run_outcome,
    requests_recorded,
    save_plan,
    settle_requested_songs,
    stale_metadata_backlog,
    tracks_matched_since,
    tracks_read_without_snapshot,
    unmatched_backlog,
)
from spotify_pipeline.warehouse.enrichment import MatchAttempt, db_timestamp, record_match_attempts

NOW = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.timezone.utc)
TODAY = NOW.date()
TTL = dt.timedelta(days=1)


def _songs(conn: sa.Connection, n: int) -> list[int]:
    for i in range(1, n + 1):
        conn.execute(
            sa.text("INSERT INTO songs (id, title, artist, catalog_key) VALUES (:i, :t, 'Artist', :k)"),
            {"i": i, "t": f"Song {i}", "k": f"key-{i}"},
        )
    return list(range(1, n + 1))


def _attempt(conn: sa.Connection, song_id: int, at: dt.datetime, outcome: str = "no_candidates",
             track_id: str | None = None) -> None:
    record_match_attempts(
        conn, [MatchAttempt(song_id, "search", outcome, track_id, 0.9 if track_id else 0.0, None, None)], now=at
    )


def _track(conn: sa.Connection, track_id: str, fetched_at: dt.datetime | None, popularity: int | None = None) -> None:
    conn.execute(
        sa.text("INSERT INTO spotify_tracks (track_id, name, fetched_at, popularity, popularity_read_at) "
                "VALUES (:t, :t, :f, :p, :f)"),
        {"t": track_id, "f": db_timestamp(conn, fetched_at), "p": popularity},
    )


def _keys(columns: BacklogColumns) -> list:
    return columns.keys.tolist()


def test_unmatched_songs_are_those_the_matcher_may_try_ranked_by_last_attempt(engine) -> None:
    with engine.begin() as conn:
        _songs(conn, 6)
        _attempt(conn, 1, NOW - dt.timedelta(days=1))  # missed yesterday: within the 7-day retry delay
        _attempt(conn, 2, NOW - dt.timedelta(days=30))  # missed a month ago: due again
        _attempt(conn, 3, NOW - dt.timedelta(days=3), "matched", "t3")  # matched
        conn.execute(sa.text("INSERT INTO spotify_match_overrides (song_id, track_id) VALUES (4, NULL)"))
        record_requested_songs(conn, [5], now=NOW)  # waiting on demand: counted there, not here
        backlog = unmatched_backlog(conn, now=NOW, miss_retry_days=7)
    assert _keys(backlog) == [2, 6]
    since = dict(zip(_keys(backlog), backlog.waiting_since.tolist(), strict=True))
    assert since[2] == (NOW - dt.timedelta(days=30)).timestamp() and np.isnan(since[6])  # never tried


def test_on_demand_songs_wait_until_tried_after_they_were_asked_for(engine) -> None:
    with engine.begin() as conn:
        _songs(conn, 4)
        _attempt(conn, 2, NOW - dt.timedelta(hours=1))  # tried before the request: still waiting
        assert record_requested_songs(conn, [1, 2, 3, 999], now=NOW) == 3  # unknown ids are ignored
        _attempt(conn, 3, NOW + dt.timedelta(minutes=1))  # tried since: served
        backlog = on_demand_backlog(conn)
        assert _keys(backlog) == [1, 2]
        assert backlog.waiting_since.tolist() == [NOW.timestamp()] * 2
        assert settle_requested_songs(conn) == 1  # the served request is forgotten
        assert conn.execute(sa.text("SELECT song_id FROM spotify_requested_songs ORDER BY 1")).scalars().all() == [1, 2]


def test_stale_metadata_is_matched_tracks_read_longer_ago_than_the_ttl_or_never(engine) -> None:
    with engine.begin() as conn:
        _songs(conn, 5)
        for song, track in ((1, "fresh"), (2, "old"), (3, "never"), (4, "gone"), (5, "old")):
            _attempt(conn, song, NOW - dt.timedelta(days=5), "matched", track)
        _track(conn, "fresh", NOW - dt.timedelta(hours=2))
        _track(conn, "old", NOW - dt.timedelta(days=3), popularity=40)
        # Spotify said "not found" for this one an hour ago: asked again only after the TTL.
        conn.execute(sa.text("INSERT INTO spotify_raw_responses (pull_date, endpoint, request_key, status, fetched_at) "
                             "VALUES (:d, 'tracks', 'gone', 404, :at)"),
                     {"d": TODAY.isoformat(), "at": db_timestamp(conn, NOW - dt.timedelta(hours=1))})
        backlog = stale_metadata_backlog(conn, now=NOW, track_ttl=TTL)
        assert _keys(backlog) == ["never", "old"]  # one item per track, though two songs match "old"
        assert backlog.popularity.tolist()[1] == 40 and np.isnan(backlog.waiting_since[0])
        later = stale_metadata_backlog(conn, now=NOW + dt.timedelta(hours=23, minutes=30), track_ttl=TTL)
        assert _keys(later) == ["fresh", "gone", "never", "old"]


def test_popularity_is_tracks_spotify_has_without_a_snapshot_that_day(engine) -> None:
    with engine.begin() as conn:
        _songs(conn, 3)
        for song, track in ((1, "a"), (2, "b"), (3, "c")):
            _attempt(conn, song, NOW - dt.timedelta(days=5), "matched", track)
        _track(conn, "a", NOW, popularity=10)
        _track(conn, "b", NOW, popularity=20)  # "c" was never read: Spotify may not have it
        conn.execute(sa.text("INSERT INTO spotify_popularity_snapshots (snapshot_date, track_id, popularity) "
                             "VALUES (:d, 'a', 10), (:y, 'b', 19)"),
                     {"d": TODAY.isoformat(), "y": (TODAY - dt.timedelta(days=1)).isoformat()})
        assert _keys(popularity_backlog(conn, day=TODAY)) == ["b"]
        conn.execute(sa.text("INSERT INTO spotify_raw_responses (pull_date, endpoint, request_key, status) "
                             "VALUES (:d, 'tracks', 'a', 200), (:d, 'tracks', 'b', 200), (:d, 'tracks', 'c', 404)"),
                     {"d": TODAY.isoformat()})
        assert tracks_read_without_snapshot(conn, TODAY) == ["b"]


def _plan(conn: sa.Connection, run_id: str, budget: int, *, at: dt.datetime = NOW) -> bool:
    backlog = measure_backlog(
        conn, list(WorkKind), now=at, miss_retry_days=7, track_ttl=TTL, day=at.date()
    )
    plan = plan_columns(backlog, budget, CostModel.for_mode("development", 1.0), now=at)
    return save_plan(conn, run_id, plan, backlog, planned_at=at, app_mode="development", run_budget=budget,
                     searches_per_song=1.0, miss_retry_days=7)


def test_a_plan_is_stored_once_per_run_and_read_back_in_order(engine) -> None:
    with engine.begin() as conn:
        _songs(conn, 30)
        record_requested_songs(conn, [7], now=NOW - dt.timedelta(hours=1))
        _attempt(conn, 9, NOW - dt.timedelta(days=1), "matched", "t9")  # a match never read: stale metadata
        assert _plan(conn, "run-1", 20)
        assert not _plan(conn, "run-1", 100)  # the run's plan stands: a second planner reads it
    with engine.connect() as conn:
        plan = load_plan(conn, "run-1")
        assert plan is not None and plan.available == 20 and plan.run_budget == 20 and plan.app_mode == "development"
        assert plan.kinds[WorkKind.ON_DEMAND].planned_items == 1
        songs = [s.song_id for kind in (WorkKind.ON_DEMAND, WorkKind.UNMATCHED)
                 for s in planned_songs(conn, "run-1", kind, not_tried_since=plan.planned_at)]
        assert songs[0] == 7 and len(songs) == len(set(songs))  # on demand first, each song once
        assert planned_tracks(conn, "run-1", WorkKind.STALE_METADATA) == ["t9"]
        assert 0 < plan.total_planned_requests <= 20
        assert plan.kinds[WorkKind.UNMATCHED].backlog_items > 0  # the budget did not reach every song
        assert plan.eta_days() == pytest.approx(sum(f.backlog_requests for f in plan.kinds.values()) / 20)
        assert load_plan(conn, "no-such-run") is None
    with engine.begin() as conn:  # a planned song tried meanwhile (another run) is not tried again
        _attempt(conn, songs[1], NOW + dt.timedelta(minutes=5))
    with engine.connect() as conn:
        again = [s.song_id for s in planned_songs(conn, "run-1", WorkKind.UNMATCHED, not_tried_since=plan.planned_at)]
        assert songs[1] not in again and again == [s for s in songs[1:] if s != songs[1]]


def test_new_matches_since_the_plan_are_the_never_read_ones(engine) -> None:
    with engine.begin() as conn:
        _songs(conn, 3)
        _attempt(conn, 1, NOW - dt.timedelta(hours=1), "matched", "before")
        _attempt(conn, 2, NOW, "matched", "after")
        _attempt(conn, 3, NOW + dt.timedelta(seconds=5), "matched", "read")
        _track(conn, "read", NOW)
        assert tracks_matched_since(conn, NOW) == ["after"]


def test_the_measured_searches_per_song_needs_enough_songs(engine) -> None:
    with engine.begin() as conn:
        _plan(conn, "run-a", 10)
        assert measured_searches_per_song(conn, default=1.5) == 1.5  # nothing measured yet
        record_matching_cost(conn, "run-a", songs_attempted=40, requests=80)
        assert measured_searches_per_song(conn, default=1.5) == 1.5  # too few songs to trust
        _plan(conn, "run-b", 10, at=NOW + dt.timedelta(days=1))
        record_matching_cost(conn, "run-b", songs_attempted=60, requests=90)
        assert measured_searches_per_song(conn, default=1.5) == pytest.approx(170 / 100)


def test_the_outcome_of_a_run_is_recorded_with_its_plan(engine) -> None:
    with engine.begin() as conn:
        _songs(conn, 2)
        _plan(conn, "run-1", 5)
        conn.execute(sa.text(
            "INSERT INTO spotify_api_usage (run_id, asset, endpoint, requests) VALUES "
            "('run-1', 'a', 'GET /search', 3), ('run-1', 'b', 'GET /tracks', 2), ('run-1', 'a', 'POST /api/token', 1), "
            "('run-2', 'a', 'GET /search', 7)"
        ))
        assert requests_recorded(conn, "run-1", except_endpoint="POST /api/token") == 5
        remaining = {kind: (0, 0) for kind in WorkKind}
        assert record_run_outcome(conn, "run-1", finished_at=NOW, requests_spent=5, eta_days=0.5, remaining=remaining)
        assert not record_run_outcome(conn, "run-x", finished_at=NOW, requests_spent=5, eta_days=0.5,
                                      remaining=remaining)
        row = conn.execute(
            sa.text("SELECT requests_spent, eta_days FROM spotify_refresh_runs WHERE run_id = 'run-1'")
        ).one()
        assert tuple(row) == (5, 0.5)
        kinds = conn.execute(sa.text("SELECT count(*) FROM spotify_refresh_kinds WHERE run_id = 'run-1' "
                                     "AND remaining_items IS NOT NULL")).scalar_one()
        assert kinds == 4
