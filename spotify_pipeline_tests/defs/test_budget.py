"""A request budget per run (issue 15): the daily job plans its requests, spends at most its budget, ends
successfully with what it did, and the next run continues where it stopped. The emulator's own counters are
the truth the budget, `spotify_api_usage` and the metadata must agree with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from spotify_pipeline.definitions import build_definitions
from spotify_pipeline.defs.jobs import DAILY_ASSETS
from spotify_pipeline.defs.on_demand.sensors import on_demand_run_config
from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline_tests.defs import production_job
from spotify_pipeline_tests.defs.conftest import (
    MULTIPROCESS,
    assert_usage_matches_spotify,
    make_pipeline,
    production_env,
)

BUDGET = 300
TOKEN = "/api/token"


def _web_api_requests(stats: dict[str, Any]) -> int:
    """What the emulator answered on the Web API: every request but the token endpoint's."""
    return stats["total_requests"] - stats["by_endpoint"].get(TOKEN, 0)


def _metadata(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict[str, Any]:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = record.dagster_event.event_specific_data.materialization
        if materialization.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized in run {run_id}")


def _in_process_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["extended", "development"])
def test_two_daily_runs_on_a_budget_of_300_each_stay_within_it_and_the_second_matches_more(
    mode, sqlite_url, emulator_factory, tmp_path, monkeypatch
):
    emulator = emulator_factory(mode=mode, window_limit=None)
    pipeline = make_pipeline(sqlite_url, emulator, tmp_path / "cache.db")
    production_env(
        monkeypatch, sqlite_url, emulator, tmp_path / "cache.db", SPOTIFY_RUN_REQUEST_BUDGET=str(BUDGET)
    )
    matched, backlog = [], []
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        for _ in range(2):  # two consecutive daily runs, both for today (capture assets only capture today)
            emulator.reset()
            result = dg.execute_job(
                dg.reconstructable(production_job.daily_job),
                instance=instance,
                tags={"dagster/partition": utc_today().isoformat()},
                run_config=MULTIPROCESS,
            )
            assert result.success  # a run that spends its budget ends successfully
            stats = emulator.stats()
            spent = _web_api_requests(stats)
            assert 0 < spent <= BUDGET, stats["by_endpoint"]
            assert stats["by_endpoint"].get(TOKEN, 0) <= 1  # the token aside
            assert_usage_matches_spotify(pipeline.engine, result.run_id, stats)  # every step recorded exactly
            report = _metadata(instance, result.run_id, "spotify_refresh_backlog")
            assert report["budget"] == BUDGET and report["requests_spent"] == spent
            assert _metadata(instance, result.run_id, "spotify_refresh_plan")["planned_requests"] <= BUDGET
            matched.append(pipeline.scalar("SELECT count(*) FROM spotify_track_matches"))
            backlog.append(report)
            assert pipeline.rows(
                "SELECT requests_spent, eta_days > 0 FROM spotify_refresh_runs WHERE run_id = :r", r=result.run_id
            ) == [(spent, True)]
    assert 0 < matched[0] < matched[1]
    assert backlog[1]["backlog_unmatched"] < backlog[0]["backlog_unmatched"]
    assert backlog[1]["backlog_requests"] < backlog[0]["backlog_requests"]
    assert backlog[1]["eta_days"] < backlog[0]["eta_days"]
    # What the runs matched was read: the catalogue and the songs hold them (in Development Mode, as many as
    # the budget reached; the rest are stale metadata the next run reads first).
    enriched = pipeline.scalar("SELECT count(*) FROM songs WHERE spotify_track_id IS NOT NULL")
    assert 0 < enriched <= matched[1]
    if mode == "extended":
        assert enriched == matched[1] and backlog[1]["backlog_stale_metadata"] == 0
    else:
        assert backlog[1]["backlog_stale_metadata"] == matched[1] - enriched
    pipeline.engine.dispose()


def test_the_default_budget_fits_the_sample_and_reports_an_empty_backlog(pipeline):
    result = pipeline.materialize()
    assert result.success
    plan = _in_process_metadata(result, "spotify_refresh_plan")
    report = _in_process_metadata(result, "spotify_refresh_backlog")
    assert plan["budget"] == report["budget"] == 129_600  # 100 a minute for a day, less the on-demand tenth
    assert report["requests_spent"] == pipeline.emulator.stats()["total_requests"] - 1  # all but the token
    matched = pipeline.scalar("SELECT count(*) FROM spotify_track_matches")
    assert plan["planned_unmatched"] == 1000
    assert (report["backlog_unmatched"], report["backlog_stale_metadata"], report["backlog_popularity"]) == (0, 0, 0)
    assert report["eta_days"] == 0.0 and matched > 0


