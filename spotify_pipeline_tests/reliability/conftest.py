"""Shared pieces of the reliability suite: warehouses built from (a part of) the sample catalogue, fault-free
reference runs to compare with, duplicate counts on the natural keys no constraint enforces, a subprocess
runner of the daily job, and a reader that watches the daily partitions while a run writes them."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.emulator.testing import EmulatorHandle, run_emulator
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import catalog_key, sample_catalog_path
from spotify_pipeline_tests import servers
from spotify_pipeline_tests.defs.conftest import PIPELINE_TABLES, Pipeline, make_pipeline, table_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER_MODULE = "spotify_pipeline_tests.reliability.runner"
#: The pipeline tables plus every match attempt: a crash must neither lose nor repeat an attempt.
COMPARED_TABLES = (*PIPELINE_TABLES, "spotify_match_attempts")
#: Columns that are identities or moments, not content (`*_at` columns are left out as well).
IGNORED_COLUMNS = {"spotify_match_attempts": {"id"}}


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


def compare(actual: dict[str, tuple[int, str]], expected: dict[str, tuple[int, str]]) -> dict[str, int]:
    """Rows lost (negative) or added (positive) per table whose content differs from the reference."""
    return {
        table: actual[table][0] - expected[table][0]
        for table in expected
        if actual[table] != expected[table]
    }


# -- duplicates on natural keys no constraint enforces -------------------------------------------------------
#
# Every key the migrations declare for the daily job's tables (songs.catalog_key, the match per song_id,
# raw rows per (pull date, endpoint, request key), tracks, artists and albums per id, track artists per
# (track, position), snapshots and movers per (day, track id), usage per (run, asset, endpoint)) is refused
# twice by the database itself: counting duplicates on those can never find one. These count, per check,
# the rows beyond the first on a natural key the database does not enforce, one that a retried, killed,
# re-run or doubled run can break. Each takes a connection and the partition day, and returns that number;
# test_duplicate_checks.py plants each kind of duplicate and sees it counted.


def _sum_beyond_first(conn: sa.Connection, grouped: str) -> int:
    """Rows beyond the first per group of `grouped` (a `SELECT count(*) AS n ... GROUP BY ...`)."""
    return int(conn.execute(sa.text(f"SELECT coalesce(sum(n - 1), 0) FROM ({grouped}) AS g")).scalar_one())


def song_identity_matches(conn: sa.Connection, day: dt.date) -> int:
    """One current match per song: matched songs beyond the first per song identity, the catalogue's key
    (`catalog_key()` of title, artist, album and ISRC) recomputed from each row as it is now.

    The UNIQUE `songs.catalog_key` holds the key as computed when the row was written, not the song: a
    catalogue re-seeded after the key's normalization changed, or a row corrected by hand into the twin of
    another, is the same song twice under two keys, and the daily job matches each of them, so one song has
    two current matches (and two rows in search, two match attempts, two enriched rows)."""
    rows = conn.execute(
        sa.text("SELECT s.title, s.artist, s.album, s.isrc FROM songs AS s "
                "JOIN spotify_track_matches AS m ON m.song_id = s.id")
    ).all()
    return sum(n - 1 for n in Counter(catalog_key(*row) for row in rows).values())


def match_attempts_per_song_day(conn: sa.Connection, day: dt.date) -> int:
    """One match attempt per song per UTC day: attempts beyond the first per (song, day of attempted_at).

    `spotify_match_attempts` has only a surrogate key. A song is searched at most once a day (a match is
    not searched again, a miss waits `miss_retry_days`, 7 by default), so a second attempt the same day is
    work repeated and recorded twice: a batch re-sent after its commit reached the database but the answer
    did not (the `finally: save()` of the matching step after a dropped connection), a re-run searching
    again songs a killed run had recorded (were an attempt ever committed apart from its match), or two runs
    matching the same songs at once."""
    attempted_day = (
        "CAST(attempted_at AT TIME ZONE 'UTC' AS DATE)" if conn.dialect.name == "postgresql" else "date(attempted_at)"
    )
    return _sum_beyond_first(
        conn, f"SELECT count(*) AS n FROM spotify_match_attempts GROUP BY song_id, {attempted_day}"
    )


def snapshots_without_current_match(conn: sa.Connection, day: dt.date) -> int:
    """One snapshot per current match on the partition day: rows of `day`'s popularity snapshot whose track
    is no song's current match.

    The primary key allows one row per (day, track id), not one per song: when a song's match moves to
    another track between two captures of the same day (an override applied by a re-run), a capture that
    adds rows beside the day's instead of replacing them (an on-demand run, which adds the songs it was asked
    for; a capture that keeps the day's rows, as one that cannot read popularity does) leaves the old track's
    row beside the new one. The song then has two snapshots that day, and the movers rank a track no song
    follows. Only `day` is checked: earlier days rightly hold the tracks matched then."""
    return int(conn.execute(
        sa.text("SELECT count(*) FROM spotify_popularity_snapshots AS s WHERE s.snapshot_date = :d "
                "AND NOT EXISTS (SELECT 1 FROM spotify_track_matches AS m WHERE m.track_id = s.track_id)"),
        {"d": day.isoformat()},
    ).scalar_one())


def snapshots_per_recording_day(conn: sa.Connection, day: dt.date) -> int:
    """One snapshot per recording per day: snapshot rows beyond the first per (day, recording), the
    recording being the id Spotify served (`spotify_tracks.served_track_id`, set when it relinked the
    requested id, `linked_from`) or else the track id.

    Tracks are keyed by the id the pipeline asked for. With a market, Spotify relinks ids, so one recording
    can be asked for under two ids (one song matched by search to the id Spotify serves, another by an
    override or an older match to the id it relinks from): both land in `spotify_tracks` and in the day's
    snapshot, and the popularity of one recording is counted twice. Their track ids differ, so no key sees it.
    Not specific to retries; every day is checked."""
    return _sum_beyond_first(
        conn,
        "SELECT count(*) AS n FROM spotify_popularity_snapshots AS s "
        "LEFT JOIN spotify_tracks AS t ON t.track_id = s.track_id "
        "GROUP BY s.snapshot_date, coalesce(t.served_track_id, s.track_id)",
    )


def track_artist_repeats(conn: sa.Connection, day: dt.date) -> int:
    """One link per (track, artist): `spotify_track_artists` rows beyond the first per (track, artist).

    The primary key is (track, position). A track's artist list is stored by position and must be replaced
    whole on every read: a write that only upserts the positions it has (a retried or interleaved write of an
    older read, a replace that lost its delete) leaves an artist whose place changed between two reads at
    both its old and its new position, crediting it twice."""
    return _sum_beyond_first(conn, "SELECT count(*) AS n FROM spotify_track_artists GROUP BY track_id, artist_id")


DUPLICATE_CHECKS = {
    check.__name__: check
    for check in (
        song_identity_matches,
        match_attempts_per_song_day,
        snapshots_without_current_match,
        snapshots_per_recording_day,
        track_artist_repeats,
    )
}
#: What `natural_key_duplicates` returns when nothing was written twice.
NO_DUPLICATES = dict.fromkeys(DUPLICATE_CHECKS, 0)


def natural_key_duplicates(engine: sa.Engine, day: dt.date | None = None) -> dict[str, int]:
    """Rows beyond the first per natural key no constraint enforces, per check (see each check's docstring);
    `day` is the partition checked where a check looks at one day (default: today, UTC)."""
    day = day or utc_today()
    with engine.connect() as conn:
        return {name: check(conn, day) for name, check in DUPLICATE_CHECKS.items()}


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
            assert natural_key_duplicates(built.engine) == NO_DUPLICATES
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
