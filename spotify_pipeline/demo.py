"""`make demo`: the local profile end to end on the embedded defaults.

Starts the bundled Spotify emulator on a free loopback port, migrates the SQLite warehouse, loads the
sample catalogue, runs `spotify_daily_refresh` for today through Dagster (a real run, recorded in the
local instance under DAGSTER_HOME that `make dev` opens), prints what each asset did, then searches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.emulator.testing import run_emulator
from spotify_pipeline.settings import Settings
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import load_catalog, sample_catalog_path
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.search import search
from spotify_pipeline.warehouse.tokens import ensure_local_token_key

DEMO_QUERIES = ("tonight", "heart")
# The demo's own budget: fast enough to finish in seconds, and the emulator's window set to the same rate,
# so the shared limiter keeps it at zero 429s as it would against Spotify.
DEMO_RATE_PER_MINUTE = 12_000
DEMO_WINDOW_SECONDS = 30
JOB_NAME = "spotify_daily_refresh"


def run_demo(settings: Settings, echo: Callable[[str], None] = print) -> None:
    from spotify_pipeline.cli import format_results
    from spotify_pipeline.definitions import build_definitions

    started = time.perf_counter()
    engine = create_engine(settings.database_url)
    echo(f"warehouse: {engine.url.render_as_string(hide_password=True)}")

    applied = migrate(engine)
    echo(f"[1/4] migrate: {len(applied)} migration(s) applied" if applied else "[1/4] migrate: schema up to date")
    if ensure_local_token_key(settings.spotify_token_key_file, configured_key=settings.spotify_token_key):
        echo(f"      generated a local key for stored user tokens: {settings.spotify_token_key_file} (mode 0600)")

    report = load_catalog(engine)
    echo(
        f"[2/4] seed-catalog: {report.rows_read} songs in {sample_catalog_path().name}, "
        f"{report.songs_added} new, {report.rows_skipped} skipped"
    )
    with engine.connect() as conn:
        matched_before = conn.execute(sa.text("SELECT count(*) FROM spotify_track_matches")).scalar_one()

    window_limit = DEMO_RATE_PER_MINUTE * DEMO_WINDOW_SECONDS // 60
    with run_emulator(window_limit=window_limit, window_seconds=DEMO_WINDOW_SECONDS) as emulator:
        echo(
            f"[3/4] {JOB_NAME} for {utc_today().isoformat()}: {report.rows_read} songs against the Spotify "
            f"emulator at {emulator.api_base_url} (limit {DEMO_RATE_PER_MINUTE}/min, emulator window "
            f"{window_limit} per {DEMO_WINDOW_SECONDS} s)"
        )
        if matched_before:
            echo(f"      reusing {matched_before} matches and the Spotify cache from the last run")
        resources = {
            "spotify": SpotifyResource(
                client_id=emulator.client_id,
                client_secret=emulator.client_secret,
                api_base_url=emulator.api_base_url,
                accounts_base_url=emulator.accounts_base_url,
                rate_limit_per_minute=DEMO_RATE_PER_MINUTE,
                cache_path=settings.spotify_cache_path,
                forward_logs_to_dagster=False,
            ),
            "warehouse": WarehouseResource(database_url=settings.database_url),
        }
        defs = build_definitions(resources=resources, loggers={"progress": _progress_logger(echo)})
        instance = dg.DagsterInstance.from_config(str(_dagster_home(settings)))
        result = defs.resolve_job_def(JOB_NAME).execute_in_process(
            instance=instance,
            partition_key=utc_today().isoformat(),
            run_config={"loggers": {"progress": {}}},  # only the concise progress lines, not Dagster's debug log
            raise_on_error=False,
        )
        emulator_stats = emulator.stats()
    _print_summary(result, echo)
    throttled = emulator_stats["by_status"].get("429", 0)
    echo(f"      emulator: {emulator_stats['total_requests']} requests, {throttled} answered 429")
    if not result.success:
        raise RuntimeError(f"{JOB_NAME} failed (run {result.run_id}); see the log above or `make dev`")
    echo(f"      run {result.run_id} is recorded in {_dagster_home(settings)}: `make dev` shows it")

    for query in DEMO_QUERIES:
        echo(f"[4/4] search {query!r}:")
        echo(format_results(search(query, limit=8, engine=engine)))
    echo(f"done in {time.perf_counter() - started:.1f}s")


def _dagster_home(settings: Settings) -> Path:
    home = Path(settings.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _progress_logger(echo: Callable[[str], None]) -> dg.LoggerDefinition:
    """Prints one line as each asset starts and finishes, and the assets' own INFO lines."""

    @dg.logger(description="Concise progress lines for the demo.")
    def progress(_context: dg.InitLoggerContext):
        import logging

        class _Echo(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                meta = getattr(record, "dagster_meta", {}) or {}
                event = meta.get("dagster_event")
                step = meta.get("step_key")
                if event is not None:
                    if event.event_type_value == "STEP_START":
                        echo(f"      ▸ {step} ...")
                    elif event.event_type_value == "STEP_FAILURE":
                        echo(f"      ✗ {step} failed")
                elif record.levelno >= logging.INFO and step:
                    echo(f"        {step}: {meta.get('orig_message', record.getMessage())}")

        logger = logging.getLogger("spotify_pipeline.demo.progress")
        logger.handlers = [_Echo()]
        logger.propagate = False
        logger.setLevel(logging.DEBUG)  # step events arrive at DEBUG; the handler keeps only the ones above
        return logger

    return progress


_SUMMARY_KEYS = (
    ("rows", ("songs_attempted", "tracks_landed", "tracks_upserted", "artists_upserted", "albums_upserted", "rows",
              "songs_enriched", "movers")),
)


def _print_summary(result: dg.ExecuteInProcessResult, echo: Callable[[str], None]) -> None:
    durations: dict[str, float] = {}
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS" and event.step_key:
            durations[event.step_key] = event.event_specific_data.duration_ms / 1000
    echo(f"      {'asset':<30} {'rows':>7} {'requests':>9} {'cache hits':>11} {'seconds':>8}")
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        metadata: dict[str, Any] = {k: v.value for k, v in materialization.metadata.items()}
        rows = next((metadata[k] for k in _SUMMARY_KEYS[0][1] if k in metadata), "")
        echo(
            f"      {materialization.asset_key.to_user_string():<30} {rows!s:>7} "
            f"{metadata.get('spotify_requests', '')!s:>9} {metadata.get('spotify_cache_hits', '')!s:>11} "
            f"{durations.get(event.step_key, 0.0):>8.2f}"
        )
