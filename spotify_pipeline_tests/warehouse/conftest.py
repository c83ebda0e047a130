from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.migrations import migrate


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """A migrated, empty warehouse on SQLite and on PostgreSQL."""
    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def empty_engine(database_url: str) -> Iterator[sa.Engine]:
    """An unmigrated warehouse database on SQLite and on PostgreSQL."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()
