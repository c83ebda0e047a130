"""`spotify-pipeline emulator`: serve the offline Spotify Web API emulator in the foreground."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import click
import uvicorn
from click.core import ParameterSource

from spotify_pipeline.emulator.app import create_app
from spotify_pipeline.emulator.catalog import DEFAULT_CATALOG_SIZE, DEFAULT_SEED, MAX_CATALOG_SIZE
from spotify_pipeline.emulator.catalog_file import CatalogFileError
from spotify_pipeline.emulator.config import MODES, EmulatorConfig
from spotify_pipeline.emulator.server import uvicorn_config


def _iso_date(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter("expected YYYY-MM-DD") from None


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535))
@click.option("--mode", type=click.Choice(MODES), default="extended", show_default=True, help="Spotify app quota mode.")
@click.option("--catalog-size", default=DEFAULT_CATALOG_SIZE, show_default=True, type=click.IntRange(1, MAX_CATALOG_SIZE))
@click.option(
    "--catalog", "catalog_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Serve this JSON Lines file of track objects (.gz too) instead of the synthetic catalogue; "
    "`spotify-pipeline export-catalog` writes one from the warehouse.",
)
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Same seed, same catalogue, same bytes.")
@click.option(
    "--window-limit", default=180, show_default=True, type=click.IntRange(0),
    help="Requests per client id admitted in any rolling 30 s window (0 = no limit).",
)
@click.option("--quota", default=0, show_default=True, type=click.IntRange(0), help="Requests per client id per UTC day (0 = no quota).")
@click.option("--error-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Share of 500/502/503 answers.")
@click.option("--reset-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Share of dropped or truncated responses.")
@click.option("--latency-ms", default=0.0, show_default=True, type=click.FloatRange(0), help="Latency added to every Web API request.")
@click.option("--date", "pinned_date", default=None, callback=_iso_date, help="Pin 'today' (YYYY-MM-DD) for popularity.")
@click.pass_context
def emulator_command(
    ctx: click.Context,
    host: str,
    port: int,
    mode: str,
    catalog_size: int,
    catalog_path: Path | None,
    seed: int,
    window_limit: int,
    quota: int,
    error_rate: float,
    reset_rate: float,
    latency_ms: float,
    pinned_date: str | None,
) -> None:
    """Serve an offline, deterministic Spotify Web API (and accounts service) for development and CI."""
    if catalog_path is not None and ctx.get_parameter_source("catalog_size") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--catalog and --catalog-size exclude each other: a catalogue file has its own size")
    try:
        config = EmulatorConfig(
            mode=mode,  # type: ignore[arg-type]
            seed=seed,
            catalog_size=catalog_size,
            catalog_path=str(catalog_path) if catalog_path is not None else None,
            window_limit=window_limit or None,
            quota=quota or None,
            error_rate=error_rate,
            reset_rate=reset_rate,
            latency_ms=latency_ms,
            date=pinned_date,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    started = time.perf_counter()
    try:
        app = create_app(config)
    except CatalogFileError as error:
        raise click.BadParameter(str(error), param_hint="'--catalog'") from None
    shown_host = f"[{host}]" if ":" in host else host
    base = f"http://{shown_host}:{port}"
    client_id, client_secret = next(iter(config.clients.items()))
    if catalog_path is None:
        click.echo(f"Spotify emulator ({mode} mode, {catalog_size} tracks, seed {seed})")
    else:
        tracks = app.state.emulator.catalog.size
        seconds = time.perf_counter() - started
        click.echo(f"Spotify emulator ({mode} mode, {tracks:,} tracks from {catalog_path}, loaded in {seconds:.1f} s)")
    click.echo(f"  SPOTIFY_API_BASE_URL={base}/v1")
    click.echo(f"  SPOTIFY_ACCOUNTS_BASE_URL={base}")
    click.echo(f"  SPOTIFY_CLIENT_ID={client_id}")
    click.echo(f"  SPOTIFY_CLIENT_SECRET={client_secret}")
    click.echo(f"  test hooks: {base}/_emulator/stats (Ctrl+C to stop)")
    uvicorn.Server(uvicorn_config(app, host, port)).run()
