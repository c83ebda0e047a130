"""Catalogue search over the `songs_search` view.

A case-insensitive substring match over title, artist and album, ranked in five tiers, identical on both
backends:
1. the title equals the query;
2. the title starts with the query (alphabetical, as autocomplete lists them);
3. the title contains the query; 4. the artist contains it; 5. the album contains it. Within tiers 3-5
   the closer the field's length to the query's (the larger the share of the field the query covers),
   the more similar and the higher it ranks.
Ties break on the title, then the song id (code-point order), so the order is total and stable.

Each tier is one indexed query, run in order until `limit` rows are found, so a common word answers from
its first tier without sorting every row that contains it. The SQL is fixed text with bound parameters:
the query never becomes SQL. PostgreSQL answers the tiers from btree and trigram GIN indexes; SQLite
narrows substring candidates with its FTS5 trigram index.
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


_COLUMNS = "song_id, title, artist, album, popularity, spotify_url, enrichment_status"
# {c} is the code-point collation: "C" on PostgreSQL, BINARY on SQLite.
_TITLE_IS = "lower(title) COLLATE {c} = :q"
_TITLE_STARTS = "lower(title) COLLATE {c} LIKE :prefix ESCAPE '!'"
_CONTAINS = "lower({field}) LIKE :pattern ESCAPE '!'"
_TIERS = (
    (_TITLE_IS, "title COLLATE {c}, song_id"),
    (f"{_TITLE_STARTS} AND NOT {_TITLE_IS}", "lower(title) COLLATE {c}, title COLLATE {c}, song_id"),
    (
        f"{_CONTAINS.format(field='title')} AND NOT {_TITLE_STARTS}",
        "length(title), title COLLATE {c}, song_id",
    ),
    (
        f"{_CONTAINS.format(field='artist')} AND NOT {_CONTAINS.format(field='title')}",
        "length(artist), title COLLATE {c}, song_id",
    ),
    (
        f"{_CONTAINS.format(field='album')} AND NOT {_CONTAINS.format(field='title')} "
        f"AND NOT {_CONTAINS.format(field='artist')}",
        "length(album), title COLLATE {c}, song_id",
    ),
)
SUBSTRING_TIERS = frozenset({2, 3, 4})
# On SQLite, FTS5's trigram index finds the candidate rows of substring tiers for queries of three or more
# characters; the LIKE predicates still decide, so both backends apply exactly the same rule.
_FTS_CANDIDATES = "song_id IN (SELECT rowid FROM songs_fts WHERE songs_fts MATCH :fts) AND "


def _statement(where: str, order: str, collation: str) -> sa.TextClause:
    return sa.text(
        f"SELECT {_COLUMNS} FROM songs_search WHERE {where.format(c=collation)} "
        f"ORDER BY {order.format(c=collation)} LIMIT :limit"
    )


_STATEMENTS = {
    "postgresql": [_statement(where, order, '"C"') for where, order in _TIERS],
    "sqlite": [_statement(where, order, "BINARY") for where, order in _TIERS],
    "sqlite_fts": [
        _statement((_FTS_CANDIDATES if tier in SUBSTRING_TIERS else "") + where, order, "BINARY")
        for tier, (where, order) in enumerate(_TIERS)
    ],
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
    params: dict[str, Any] = {"q": q, "prefix": escaped + "%", "pattern": "%" + escaped + "%"}
    dialect = engine.dialect.name
    statements = _STATEMENTS[dialect]
    if dialect == "sqlite" and len(q) >= TRIGRAM:
        statements = _STATEMENTS["sqlite_fts"]
        params["fts"] = '"' + q.replace('"', '""') + '"'
    with engine.connect() as conn:
        if dialect == "postgresql":
            return _search_postgres(conn, q, params, limit)
        return _run_tiers(conn, statements, params, limit, [])


def _run_tiers(
    conn: sa.Connection, statements: list[sa.TextClause], params: dict[str, Any], limit: int,
    results: list[SearchResult],
) -> list[SearchResult]:
    for statement in statements:
        rows = conn.execute(statement, {**params, "limit": limit - len(results)}).all()
        results.extend(SearchResult(*row) for row in rows)
        if len(results) == limit:
            break
    return results


# PostgreSQL, substring tiers. Trigram GIN indexes find rare substrings fast and common ones slowly (every
# match must be fetched and sorted); the per-field length indexes are the reverse (walked in rank order,
# they stop after `limit` matches, unless matches are rare). Row estimates for '%...%' patterns are too
# rough to let the planner pick, so: collect candidates through the GIN indexes (bitmap scans only) up
# to CANDIDATE_CAP; below the cap that set is complete and is ranked directly; at the cap the substring
# is common and the tiers walk the length indexes instead (index scans only).
CANDIDATE_CAP = 4_000
# A long query has many trigrams, and GIN reads a posting list for each; its longest word selects the
# candidates nearly as well at a fraction of the cost, and the full pattern still decides.
SIGNATURE_MIN_QUERY_CHARS = 16
SIGNATURE_MIN_WORD_CHARS = 5
_RANKED_CANDIDATES = sa.text(
    f"""
