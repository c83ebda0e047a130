"""`make demo`: the whole local profile end to end, on the embedded defaults."""

from __future__ import annotations

import time
from collections.abc import Callable

from spotify_pipeline.settings import Settings
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import load_catalog, sample_catalog_path
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.search import search

DEMO_QUERIES = ("love", "night")


def run_demo(settings: Settings, echo: Callable[[str], None] = print) -> None:
    from spotify_pipeline.cli import format_results

    started = time.perf_counter()
    engine = create_engine(settings.database_url)
    echo(f"warehouse: {engine.url.render_as_string(hide_password=True)}")

    applied = migrate(engine)
    echo(f"[1/3] migrate: {len(applied)} migration(s) applied" if applied else "[1/3] migrate: schema up to date")

    report = load_catalog(engine)
    echo(
        f"[2/3] seed-catalog: {report.rows_read} rows from {sample_catalog_path().name}, "
        f"{report.songs_added} new songs, {report.rows_skipped} skipped"
    )

    for query in DEMO_QUERIES:
        echo(f"[3/3] search {query!r}:")
        echo(format_results(search(query, limit=10, engine=engine)))
    echo(f"done in {time.perf_counter() - started:.1f}s")
