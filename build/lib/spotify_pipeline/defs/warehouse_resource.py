"""The warehouse as a Dagster resource: one engine per run, from DATABASE_URL unless configured."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from spotify_pipeline.settings import get_settings
from spotify_pipeline.warehouse import create_engine


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse the pipeline reads the catalogue from and writes Spotify data to.

    SQLite (`sqlite:///.data/warehouse.db`, the default) locally, PostgreSQL in production. Every asset
    writes through one transaction per partition, so readers never see a half-written partition.
    """

    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset: DATABASE_URL.")

    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = create_engine(self.database_url or get_settings().database_url)
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
