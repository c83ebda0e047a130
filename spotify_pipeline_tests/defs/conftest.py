from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from spotify_pipeline.defs.jobs import DAILY_ASSETS
from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import load_catalog
from spotify_pipeline.warehouse.migrations import migrate

# Tables the daily job writes, with the columns that hold when something happened rather than what it
# is: a re-run legitimately moves those, so content checksums leave them out.
PIPELINE_TABLES = (
    "songs",
    "spotify_track_matches",
    "spotify_raw_responses",
    "spotify_tracks",
    "spotify_artists",
    "spotify_albums",
    "spotify_track_artists",
    "spotify_popularity_snapshots",
    "spotify_popularity_movers",
)


@dataclass
class Pipeline:
    """A migrated warehouse holding the sample catalogue, an emulator, and resources wired to both."""

    database_url: str
    engine: sa.Engine
    emulator: Any
    cache_path: Path

    def resources(self, **spotify_overrides: Any) -> dict[str, Any]:
        spotify = {
            "client_id": self.emulator.client_id,
            "client_secret": self.emulator.client_secret,
            "api_base_url": self.emulator.api_base_url,
            "accounts_base_url": self.emulator.accounts_base_url,
            "rate_limit_per_minute": 1_000_000,
            "cache_path": str(self.cache_path),
            **spotify_overrides,
        }
        return {
            "spotify": SpotifyResource(**spotify),
            "warehouse": WarehouseResource(database_url=self.database_url),
        }

    def materialize(self, assets=DAILY_ASSETS, *, partition_key: str | None = None, run_config=None, **kwargs):
        partitioned = any(asset.partitions_def is not None for asset in assets)
        return dg.materialize(
            assets,
            resources=self.resources(**kwargs),
            partition_key=(partition_key or utc_today().isoformat()) if partitioned else None,
            run_config=run_config,
            raise_on_error=False,
        )

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar_one()

    def rows(self, sql: str, **params: Any) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]


#: Run config of the daily job with Dagster's multiprocess executor, as production runs it.
MULTIPROCESS = {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}


def production_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, emulator: Any, cache_path: Path, **extra: str
) -> None:
    """The environment a deployment runs the job in (settings read by every step process), on `emulator`."""
    values = {
        "DATABASE_URL": database_url,
        "SPOTIFY_CLIENT_ID": emulator.client_id, "SPOTIFY_CLIENT_SECRET": emulator.client_secret,
        "SPOTIFY_API_BASE_URL": emulator.api_base_url, "SPOTIFY_ACCOUNTS_BASE_URL": emulator.accounts_base_url,
        "SPOTIFY_RATE_LIMIT_PER_MINUTE": "1000000", "SPOTIFY_CACHE_PATH": str(cache_path),
        **extra,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    if "REDIS_URL" not in extra:
        monkeypatch.delenv("REDIS_URL", raising=False)


def make_pipeline(database_url: str, emulator: Any, cache_path: Path, catalogue: Path | None = None) -> Pipeline:
    """A migrated warehouse holding `catalogue` (default: the sample catalogue), wired to `emulator`."""
    engine = create_engine(database_url)
    migrate(engine)
    load_catalog(engine, catalogue)
    return Pipeline(database_url=database_url, engine=engine, emulator=emulator, cache_path=cache_path)


@pytest.fixture
def pipeline(sqlite_url: str, emulator, tmp_path: Path) -> Iterator[Pipeline]:
    """The sample catalogue on SQLite against the shared extended-mode emulator, limits off."""
    emulator.configure(window_limit=None)
    built = make_pipeline(sqlite_url, emulator, tmp_path / "spotify_cache.db")
    yield built
    built.engine.dispose()


def table_fingerprint(
    engine: sa.Engine,
    tables: Sequence[str] = PIPELINE_TABLES,
    ignored_columns: Mapping[str, set[str]] | None = None,
) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent content checksum of each table (no `*_at` or ignored columns)."""
    import hashlib
    import json

    fingerprint = {}
    with engine.connect() as conn:
        for table in tables:
            ignored = (ignored_columns or {}).get(table, set())
            columns = [
                c["name"] for c in sa.inspect(conn).get_columns(table)
                if not c["name"].endswith("_at") and c["name"] not in ignored
            ]
            rows = conn.execute(sa.text(f"SELECT {', '.join(columns)} FROM {table}")).all()
            digests = sorted(
                hashlib.sha256(json.dumps([_canonical(v) for v in row], default=str).encode()).hexdigest()
                for row in rows
            )
            fingerprint[table] = (len(rows), hashlib.sha256("".join(digests).encode()).hexdigest())
    return fingerprint


def _canonical(value: Any) -> Any:
    """The same value as both backends return it (SQLite: ints for booleans, text for JSON and dates)."""
    import datetime as dt
    import json

    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    return value


def recorded_requests(engine: sa.Engine, run_id: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT endpoint, sum(requests) FROM spotify_api_usage WHERE run_id = :r GROUP BY endpoint"),
            {"r": run_id},
        ).all()
    return {endpoint: int(total) for endpoint, total in rows}


def assert_usage_matches_spotify(engine: sa.Engine, run_id: str, stats: dict) -> None:
    recorded = recorded_requests(engine, run_id)
    assert sum(recorded.values()) == stats["total_requests"], (recorded, stats["by_endpoint"])
    assert recorded.get("POST /api/token", 0) == stats["by_endpoint"].get("/api/token", 0)
    assert recorded.get("GET /search", 0) == stats["by_endpoint"].get("/v1/search", 0)
