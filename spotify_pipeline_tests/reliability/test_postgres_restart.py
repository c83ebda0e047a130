"""PostgreSQL restarted in the middle of a run: the run fails with an error naming the database (or rides
the outage out), nothing half written stays behind, and the re-run ends identical to a fault-free run."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from spotify_pipeline_tests import servers
from spotify_pipeline_tests.reliability.conftest import (
    NO_DUPLICATES,
    PartitionWatcher,
    build_pipeline,
    catalogue_subset,
    compare,
    fingerprint,
    natural_key_duplicates,
    partition_counts,
    runner_environment,
    start_runner,
)

pytestmark = pytest.mark.reliability

CATALOGUE_ROWS = 300
DOWN_FOR_S = 1.5


class RestartablePostgres:
    """A throwaway PostgreSQL cluster (see `servers.start_throwaway_postgres`) that can be stopped and
    started again on the same port and data directory."""

    def __init__(self) -> None:
        self.server = servers.start_throwaway_postgres()
        assert self.server.stop_command is not None
        *self._run_as, self._pg_ctl, _, self._data = self.server.stop_command[:-3]
        self.port = make_url(self.server.url).port

    def stop(self) -> None:
        subprocess.run([*self._run_as, self._pg_ctl, "-D", self._data, "-m", "immediate", "stop"], check=True,
                       capture_output=True)

    def start(self) -> None:
        directory = self.server.directory
        subprocess.run(
            [*self._run_as, self._pg_ctl, "-D", self._data, "-w", "-l", os.path.join(directory, "log"),
             "-o", f"-p {self.port} -k {directory} -c listen_addresses=127.0.0.1", "start"],
            check=True, capture_output=True,
        )

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def restartable_postgres() -> Iterator[RestartablePostgres]:
    try:
        server = RestartablePostgres()
    except servers.ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.close()


def test_postgres_restart_mid_run_then_rerun_leaves_identical_tables(
    restartable_postgres, references, emulator, tmp_path
):
    emulator.configure(window_limit=None)
    reference = references.get("postgres", CATALOGUE_ROWS)
    databases = servers.PostgresDatabases(restartable_postgres.server.url)
    with databases.database() as database_url:
        built = build_pipeline(database_url, emulator, tmp_path / "cache.db", catalogue_subset(tmp_path, CATALOGUE_ROWS))
        runner = None
        try:
            with PartitionWatcher(database_url, interval_s=0.02) as watcher:
                runner = start_runner(runner_environment(database_url, emulator, tmp_path / "cache.db"), tmp_path, "run")
                runner.wait_ready()
                assert runner.wait_for_step("spotify_track_matches")
                time.sleep(random.uniform(0.1, 0.4))  # into the matching phase, which saves every 100 songs
                assert runner.process.poll() is None, "the run finished before the restart"
                restartable_postgres.stop()
                time.sleep(DOWN_FOR_S)
                restartable_postgres.start()
                outcome = runner.finish()
                print(f"run through the restart: {outcome}")
                if not outcome["success"]:
                    message = " ".join(outcome["errors"])
                    # The error says what failed: the database server went away ("connection to server at
                    # 127.0.0.1, port N failed", "server closed the connection", "terminating connection due to
                    # immediate shutdown").
                    assert "psycopg2" in message and "OperationalError" in message, message
                    assert any(w in message.lower() for w in ("connection", "shutdown")), message
                rerun = built.materialize()
                assert rerun.success, "the re-run after the restart failed"
            assert watcher.partial(reference.partitions) == {}, watcher.seen
            assert natural_key_duplicates(built.engine) == NO_DUPLICATES
            assert compare(fingerprint(built.engine), reference.fingerprint) == {}
            assert partition_counts(built.engine) == reference.partitions
        finally:
            if runner is not None and runner.process.poll() is None:
                runner.kill()
            built.engine.dispose()
