"""The production profile: the same job, multiprocess, on a PostgreSQL-backed Dagster instance (the
repository's dagster.yaml), PostgreSQL warehouse and Redis backends, ends with the same rows as the
local profile (in-process, SQLite, in-process backends)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline_tests.defs import production_job
from spotify_pipeline_tests.defs.conftest import assert_usage_matches_spotify, make_pipeline, table_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[2]
RATE_PER_MINUTE = 6_000


@pytest.mark.slow
def test_multiprocess_postgres_redis_run_matches_the_local_profile(
    sqlite_url, postgres_url, postgres_databases, redis_url, redis_prefix, emulator_factory, tmp_path, monkeypatch
):
    # The emulator enforces the same budget the shared limiter is given: any overshoot would be a 429.
    emulator = emulator_factory(window_limit=RATE_PER_MINUTE // 2, window_seconds=30)
    local = make_pipeline(sqlite_url, emulator, tmp_path / "local-cache.db")
    assert local.materialize(rate_limit_per_minute=RATE_PER_MINUTE).success
    expected = table_fingerprint(local.engine)
    local.engine.dispose()
    emulator.reset()

    production = make_pipeline(postgres_url, emulator, tmp_path / "unused")
    with postgres_databases.database() as dagster_storage_url:
        storage = make_url(dagster_storage_url)
        dagster_home = tmp_path / "dagster_home"
        dagster_home.mkdir()
        shutil.copy(REPO_ROOT / "deploy" / "production" / "dagster.yaml", dagster_home / "dagster.yaml")
        for name, value in {
            "DAGSTER_PG_HOST": storage.host, "DAGSTER_PG_PORT": str(storage.port or 5432),
            "DAGSTER_PG_USER": storage.username or "postgres", "DAGSTER_PG_PASSWORD": storage.password or "",
            "DAGSTER_PG_DB": storage.database,
            "DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": redis_prefix,
            "SPOTIFY_CLIENT_ID": emulator.client_id, "SPOTIFY_CLIENT_SECRET": emulator.client_secret,
            "SPOTIFY_API_BASE_URL": emulator.api_base_url, "SPOTIFY_ACCOUNTS_BASE_URL": emulator.accounts_base_url,
            "SPOTIFY_RATE_LIMIT_PER_MINUTE": str(RATE_PER_MINUTE),
        }.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            result = dg.execute_job(
                dg.reconstructable(production_job.daily_job),
                instance=instance,
                tags={"dagster/partition": utc_today().isoformat()},
                run_config={"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}},
            )
            assert result.success
            step_pids = {
                e.dagster_event.pid for e in instance.all_logs(result.run_id)
                if e.dagster_event and e.dagster_event.is_step_start
            }
    assert len(step_pids) > 1  # steps really ran in separate processes
    assert table_fingerprint(production.engine) == expected
    assert emulator.stats()["by_status"].get("429", 0) == 0
    # every step's requests are recorded, and they add up to what Spotify saw
    assert_usage_matches_spotify(production.engine, result.run_id, emulator.stats())
    production.engine.dispose()
