"""What the daily job costs Spotify, run the way production runs it: Dagster's multiprocess executor, the job
loaded from the code location with settings from the environment, a fresh warehouse, both app modes. The
emulator's own counters are the truth that `spotify_api_usage` must add up to."""

from __future__ import annotations

import dagster as dg
import pytest

from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline_tests.defs import production_job
from spotify_pipeline_tests.defs.conftest import (
    MULTIPROCESS,
    assert_usage_matches_spotify,
    make_pipeline,
    production_env,
)

MATCHED_IN_SAMPLE = 850


def run_daily_job(instance: dg.DagsterInstance) -> dg.ExecutionResult:
    """The daily job for today with the multiprocess executor: each step in its own process."""
    result = dg.execute_job(
        dg.reconstructable(production_job.daily_job),
        instance=instance,
        tags={"dagster/partition": utc_today().isoformat()},
        run_config=MULTIPROCESS,
    )
    assert result.success
    step_pids = {e.dagster_event.pid for e in instance.all_logs(result.run_id) if e.dagster_event and e.dagster_event.is_step_start}
    assert len(step_pids) > 1  # the steps really ran in separate processes
    return result


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["extended", "development"])
def test_multiprocess_cold_run_costs_the_minimum_and_a_warm_rerun_costs_nothing(
    mode, sqlite_url, emulator_factory, tmp_path, monkeypatch
):
    emulator = emulator_factory(mode=mode, window_limit=None)
    pipeline = make_pipeline(sqlite_url, emulator, tmp_path / "cache.db")
    production_env(monkeypatch, sqlite_url, emulator, tmp_path / "cache.db")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cold = run_daily_job(instance)
        stats = emulator.stats()
        assert_usage_matches_spotify(pipeline.engine, cold.run_id, stats)
        track_calls = stats["by_endpoint"].get("/v1/tracks/{id}", 0) + stats["by_endpoint"].get("/v1/tracks", 0)
        if mode == "development":
            # one single-track call per matched track (raw pull and popularity capture share it) + the mode probe
            assert track_calls <= MATCHED_IN_SAMPLE + 1, stats["by_endpoint"]
        else:
            assert track_calls <= -(-MATCHED_IN_SAMPLE // 50) + 1, stats["by_endpoint"]
        assert stats["by_endpoint"].get("/api/token", 0) == 1  # one app token, shared by every step process

        emulator.reset()
        warm = run_daily_job(instance)
        assert emulator.stats()["total_requests"] <= 1
        assert_usage_matches_spotify(pipeline.engine, warm.run_id, emulator.stats())
    pipeline.engine.dispose()
