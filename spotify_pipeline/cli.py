"""`spotify-pipeline`: a thin command-line face over the warehouse, the emulator and the pipeline."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from spotify_pipeline.settings import Settings, SettingsError
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import CatalogFileError, load_catalog
from spotify_pipeline.warehouse.migrations import MigrationError, migrate
from spotify_pipeline.warehouse.search import SearchQueryError, SearchResult, search


class _CliContext:
    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = Settings.from_env()
            except SettingsError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings

    def engine(self):
        return create_engine(self.settings.database_url)


pass_context = click.make_pass_decorator(_CliContext, ensure=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress at INFO level.")
def main(verbose: bool) -> None:
    """Enrich a local music catalogue with Spotify Web API data."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command("migrate")
@click.option("--to", "target", type=int, default=None, help="Apply migrations up to this version only.")
@pass_context
def migrate_command(ctx: _CliContext, target: int | None) -> None:
    """Apply pending warehouse migrations to DATABASE_URL."""
    try:
        applied = migrate(
            ctx.engine(),
            target=target,
            on_apply=lambda m, seconds: click.echo(f"applied {m.filename} ({seconds:.2f}s)"),
        )
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    if not applied:
        click.echo("schema is up to date: nothing to apply")


@main.command("seed-catalog")
@click.option(
    "--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Catalogue CSV (title, artist, album, duration_ms, isrc, release_year). Default: the bundled sample.",
)
@pass_context
def seed_catalog_command(ctx: _CliContext, path: Path | None) -> None:
    """Load a local catalogue CSV into `songs`; bad rows are reported and skipped."""
    try:
        report = load_catalog(ctx.engine(), path)
    except CatalogFileError as exc:
        raise click.ClickException(str(exc)) from None
    for error in report.errors:
        click.echo(f"skipped {error}", err=True)
    click.echo(
        f"read {report.rows_read} rows: {report.rows_loaded} loaded ({report.songs_added} new songs), "
        f"{report.rows_skipped} skipped"
    )


@main.command("search")
@click.argument("query")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option(
    "--enrich", is_flag=True,
    help="Also queue the unmatched or stale results for an on-demand enrichment run (does not wait for it).",
)
@pass_context
def search_command(ctx: _CliContext, query: str, limit: int, as_json: bool, enrich: bool) -> None:
    """Search the catalogue by title, artist or album (case-insensitive substring)."""
    try:
        results = search(query, limit, engine=ctx.engine())
    except SearchQueryError as exc:
        raise click.ClickException(str(exc)) from None
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


def _register_subcommands() -> None:
    from spotify_pipeline.auth_cli import auth_group
    from spotify_pipeline.emulator.cli import emulator_command

    main.add_command(emulator_command)
    main.add_command(auth_group)


_register_subcommands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
