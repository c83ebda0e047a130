"""The warehouse: engine, migrations, bulk loads, catalogue loading and search.

Plain SQLAlchemy Core on SQLite (local profile) or PostgreSQL (production); no Dagster, no Spotify client.
"""

from spotify_pipeline.warehouse.engine import create_engine, dialect_of

__all__ = ["create_engine", "dialect_of"]
