"""Catalogue search over the `songs_search` view.

A case-insensitive substring match over title, artist and album. Ranking, identical on both backends:
1. the title equals the query, 2. the title starts with it, 3. everything else by similarity: a match in
the title beats one in the artist, which beats one in the album, and within a field the closer the field's
length is to the query's (the larger the share of the field the query covers), the better. Ties break on
title, then song id, so the order is total and stable.

The SQL is fixed text with bound parameters; the query never becomes SQL. PostgreSQL answers the
substring predicates from trigram GIN indexes; SQLite narrows candidates with its FTS5 trigram index.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from spotify_pipeline.settings import get_settings
from spotify_pipeline.warehouse.engine import create_engine

MAX_QUERY_CHARS = 200
MAX_LIMIT = 100
TRIGRAM = 3


class SearchQueryError(ValueError):
    """The search query or its options are not acceptable."""


@dataclass(frozen=True)
class SearchResult:
    song_id: int
    title: str
    artist: str
    album: str | None
    popularity: int | None
    spotify_url: str | None
    enrichment_status: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SELECT = """
SELECT song_id, title, artist, album, popularity, spotify_url, enrichment_status
FROM songs_search
WHERE ({where})
ORDER BY
    CASE WHEN lower(title) = :q THEN 0 WHEN lower(title) LIKE :prefix ESCAPE '!' THEN 1 ELSE 2 END,
    CASE WHEN lower(title) LIKE :pattern ESCAPE '!' THEN 0
         WHEN lower(artist) LIKE :pattern ESCAPE '!' THEN 1 ELSE 2 END,
    CASE WHEN lower(title) LIKE :pattern ESCAPE '!' THEN length(title)
         WHEN lower(artist) LIKE :pattern ESCAPE '!' THEN length(artist) ELSE length(album) END,
    {title_order},
    song_id
LIMIT :limit
"""
_SUBSTRING = (
    "lower(title) LIKE :pattern ESCAPE '!' OR lower(artist) LIKE :pattern ESCAPE '!' "
    "OR lower(album) LIKE :pattern ESCAPE '!'"
)
# FTS5's trigram index finds candidate rows for queries of three or more characters; the LIKE predicates
# then decide, so both backends apply exactly the same match rule.
_SQLITE_CANDIDATES = "song_id IN (SELECT rowid FROM songs_fts WHERE songs_fts MATCH :fts) AND ({substring})"

# Titles tie-break in code-point order on both backends, whatever the database's default collation.
_STATEMENTS = {
    "postgresql": sa.text(_SELECT.format(where=_SUBSTRING, title_order='title COLLATE "C"')),
    "sqlite": sa.text(_SELECT.format(where=_SUBSTRING, title_order="title COLLATE BINARY")),
    "sqlite_fts": sa.text(
        _SELECT.format(where=_SQLITE_CANDIDATES.format(substring=_SUBSTRING), title_order="title COLLATE BINARY")
    ),
}


def _normalize_query(query: object) -> str:
    if not isinstance(query, str):
        raise SearchQueryError(f"the search query must be text, got {type(query).__name__}")
    text = " ".join(query.split())
    if not text:
        raise SearchQueryError("the search query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise SearchQueryError(f"the search query is longer than {MAX_QUERY_CHARS} characters ({len(text)})")
    if "\x00" in text:
        raise SearchQueryError("the search query contains a NUL character")
    return text.lower()


def _like_escape(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def search(query: str, limit: int = 20, *, engine: sa.Engine | None = None) -> list[SearchResult]:
    """Songs whose title, artist or album contain `query` (case-insensitive), best match first.

    `engine` defaults to the warehouse named by `DATABASE_URL`.
    """
    q = _normalize_query(query)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise SearchQueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")
    engine = engine or _default_engine()
    escaped = _like_escape(q)
    params: dict[str, Any] = {"q": q, "prefix": escaped + "%", "pattern": "%" + escaped + "%", "limit": limit}
    dialect = engine.dialect.name
    statement = _STATEMENTS[dialect]
    if dialect == "sqlite" and len(q) >= TRIGRAM:
        statement = _STATEMENTS["sqlite_fts"]
        params["fts"] = '"' + q.replace('"', '""') + '"'
    with engine.connect() as conn:
        rows = conn.execute(statement, params).all()
    return [SearchResult(*row) for row in rows]


_engines: dict[str, sa.Engine] = {}


def _default_engine() -> sa.Engine:
    url = get_settings().database_url
    if url not in _engines:
        _engines[url] = create_engine(url)
    return _engines[url]
