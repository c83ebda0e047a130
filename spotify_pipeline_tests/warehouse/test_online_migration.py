"""The Spotify-columns migration must not take the catalogue's search offline (PostgreSQL)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.migrations import migrate

SONGS = 100_000


@pytest.mark.slow
def test_spotify_columns_migration_keeps_search_online(postgres_url):
    engine = create_engine(postgres_url, pool_size=2)
    migrate(engine, target=1)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO songs (title, artist, album, duration_ms, catalog_key) "
                "SELECT 'Song ' || g, 'Artist ' || (g % 5000), 'Album ' || (g % 20000), 180000 + g % 60000, "
                "'key-' || g FROM generate_series(1, :n) AS g"
            ),
            {"n": SONGS},
        )
        conn.execute(sa.text("ANALYZE songs"))

    # The search the catalogue already serves before any Spotify data: substring over the trigram indexes.
    query = sa.text(
        "SELECT id, title FROM songs WHERE lower(title) LIKE :p OR lower(artist) LIKE :p OR lower(album) LIKE :p "
        "ORDER BY id LIMIT 20"
    )
    stop = threading.Event()
    latencies: list[float] = []
    started_at: list[float] = []
    failures: list[BaseException] = []

    def search_loop() -> None:
        with engine.connect() as conn:
            n = 0
            while not stop.is_set():
                n += 1
                started = time.perf_counter()
                started_at.append(started)
                try:
                    rows = conn.execute(query, {"p": f"%artist {n % 5000}%"}).all()
                    conn.commit()
                    assert rows, "search found nothing"
                except BaseException as exc:  # noqa: BLE001 - every failure counts
                    failures.append(exc)
                    conn.rollback()
                latencies.append(time.perf_counter() - started)

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        time.sleep(0.3)  # searches are running before the migration starts
        migration_started = time.perf_counter()
        migrated = migrate(engine)
        migration_ended = time.perf_counter()
        time.sleep(0.3)
    finally:
        stop.set()
        searcher.join()
        engine.dispose()

    assert [m.version for m in migrated][0] == 2
    assert failures == []
    during = sum(migration_started <= t <= migration_ended for t in started_at)
    assert during >= 10, f"only {during} searches overlapped the migration"
    assert max(latencies) < 1.0, f"slowest search {max(latencies):.3f}s"
    print(f"{during} searches during the migration, slowest {max(latencies) * 1000:.0f} ms")
