"""Catalogue search over the `songs_search` view.

A substring match over title, artist and album that ignores case and accents: both the query and the
catalogue are compared *folded* (`fold_for_search`), so "bjorn" finds "Björn", "BEYONCE" finds "Beyoncé" and
"beyoncé" finds "Beyonce". The folded fields are stored beside the originals, in `songs.search_title`,
`search_artist` and `search_album`: the application writes them with every song (catalog.upsert_songs), and
migration 0014's post-migration step folded the songs that existed before them. The database itself never
folds, so there is one rule, in Python, identical on both backends, and the plain sqlite3 shell can still
write the file (it needs no function registered by this package). A song written without search keys (by
hand in a SQL shell, not through the application) is not found.

Results are ranked in five tiers, identical on both backends (all comparisons on the folded fields):
1. the title equals the query;
2. the title starts with the query (alphabetical, as autocomplete lists them);
3. the title contains the query; 4. the artist contains it; 5. the album contains it. Within tiers 3-5
   the closer the field's length to the query's (the larger the share of the field the query covers),
   the more similar and the higher it ranks.
Ties break on the title as written, then the song id (code-point order), so the order is total and stable.

Each tier is one indexed query over `songs`, run in order until `limit` rows are found, so a common word
answers from its first tier without sorting every row that contains it; the results are then read from
`songs_search` by id. The SQL is fixed text with bound parameters: the query never becomes SQL. PostgreSQL
answers the tiers from btree and trigram GIN indexes; SQLite narrows substring candidates with its FTS5
trigram index.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import sqlalchemy as sa

from spotify_pipeline.settings import get_settings
from spotify_pipeline.text import ASCII_LETTERS
from spotify_pipeline.warehouse.engine import create_engine, read_timestamp

MAX_QUERY_CHARS = 200
MAX_LIMIT = 100
TRIGRAM = 3

#: `songs` column holding the folded text of each searchable field.
SEARCH_KEY_COLUMNS = {"title": "search_title", "artist": "search_artist", "album": "search_album"}
# Combining marks of the blocks that Latin, Greek and Cyrillic accents come from. Marks of other scripts
# (Indic vowel signs, the kana voicing mark) are part of their letter and stay.
_DIACRITICS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold_for_search(text: str) -> str:
    """`text` as search compares it: case-folded, accents removed, compatibility forms (ligatures,
    full-width letters) spelled plainly, runs of whitespace made one space.

    ``fold_for_search("  Björn  SØRENSEN ") == "bjorn sorensen"``. Casefolding comes first because it can
    itself produce accents (the dotted capital I folds to i + a combining dot); recomposing (NFC) at the end
    keeps scripts whose marks stay (Hangul, kana) in their usual form.
    """
    if text.isascii():  # most catalogue text: the rule below reduces to this, several times faster
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(ASCII_LETTERS))
    return " ".join(unicodedata.normalize("NFC", _DIACRITICS.sub("", decomposed)).split())


def search_keys(song: Mapping[str, str | None]) -> dict[str, str | None]:
    """The search-key columns of the searchable fields (title, artist, album) that `song` holds."""
    return {
        column: None if song[field] is None else fold_for_search(song[field])
        for field, column in SEARCH_KEY_COLUMNS.items()
        if field in song
    }


class SearchQueryError(ValueError):
    """The search query or its options are not acceptable."""


@dataclass(frozen=True)
class SearchResult:
    """One row of the `songs_search` view, with the same types on both backends (timestamps as aware UTC
    datetimes, `explicit` as a bool)."""

    song_id: int
    title: str
    artist: str
    album: str | None
    duration_ms: int | None
    isrc: str | None
    release_year: int | None
    spotify_track_id: str | None
    spotify_uri: str | None
    spotify_url: str | None
    popularity: int | None
    popularity_read_at: dt.datetime | None
    preview_url: str | None
    album_image_url: str | None
    explicit: bool | None
    match_method: str | None
    match_confidence: float | None
    synced_at: dt.datetime | None
    enrichment_status: str

    @classmethod
    def from_row(cls, row: sa.Row) -> SearchResult:
        """A result from a `songs_search` row selected in field order."""
        values = list(row)
        for index in _TIMESTAMP_FIELDS:
            values[index] = read_timestamp(values[index])
        if values[_EXPLICIT_FIELD] is not None:
            values[_EXPLICIT_FIELD] = bool(values[_EXPLICIT_FIELD])  # SQLite stores booleans as 0/1
        return cls(*values)

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready: timestamps as ISO 8601 strings."""
        return {
            name: value.isoformat() if isinstance(value, dt.datetime) else value
            for name, value in asdict(self).items()
        }


