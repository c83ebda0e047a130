"""`make demo`: the local profile end to end on the embedded defaults.

Migrates the SQLite warehouse, loads the sample catalogue, makes sure the bundled Spotify emulator answers on
a loopback port (started in the background if needed), writes `.env` so that Dagster's own commands
(`dagster dev`, `dg dev`, `dagster asset materialize`) find the same emulator, instance and warehouse, then
launches `spotify_daily_refresh` for today through the code location, as the UI does: the run belongs to the
`spotify_pipeline` location, uses the job's multiprocess executor, and shows on the job page and timeline of
`make dev`. It prints what each asset did, then searches.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.emulator.config import TEST_CLIENT_ID, TEST_CLIENT_SECRET
from spotify_pipeline.emulator.local import emulator_address, ensure_emulator
from spotify_pipeline.emulator.server import free_port
from spotify_pipeline.local_env import ENV_FILE_NAME, read_env_file, write_env_file
from spotify_pipeline.settings import Settings
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import load_catalog, sample_catalog_path
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.search import search
from spotify_pipeline.warehouse.tokens import ensure_local_token_key

DEMO_QUERIES = ("tonight", "heart")
# The local profile's budget: fast enough to finish in seconds; the emulator admits the same rate, so the
# shared limiter keeps it at zero 429s as it would against Spotify.
DEMO_RATE_PER_MINUTE = 12_000
JOB_NAME = "spotify_daily_refresh"
LOCATION_NAME = "spotify_pipeline"
DEFINITIONS_MODULE = "spotify_pipeline.definitions"
RUN_POLL_S = 0.25
RUN_TIMEOUT_S = 1800
# The run's own console log stays at warnings: the demo prints its concise progress lines from the event log.
QUIET_RUN_CONFIG: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def local_profile_env(settings: Settings, project_dir: Path) -> dict[str, str]:
    """The settings Dagster's processes need for the local profile: the instance, the warehouse and cache
    files as absolute paths (a code server or run worker may start in another folder), and the emulator."""
    existing = read_env_file(project_dir / ENV_FILE_NAME)
    base_url = existing.get("SPOTIFY_API_BASE_URL", "")
    try:
        host, port = emulator_address(base_url)
    except RuntimeError:  # no emulator recorded yet: take a free loopback port and keep it from now on
        host, port = "127.0.0.1", free_port()
    env = {
        "DAGSTER_HOME": str(_absolute(project_dir, settings.dagster_home)),
        "SPOTIFY_EMULATOR": existing.get("SPOTIFY_EMULATOR") or settings.spotify_emulator or "extended",
        "SPOTIFY_API_BASE_URL": f"http://{host}:{port}/v1",
        "SPOTIFY_ACCOUNTS_BASE_URL": f"http://{host}:{port}",
        "SPOTIFY_CLIENT_ID": TEST_CLIENT_ID,
        "SPOTIFY_CLIENT_SECRET": TEST_CLIENT_SECRET,
        "SPOTIFY_RATE_LIMIT_PER_MINUTE": str(DEMO_RATE_PER_MINUTE),
        "SPOTIFY_TOKEN_KEY_FILE": str(_absolute(project_dir, settings.spotify_token_key_file)),
        # The daily partitions start at the first capture, which the first setup of this folder is.
        "SPOTIFY_FIRST_CAPTURE_DATE": existing.get("SPOTIFY_FIRST_CAPTURE_DATE")
        or settings.spotify_first_capture_date
        or utc_today().isoformat(),
    }
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        env["DATABASE_URL"] = f"sqlite:///{_absolute(project_dir, url.database)}"
    if settings.spotify_cache_path != "memory":
        env["SPOTIFY_CACHE_PATH"] = str(_absolute(project_dir, settings.spotify_cache_path))
    return env


def prepare_local_profile(
    settings: Settings, project_dir: Path, echo: Callable[[str], None] = print
) -> tuple[sa.Engine, Settings]:
    """Migrate the warehouse, create the local token key, record the local profile in `.env` (and in this
    process's environment, which the run's processes inherit), and start or attach to the emulator.
    Returns the warehouse engine and the settings Dagster's processes will see."""
    engine = create_engine(settings.database_url)
    echo(f"warehouse: {engine.url.render_as_string(hide_password=True)}")
    applied = migrate(engine)
    echo(f"migrate: {len(applied)} migration(s) applied" if applied else "migrate: schema up to date")
    if ensure_local_token_key(settings.spotify_token_key_file, configured_key=settings.spotify_token_key):
        echo(f"generated a local key for stored user tokens: {settings.spotify_token_key_file} (mode 0600)")

    env = local_profile_env(settings, project_dir)
    write_env_file(project_dir / ENV_FILE_NAME, env)
    os.environ.update(env)
    local = Settings.from_env()
    _prepare_instance_home(Path(local.dagster_home), project_dir)
    how = ensure_emulator(
        local.spotify_api_base_url, mode=local.spotify_emulator or "extended", window_limit=DEMO_RATE_PER_MINUTE // 2
    )
    echo(
        f"Spotify emulator at {local.spotify_api_base_url} ({'started' if how == 'started' else 'already running'}, "
        f"{local.spotify_emulator} mode, limit {DEMO_RATE_PER_MINUTE}/min)"
    )
    echo(
        f"{ENV_FILE_NAME} records this profile (Dagster instance {local.dagster_home}): `make dev`, `dg dev` and "
        "`dagster asset materialize` here use it"
    )
    return engine, local


