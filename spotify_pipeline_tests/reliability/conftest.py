"""Shared pieces of the reliability suite: warehouses built from (a part of) the sample catalogue, fault-free
reference runs to compare with, a subprocess runner of the daily job, and a reader that watches the daily
partitions while a run writes them."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.emulator.testing import EmulatorHandle, run_emulator
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import sample_catalog_path
from spotify_pipeline_tests import servers
from spotify_pipeline_tests.defs.conftest import PIPELINE_TABLES, Pipeline, make_pipeline, table_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER_MODULE = "spotify_pipeline_tests.reliability.runner"
#: The pipeline tables plus every match attempt: a crash must neither lose nor repeat an attempt.
COMPARED_TABLES = (*PIPELINE_TABLES, "spotify_match_attempts")
#: Columns that are identities or moments, not content (`*_at` columns are left out as well).
IGNORED_COLUMNS = {"spotify_match_attempts": {"id"}}
#: Natural keys: a table must never hold two rows with the same one.
NATURAL_KEYS = {
    "songs": ("catalog_key",),
    "spotify_track_matches": ("song_id",),
    "spotify_raw_responses": ("pull_date", "endpoint", "request_key"),
    "spotify_tracks": ("track_id",),
    "spotify_artists": ("artist_id",),
    "spotify_albums": ("album_id",),
    "spotify_track_artists": ("track_id", "position"),
    "spotify_popularity_snapshots": ("snapshot_date", "track_id"),
    "spotify_popularity_movers": ("snapshot_date", "track_id"),
    # Within one day's runs a song is attempted once: a second attempt means work was repeated.
    "spotify_match_attempts": ("song_id",),
}


# -- catalogues and warehouses ------------------------------------------------------------------------------


def catalogue_subset(directory: Path, rows: int | None) -> Path:
    """The first `rows` songs of the sample catalogue as a CSV file (the whole sample for None)."""
    if rows is None:
        return sample_catalog_path()
    path = directory / f"catalogue_{rows}.csv"
    if not path.exists():
        with sample_catalog_path().open(encoding="utf-8", newline="") as source:
            lines = list(csv.reader(source))[: rows + 1]
        with path.open("w", encoding="utf-8", newline="") as target:
            csv.writer(target).writerows(lines)
    return path


def build_pipeline(database_url: str, emulator: Any, cache_path: Path, catalogue: Path) -> Pipeline:
    return make_pipeline(database_url, emulator, cache_path, catalogue)


def fingerprint(engine: sa.Engine) -> dict[str, tuple[int, str]]:
    """Row count and order-independent content checksum of every compared table (no ids, no `*_at`)."""
    return table_fingerprint(engine, COMPARED_TABLES, IGNORED_COLUMNS)


@pytest.fixture
def small_pipeline(request: pytest.FixtureRequest, emulator, tmp_path) -> Iterator[Pipeline]:
    """The first `CATALOGUE_ROWS` (of the test module) sample songs on SQLite, emulator limits off."""
    emulator.configure(window_limit=None)
    rows = request.module.CATALOGUE_ROWS
    built = build_pipeline(
        f"sqlite:///{tmp_path / 'w.db'}", emulator, tmp_path / "cache.db", catalogue_subset(tmp_path, rows)
    )
    yield built
    built.engine.dispose()


def duplicate_keys(engine: sa.Engine) -> dict[str, int]:
    """Rows beyond the first per natural key, per table (all zero when nothing was written twice)."""
    out = {}
    with engine.connect() as conn:
        for table, key in NATURAL_KEYS.items():
            columns = ", ".join(key)
            out[table] = conn.execute(
                sa.text(f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {table} GROUP BY {columns}) AS g")
            ).scalar_one()
    return {table: int(n) for table, n in out.items()}


def compare(actual: dict[str, tuple[int, str]], expected: dict[str, tuple[int, str]]) -> dict[str, int]:
    """Rows lost (negative) or added (positive) per table whose content differs from the reference."""
    return {
        table: actual[table][0] - expected[table][0]
        for table in expected
        if actual[table] != expected[table]
    }


# -- fault-free reference runs --------------------------------------------------------------------------------


@dataclass
class Reference:
    """A fault-free run of today's partition: its tables, and what the daily partitions hold."""

    fingerprint: dict[str, tuple[int, str]]
    partitions: dict[str, int]
    seconds: float


class References:
    """Fault-free reference runs, one per (backend, catalogue size), made once per session against an
    emulator of their own (same seed, so the same catalogue as every other emulator of the suite)."""

    def __init__(self, postgres_databases: servers.PostgresDatabases, directory: Path) -> None:
        self._postgres = postgres_databases
        self._directory = directory
        self._made: dict[tuple[str, int | None], Reference] = {}
        self._emulator: EmulatorHandle | None = None
        self._stack: list[Any] = []

    def _clean_emulator(self) -> EmulatorHandle:
        if self._emulator is None:
            context = run_emulator(window_limit=None)
            self._emulator = context.__enter__()
            self._stack.append(context)
        return self._emulator

    def get(self, backend: str, rows: int | None) -> Reference:
        key = (backend, rows)
        if key not in self._made:
            self._made[key] = self._make(backend, rows)
        return self._made[key]

    def _make(self, backend: str, rows: int | None) -> Reference:
        emulator = self._clean_emulator()
        name = f"reference_{backend}_{rows or 'all'}"
        if backend == "sqlite":
            return self._run(f"sqlite:///{self._directory / (name + '.db')}", emulator, name, rows)
        with self._postgres.database() as url:
            return self._run(url, emulator, name, rows)

    def _run(self, url: str, emulator: EmulatorHandle, name: str, rows: int | None) -> Reference:
        catalogue = catalogue_subset(self._directory, rows)
        built = build_pipeline(url, emulator, self._directory / f"{name}_cache.db", catalogue)
        try:
            started = time.perf_counter()
            result = built.materialize()
            seconds = time.perf_counter() - started
            assert result.success, "the fault-free reference run failed"
            assert duplicate_keys(built.engine) == dict.fromkeys(NATURAL_KEYS, 0)
            return Reference(fingerprint(built.engine), partition_counts(built.engine), seconds)
        finally:
            built.engine.dispose()

    def close(self) -> None:
        while self._stack:
            self._stack.pop().__exit__(None, None, None)


