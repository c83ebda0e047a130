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
    # "> :q" rather than "<> :q": the index range then starts after the exact matches instead of reading them.
    (f"{_TITLE_STARTS} AND lower(title) COLLATE {{c}} > :q", "lower(title) COLLATE {c}, title COLLATE {c}, song_id"),
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
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. undecodable bytes on the command line
        raise SearchQueryError("the search query is not valid text (it holds undecodable characters)") from None
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


# PostgreSQL, substring tiers (title, artist, album). A trigram GIN index finds a rare substring fast and
# a common one slowly (every match is fetched, then sorted), and row estimates for '%...%' are too rough
# for the planner to know which case it is in. So the three tiers first collect candidates in one round
# trip through GIN (bitmap scans only), each tier stopping at CANDIDATE_CAP rows. Below the cap a tier's
# candidates are all of them and are ranked as they are; at the cap the tier is ranked by the planner's
# own plan over every match (a common substring, rare in practice).
CANDIDATE_CAP = 500
# GIN reads one posting list per trigram of the pattern, so a long query is slow to look up whole. Its
# longest words select nearly the same rows for a fraction of the trigrams; strpos() (which no index
# answers) then applies the full query. Should those words be common, the cap sends the tier to the
# planner, which then uses the whole pattern.
SIGNATURE_MIN_QUERY_CHARS = 12
SIGNATURE_WORDS = 2
SIGNATURE_MIN_WORD_CHARS = 5  # shorter words are too often common ones ("love", "the") to narrow anything
_FIELD_TIERS = (
    (2, "title", "NOT " + _TITLE_STARTS.format(c='"C"')),
    (3, "artist", "strpos(lower(title), :q) = 0"),
    (4, "album", "strpos(lower(title), :q) = 0 AND strpos(lower(artist), :q) = 0"),
)
_BITMAP_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off"
_PLANNER_CHOICE = "SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = on; SET LOCAL enable_indexonlyscan = on"


def _capped_statement(signature_words: int) -> sa.TextClause:
    branches = []
    for tier, field, exclusion in _FIELD_TIERS:
        signature = " AND ".join(f"lower({field}) LIKE :signature{i} ESCAPE '!'" for i in range(signature_words))
        branches.append(
            f"(SELECT {_COLUMNS}, {tier} AS tier, length({field}) AS field_length, "
            f"strpos(lower({field}), :q) > 0 AND {exclusion} AS is_match "
            f"FROM songs_search WHERE {signature} LIMIT :cap)"
        )
    # Per tier: its best `limit` matches in rank order, or a single non-matching row when it has none, so
    # every tier reports how many candidates it saw.
    return sa.text(
        f"""
SELECT {_COLUMNS}, tier, is_match, candidates FROM (
    SELECT *,
        count(*) OVER (PARTITION BY tier) AS candidates,
        row_number() OVER (
            PARTITION BY tier ORDER BY is_match DESC, field_length, title COLLATE "C", song_id
        ) AS rank_in_tier
    FROM ({" UNION ALL ".join(branches)}) AS capped
) AS ranked
WHERE rank_in_tier <= :limit AND (is_match OR rank_in_tier = 1)
ORDER BY tier, rank_in_tier
"""
    )


_CAPPED = {words: _capped_statement(words) for words in range(1, SIGNATURE_WORDS + 1)}


def _signature(q: str) -> list[str]:
    """LIKE patterns the candidates must match: the query itself, or for a long query its longest words."""
    if len(q) >= SIGNATURE_MIN_QUERY_CHARS:
        words = sorted((w for w in q.split() if len(w) >= SIGNATURE_MIN_WORD_CHARS), key=len, reverse=True)
        if words:
            return ["%" + _like_escape(w) + "%" for w in words[:SIGNATURE_WORDS]]
    return ["%" + _like_escape(q) + "%"]


# Tiers 1 and 2 (exact and prefix title) in one round trip; both walk the (lower(title), title) index.
_PG_TITLE_IS = _TITLE_IS.format(c='"C"')
_PG_TITLE_STARTS = _TITLE_STARTS.format(c='"C"')
_TITLE_TIERS = sa.text(
    f"""
SELECT {_COLUMNS} FROM (
    (SELECT {_COLUMNS}, 0 AS tier FROM songs_search WHERE {_PG_TITLE_IS}
     ORDER BY title COLLATE "C", song_id LIMIT :limit)
    UNION ALL
    (SELECT {_COLUMNS}, 1 AS tier FROM songs_search WHERE {_PG_TITLE_STARTS} AND lower(title) COLLATE "C" > :q
     ORDER BY lower(title) COLLATE "C", title COLLATE "C", song_id LIMIT :limit)
) AS title_tiers
ORDER BY tier, lower(title) COLLATE "C", title COLLATE "C", song_id
LIMIT :limit
"""
)


def _search_postgres(conn: sa.Connection, q: str, params: dict[str, Any], limit: int) -> list[SearchResult]:
    signature = _signature(q)
    with conn.begin():
        results = [SearchResult(*row) for row in conn.execute(_TITLE_TIERS, {**params, "limit": limit})]
        if len(results) == limit:
            return results
        conn.exec_driver_sql(_BITMAP_ONLY)
        rows = conn.execute(
            _CAPPED[len(signature)],
            {
                **params,
                **{f"signature{i}": pattern for i, pattern in enumerate(signature)},
                "cap": CANDIDATE_CAP,
                "limit": limit - len(results),
            },
        ).all()
        planner_chooses = False
        for tier in (2, 3, 4):
            tier_rows = [row for row in rows if row.tier == tier]
            if tier_rows and tier_rows[0].candidates >= CANDIDATE_CAP:
                if not planner_chooses:
                    conn.exec_driver_sql(_PLANNER_CHOICE)
                    planner_chooses = True
                _run_tiers(conn, _STATEMENTS["postgresql"][tier : tier + 1], params, limit, results)
            else:
                results.extend(SearchResult(*row[:-3]) for row in tier_rows[: limit - len(results)] if row.is_match)
            if len(results) == limit:
                break
    return results


_engines: dict[str, sa.Engine] = {}


def _default_engine() -> sa.Engine:
    url = get_settings().database_url
    if url not in _engines:
        _engines[url] = create_engine(url)
    return _engines[url]
