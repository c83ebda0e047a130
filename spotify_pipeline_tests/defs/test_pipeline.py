from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from spotify_pipeline.definitions import build_definitions
from spotify_pipeline.defs.catalog.assets import spotify_catalog
from spotify_pipeline.defs.jobs import spotify_daily_refresh_schedule
from spotify_pipeline.defs.matching.assets import spotify_track_matches
from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.defs.popularity.assets import (
    compute_movers,
    spotify_popularity_movers,
    spotify_popularity_snapshots,
)
from spotify_pipeline.warehouse.consistency import as_utc
from spotify_pipeline.warehouse.enrichment import land_raw_partition, raw_partition
from spotify_pipeline_tests.defs.conftest import make_pipeline, table_fingerprint

TODAY = utc_today().isoformat()
MATCHED_IN_SAMPLE = 850  # the emulator's labelled sample: 850 songs are on Spotify, 150 are not


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def test_daily_job_enriches_the_catalogue_end_to_end(pipeline):
    result = pipeline.materialize()
    assert result.success
    assert _metadata(result, "spotify_track_matches")["matched_now"] == MATCHED_IN_SAMPLE
    raw = _metadata(result, "raw_spotify_tracks")
    assert raw["tracks_landed"] == MATCHED_IN_SAMPLE
    assert raw["spotify_requests"] == -(-MATCHED_IN_SAMPLE // 50)  # batches of 50 in extended mode
    assert _metadata(result, "spotify_popularity_snapshots")["popularity_available"] is True
    assert pipeline.scalar("SELECT count(*) FROM spotify_popularity_snapshots WHERE snapshot_date = :d", d=TODAY) == (
        MATCHED_IN_SAMPLE
    )
    assert pipeline.scalar("SELECT count(*) FROM songs_search WHERE enrichment_status = 'matched'") == MATCHED_IN_SAMPLE
    assert pipeline.scalar(
        "SELECT count(*) FROM songs_search WHERE enrichment_status = 'matched' AND (popularity IS NULL "
        "OR spotify_url IS NULL OR album_image_url IS NULL)"
    ) == 0
    assert all(check.passed for check in _checks(result).values()), _checks(result)
    usage = pipeline.rows(
        "SELECT asset, endpoint, requests FROM spotify_api_usage WHERE run_id = :r", r=result.run_id
    )
    by_asset = {(asset, endpoint): requests for asset, endpoint, requests in usage}
    assert by_asset[("spotify_track_matches", "GET /search")] > 0
    assert by_asset[("raw_spotify_tracks", "GET /tracks")] == -(-MATCHED_IN_SAMPLE // 50)
    assert by_asset.get(("spotify_popularity_snapshots", "GET /tracks"), 0) == 0  # shared the raw pull's objects
    assert sum(by_asset.values()) == pipeline.emulator.stats()["total_requests"]
    assert pipeline.emulator.stats()["by_status"].get("429", 0) == 0


def test_local_columns_of_songs_are_never_touched(pipeline):
    local = "SELECT id, title, artist, album, duration_ms, isrc, release_year, catalog_key FROM songs ORDER BY id"
    before = pipeline.rows(local)
    assert pipeline.materialize().success
    assert pipeline.rows(local) == before


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_materializing_a_partition_twice_leaves_identical_tables(backend, request, emulator, tmp_path):
    emulator.configure(window_limit=None)
    built = make_pipeline(request.getfixturevalue(f"{backend}_url"), emulator, tmp_path / "cache.db")
    try:
        assert built.materialize().success
        first = table_fingerprint(built.engine)
        emulator.reset()
        assert built.materialize().success
        assert table_fingerprint(built.engine) == first
        assert emulator.stats()["total_requests"] == 0  # matches, misses and tracks all reused
    finally:
        built.engine.dispose()


def test_development_mode_uses_single_track_calls_and_never_stores_null_popularity(sqlite_url, emulator_factory, tmp_path):
    emulator = emulator_factory(mode="development", window_limit=None)
    built = make_pipeline(sqlite_url, emulator, tmp_path / "cache.db")
    result = built.materialize()
    assert result.success
    stats = emulator.stats()["by_endpoint_status"]
    assert stats["/v1/tracks/{id}"]["200"] == MATCHED_IN_SAMPLE  # one call per matched track
    assert stats["/v1/tracks"] == {"403": 1}  # the mode probe: batches are forbidden
    snapshots = _metadata(result, "spotify_popularity_snapshots")
    assert snapshots["popularity_available"] is False and snapshots["rows"] == 0
    assert built.scalar("SELECT count(*) FROM spotify_popularity_snapshots") == 0
    assert built.scalar("SELECT count(*) FROM spotify_tracks WHERE popularity IS NOT NULL") == 0
    check = _checks(result)["popularity_available"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "Nothing to compare" in _metadata(result, "spotify_popularity_movers")["summary"]
    assert built.scalar("SELECT count(*) FROM songs_search WHERE enrichment_status = 'matched'") == MATCHED_IN_SAMPLE
    built.engine.dispose()


def test_popularity_for_any_day_but_today_fails_clearly(pipeline):
    yesterday = (utc_today() - dt.timedelta(days=1)).isoformat()
    result = pipeline.materialize([spotify_popularity_snapshots], partition_key=yesterday)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "only runs for today's partition" in message and yesterday in message
    assert pipeline.scalar("SELECT count(*) FROM spotify_popularity_snapshots") == 0


def test_a_daily_run_for_another_day_is_refused_before_anything_is_written(pipeline):
    assert pipeline.materialize().success
    before = table_fingerprint(pipeline.engine)
    attempts = pipeline.scalar("SELECT count(*) FROM spotify_match_attempts")
    yesterday = (utc_today() - dt.timedelta(days=1)).isoformat()
    pipeline.emulator.reset()
    job = build_definitions(resources=pipeline.resources()).resolve_job_def("spotify_daily_refresh")
    result = job.execute_in_process(partition_key=yesterday, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "spotify_refresh_plan"  # the first step refuses, before it plans or writes
    message = failure.event_specific_data.error.message
    assert f"this run targets {yesterday}" in message and "Nothing was written" in message
    for table in ("spotify_raw_responses", "spotify_popularity_snapshots"):
        assert pipeline.scalar(f"SELECT count(*) FROM {table} WHERE {_day_column(table)} = :y", y=yesterday) == 0
    assert table_fingerprint(pipeline.engine) == before
    assert pipeline.scalar("SELECT count(*) FROM spotify_match_attempts") == attempts
    assert pipeline.scalar("SELECT count(*) FROM spotify_refresh_runs WHERE run_id = :r", r=result.run_id) == 0
    assert pipeline.emulator.stats()["total_requests"] == 0


def _day_column(table: str) -> str:
    return "pull_date" if table == "spotify_raw_responses" else "snapshot_date"


def test_a_second_run_the_same_day_keeps_when_spotify_answered(pipeline):
    assert pipeline.materialize().success
    first = pipeline.rows("SELECT request_key, fetched_at FROM spotify_raw_responses WHERE pull_date = :d ORDER BY 1",
                          d=TODAY)
    read_at = pipeline.rows("SELECT track_id, popularity_read_at FROM spotify_tracks ORDER BY 1")
    pipeline.emulator.reset()
    assert pipeline.materialize().success  # served from the cache
    assert pipeline.emulator.stats()["total_requests"] == 0
    assert pipeline.rows("SELECT request_key, fetched_at FROM spotify_raw_responses WHERE pull_date = :d ORDER BY 1",
                         d=TODAY) == first
    assert pipeline.rows("SELECT track_id, popularity_read_at FROM spotify_tracks ORDER BY 1") == read_at
    captured = pipeline.rows("SELECT DISTINCT captured_at FROM spotify_popularity_snapshots WHERE snapshot_date = :d",
                             d=TODAY)
    assert {row[0] for row in captured} <= {row[1] for row in first}  # popularity read when the object was sent


def test_derived_assets_rebuild_a_captured_day_offline(pipeline):
    assert pipeline.materialize().success
    yesterday = (utc_today() - dt.timedelta(days=1)).isoformat()
    with pipeline.engine.begin() as conn:  # a day captured earlier: its raw pull and snapshot are stored
        earlier = [
            {"request_key": key, "status": status, "body": None if body is None else {**body, "name": "Old name"},
             "fetched_at": as_utc(fetched_at) - dt.timedelta(days=1)}
            for key, status, fetched_at, body in raw_partition(conn, utc_today(), "tracks")
        ]
        land_raw_partition(conn, dt.date.fromisoformat(yesterday), "tracks", earlier)
        conn.execute(sa.text("INSERT INTO spotify_popularity_snapshots (snapshot_date, track_id, popularity, captured_at) "
                             "SELECT :y, track_id, popularity, captured_at FROM spotify_popularity_snapshots "
                             "WHERE snapshot_date = :d"), {"y": yesterday, "d": TODAY})
    pipeline.emulator.reset()
    job = dg.define_asset_job("derived", selection=[spotify_catalog, spotify_popularity_movers])
    defs = dg.Definitions(assets=[spotify_catalog, spotify_popularity_movers], jobs=[job],
                          resources=pipeline.resources())
    result = defs.resolve_job_def("derived").execute_in_process(
        tags={"dagster/asset_partition_range_start": yesterday, "dagster/asset_partition_range_end": TODAY}
    )
    assert result.success
    assert pipeline.emulator.stats()["total_requests"] == 0  # offline: only what was captured
    tracks = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "spotify_tracks"]
    assert {e.partition for e in tracks} == {yesterday, TODAY}  # one materialization per captured day
    assert tracks[0].materialization.metadata["pull_dates"].value == f"{yesterday}, {TODAY}"
    assert _checks(result)["catalog_covers_raw_pull"].passed
    # Rebuilding the older day alone rolls nothing back to its reads: the newest read of a track wins.
    assert pipeline.materialize([spotify_catalog], partition_key=yesterday).success
    assert pipeline.scalar("SELECT count(*) FROM spotify_tracks WHERE name = 'Old name'") == 0
    assert pipeline.emulator.stats()["total_requests"] == 0

    never_captured = (utc_today() - dt.timedelta(days=3)).isoformat()
    refused = pipeline.materialize([spotify_catalog], partition_key=never_captured)
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
    assert f"nothing was captured on {never_captured}" in failure.event_specific_data.error.message


def test_a_miss_is_not_searched_again_until_the_retry_delay_passes(pipeline):
    assert pipeline.materialize([spotify_track_matches]).success
    misses = pipeline.scalar("SELECT count(*) FROM songs WHERE id NOT IN (SELECT song_id FROM spotify_track_matches)")
    assert misses == 150
    again = pipeline.materialize([spotify_track_matches])
    assert _metadata(again, "spotify_track_matches")["songs_attempted"] == 0
    with pipeline.engine.begin() as conn:
        conn.execute(sa.text("UPDATE spotify_match_attempts SET attempted_at = '2000-01-01 00:00:00'"))
    later = pipeline.materialize([spotify_track_matches])
    assert _metadata(later, "spotify_track_matches")["songs_attempted"] == misses


def test_an_override_always_wins(pipeline):
    assert pipeline.materialize().success
    matched, other = pipeline.rows("SELECT song_id, track_id FROM spotify_track_matches ORDER BY song_id LIMIT 2")
    unmatched = pipeline.scalar("SELECT min(id) FROM songs WHERE id NOT IN (SELECT song_id FROM spotify_track_matches)")
    with pipeline.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO spotify_match_overrides (song_id, track_id, note) VALUES (:a, NULL, 'not on Spotify'), "
                    "(:b, :t, 'manual')"),
            {"a": matched[0], "b": unmatched, "t": other[1]},
        )
    assert pipeline.materialize().success
    assert pipeline.rows("SELECT spotify_track_id, enrichment_status FROM songs_search WHERE song_id = :s",
                         s=matched[0]) == [(None, "unmatched")]
    assert pipeline.rows("SELECT spotify_track_id, match_method FROM songs_search WHERE song_id = :s",
                         s=unmatched) == [(other[1], "override")]


def test_movers_rank_risers_and_fallers_against_the_previous_and_week_old_snapshots():
    day = dt.date(2026, 3, 10)
    frame = pd.DataFrame(
        [
            (day - dt.timedelta(days=7), "a", 50), (day - dt.timedelta(days=1), "a", 52), (day, "a", 60),
            (day - dt.timedelta(days=1), "b", 40), (day, "b", 31),
            (day - dt.timedelta(days=3), "c", 10), (day, "c", 12),
            (day - dt.timedelta(days=1), "d", 70), (day, "d", 70),  # unchanged: not a mover
            (day, "e", 20),  # first snapshot: nothing to compare
        ],
        columns=["snapshot_date", "track_id", "popularity"],
    )
    movers = compute_movers(frame, day).set_index("track_id")
    assert set(movers.index) == {"a", "b", "c"}
    assert movers.loc["a", ["change_vs_previous", "change_vs_week_ago", "direction", "rank"]].tolist() == [8, 10, "riser", 1]
    assert movers.loc["c", ["previous_popularity", "change_vs_previous", "rank"]].tolist() == [10, 2, 2]
    assert pd.isna(movers.loc["c", "change_vs_week_ago"])
    assert movers.loc["b", ["change_vs_previous", "direction", "rank"]].tolist() == [-9, "faller", 1]
    assert compute_movers(frame, day - dt.timedelta(days=7)).empty  # the first day has nothing before it


def test_movers_asset_writes_the_table_and_a_markdown_summary(pipeline):
    assert pipeline.materialize().success
    yesterday = utc_today() - dt.timedelta(days=1)
    with pipeline.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO spotify_popularity_snapshots (snapshot_date, track_id, popularity) "
                    "SELECT :y, track_id, CASE WHEN popularity >= 50 THEN popularity - 5 ELSE popularity + 5 END "
                    "FROM spotify_popularity_snapshots WHERE snapshot_date = :d"),
            {"y": yesterday.isoformat(), "d": TODAY},
        )
    result = pipeline.materialize([spotify_popularity_movers])
    metadata = _metadata(result, "spotify_popularity_movers")
    assert metadata["movers"] == MATCHED_IN_SAMPLE == metadata["risers"] + metadata["fallers"]
    assert metadata["top_movers"].count("\n| ▲") == 10 and "| ▼ 1 |" in metadata["top_movers"]
    assert pipeline.scalar("SELECT count(*) FROM spotify_popularity_movers WHERE snapshot_date = :d", d=TODAY) == (
        MATCHED_IN_SAMPLE
    )


