"""`spotify-pipeline`: a thin command-line face over the warehouse, the emulator and the pipeline.

Manners every command shares, implemented once here:
- An expected failure (settings, a database URL, a warehouse that is unreachable, missing or not migrated,
  a bad catalogue file or query) is a short message on stderr saying what to do, and exit status 1; the
  global `--debug` shows the traceback instead. Anything else is a bug and keeps its traceback.
- Long work shows its progress on stderr (`progress_reporter`), so stdout carries only the results.
- URLs are printed without their passwords.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TextIO

import click
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from spotify_pipeline.settings import Settings, SettingsError
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import CatalogFileError, LoadProgress, load_catalog, sample_catalog_path
from spotify_pipeline.warehouse.engine import DatabaseUrlError
from spotify_pipeline.warehouse.export import NothingToExportError, export_raw_tracks
from spotify_pipeline.warehouse.migrations import MigrationError, applied, latest_version, migrate
from spotify_pipeline.warehouse.search import SearchQueryError, SearchResult, search

DISTRIBUTION = "spotify_pipeline"
#: Without a terminal (CI, a log file), progress is one line per this many seconds of work.
PROGRESS_LOG_INTERVAL_S = 5.0
# How libpq words a failure to connect, as opposed to a failure of a statement on a working connection.
_LIBPQ_CONNECTION_FAILURES = ("connection to server", "could not connect to server", "could not translate host name")
_CHECK_HOST_AND_PORT = "check the host and port in DATABASE_URL"


class _CliContext:
    def __init__(self) -> None:
        self.loaded_settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The settings from the environment, read when a command first needs them."""
        if self.loaded_settings is None:
            self.loaded_settings = Settings.from_env()
        return self.loaded_settings

    def engine(self) -> sa.Engine:
        return create_engine(self.settings.database_url)


pass_context = click.make_pass_decorator(_CliContext, ensure=True)


class _ExpectedFailuresGroup(click.Group):
    """Runs a command and turns the failures users can fix themselves into a `click.ClickException`: its
    message on stderr, exit status 1, no traceback (unless `--debug`)."""

    def invoke(self, ctx: click.Context) -> Any:
        cli_context = ctx.ensure_object(_CliContext)  # the commands' `pass_context` finds this one
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            settings = cli_context.loaded_settings
            message = describe_failure(exc, settings.database_url if settings else None)
            if message is None:
                raise
            raise click.ClickException(message) from exc


def describe_failure(exc: Exception, database_url: str | None) -> str | None:
    """What went wrong and what to do, in a line or two; None when `exc` is not an expected failure (a bug,
    which keeps its traceback). `database_url` is the warehouse the command used, if it got that far."""
    if isinstance(
        exc, (SettingsError, DatabaseUrlError, MigrationError, CatalogFileError, SearchQueryError, NothingToExportError)
    ):
        return str(exc)
    if database_url is None or not isinstance(exc, sa.exc.DBAPIError):
        return None
    if _is_missing_table_or_column(exc):
        return _schema_advice(database_url)
    if not isinstance(exc, sa.exc.OperationalError):  # e.g. an integrity error: a bug, not the environment
        return None
    url = make_url(database_url)
    reason = str(exc.orig).strip()
    if url.get_backend_name() == "postgresql" and reason.startswith(_LIBPQ_CONNECTION_FAILURES):
        return _postgres_connection_advice(reason, url)
    where = url.render_as_string(hide_password=True)
    if "unable to open database file" in reason:
        return f"cannot open the warehouse at {where}: check that its folder exists and is writable"
    first_line = reason.splitlines()[0] if reason else type(exc.orig).__name__
    return f"the warehouse at {where} failed: {first_line}\n(run with --debug for the traceback)"


def _is_missing_table_or_column(exc: sa.exc.DBAPIError) -> bool:
    # PostgreSQL: undefined_table, undefined_column. SQLite has no error codes for them, only the text.
    if getattr(exc.orig, "pgcode", None) in ("42P01", "42703"):
        return True
    return str(exc.orig).startswith(("no such table", "no such column"))


def _schema_advice(database_url: str) -> str | None:
    where = make_url(database_url).render_as_string(hide_password=True)
    engine = create_engine(database_url)
    try:
        versions = [m.version for m in applied(engine)]
        needed = latest_version(engine.dialect.name)
    except sa.exc.DBAPIError:
        return None  # the warehouse fails in more ways than a missing table: show the original failure
    finally:
        engine.dispose()
    if not versions:
        return f"the warehouse at {where} has no schema: run `spotify-pipeline migrate`"
    if max(versions) < needed:
        return (
            f"the warehouse at {where} is at schema version {max(versions)}, this release needs {needed}: "
            "run `spotify-pipeline migrate`"
        )
    return None  # migrated, yet a table is missing: not something a user caused