def run_demo(settings: Settings, echo: Callable[[str], None] = print, project_dir: Path | None = None) -> None:
    """What `make demo` runs: the local profile end to end, then a search."""
    from spotify_pipeline.cli import format_results

    project_dir = (project_dir or Path.cwd()).resolve()
    started = time.perf_counter()
    echo("[1/4] set up the local profile")
    engine, local = prepare_local_profile(settings, project_dir, echo=lambda line: echo(f"      {line}"))

    report = load_catalog(engine)
    echo(
        f"[2/4] seed-catalog: {report.rows_read} songs in {sample_catalog_path().name}, "
        f"{report.songs_added} new, {report.rows_skipped} skipped"
    )
    with engine.connect() as conn:
        matched_before = conn.execute(sa.text("SELECT count(*) FROM spotify_track_matches")).scalar_one()
    echo(f"[3/4] {JOB_NAME} for {utc_today().isoformat()}: {report.rows_read} songs, launched through the code location")
    if matched_before:
        echo(f"      reusing {matched_before} matches and the Spotify cache from the last run")

    home = Path(local.dagster_home)
    stats_before = _emulator_stats(local.spotify_api_base_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = launch_and_wait(
            instance, JOB_NAME, utc_today().isoformat(), project_dir, echo, log_file=home / "demo-processes.log"
        )
        stats_after = _emulator_stats(local.spotify_api_base_url)
        _print_summary(instance, run.run_id, echo)
    requests_made = stats_after["total_requests"] - stats_before["total_requests"]
    throttled = stats_after["by_status"].get("429", 0) - stats_before["by_status"].get("429", 0)
    echo(f"      emulator: {requests_made} requests, {throttled} answered 429")
    if run.status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"{JOB_NAME} {run.status.value.lower()} (run {run.run_id}); see the log above or `make dev`")
    echo(f"      run {run.run_id} is recorded in {home}: `make dev` shows it on the job page")

    for query in DEMO_QUERIES:
        echo(f"[4/4] search {query!r}:")
        echo(format_results(search(query, limit=8, engine=engine)))
    echo(f"done in {time.perf_counter() - started:.1f}s")


def launch_and_wait(
    instance: dg.DagsterInstance,
    job_name: str,
    partition_key: str,
    working_directory: Path,
    echo: Callable[[str], None],
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] = QUIET_RUN_CONFIG,
    log_file: Path | None = None,
) -> dg.DagsterRun:
    """Launch `job_name` for `partition_key` through the code location, as the UI's Launch button does (the
    run records its repository origin), then follow it to the end, echoing each step and the assets' log lines.
    The code server, run worker and step processes write their console output to `log_file` (default: the
    terminal); everything they log is in the run's event log too."""
    # The workspace API is Dagster's internal one (what `dagster job launch` uses); the Dagster family is
    # pinned exactly. The run is launched directly, not queued: no daemon is needed to start it.
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget

    target = ModuleTarget(
        module_name=DEFINITIONS_MODULE, attribute=None, working_directory=str(working_directory),
        location_name=LOCATION_NAME,
    )
    with ExitStack() as stack:
        # The code server starts now, in the project folder (Dagster loads that folder's .env, as `dagster dev`
        # there does); the run's processes are its children and inherit its folder and output.
        with _output_of_children_to(log_file), contextlib.chdir(working_directory):
            process_context = stack.enter_context(
                WorkspaceProcessContext(instance, target, code_server_log_level="WARNING")
            )
        workspace = process_context.create_request_context()
        location = workspace.get_code_location(LOCATION_NAME)
        repository = location.get_repository(next(iter(location.get_repository_names())))
        remote_job = repository.get_full_job(job_name)
        run_tags = {**remote_job.tags, "dagster/partition": partition_key, **(tags or {})}
        plan = location.get_execution_plan(remote_job, dict(run_config), step_keys_to_execute=None, known_state=None,
                                           instance=instance)
        run = instance.create_run(
            job_name=job_name, run_id=None, run_config=dict(run_config), resolved_op_selection=None,
            step_keys_to_execute=None, op_selection=None, status=None, root_run_id=None, parent_run_id=None,
            tags=run_tags, job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
            asset_selection=None, asset_check_selection=None, asset_graph=repository.asset_graph,
        )
        instance.launch_run(run.run_id, workspace)
        return _follow(instance, run.run_id, echo)


