"""On-demand enrichment end to end: `search --enrich` requests -> the sensor -> `spotify_on_demand_enrichment`,
against the emulator, with the real definitions and a real Dagster instance."""

import csv
import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from spotify_pipeline.definitions import build_definitions
from spotify_pipeline.defs.on_demand import sensors
from spotify_pipeline.defs.on_demand.sensors import RUN_KEY_TAG, spotify_enrichment_requests
from spotify_pipeline.enrichment_queue import WarehouseRequestQueue
from spotify_pipeline.warehouse.catalog import sample_catalog_path
from spotify_pipeline.warehouse.enrichment import db_timestamp, utc_now

DAILY_CAPTURES = ("raw_spotify_tracks", "spotify_popularity_snapshots", "spotify_tracks", "spotify_popularity_movers")


def _sample_rows(on_spotify: bool, count: int) -> list[int]:
    """Song ids (load order of the sample catalogue) whose label says they are, or are not, on Spotify."""
    labels = sample_catalog_path().with_name("sample_catalog_labels.csv")
    with labels.open(encoding="utf-8") as f:
        rows = [int(r["row"]) for r in csv.DictReader(f) if bool(r["spotify_track_id"]) == on_spotify]
    return rows[:count]


@pytest.fixture
def on_demand(pipeline, monkeypatch):
    """The sample catalogue, nothing enriched yet today, the sensor reading the warehouse queue."""
    monkeypatch.setenv("DATABASE_URL", pipeline.database_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    queue = WarehouseRequestQueue(pipeline.engine)
    with dg.instance_for_test() as instance:
        yield pipeline, queue, instance


def _tick(instance, cursor, defs):
    return spotify_enrichment_requests(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def test_requested_songs_are_enriched_without_touching_the_daily_partitions(on_demand, monkeypatch):
    pipeline, queue, instance = on_demand
    requested = _sample_rows(on_spotify=True, count=3)
    # One of them missed two hours ago: a user asking for it gets it tried again (the daily run waits 7 days).
    with pipeline.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO spotify_match_attempts (song_id, attempted_at, method, outcome, confidence, reason) "
                    "VALUES (:s, :t, 'search', 'no_candidates', 0, 'test: an earlier miss')"),
            {"s": requested[0], "t": db_timestamp(conn, utc_now() - dt.timedelta(hours=2))},
        )
    assert queue.enqueue(requested, reason="search") == 3
    defs = build_definitions(resources=pipeline.resources())

    real, failed = sensors.on_demand_run_config, []

    def fails_once(song_ids):
        if not failed:
            failed.append(True)
            raise RuntimeError("the tick broke after claiming")
        return real(song_ids)

    monkeypatch.setattr(sensors, "on_demand_run_config", fails_once)
    with pytest.raises(RuntimeError, match="broke after claiming"):
        _tick(instance, None, defs)
    assert queue.pending_count() == 3  # the failing tick lost nothing
    tick = _tick(instance, None, defs)
    [request] = tick.run_requests

    result = defs.resolve_job_def("spotify_on_demand_refresh").execute_in_process(
        run_config=request.run_config, instance=instance, tags={RUN_KEY_TAG: request.run_key}
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("spotify_on_demand_enrichment")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert (metadata["songs_requested"], metadata["songs_attempted"], metadata["songs_matched"]) == (3, 3, 3)
    assert pipeline.scalar(
        "SELECT count(*) FROM songs_search WHERE song_id IN (:a, :b, :c) AND enrichment_status = 'matched' "
        "AND spotify_url IS NOT NULL AND popularity IS NOT NULL",
        a=requested[0], b=requested[1], c=requested[2],
    ) == 3
    # No daily partition was materialized, and no capture table was written for the day.
    for asset in DAILY_CAPTURES:
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(), asset
    assert pipeline.scalar("SELECT count(*) FROM spotify_raw_responses") == 0
    assert pipeline.scalar("SELECT count(*) FROM spotify_popularity_snapshots") == 0

    after = _tick(instance, tick.cursor, defs)  # Dagster has the run: the requests are acknowledged
    assert after.run_requests == []
    assert queue.pending_count() == 0


def test_a_song_that_just_missed_is_not_searched_again_within_the_hour(on_demand):
    pipeline, queue, instance = on_demand
    [absent] = _sample_rows(on_spotify=False, count=1)
    defs = build_definitions(resources=pipeline.resources())
    job = defs.resolve_job_def("spotify_on_demand_refresh")
    config = sensors.on_demand_run_config([absent])
    first = job.execute_in_process(run_config=config, instance=instance)
    second = job.execute_in_process(run_config=config, instance=instance)
    attempted = [
        next(m for m in r.asset_materializations_for_node("spotify_on_demand_enrichment")).metadata["songs_attempted"].value
        for r in (first, second)
    ]
    assert attempted == [1, 0]