def test_the_budget_is_shared_between_kinds_so_stale_tracks_are_refreshed_while_songs_wait(
    sqlite_url, emulator_factory, tmp_path
):
    emulator = emulator_factory(mode="development", window_limit=None)
    pipeline = make_pipeline(sqlite_url, emulator, tmp_path / "cache.db")
    assert pipeline.materialize().success  # everything matched and read
    with pipeline.engine.begin() as conn:  # as if two days later: every track is stale, and new songs arrived
        conn.exec_driver_sql("UPDATE spotify_tracks SET fetched_at = datetime(fetched_at, '-2 days')")
        conn.exec_driver_sql("UPDATE spotify_raw_responses SET pull_date = date(pull_date, '-2 days'), "
                             "fetched_at = datetime(fetched_at, '-2 days')")
        new_songs = "SELECT track_id FROM spotify_track_matches WHERE song_id > 600"
        conn.exec_driver_sql(f"DELETE FROM spotify_track_artists WHERE track_id IN ({new_songs})")
        conn.exec_driver_sql(f"DELETE FROM spotify_tracks WHERE track_id IN ({new_songs})")
        conn.exec_driver_sql("DELETE FROM spotify_match_attempts WHERE song_id > 600")
        conn.exec_driver_sql("DELETE FROM spotify_track_matches WHERE song_id > 600")
    pipeline.cache_path.unlink()  # the cache's entries expired with the track TTL
    emulator.reset()
    result = pipeline.materialize(run_request_budget=100)
    assert result.success
    plan = _in_process_metadata(result, "spotify_refresh_plan")
    assert plan["planned_unmatched"] > 0 and plan["planned_stale_metadata"] >= 10  # a tenth of the budget at least
    raw = _in_process_metadata(result, "raw_spotify_tracks")
    assert raw["tracks_newly_matched"] > raw["tracks_landed"] - plan["planned_stale_metadata"]  # not all fit
    # The planned stale tracks have their share: new matches read with what is left never crowd them out.
    assert pipeline.scalar(
        "SELECT count(*) FROM spotify_refresh_plan_items AS i JOIN spotify_raw_responses AS r "
        "ON r.request_key = i.track_id AND r.pull_date = :d WHERE i.run_id = :run AND i.kind = 'stale_metadata'",
        d=utc_today().isoformat(), run=result.run_id,
    ) == plan["planned_stale_metadata"]
    assert _web_api_requests(emulator.stats()) <= 100
    report = _in_process_metadata(result, "spotify_refresh_backlog")
    assert report["backlog_unmatched"] > 0 and report["backlog_stale_metadata"] > 0  # left for the next runs
    blocking = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.blocking}
    assert blocking == dict.fromkeys(
        ["raw_covers_planned_tracks", "catalog_covers_raw_pull", "snapshot_covers_planned_tracks",
         "songs_agree_with_matches"], True
    )


def test_songs_asked_for_on_demand_wait_for_the_daily_run_when_the_budget_runs_out(pipeline):
    wanted = list(range(1, 21))
    defs = build_definitions(resources=pipeline.resources(run_request_budget=5))
    on_demand = defs.resolve_job_def("spotify_on_demand_refresh").execute_in_process(
        run_config=on_demand_run_config(wanted)
    )
    assert on_demand.success  # out of budget is no failure
    metadata = _in_process_metadata(on_demand, "spotify_on_demand_enrichment")
    assert metadata["budget_exhausted"] is True and metadata["songs_deferred"] > 0
    assert _web_api_requests(pipeline.emulator.stats()) <= 5
    waiting = pipeline.rows("SELECT song_id FROM spotify_requested_songs ORDER BY song_id")
    assert 0 < len(waiting) < len(wanted)

    result = pipeline.materialize(DAILY_ASSETS, run_request_budget=60)
    assert result.success
    plan = _in_process_metadata(result, "spotify_refresh_plan")
    assert plan["planned_on_demand"] == len(waiting)  # first in line
    first = pipeline.rows(
        "SELECT song_id FROM spotify_refresh_plan_items WHERE kind = 'on_demand' ORDER BY position"
    )
    assert sorted(first) == waiting
    assert pipeline.scalar("SELECT count(*) FROM spotify_requested_songs") == 0  # served, and forgotten
    tried = pipeline.scalar(
        "SELECT count(DISTINCT song_id) FROM spotify_match_attempts WHERE song_id <= 20"
    )
    assert tried == len(wanted)


def test_a_run_with_nothing_due_costs_nothing_and_keeps_the_days_captures(pipeline):
    assert pipeline.materialize().success
    captured = pipeline.scalar("SELECT count(*) FROM spotify_popularity_snapshots")
    pipeline.emulator.reset()
    again = pipeline.materialize(run_request_budget=1)
    assert again.success and pipeline.emulator.stats()["total_requests"] == 0
    assert _in_process_metadata(again, "spotify_refresh_plan")["planned_requests"] == 0
    assert pipeline.scalar("SELECT count(*) FROM spotify_popularity_snapshots") == captured


def test_a_second_capture_the_same_day_adds_to_the_days_partitions(pipeline, tmp_path: Path):
    assert pipeline.materialize(run_request_budget=50).success  # extended: matching takes all but a little
    raw = pipeline.scalar("SELECT count(*) FROM spotify_raw_responses WHERE pull_date = :d", d=utc_today().isoformat())
    snapshots = pipeline.scalar("SELECT count(*) FROM spotify_popularity_snapshots")
    assert pipeline.materialize(run_request_budget=50).success
    assert pipeline.scalar(
        "SELECT count(*) FROM spotify_raw_responses WHERE pull_date = :d", d=utc_today().isoformat()
    ) > raw
    assert pipeline.scalar("SELECT count(*) FROM spotify_popularity_snapshots") > snapshots