_FIELDS = [f.name for f in fields(SearchResult)]
_TIMESTAMP_FIELDS = (_FIELDS.index("popularity_read_at"), _FIELDS.index("synced_at"))
_EXPLICIT_FIELD = _FIELDS.index("explicit")
# Search keys compare in code-point order on both backends: their column is COLLATE "C" on PostgreSQL and
# BINARY (SQLite's default) on SQLite. {c} is that collation for the title as written, used to break ties.
_TITLE_IS = "search_title = :q"
_TITLE_STARTS = "search_title LIKE :prefix ESCAPE '!'"
_CONTAINS = "search_{field} LIKE :pattern ESCAPE '!'"
_TIERS = (
    (_TITLE_IS, "title COLLATE {c}, id"),
    # "> :q" rather than "<> :q": the index range then starts after the exact matches instead of reading them.
    (f"{_TITLE_STARTS} AND search_title > :q", "search_title, title COLLATE {c}, id"),
    (
        f"{_CONTAINS.format(field='title')} AND NOT {_TITLE_STARTS}",
        "length(search_title), title COLLATE {c}, id",
    ),
    (
        f"{_CONTAINS.format(field='artist')} AND NOT {_CONTAINS.format(field='title')}",
        "length(search_artist), title COLLATE {c}, id",
    ),
    (
        f"{_CONTAINS.format(field='album')} AND NOT {_CONTAINS.format(field='title')} "
        f"AND NOT {_CONTAINS.format(field='artist')}",
        "length(search_album), title COLLATE {c}, id",
    ),
)
SUBSTRING_TIERS = frozenset({2, 3, 4})
# On SQLite, FTS5's trigram index finds the candidate rows of substring tiers for queries of three or more
# characters; the LIKE predicates still decide, so both backends apply exactly the same rule.
_FTS_CANDIDATES = "id IN (SELECT rowid FROM songs_fts WHERE songs_fts MATCH :fts) AND "


def _statement(where: str, order: str, collation: str) -> sa.TextClause:
    return sa.text(f"SELECT id FROM songs WHERE {where} ORDER BY {order.format(c=collation)} LIMIT :limit")