@pytest.fixture(scope="session")
def references(postgres_databases, tmp_path_factory) -> Iterator[References]:
    made = References(postgres_databases, tmp_path_factory.mktemp("references"))
    yield made
    made.close()


# -- what a reader sees ---------------------------------------------------------------------------------------

TODAY_PARTITIONS = {
    "raw_spotify_tracks": "SELECT count(*) FROM spotify_raw_responses WHERE pull_date = :d AND endpoint = 'tracks'",
    "spotify_popularity_snapshots": "SELECT count(*) FROM spotify_popularity_snapshots WHERE snapshot_date = :d",
    "songs_enriched": "SELECT count(*) FROM songs WHERE spotify_track_id IS NOT NULL",
}


def partition_counts(engine: sa.Engine, day: str | None = None) -> dict[str, int]:
    """Rows of today's daily partitions (and of the enriched songs) as a reader sees them now."""
    params = {"d": day or utc_today().isoformat()}
    with engine.connect() as conn:
        return {name: int(conn.execute(sa.text(sql), params).scalar_one()) for name, sql in TODAY_PARTITIONS.items()}


class PartitionWatcher:
    """A reader polling today's partitions from its own connection while runs write them; `seen` holds
    every distinct count it observed per partition."""

    def __init__(self, database_url: str, interval_s: float = 0.01) -> None:
        self._engine = create_engine(database_url)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.seen: dict[str, set[int]] = {name: set() for name in TODAY_PARTITIONS}
        self.polls = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._poll, name="partition-watcher", daemon=True)

    def __enter__(self) -> PartitionWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._engine.dispose()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                for name, count in partition_counts(self._engine).items():
                    self.seen[name].add(count)
                self.polls += 1
            except sa.exc.DBAPIError as exc:  # a server being restarted under the reader
                self.errors.append(type(exc.orig).__name__)
            self._stop.wait(self._interval_s)

    def partial(self, full: dict[str, int]) -> dict[str, list[int]]:
        """Counts seen that are neither empty nor complete, per partition (empty when all was atomic)."""
        return {
            name: sorted(c for c in counts if c not in (0, full[name]))
            for name, counts in self.seen.items()
            if any(c not in (0, full[name]) for c in counts)
        }


# -- the daily job in a subprocess ----------------------------------------------------------------------------


@dataclass
class RunnerProcess:
    process: subprocess.Popen
    stdout: Path
    stderr: Path
    ready_at: float = 0.0
    outcome: dict[str, Any] = field(default_factory=dict)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.stdout.read_text(errors="replace").startswith("ready"):
                self.ready_at = time.monotonic()
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the runner exited before the run started:\n{self.stderr.read_text()[-3000:]}")
            time.sleep(0.01)
        raise AssertionError(f"the runner did not start within {timeout_s} s")

    def wait_for_step(self, step: str, timeout_s: float = 60.0) -> bool:
        """Block until the run logged the start of `step` (its event log goes to stderr as it happens);
        False if the run ended first."""
        marker = f"{step} - STEP_START"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if marker in self.stderr.read_text(errors="replace"):
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.005)
        return False

    def kill(self) -> bool:
        """SIGKILL; True when the run was still going (not finished) at that moment."""
        alive = self.process.poll() is None
        if alive:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        return alive

    def finish(self, timeout_s: float = 180.0) -> dict[str, Any]:
        self.process.wait(timeout=timeout_s)
        lines = [line for line in self.stdout.read_text(errors="replace").splitlines() if line.startswith("{")]
        self.outcome = json.loads(lines[-1]) if lines else {"success": False, "errors": ["no outcome printed"]}
        return self.outcome

    def logs(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")


def runner_environment(database_url: str, emulator: Any, cache_path: Path | str, **extra: str) -> dict[str, str]:
    """The environment of a production-configured run against `emulator` (no limits of our own)."""
    env = {
        k: v for k, v in os.environ.items()
        if not (k.startswith("SPOTIFY_") or k in ("DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX", "DAGSTER_HOME"))
    }
    env.update(
        DATABASE_URL=database_url,
        SPOTIFY_CLIENT_ID=emulator.client_id,
        SPOTIFY_CLIENT_SECRET=emulator.client_secret,
        SPOTIFY_API_BASE_URL=emulator.api_base_url,
        SPOTIFY_ACCOUNTS_BASE_URL=emulator.accounts_base_url,
        SPOTIFY_RATE_LIMIT_PER_MINUTE="1000000",
        SPOTIFY_CACHE_PATH=str(cache_path),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_runner(env: dict[str, str], directory: Path, name: str) -> RunnerProcess:
    stdout, stderr = directory / f"{name}.out", directory / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", RUNNER_MODULE], cwd=REPO_ROOT, env=env, stdout=out, stderr=err
        )
    return RunnerProcess(process, stdout, stderr)


# -- small utilities ------------------------------------------------------------------------------------------


def step_failures(result) -> list[str]:
    """Every step failure of an in-process run, each with its chain of causes."""
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error, parts = event.event_specific_data.error, []
            while error is not None:
                parts.append(error.message.strip())
                error = error.cause
            out.append(" <- ".join(parts))
    return out


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]