def test_the_schedule_runs_todays_partition_at_0600_utc():
    tick = dt.datetime.combine(utc_today(), dt.time(6, 0), tzinfo=dt.timezone.utc)
    defs = build_definitions()
    schedule = defs.resolve_schedule_def(spotify_daily_refresh_schedule.name)
    context = dg.build_schedule_context(scheduled_execution_time=tick)
    [request] = list(schedule.evaluate_tick(context).run_requests)
    assert request.partition_key == TODAY
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.execution_timezone in (None, "UTC")


def test_definitions_load_with_the_job_schedule_pool_and_checks():
    defs = build_definitions()
    job = defs.resolve_job_def("spotify_daily_refresh")
    assert job.partitions_def is not None
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"spotify_track_matches", "raw_spotify_tracks", "spotify_tracks", "spotify_artists", "spotify_albums",
            "spotify_popularity_snapshots", "songs_enriched", "songs_search", "spotify_popularity_movers"} <= keys
    spotify_callers = {"spotify_refresh_plan", "spotify_track_matches", "raw_spotify_tracks",
                       "spotify_popularity_snapshots"}
    for key in spotify_callers:
        assert graph.get(dg.AssetKey(key)).pools == {"spotify_api"}
    # On-demand enrichment must not wait for a daily run that holds "spotify_api" for hours.
    assert graph.get(dg.AssetKey("spotify_on_demand_enrichment")).pools == {"spotify_on_demand"}
    assert {c.name for c in graph.asset_check_keys} >= {
        "match_rate_above_floor", "raw_covers_planned_tracks", "raw_partition_fresh", "catalog_covers_raw_pull",
        "snapshot_covers_planned_tracks", "popularity_available", "songs_agree_with_matches",
    }
    blocking = {key.name for key in graph.asset_check_keys if graph.get_check_spec(key).blocking}
    assert blocking == {"raw_covers_planned_tracks", "catalog_covers_raw_pull", "snapshot_covers_planned_tracks",
                        "songs_agree_with_matches"}
    job_assets = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert {"spotify_refresh_plan", "spotify_refresh_backlog"} <= job_assets
    assert graph.get(dg.AssetKey("songs_enriched")).freshness_policy is not None
    assert defs.resolve_sensor_def("spotify_enrichment_requests").job_name == "spotify_on_demand_refresh"


def test_dagster_definitions_validate_passes(tmp_path):
    env = {**os.environ, "SPOTIFY_CLIENT_ID": "validate-only", "SPOTIFY_CLIENT_SECRET": "validate-only",
           "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True, text=True, env=env, timeout=180,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_a_run_that_cannot_see_popularity_keeps_todays_snapshot(pipeline):
    assert pipeline.materialize().success
    count = "SELECT count(*) FROM spotify_popularity_snapshots WHERE snapshot_date = :d"
    assert pipeline.scalar(count, d=TODAY) == MATCHED_IN_SAMPLE
    # Later the same day the app is (believed to be) in Development Mode: nothing to capture, nothing to delete.
    result = pipeline.materialize([spotify_popularity_snapshots], app_mode="development")
    assert result.success
    assert _metadata(result, "spotify_popularity_snapshots")["popularity_available"] is False
    assert pipeline.scalar(count, d=TODAY) == MATCHED_IN_SAMPLE
