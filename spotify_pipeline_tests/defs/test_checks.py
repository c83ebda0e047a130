"""Every asset check of the daily job can fail: each test plants the fault its check exists for and sees it
fail (and, for blocking checks, hold back what depends on it)."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import pytest

from spotify_pipeline.defs.catalog import assets as catalog_assets
from spotify_pipeline.defs.catalog.assets import raw_spotify_tracks, songs_enriched, spotify_catalog
from spotify_pipeline.defs.jobs import DAILY_ASSETS
from spotify_pipeline.defs.partitions import first_capture_date, utc_today
from spotify_pipeline.defs.popularity import assets as popularity_assets
from spotify_pipeline.defs.popularity.assets import spotify_popularity_movers, spotify_popularity_snapshots
from spotify_pipeline.settings import Settings
from spotify_pipeline.spotify.cache import track_key
from spotify_pipeline.spotify.sqlite_cache import SQLiteCache

TODAY = utc_today().isoformat()


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _ran(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


def test_every_check_passes_on_a_clean_run(pipeline):
    result = pipeline.materialize()
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_a_track_read_but_missing_from_the_pull_fails_and_holds_back_the_catalogue(pipeline, monkeypatch):
    real = catalog_assets.land_raw_partition

    def drops_one(conn, day, endpoint, responses, **kwargs):
        return real(conn, day, endpoint, list(responses)[1:], **kwargs)

    monkeypatch.setattr(catalog_assets, "land_raw_partition", drops_one)
    result = pipeline.materialize([*DAILY_ASSETS])
    check = _check(result, "raw_covers_planned_tracks")
    assert check.metadata["tracks_read"].value > 0
    assert not check.passed and check.metadata["landed"].value == check.metadata["tracks_read"].value - 1
    assert "spotify_catalog" not in _ran(result)  # blocking: nothing is normalized from a partial pull


def test_objects_older_than_the_track_ttl_make_the_pull_stale(pipeline):
    assert pipeline.materialize().success
    cache = SQLiteCache(str(pipeline.cache_path))
    with pipeline.engine.connect() as conn:
        track_ids = [r[0] for r in conn.exec_driver_sql("SELECT DISTINCT track_id FROM spotify_track_matches")]
    two_days = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    for track_id in track_ids:  # a cache that kept serving entries past their age
        key = track_key(track_id, None)
        entry = cache.get(key)
        cache.set(key, {**entry, "fetched_at": two_days.timestamp()}, Settings().spotify_track_ttl_s)
    with pipeline.engine.begin() as conn:  # ... when the catalogue's copy is two days old: due for a refresh
        conn.exec_driver_sql(f"UPDATE spotify_tracks SET fetched_at = '{two_days:%Y-%m-%d %H:%M:%S}'")
    result = pipeline.materialize([raw_spotify_tracks])
    check = _check(result, "raw_partition_fresh")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["oldest_object_age_hours"].value >= 47


def test_an_incomplete_snapshot_fails_and_holds_back_the_movers(pipeline, monkeypatch):
    real = popularity_assets.write_popularity_snapshot

    def keeps_half(conn, day, rows, **kwargs):
        return real(conn, day, rows[: len(rows) // 2], **kwargs)

    monkeypatch.setattr(popularity_assets, "write_popularity_snapshot", keeps_half)
    result = pipeline.materialize([*DAILY_ASSETS])
    check = _check(result, "snapshot_covers_planned_tracks")
    assert not check.passed and check.metadata["coverage"].value == pytest.approx(0.5, abs=0.01)
    assert "spotify_popularity_movers" not in _ran(result)
    # Computed anyway from that snapshot (a backfill of the movers alone), the movers say they are partial.
    movers = pipeline.materialize([spotify_popularity_movers])
    [event] = movers.get_asset_materialization_events()
    assert event.materialization.metadata["partial"].value is True


def test_songs_out_of_step_with_their_matches_fail(pipeline, monkeypatch):
    assert pipeline.materialize().success
    first, second = pipeline.rows("SELECT song_id, track_id FROM spotify_track_matches ORDER BY song_id LIMIT 2")
    with pipeline.engine.begin() as conn:  # a match moved to another track Spotify already sent us
        conn.exec_driver_sql(f"UPDATE spotify_track_matches SET track_id = '{second[1]}' WHERE song_id = {first[0]}")
    monkeypatch.setattr(catalog_assets, "enrich_songs", lambda conn, **kwargs: {"songs_enriched": 0, "songs_cleared": 0})
    result = pipeline.materialize([songs_enriched])
    check = _check(result, "songs_agree_with_matches")
    assert not check.passed and check.metadata["out_of_step"].value == 1
    assert check.metadata["song_id_sample"].value == str(first[0])


def test_a_catalogue_missing_a_track_of_the_pull_fails(pipeline, monkeypatch):
    assert pipeline.materialize().success
    monkeypatch.setattr(catalog_assets, "write_catalog", lambda conn, tracks: {"tracks": 0, "artists": 0, "albums": 0})
    with pipeline.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM spotify_track_artists")
        conn.exec_driver_sql("UPDATE songs SET spotify_track_id = NULL")
        conn.exec_driver_sql("DELETE FROM spotify_tracks WHERE track_id IN (SELECT track_id FROM spotify_tracks LIMIT 3)")
    result = pipeline.materialize([spotify_catalog])
    check = _check(result, "catalog_covers_raw_pull")
    assert not check.passed and check.metadata["raw_tracks"].value - check.metadata["in_catalog"].value == 3


def test_check_results_belong_to_the_partition_they_judge(pipeline):
    result = pipeline.materialize([*DAILY_ASSETS])
    by_name = {e.check_name: e for e in result.get_asset_check_evaluations()}
    for name in ("raw_covers_planned_tracks", "raw_partition_fresh", "catalog_covers_raw_pull",
                 "snapshot_covers_planned_tracks", "popularity_available"):
        assert by_name[name].partition == TODAY, name


def test_partitions_start_at_the_first_capture_day(monkeypatch):
    # The suite's conftest configures a deployment that first captured 30 days ago, before the import.
    configured = os.environ["SPOTIFY_FIRST_CAPTURE_DATE"]
    assert spotify_popularity_snapshots.partitions_def.get_first_partition_key() == configured
    monkeypatch.setenv("SPOTIFY_FIRST_CAPTURE_DATE", "2026-11-20")
    assert first_capture_date() == dt.date(2026, 11, 20)
    monkeypatch.delenv("SPOTIFY_FIRST_CAPTURE_DATE")
    assert first_capture_date() == utc_today()
