"""Pipeline: `spotify_daily_refresh` for N local songs against the emulator, its limits off.

The local catalogue is made from the emulator's own catalogue with the sample generator's functions
(`spotify_pipeline.emulator.sample`): one song per emulator track, 90 % as Spotify has them (ISRC
included, album sometimes empty), 10 % drifted the way hand-kept libraries drift (no ISRC, title, artist
and duration slightly off), so the matcher's ISRC path and its search path both run. The songs load
through `seed-catalog`'s loader (a CSV file) into a scratch PostgreSQL database; the Spotify client uses
Redis (scratch key prefix) for its cache and limiter, as in production, with a rate limit far above what
the run can reach; the emulator runs in its own process with its rolling window off.

The job runs in a fresh subprocess (`execute_in_process`, Dagster instance on a temporary directory with
SQLite storage, the local profile), so its peak memory is measured alone. Reported:

- ``wall_s``: wall time of `execute_in_process` (the run, start to finish);
- ``tracks_per_s``: distinct Spotify tracks snapshotted / ``wall_s``;
- ``peak_rss_mb``: peak resident memory of the run's process (``start_rss_mb``: before the run, after imports);
- ``dagster_overhead_share``: (``wall_s`` - ``asset_body_s``) / ``wall_s``, where ``asset_body_s`` sums, over
  the run's steps, the time from STEP_START to the step's ASSET_MATERIALIZATION event: the asset function
  runs between those two (the materialization is recorded as soon as it returns its MaterializeResult).
  Everything else (planning, resource set-up, launching steps, writing events, checks' bookkeeping) is
  Dagster's own time. ``tracks_per_s_asset_bodies`` is the rate the run would reach with none of it.

The run must really work: every song is matched or accounted for, and every matched track is pulled,
normalized and snapshotted (checked in the warehouse after the run).

Run ``python -m bench.pipeline [--songs N] [--quick]``; `run(quick, songs)` returns the dict.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import in_subprocess, peak_rss_mb, redis_url, scratch_database, scratch_redis_prefix

DEFAULT_SONGS = 10_000
QUICK_SONGS = 1_000
DRIFT_SHARE = 0.10
JOB_NAME = "spotify_daily_refresh"


def write_songs_csv(path: Path, songs: int, seed: int) -> dict[str, int]:
    """`songs` local songs, one per emulator track (catalogue of exactly `songs` tracks), as CSV."""
    from spotify_pipeline.emulator.catalog import Catalog
    from spotify_pipeline.emulator.sample import SAMPLE_HEADER, _drifted_song, _exact_song

    catalog = Catalog(seed, songs)
    rng = random.Random(f"{seed}:bench-pipeline")
    cases = {"exact_isrc": 0, "drift": 0}
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SAMPLE_HEADER)
        for track in catalog.tracks:
            drift = rng.random() < DRIFT_SHARE
            song = _drifted_song(catalog, track, rng) if drift else _exact_song(catalog, track, rng)
            cases[song.case] += 1
            writer.writerow([song.title, song.artist, song.album, song.duration_ms, song.isrc, song.release_year])
    return cases


def _quiet_logger():
    import logging

    import dagster as dg

    @dg.logger(description="Warnings and errors only: the benchmark prints its own summary.")
    def quiet(_context: dg.InitLoggerContext) -> logging.Logger:
        logger = logging.getLogger("bench.pipeline.run")
        logger.handlers = [logging.StreamHandler()]
        logger.propagate = False
        logger.setLevel(logging.WARNING)
        return logger

    return quiet


def step_run(database_url: str, spotify: dict[str, Any], dagster_home: str) -> dict[str, Any]:
    """Run the daily job once, in this (fresh) process; return timings, step times and memory."""
    import warnings

    warnings.filterwarnings("ignore", message=".*is currently in beta.*")  # as the test suite does
    import dagster as dg

    from spotify_pipeline.definitions import build_definitions
    from spotify_pipeline.defs.partitions import utc_today
    from spotify_pipeline.defs.resources import SpotifyResource
    from spotify_pipeline.defs.warehouse_resource import WarehouseResource

    resources = {
        "spotify": SpotifyResource(**spotify, forward_logs_to_dagster=False),
        "warehouse": WarehouseResource(database_url=database_url),
    }
    defs = build_definitions(resources=resources, loggers={"quiet": _quiet_logger()})
    job = defs.resolve_job_def(JOB_NAME)
    Path(dagster_home).mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(dagster_home)
    partition = utc_today().isoformat()
    start_rss = peak_rss_mb()
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance, partition_key=partition, run_config={"loggers": {"quiet": {}}}, raise_on_error=False
    )
    wall = time.perf_counter() - started
    peak = peak_rss_mb()
    step_start: dict[str, float] = {}
    bodies: dict[str, float] = {}
    step_durations: dict[str, float] = {}
    for entry in instance.all_logs(result.run_id):  # the run's event log: events with their timestamps
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        kind, key = event.event_type_value, event.step_key
        if kind == "STEP_START":
            step_start[key] = entry.timestamp
        elif kind == "ASSET_MATERIALIZATION" and key not in bodies:
            bodies[key] = entry.timestamp - step_start[key]
        elif kind == "STEP_SUCCESS":
            step_durations[key] = event.event_specific_data.duration_ms / 1000
    failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    instance.dispose()
    return {
        "success": result.success,
        "failed_steps": failures,
        "partition": partition,
        "wall_s": wall,
        "asset_body_s": {k: round(v, 3) for k, v in bodies.items()},
        "step_s": {k: round(v, 3) for k, v in step_durations.items()},
        "peak_rss_mb": peak,
        "start_rss_mb": start_rss,
    }


def _verify(database_url: str, partition: str) -> dict[str, int]:
    import sqlalchemy as sa

    from spotify_pipeline.warehouse import create_engine

    engine = create_engine(database_url)
    queries = {
        "songs": "SELECT count(*) FROM songs",
        "songs_matched": "SELECT count(*) FROM spotify_track_matches",
        "tracks_matched": "SELECT count(DISTINCT track_id) FROM spotify_track_matches",
        "raw_tracks": "SELECT count(*) FROM spotify_raw_responses WHERE endpoint = 'tracks' AND status = 200 "
        "AND pull_date = CAST(:d AS date)",
        "tracks_normalized": "SELECT count(*) FROM spotify_tracks",
        "snapshots": "SELECT count(*) FROM spotify_popularity_snapshots WHERE snapshot_date = CAST(:d AS date)",
        "songs_enriched": "SELECT count(*) FROM songs_search WHERE enrichment_status = 'matched'",
    }
    with engine.connect() as conn:
        counts = {name: int(conn.execute(sa.text(q), {"d": partition}).scalar_one()) for name, q in queries.items()}
    engine.dispose()
    return counts


def run(quick: bool = False, songs: int | None = None) -> dict[str, Any]:
    from spotify_pipeline.emulator.catalog import DEFAULT_SEED
    from spotify_pipeline.emulator.testing import run_emulator_process
    from spotify_pipeline.warehouse import create_engine
    from spotify_pipeline.warehouse.catalog import load_catalog
    from spotify_pipeline.warehouse.migrations import migrate

    songs = songs or (QUICK_SONGS if quick else DEFAULT_SONGS)
    url = redis_url()
    with (
        scratch_database("pipeline") as database_url,
        scratch_redis_prefix("pipeline", url) as prefix,
        tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp,
    ):
        csv_path = Path(tmp) / "songs.csv"
        cases = write_songs_csv(csv_path, songs, DEFAULT_SEED)
        engine = create_engine(database_url)
        migrate(engine)
        report = load_catalog(engine, csv_path)
        engine.dispose()
        if report.rows_loaded != songs:
            raise RuntimeError(f"loaded {report.rows_loaded} of {songs} songs: {report.errors[:3]}")
        with run_emulator_process(mode="extended", catalog_size=songs, window_limit=None) as emulator:
            spotify = {
                "client_id": emulator.client_id,
                "client_secret": emulator.client_secret,
                "api_base_url": emulator.api_base_url,
                "accounts_base_url": emulator.accounts_base_url,
                "redis_url": url,
                "redis_key_prefix": prefix,
                "rate_limit_per_minute": 10_000_000,
            }
            emulator.reset()
            measured = in_subprocess(step_run, database_url, spotify, str(Path(tmp) / "dagster"))
            stats = emulator.stats()
        if not measured["success"]:
            raise RuntimeError(f"{JOB_NAME} failed in steps {measured['failed_steps']}")
        counts = _verify(database_url, measured["partition"])
    tracks = counts["snapshots"]
    if counts["songs_matched"] < 0.95 * songs or not (
        counts["tracks_matched"] == counts["raw_tracks"] == counts["snapshots"]
    ):
        raise RuntimeError(f"the run did not enrich the catalogue: {counts}")
    wall = measured["wall_s"]
    body = sum(measured["asset_body_s"].values())
    return {
        "songs": songs,
        "song_cases": cases,
        "tracks": tracks,
        "tracks_per_s": round(tracks / wall, 1),
        "wall_s": round(wall, 2),
        "peak_rss_mb": measured["peak_rss_mb"],
        "start_rss_mb": measured["start_rss_mb"],
        "asset_body_s": round(body, 2),
        "dagster_overhead_s": round(wall - body, 2),
        "dagster_overhead_share": round((wall - body) / wall, 4),
        "tracks_per_s_asset_bodies": round(tracks / body, 1),
        "asset_body_s_by_step": measured["asset_body_s"],
        "step_s_by_step": measured["step_s"],
        **{k: v for k, v in counts.items() if k != "songs"},
        "emulator_requests": stats["by_endpoint"],
        "emulator_429s": int(stats["by_status"].get("429", 0)),
        "overhead_definition": (
            "(run wall - sum over steps of STEP_START -> ASSET_MATERIALIZATION) / run wall; the asset "
            "function runs between those two events, the rest is Dagster's own time"
        ),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, songs=args.songs), indent=2))
