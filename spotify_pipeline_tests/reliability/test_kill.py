"""`kill -9` of the process running the daily job, at random points of every phase, then a re-run.

Each trial starts the job in a subprocess (the production configuration, from the environment) on a fresh
warehouse and SIGKILLs it at a random moment: anywhere in the run, or shortly after a given step started
(so every writing step is hit, not only the long matching phase). A reader polls today's partitions from
its own connection the whole time. Then the job runs again, and the tables must equal a fault-free run of
the same partition: no row lost, none duplicated, and the reader never saw a partition half written.
"""

from __future__ import annotations

import contextlib
import random
import time

import pytest

from spotify_pipeline_tests.reliability.conftest import (
    NATURAL_KEYS,
    PartitionWatcher,
    build_pipeline,
    catalogue_subset,
    compare,
    duplicate_keys,
    fingerprint,
    partition_counts,
    runner_environment,
    start_runner,
)

pytestmark = pytest.mark.reliability

CATALOGUE_ROWS = 300
#: Where each trial kills: None = a uniformly random moment of the whole run; a step name = a random
#: moment shortly after that step started (its start is read from the run's event log as it happens).
KILL_POINTS = (None, "spotify_track_matches", "raw_spotify_tracks", "spotify_catalog", "spotify_popularity_snapshots")
STEP_WINDOW_S = 0.3
SEED = 20261128


def _wait_for_step(runner, step: str, timeout_s: float = 60.0) -> bool:
    """Block until the run logged the start of `step`; False if the run ended first."""
    marker = f"{step} - STEP_START"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker in runner.stderr.read_text(errors="replace"):
            return True
        if runner.process.poll() is not None:
            return False
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_at_random_points_then_rerun_leaves_identical_tables(
    backend, postgres_databases, references, emulator, tmp_path
):
    emulator.configure(window_limit=None)
    reference = references.get(backend, CATALOGUE_ROWS)
    full = reference.partitions
    assert min(full.values()) > 0
    rng = random.Random(f"{SEED}:{backend}")
    catalogue = catalogue_subset(tmp_path, CATALOGUE_ROWS)
    report = []
    with contextlib.ExitStack() as databases:
        for trial, point in enumerate(KILL_POINTS, start=1):
            if backend == "sqlite":
                database_url = f"sqlite:///{tmp_path / f'trial{trial}.db'}"
            else:  # a fresh database per trial, dropped when the test ends
                database_url = databases.enter_context(postgres_databases.database())
            cache = tmp_path / f"trial{trial}_cache.db"
            built = build_pipeline(database_url, emulator, cache, catalogue)
            try:
                with PartitionWatcher(database_url) as watcher:
                    runner = start_runner(runner_environment(database_url, emulator, cache), tmp_path, f"trial{trial}")
                    runner.wait_ready()
                    if point is None:
                        delay = rng.uniform(0.2, reference.seconds * 1.5)
                        time.sleep(delay)
                    else:
                        assert _wait_for_step(runner, point), f"trial {trial}: the run never reached {point}"
                        delay = rng.uniform(0.0, STEP_WINDOW_S)
                        time.sleep(delay)
                    killed_mid_run = runner.kill()
                    assert runner.process.returncode == -9
                    at_kill = partition_counts(built.engine)
                    rerun = built.materialize()
                    assert rerun.success, f"trial {trial}: the re-run after kill -9 failed"
                lost_or_added = compare(fingerprint(built.engine), reference.fingerprint)
                duplicates = duplicate_keys(built.engine)
                partial = watcher.partial(full)
                report.append(
                    f"trial {trial} ({point or 'anywhere'} +{delay:.2f}s, mid-run={killed_mid_run}): at kill {at_kill}, "
                    f"reader polls {watcher.polls}, partial {partial}, differences {lost_or_added}"
                )
                assert killed_mid_run, f"trial {trial}: the run had already finished when it was killed"
                assert watcher.polls > 0
                assert partial == {}, f"trial {trial}: a reader saw a partition half written: {partial}"
                assert duplicates == dict.fromkeys(NATURAL_KEYS, 0), f"trial {trial}: duplicate rows {duplicates}"
                assert lost_or_added == {}, f"trial {trial}: the tables differ from a fault-free run: {lost_or_added}"
                assert partition_counts(built.engine) == full
            finally:
                built.engine.dispose()
    print("\n".join(report))
