"""`kill -9` of the process running the daily job, at random points of every phase, then a re-run.

Each trial starts the job in a subprocess (the production configuration, from the environment) on a fresh
warehouse and SIGKILLs it at a random moment: anywhere in the run, or shortly after a given step started
(so every writing step is hit, not only the long matching phase). A reader polls today's partitions from
its own connection the whole time. Then the job runs again, and the tables must equal a fault-free run of
the same partition: no row lost, none duplicated on a natural key, and the reader never saw a partition half
written.

The kill points are random; set RELIABILITY_SEED to replay a run's (it is printed with the results).
"""

from __future__ import annotations

import contextlib
import os
import random
import time

import pytest

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
#: Where each trial kills: None = a random moment of the whole run; a step name = a random moment within
#: STEP_WINDOW_S after that step started (read from the run's event log as it happens).
KILL_POINTS = (None, "spotify_track_matches", "raw_spotify_tracks", "spotify_catalog", "spotify_popularity_snapshots")
STEP_WINDOW_S = 0.3
#: A run that ended before its kill is tried again on a fresh warehouse, with a shorter delay.
ATTEMPTS_PER_TRIAL = 4
SEED = int(os.environ.get("RELIABILITY_SEED") or random.randrange(1 << 30))


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
    report = [f"RELIABILITY_SEED={SEED} ({backend})"]
    with contextlib.ExitStack() as databases:

        def fresh_warehouse(name: str):
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path / f'{name}.db'}"
            else:  # a database of its own, dropped when the test ends
                url = databases.enter_context(postgres_databases.database())
            cache = tmp_path / f"{name}_cache.db"
            return url, cache, build_pipeline(url, emulator, cache, catalogue)

        for trial, point in enumerate(KILL_POINTS, start=1):
            scale = 1.0
            for attempt in range(1, ATTEMPTS_PER_TRIAL + 1):
                database_url, cache, built = fresh_warehouse(f"trial{trial}_{attempt}")
                runner = None
                try:
                    with PartitionWatcher(database_url) as watcher:
                        runner = start_runner(runner_environment(database_url, emulator, cache), tmp_path,
                                              f"trial{trial}_{attempt}")
                        runner.wait_ready()
                        if point is None:  # anywhere: a run that ends first is tried again, killed sooner
                            delay = rng.uniform(0.05, 2.5 * reference.seconds) * scale
                        else:
                            assert runner.wait_for_step(point), f"trial {trial}: the run never reached {point}"
                            delay = rng.uniform(0.0, STEP_WINDOW_S) * scale
                        time.sleep(delay)
                        killed_mid_run = runner.kill()
                        # Killed, or (too late) finished on its own: anything else is a run that failed.
                        assert runner.process.returncode == (-9 if killed_mid_run else 0), runner.logs()[-3000:]
                        at_kill = partition_counts(built.engine)
                        at_kill["matches"] = built.scalar("SELECT count(*) FROM spotify_track_matches")
                        rerun_started = time.monotonic()
                        rerun = built.materialize()
                        rerun_seconds = time.monotonic() - rerun_started
                        assert rerun.success, f"trial {trial}: the re-run after kill -9 failed"
                    lost_or_added = compare(fingerprint(built.engine), reference.fingerprint)
                    duplicates = natural_key_duplicates(built.engine)
                    partial = watcher.partial(full)
                    report.append(
                        f"trial {trial} ({point or 'anywhere'} +{delay:.2f}s, attempt {attempt}, "
                        f"mid-run={killed_mid_run}): at kill {at_kill}, re-run {rerun_seconds:.1f}s, "
                        f"reader polls {watcher.polls}, partial {partial}, differences {lost_or_added}"
                    )
                    context = f"trial {trial} (RELIABILITY_SEED={SEED})"
                    assert watcher.polls > 0
                    assert partial == {}, f"{context}: a reader saw a partition half written: {partial}"
                    assert duplicates == NO_DUPLICATES, f"{context}: duplicate rows {duplicates}"
                    assert lost_or_added == {}, f"{context}: the tables differ from a fault-free run: {lost_or_added}"
                    assert partition_counts(built.engine) == full
                finally:
                    if runner is not None and runner.process.poll() is None:  # a trial that failed early
                        runner.kill()
                    built.engine.dispose()
                if killed_mid_run:
                    break
                scale /= 3
            assert killed_mid_run, f"trial {trial}: the run always finished before it could be killed"
    print("\n".join(report))