_STATEMENTS = {
    "postgresql": [_statement(where, order, '"C"') for where, order in _TIERS],
    "sqlite": [_statement(where, order, "BINARY") for where, order in _TIERS],
    "sqlite_fts": [
        _statement((_FTS_CANDIDATES if tier in SUBSTRING_TIERS else "") + where, order, "BINARY")
        for tier, (where, order) in enumerate(_TIERS)
    ],
}
# The results, read by id once the ranking is done. (Joining the view into the ranking statements instead
# measured slower on PostgreSQL: every statement then plans the view.) Typed columns let SQLAlchemy reuse the
# result metadata; PostgreSQL takes the ids as one array parameter, a third faster than an IN list.
_SELECT_RESULTS = f"SELECT {', '.join(_FIELDS)} FROM songs_search WHERE song_id"
_RESULT_TYPES = [sa.column(name) for name in _FIELDS]
_RESULT_ROWS = {
    "postgresql": sa.text(f"{_SELECT_RESULTS} = ANY(:ids)").columns(*_RESULT_TYPES),
    "sqlite": sa.text(f"{_SELECT_RESULTS} IN :ids")
    .bindparams(sa.bindparam("ids", expanding=True))
    .columns(*_RESULT_TYPES),
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
    folded = fold_for_search(text)
    if not folded:
        raise SearchQueryError("the search query is empty once accents are ignored")
    return folded


def _like_escape(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def search(query: str, limit: int = 20, *, engine: sa.Engine | None = None) -> list[SearchResult]:
    """Songs whose title, artist or album contain `query` (ignoring case and accents), best match first.

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
    # One transaction for the ranking and the reading of the results: no extra round trip to end it.
    with engine.connect() as conn, conn.begin():
        if dialect == "postgresql":
            song_ids = _search_postgres(conn, q, params, limit)
        else:
            song_ids = _run_tiers(conn, statements, params, limit, [])
        return _results(conn, song_ids)


def _results(conn: sa.Connection, song_ids: list[int]) -> list[SearchResult]:
    """The `songs_search` rows of `song_ids`, in that order."""
    if not song_ids:
        return []
    by_id = {row.song_id: row for row in conn.execute(_RESULT_ROWS[conn.dialect.name], {"ids": song_ids})}
    # A song deleted since its id was ranked is left out rather than failing the search.
    return [SearchResult.from_row(by_id[song_id]) for song_id in song_ids if song_id in by_id]


def _run_tiers(
    conn: sa.Connection, statements: list[sa.TextClause], params: dict[str, Any], limit: int, song_ids: list[int]
) -> list[int]:
    for statement in statements:
        song_ids.extend(conn.execute(statement, {**params, "limit": limit - len(song_ids)}).scalars())
        if len(song_ids) == limit:
            break
    return song_ids


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
    (2, "title", "NOT " + _TITLE_STARTS),
    (3, "artist", "strpos(search_title, :q) = 0"),
    (4, "album", "strpos(search_title, :q) = 0 AND strpos(search_artist, :q) = 0"),
)
_BITMAP_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off"
_PLANNER_CHOICE = "SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = on; SET LOCAL enable_indexonlyscan = on"


def _capped_statement(signature_words: int) -> sa.TextClause:
    branches = []
    for tier, field, exclusion in _FIELD_TIERS:
        key = SEARCH_KEY_COLUMNS[field]
        signature = " AND ".join(f"{key} LIKE :signature{i} ESCAPE '!'" for i in range(signature_words))
        branches.append(
            f"(SELECT id, title, {tier} AS tier, length({key}) AS field_length, "
            f"strpos({key}, :q) > 0 AND {exclusion} AS is_match "
            f"FROM songs WHERE {signature} LIMIT :cap)"
        )
    # Per tier: its best `limit` matches in rank order, or a single non-matching row when it has none, so
    # every tier reports how many candidates it saw.
    return sa.text(
        f"""
SELECT id, tier, is_match, candidates FROM (
    SELECT *,
        count(*) OVER (PARTITION BY tier) AS candidates,
        row_number() OVER (
            PARTITION BY tier ORDER BY is_match DESC, field_length, title COLLATE "C", id
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


# Tiers 1 and 2 (exact and prefix title) in one round trip; both walk the (search_title, title) index.
_TITLE_TIERS = sa.text(
    f"""
SELECT id FROM (
    (SELECT id, title, search_title, 0 AS tier FROM songs WHERE {_TITLE_IS}
     ORDER BY title COLLATE "C", id LIMIT :limit)
    UNION ALL
    (SELECT id, title, search_title, 1 AS tier FROM songs WHERE {_TITLE_STARTS} AND search_title > :q
     ORDER BY search_title, title COLLATE "C", id LIMIT :limit)
) AS title_tiers
ORDER BY tier, search_title, title COLLATE "C", id
LIMIT :limit
"""
)


def _search_postgres(conn: sa.Connection, q: str, params: dict[str, Any], limit: int) -> list[int]:
    """The ranked ids; runs in the caller's transaction, which scopes the SET LOCAL planner settings."""
    song_ids = list(conn.execute(_TITLE_TIERS, {**params, "limit": limit}).scalars())
    if len(song_ids) == limit:
        return song_ids
    signature = _signature(q)
    conn.exec_driver_sql(_BITMAP_ONLY)
    rows = conn.execute(
        _CAPPED[len(signature)],
        {
            **params,
            **{f"signature{i}": pattern for i, pattern in enumerate(signature)},
            "cap": CANDIDATE_CAP,
            "limit": limit - len(song_ids),
        },
    ).all()
    planner_chooses = False
    for tier in (2, 3, 4):
        tier_rows = [row for row in rows if row.tier == tier]
        if tier_rows and tier_rows[0].candidates >= CANDIDATE_CAP:
            if not planner_chooses:
                conn.exec_driver_sql(_PLANNER_CHOICE)
                planner_chooses = True
            _run_tiers(conn, _STATEMENTS["postgresql"][tier : tier + 1], params, limit, song_ids)
        else:
            song_ids.extend(row.id for row in tier_rows[: limit - len(song_ids)] if row.is_match)
        if len(song_ids) == limit:
            break
    return song_ids


_engines: dict[str, sa.Engine] = {}


def _default_engine() -> sa.Engine:
    url = get_settings().database_url
    if url not in _engines:
        _engines[url] = create_engine(url)
    return _engines[url]