@contextmanager
def _output_of_children_to(log_file: Path | None) -> Iterator[None]:
    """Processes started inside the block write their stdout and stderr to `log_file`; this one keeps its own."""
    if log_file is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_file.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _follow(instance: dg.DagsterInstance, run_id: str, echo: Callable[[str], None]) -> dg.DagsterRun:
    seen = 0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        run = instance.get_run_by_id(run_id)
        records = instance.all_logs(run_id)
        for record in records[seen:]:
            _echo_progress(record, echo)
        seen = len(records)
        if run is not None and run.is_finished:
            for record in instance.all_logs(run_id)[seen:]:
                _echo_progress(record, echo)
            return run
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not finish within {RUN_TIMEOUT_S} s")
        time.sleep(RUN_POLL_S)


def _echo_progress(record: Any, echo: Callable[[str], None]) -> None:
    event = record.dagster_event
    if event is not None:
        if event.event_type_value == "STEP_START":
            echo(f"      ▸ {event.step_key} ...")
        elif event.event_type_value == "STEP_FAILURE":
            echo(f"      ✗ {event.step_key} failed: {event.event_specific_data.error.message.strip()}")
        elif event.event_type_value == "RUN_FAILURE" and record.user_message:
            echo(f"      ✗ {record.user_message}")
    elif record.level >= 20 and record.step_key:  # the assets' own INFO lines
        echo(f"        {record.step_key}: {record.user_message}")


def _prepare_instance_home(home: Path, project_dir: Path) -> None:
    """The local instance's folder, configured like the project's dagster.yaml (pools, run queue) when the
    project has one and the instance has none yet."""
    home.mkdir(parents=True, exist_ok=True)
    template = project_dir / "dagster.yaml"
    if template.is_file() and not (home / "dagster.yaml").exists():
        shutil.copyfile(template, home / "dagster.yaml")


def _emulator_stats(api_base_url: str) -> dict[str, Any]:
    host, port = emulator_address(api_base_url)
    return requests.get(f"http://{host}:{port}/_emulator/stats", timeout=5).json()


def _absolute(project_dir: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (project_dir / candidate).resolve()


_SUMMARY_KEYS = (
    ("rows", ("songs_attempted", "tracks_landed", "tracks_upserted", "artists_upserted", "albums_upserted", "rows",
              "songs_enriched", "movers")),
)


def _print_summary(instance: dg.DagsterInstance, run_id: str, echo: Callable[[str], None]) -> None:
    durations: dict[str, float] = {}
    materializations = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_SUCCESS":
            durations[event.step_key] = event.event_specific_data.duration_ms / 1000
        elif event.event_type_value == "ASSET_MATERIALIZATION":
            materializations.append(event)
    echo(f"      {'asset':<30} {'rows':>7} {'requests':>9} {'cache hits':>11} {'seconds':>8}")
    for event in materializations:
        materialization = event.event_specific_data.materialization
        metadata: dict[str, Any] = {k: v.value for k, v in materialization.metadata.items()}
        rows = next((metadata[k] for k in _SUMMARY_KEYS[0][1] if k in metadata), "")
        echo(
            f"      {materialization.asset_key.to_user_string():<30} {rows!s:>7} "
            f"{metadata.get('spotify_requests', '')!s:>9} {metadata.get('spotify_cache_hits', '')!s:>11} "
            f"{durations.get(event.step_key, 0.0):>8.2f}"
        )