SELECT {_COLUMNS}, tier, candidates FROM (
    SELECT *, count(*) OVER () AS candidates FROM (
        SELECT {_COLUMNS},
            CASE WHEN lower(title) COLLATE "C" LIKE :prefix ESCAPE '!' THEN NULL
                 WHEN lower(title) LIKE :pattern ESCAPE '!' THEN 2
                 WHEN lower(artist) LIKE :pattern ESCAPE '!' THEN 3
                 WHEN lower(album) LIKE :pattern ESCAPE '!' THEN 4 END AS tier,
            CASE WHEN lower(title) LIKE :pattern ESCAPE '!' THEN length(title)
                 WHEN lower(artist) LIKE :pattern ESCAPE '!' THEN length(artist)
                 ELSE length(album) END AS field_length
        FROM songs_search
        WHERE lower(title) LIKE :signature ESCAPE '!' OR lower(artist) LIKE :signature ESCAPE '!'
           OR lower(album) LIKE :signature ESCAPE '!'
        LIMIT :cap
    ) AS capped
) AS counted
ORDER BY tier NULLS LAST, field_length, title COLLATE "C", song_id
LIMIT :limit
"""
)
_BITMAP_ONLY = ("SET LOCAL enable_seqscan = off", "SET LOCAL enable_indexscan = off",
                "SET LOCAL enable_indexonlyscan = off")
_INDEX_ONLY = ("SET LOCAL enable_bitmapscan = off", "SET LOCAL enable_indexscan = on",
               "SET LOCAL enable_indexonlyscan = on")


def _signature_pattern(q: str) -> str:
    if len(q) >= SIGNATURE_MIN_QUERY_CHARS:
        longest = max(q.split(), key=len)
        if len(longest) >= SIGNATURE_MIN_WORD_CHARS:
            return "%" + _like_escape(longest) + "%"
    return "%" + _like_escape(q) + "%"


def _search_postgres(conn: sa.Connection, q: str, params: dict[str, Any], limit: int) -> list[SearchResult]:
    tiers = _STATEMENTS["postgresql"]
    with conn.begin():
        results = _run_tiers(conn, tiers[:2], params, limit, [])
        if len(results) == limit:
            return results
        for setting in _BITMAP_ONLY:
            conn.exec_driver_sql(setting)
        rows = conn.execute(
            _RANKED_CANDIDATES,
            {**params, "signature": _signature_pattern(q), "cap": CANDIDATE_CAP, "limit": limit - len(results)},
        ).all()
        if not rows or rows[0].candidates < CANDIDATE_CAP:
            return results + [SearchResult(*row[:-2]) for row in rows if row.tier is not None]
        for setting in _INDEX_ONLY:
            conn.exec_driver_sql(setting)
        return _run_tiers(conn, tiers[2:], params, limit, results)


_engines: dict[str, sa.Engine] = {}


def _default_engine() -> sa.Engine:
    url = get_settings().database_url
    if url not in _engines:
        _engines[url] = create_engine(url)
    return _engines[url]