def _postgres_connection_advice(error: str, url: sa.URL) -> str:
    server = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}"
    # libpq: 'connection to server at "HOST", port PORT failed: FATAL:  database "x" does not exist'
    reason = error.split(" failed: ", 1)[-1].replace("FATAL:", "").strip().splitlines()[0]
    if "database" in reason and "does not exist" in reason:
        return (
            f"{server} has no database {url.database!r}: create it (createdb {url.database}) "
            "or name an existing one in DATABASE_URL"
        )
    if "password authentication failed" in reason or ("role" in reason and "does not exist" in reason):
        return f"{server} refused the login of user {url.username!r}: check the user and password in DATABASE_URL"
    if "timeout expired" in reason:
        return f"{server} did not answer in time: is the server up and reachable? Else {_CHECK_HOST_AND_PORT}"
    if "Connection refused" in reason:
        return f"{server} refused the connection: is the server running? Else {_CHECK_HOST_AND_PORT}"
    return f"cannot connect to {server}: {reason}\nCheck the host and port in DATABASE_URL, or run with --debug"


@click.group(cls=_ExpectedFailuresGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name="spotify-pipeline", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log progress at INFO level.")
@click.option("--debug", is_flag=True, help="Show the full traceback of a failure instead of a short message.")
def main(verbose: bool, debug: bool) -> None:
    """Enrich a local music catalogue with Spotify Web API data."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


class ProgressUpdate(Protocol):
    """What `progress_reporter` yields: record that `completed` of `total` units are done."""

    def __call__(self, completed: float, *, total: float | None = None, status: str = "") -> None: ...


@contextmanager
def progress_reporter(
    description: str, total: float | None = None, *, stream: TextIO | None = None
) -> Iterator[ProgressUpdate]:
    """Show how far a long task is, on stderr: a live progress bar on a terminal, otherwise (CI, a log file)
    a line every PROGRESS_LOG_INTERVAL_S seconds.

    Yields `update(completed, *, total=None, status="")`: `completed` units of `total` are done (`total`
    may be given or corrected on any update), and `status` is a short note such as "120,000 rows read".
    """
    stream = stream or sys.stderr
    if stream.isatty():
        with _progress_bar(description, total, stream) as update:
            yield update
    else:
        yield _ProgressLines(description, total, stream).update


@contextmanager
def _progress_bar(description: str, total: float | None, stream: TextIO) -> Iterator[ProgressUpdate]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=Console(file=stream)) as progress:
        task = progress.add_task(description, total=total, status="")

        def update(completed: float, *, total: float | None = None, status: str = "") -> None:
            progress.update(task, completed=completed, total=total, status=status)  # total=None: unchanged

        yield update


class _ProgressLines:
    def __init__(self, description: str, total: float | None, stream: TextIO) -> None:
        self.description = description
        self.total = total
        self.stream = stream
        self.last_line_at = time.monotonic()

    def update(self, completed: float, *, total: float | None = None, status: str = "") -> None:
        self.total = total or self.total
        if time.monotonic() - self.last_line_at < PROGRESS_LOG_INTERVAL_S:
            return
        self.last_line_at = time.monotonic()
        share = f" {min(completed / self.total, 1):.0%}" if self.total else ""
        click.echo(f"{self.description}:{share}{f' ({status})' if status else ''}", file=self.stream)


@main.command("migrate")
@click.option("--to", "target", type=int, default=None, help="Apply migrations up to this version only.")
@pass_context
def migrate_command(ctx: _CliContext, target: int | None) -> None:
    """Apply pending warehouse migrations to DATABASE_URL."""
    applied_now = migrate(
        ctx.engine(), target=target, on_apply=lambda m, seconds: click.echo(f"applied {m.filename} ({seconds:.2f}s)")
    )
    if not applied_now:
        click.echo("schema is up to date: nothing to apply")


@main.command("seed-catalog")
@click.option(
    "--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Catalogue CSV (title, artist, album, duration_ms, isrc, release_year). Default: the bundled sample.",
)
@pass_context
def seed_catalog_command(ctx: _CliContext, path: Path | None) -> None:
    """Load a local catalogue CSV into `songs`; bad rows are reported and skipped."""
    path = path or sample_catalog_path()
    engine = ctx.engine()
    with progress_reporter(f"seed-catalog {path.name}") as update:

        def on_progress(progress: LoadProgress) -> None:
            done_reading = progress.bytes_read == progress.bytes_total
            status = f"{progress.rows_read:,} rows read" + (", writing to the warehouse" if done_reading else "")
            update(progress.bytes_read, total=progress.bytes_total, status=status)

        report = load_catalog(engine, path, on_progress=on_progress)
    for error in report.errors:
        click.echo(f"skipped {error}", err=True)
    click.echo(
        f"read {report.rows_read} rows: {report.rows_loaded} loaded ({report.songs_added} new songs), "
        f"{report.rows_skipped} skipped"
    )


@main.command("export-catalog")
@click.option(
    "--out", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="JSON Lines file to write (gzipped when the name ends in .gz).",
)
@click.option(
    "--date", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD",
    help="Export the pulls as they stood on this UTC pull date (YYYY-MM-DD). Default: the latest.",
)
@pass_context
def export_catalog_command(ctx: _CliContext, path: Path, as_of: dt.datetime | None) -> None:
    """Write the warehouse's raw track pulls as a catalogue the emulator serves (record and replay).

    Every track id's latest pulled object, one per line: `spotify-pipeline emulator --catalog FILE` then
    answers as Spotify answered the pipeline, offline."""
    report = export_raw_tracks(ctx.engine(), path, as_of.date() if as_of is not None else None)
    left_out = f" ({report.not_found:,} not found by their latest pull, left out)" if report.not_found else ""
    click.echo(f"wrote {report.tracks:,} track objects to {path}{left_out}")
    click.echo(f"serve them: spotify-pipeline emulator --catalog {path}")


@main.command("search")
@click.argument("query")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print every field of the results as JSON.")
@click.option(
    "--enrich", is_flag=True,
    help="Also queue the unmatched or stale results for an on-demand enrichment run (does not wait for it).",
)
@pass_context
def search_command(ctx: _CliContext, query: str, limit: int, as_json: bool, enrich: bool) -> None:
    """Search the catalogue by title, artist or album (substring; case and accents ignored)."""
    results = search(query, limit, engine=ctx.engine())
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        click.echo(format_results(results))
    if enrich:
        from spotify_pipeline.enrichment_queue import build_request_queue

        misses = [r.song_id for r in results if r.enrichment_status in ("unmatched", "stale")]
        queued = 0
        if misses:
            queue = build_request_queue(ctx.settings)
            try:
                queued = queue.enqueue(misses, reason="search")
            finally:
                queue.close()
        if misses and not queued:
            click.echo(
                f"warning: the enrichment queue is unavailable, {len(misses)} song(s) not queued; "
                "the daily run enriches them anyway",
                err=True,
            )
        else:
            # With --json, stdout carries the JSON document only.
            click.echo(f"queued {queued} song(s) for enrichment", err=as_json)


def format_results(results: list[SearchResult]) -> str:
    """A fixed-width table of search results for a terminal."""
    if not results:
        return "no songs found"
    headers = ("id", "title", "artist", "album", "pop", "status", "spotify")
    rows = [
        (
            str(r.song_id),
            _clip(r.title, 36),
            _clip(r.artist, 24),
            _clip(r.album or "", 24),
            "" if r.popularity is None else str(r.popularity),
            r.enrichment_status,
            r.spotify_url or "",
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@main.command("demo")
@pass_context
def demo_command(ctx: _CliContext) -> None:
    """Set up the local warehouse end to end and show a search (what `make demo` runs)."""
    from spotify_pipeline.demo import run_demo

    run_demo(ctx.settings, echo=click.echo)


@main.command("local-setup")
@pass_context
def local_setup_command(ctx: _CliContext) -> None:
    """Prepare the local profile for the Dagster UI (what `make dev` runs first): migrate the warehouse, write
    .env (instance, emulator URL and test credentials) and start the bundled emulator if it is not running."""
    # Imported here, as for `demo`: it brings Dagster, which every other command would wait for.
    from spotify_pipeline.demo import prepare_local_profile

    prepare_local_profile(ctx.settings, Path.cwd().resolve(), echo=click.echo)


def _register_subcommands() -> None:
    from spotify_pipeline.auth_cli import auth_group
    from spotify_pipeline.emulator.cli import emulator_command

    main.add_command(emulator_command)
    main.add_command(auth_group)


_register_subcommands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
