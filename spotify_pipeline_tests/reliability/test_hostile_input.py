"""Hostile and broken input: search queries, catalogue CSV rows and Spotify API bodies (truncated JSON,
wrong types, null entries in batches, huge strings, odd Unicode). Property-based: whatever comes in, the
outcome is a result, a clear typed error or a counted skip, and nothing malformed reaches the tables.
SQL injection attempts through search and CSV fields change nothing. Both warehouse backends."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import hashlib
import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from spotify_pipeline.cli import main
from spotify_pipeline.defs.catalog.assets import spotify_catalog
from spotify_pipeline.defs.catalog.normalize import normalize_tracks
from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.matching.matcher import SongToMatch, TrackMatcher
from spotify_pipeline.spotify import SpotifyClientConfig, build_client
from spotify_pipeline.spotify.errors import SpotifyError, SpotifyResponseError
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import CatalogFileError, load_catalog, sample_catalog_path
from spotify_pipeline.warehouse.enrichment import (
    MatchAttempt,
    land_raw_partition,
    record_match_attempts,
    upsert_catalog,
    write_popularity_snapshot,
)
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.search import MAX_LIMIT, SearchQueryError, SearchResult, fold_for_search, search
from spotify_pipeline_tests.reliability.conftest import build_pipeline, catalogue_subset, fingerprint

pytestmark = pytest.mark.reliability

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

INJECTIONS = (
    "'; DROP TABLE songs; --",
    "x' OR '1'='1",
    "\" OR \"\"=\"",
    "1; DELETE FROM songs WHERE 1=1",
    "%' UNION SELECT account, scopes, scopes, scopes, 1, scopes, scopes FROM spotify_oauth_tokens --",
    "'); UPDATE songs SET title = 'pwned'; --",
    "\\'; TRUNCATE spotify_tracks; --",
    "songs_fts MATCH '*'",
    "\") OR 1=1 --",
    "%%_!%!_",
    "' || (SELECT sqlite_version()) || '",
    "$$; DROP TABLE songs; $$",
    "NEAR(a b) OR \"x\"*",
)

# Odd text: any code point (controls, combining marks, bidi controls, private use, ...) and lone surrogates,
# which is what Python makes of bytes that are not UTF-8 on a command line (`spotify-pipeline search $'\xff'`).
odd_text = st.text(alphabet=st.characters(codec=None, categories=None), max_size=40)
surrogates = st.text(alphabet=st.sampled_from(["\ud800", "\udbff", "\udc00", "\udcff", "\udfff"]), min_size=1, max_size=3)
hostile_text = st.one_of(
    st.text(max_size=60),
    odd_text,
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), surrogates, st.text(max_size=5)),
    st.sampled_from(INJECTIONS),
    st.text(alphabet="%_!\\'\"*()[]^$-:.~ \t\n\x00", max_size=12),
    st.integers(150, 5000).map(lambda n: "la" * n),  # huge
)


@pytest.fixture
def catalogue_engine(database_url):
    engine = create_engine(database_url)
    migrate(engine)
    load_catalog(engine, sample_catalog_path())
    yield engine
    engine.dispose()


# -- search ---------------------------------------------------------------------------------------------------


@given(
    query=st.one_of(hostile_text, st.none(), st.integers(), st.binary(max_size=10), st.lists(st.text(), max_size=2)),
    limit=st.one_of(st.integers(-3, MAX_LIMIT + 3), st.booleans(), st.none(), st.floats(allow_nan=True), st.text(max_size=3)),
)
@example(query="caf\udce9", limit=10)  # found: reached the database and failed there to encode
@EXAMPLES
def test_search_answers_or_raises_a_search_query_error(catalogue_engine, query, limit):
    try:
        results = search(query, limit, engine=catalogue_engine)
    except SearchQueryError as exc:
        assert str(exc)
        return
    assert isinstance(results, list) and len(results) <= limit
    assert all(isinstance(r, SearchResult) for r in results)
    assert len({r.song_id for r in results}) == len(results)


def test_search_command_with_undecodable_bytes_is_a_usage_error(catalogue_engine):
    result = CliRunner().invoke(
        main, ["search", "caf\udce9"],  # "café" in Latin-1 on a UTF-8 command line
        env={"DATABASE_URL": catalogue_engine.url.render_as_string(hide_password=False)},
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert "Error: the search query is not valid text" in result.output


# Queries cut from the catalogue itself, in any case: every song whose title, artist or album contains the
# query must be found (up to the limit), and nothing else.
@st.composite
def catalogue_queries(draw):
    rows = _catalogue_rows()
    title, artist, album = draw(st.sampled_from(rows))
    text = draw(st.sampled_from([t for t in (title, artist, album) if t]))
    start = draw(st.integers(0, max(0, len(text) - 1)))
    end = draw(st.integers(start + 1, len(text)))
    piece = text[start:end]
    flips = draw(st.lists(st.booleans(), min_size=len(piece), max_size=len(piece)))
    return "".join(c.swapcase() if f else c for c, f in zip(piece, flips))


_ROWS: list[tuple[str, str, str]] = []


def _catalogue_rows() -> list[tuple[str, str, str]]:
    if not _ROWS:
        with sample_catalog_path().open(encoding="utf-8", newline="") as f:
            _ROWS.extend((r["title"], r["artist"], r["album"]) for r in csv.DictReader(f))
    return _ROWS


@given(query=catalogue_queries())
@EXAMPLES
def test_search_finds_exactly_the_songs_containing_the_query(catalogue_engine, query):
    normalized = fold_for_search(query)
    if not normalized:
        return
    with catalogue_engine.connect() as conn:
        songs = conn.execute(sa.text("SELECT id, title, artist, album FROM songs")).all()
    expected = {song_id for song_id, *fields in songs if any(normalized in fold_for_search(f) for f in fields if f)}
    found = [r.song_id for r in search(query, MAX_LIMIT, engine=catalogue_engine)]
    assert len(found) == len(set(found))
    assert set(found) <= expected, f"{query!r}: {set(found) - expected} do not contain it"
    assert len(found) == min(MAX_LIMIT, len(expected)), f"{query!r}: missed {len(expected) - len(found)}"


def test_sql_injection_through_search_changes_nothing(catalogue_engine):
    before = fingerprint(catalogue_engine)
    tables = set(sa.inspect(catalogue_engine).get_table_names())
    for payload in INJECTIONS:
        for query in (payload, payload.upper(), f"love {payload}"):
            try:
                results = search(query, 50, engine=catalogue_engine)
            except SearchQueryError:
                continue
            # Injected text is only ever a value to look for: nothing matches it.
            assert results == [] or all(
                query.lower() in " ".join(str(v) for v in (r.title, r.artist, r.album)).lower() for r in results
            )
    assert fingerprint(catalogue_engine) == before
    assert set(sa.inspect(catalogue_engine).get_table_names()) == tables


# -- catalogue CSV ---------------------------------------------------------------------------------------------

ISRC_OK = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")
INT32_MAX = 2**31 - 1
numbers_as_text = st.one_of(
    st.integers(-10, 10**7).map(str),
    st.integers(2**31 - 5, 2**64).map(str),  # beyond the warehouse's INTEGER
    st.sampled_from(["", " ", "1_000", "+5", "0x10", "1e3", "3.5", "٣٢١", "１２３", "NaN", "-0", "\u00a0123"]),
    hostile_text,
)
NON_ASCII_DIGITS = "٠١٢٣٤٥٦٧٨٩۰۱۲۳०१२३४५６７８９"
isrc_like = st.one_of(
    st.just(""),
    st.sampled_from(["USRC17607839", "us-rc1-76-07839", "GBAYE0000351", "USRC1760783", "USRC1760783X"]),
    st.builds(lambda p, d: p + d, st.sampled_from(["USRC1", "GBAYE", "QZ9AB"]),
              st.text(alphabet=NON_ASCII_DIGITS + "0123456789", min_size=7, max_size=7)),  # any script's digits
    hostile_text,
)
COLUMNS = ("title", "artist", "album", "duration_ms", "isrc", "release_year")
FIELD_VALUES = {
    "title": hostile_text,
    "artist": hostile_text,
    "album": hostile_text,
    "duration_ms": numbers_as_text,
    "isrc": isrc_like,
    "release_year": numbers_as_text,
}
VALID_ROWS = (
    {"title": "Restless Heart", "artist": "Wren Reyes", "album": "Quiet Garden", "duration_ms": "154765",
     "isrc": "ITQEG7624339", "release_year": "1997"},
    {"title": "Björk's Song", "artist": "Aurélien & the Kingdom", "album": "", "duration_ms": "",
     "isrc": "", "release_year": ""},
)


@st.composite
def csv_row(draw) -> dict[str, str]:
    """A valid row with one to three fields replaced by something hostile."""
    row = dict(draw(st.sampled_from(VALID_ROWS)))
    for column in draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=3, unique=True)):
        row[column] = draw(FIELD_VALUES[column])
    return row


csv_rows = st.lists(st.one_of(csv_row(), st.sampled_from(VALID_ROWS)), min_size=1, max_size=6)


def _write_csv(path: Path, rows: list[dict[str, str]], extra_field: bool) -> bool:
    """Write the rows; returns whether the file is valid UTF-8 (False when a row holds a lone surrogate)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["title", "artist", "album", "duration_ms", "isrc", "release_year"])
    for i, row in enumerate(rows):
        values = list(row.values())
        writer.writerow(values + (["surplus"] if extra_field and i == 0 else []))
    text = buffer.getvalue()
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _malformed_songs(engine: sa.Engine) -> list[tuple]:
    """Rows of `songs` that break the catalogue's own rules (should always be empty)."""
    bad = []
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, title, artist, album, duration_ms, isrc, release_year FROM songs")).all()
    for row in rows:
        _, title, artist, album, duration, isrc, year = row
        texts = [t for t in (title, artist, album) if t is not None]
        if (
            not title or not title.strip() or not artist or not artist.strip()
            or any(t != t.strip() or len(t) > 500 for t in texts)
            or any(unicodedata.category(c) == "Cc" for t in texts for c in t)
            or (duration is not None and not 0 < duration <= INT32_MAX)
            or (isrc is not None and not ISRC_OK.match(isrc))
            or (year is not None and not 1000 <= year <= 2999)
        ):
            bad.append(tuple(row))
    return bad


@given(rows=csv_rows, extra_field=st.booleans())
# Found: digits of other scripts passed the ISRC check and a duration beyond INTEGER passed the range check;
# the database refused them, failing the whole file.
@example(rows=[{**VALID_ROWS[0], "isrc": "AA000000000\u0660"}, VALID_ROWS[1]], extra_field=False)
@example(rows=[{**VALID_ROWS[0], "duration_ms": "99999999999"}, VALID_ROWS[1]], extra_field=False)
@EXAMPLES
def test_catalogue_rows_load_or_are_skipped_with_their_line(catalogue_engine, tmp_path_factory, rows, extra_field):
    path = tmp_path_factory.mktemp("csv") / "catalogue.csv"
    valid_utf8 = _write_csv(path, rows, extra_field)
    with catalogue_engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM songs")).scalar_one()
    try:
        report = load_catalog(catalogue_engine, path)
    except CatalogFileError as exc:
        # Only a file that is not text can be refused whole: bad rows are skipped one by one.
        assert not valid_utf8, f"a readable file was refused: {exc}"
        assert "UTF-8" in str(exc)
        report = None
    else:
        assert valid_utf8 or report.rows_read == 0
        assert report.rows_loaded + report.rows_skipped == report.rows_read
        assert all(error.line >= 2 and str(error).startswith(f"line {error.line}: ") for error in report.errors)
    with catalogue_engine.connect() as conn:
        after = conn.execute(sa.text("SELECT count(*) FROM songs")).scalar_one()
    assert after == before + (report.songs_added if report else 0)
    assert _malformed_songs(catalogue_engine) == []


def test_sql_injection_through_csv_fields_is_stored_as_text(database_url, tmp_path):
    engine = create_engine(database_url)
    migrate(engine)
    try:
        path = tmp_path / "hostile.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["title", "artist", "album", "duration_ms", "isrc", "release_year"])
            for i, payload in enumerate(INJECTIONS):
                writer.writerow([payload, f"artist {i}", payload, "200000", "", "2001"])
            writer.writerow(["Bad duration", "x", "", "1; DROP TABLE songs", "", ""])
            writer.writerow(["Bad year", "x", "", "", "", "2001); DELETE FROM songs; --"])
            writer.writerow(["Bad isrc", "x", "", "", "US' OR 1=1 --", ""])
        tables = set(sa.inspect(engine).get_table_names())
        report = load_catalog(engine, path)
        assert (report.rows_loaded, report.rows_skipped) == (len(INJECTIONS), 3)
        with engine.connect() as conn:
            titles = [r[0] for r in conn.execute(sa.text("SELECT title FROM songs ORDER BY id"))]
        assert titles == list(INJECTIONS)  # stored verbatim, executed never
        assert set(sa.inspect(engine).get_table_names()) == tables
        for payload in INJECTIONS:  # and each one can be searched for as what it is: text
            try:
                found = search(payload, 5, engine=engine)
            except SearchQueryError:
                continue
            assert payload in [r.title for r in found]
    finally:
        engine.dispose()


# -- Spotify API bodies ----------------------------------------------------------------------------------------

TRACK_ID = "k7xDhM7RJxt2bGUTGIZC0K"
BASE_TRACK: dict[str, Any] = {
    "album": {
        "album_type": "album",
        "artists": [{"id": "XBhJttdjDDQbCIScvWnrvi", "name": "Aurélien & the Kingdom", "type": "artist",
                     "uri": "spotify:artist:XBhJttdjDDQbCIScvWnrvi"}],
        "available_markets": ["AD", "AE"],
        "id": "6f3oFF18jQ5mKiQZt72OvZ",
        "images": [{"height": 640, "url": "https://i.scdn.co/image/ab67616d0000b273", "width": 640},
                   {"height": 64, "url": "https://i.scdn.co/image/ab67616d00004851", "width": 64}],
        "name": "Wild Parade",
        "release_date": "2006-06-05",
        "release_date_precision": "day",
        "total_tracks": 14,
        "type": "album",
        "uri": "spotify:album:6f3oFF18jQ5mKiQZt72OvZ",
    },
    "artists": [{"id": "XBhJttdjDDQbCIScvWnrvi", "name": "Aurélien & the Kingdom", "type": "artist",
                 "uri": "spotify:artist:XBhJttdjDDQbCIScvWnrvi"}],
    "available_markets": ["AD", "AE"],
    "disc_number": 1,
    "duration_ms": 332924,
    "explicit": False,
    "external_ids": {"isrc": "GBNXT0691807"},
    "id": TRACK_ID,
    "is_local": False,
    "name": "Signal in Kyoto",
    "popularity": 99,
    "preview_url": None,
    "track_number": 1,
    "type": "track",
    "uri": f"spotify:track:{TRACK_ID}",
}
DELETE = object()
BATCH_IDS = (TRACK_ID, "4iV5W9uYEdYUVa79Axb7Rh", "2TpxZ7JUBn3uw46aR7qd6V")
INCOMPRESSIBLE = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(200))  # 12,800 chars


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


TRACK_PATHS = _paths(BASE_TRACK)
hostile_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([-1, 0, 101, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
    st.just("\x00"),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
hostile_values = st.one_of(st.just(DELETE), hostile_leaves)


def _mutate(body: dict, changes: list[tuple[tuple, Any]]) -> dict:
    body = copy.deepcopy(body)
    for path, value in changes:
        parent = body
        try:
            for key in path[:-1]:
                parent = parent[key]
            if value is DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced an ancestor
    return body


def _at(body: Any, path: tuple) -> Any:
    for key in path:
        body = body[key]
    return body


def _same_type(original: Any) -> st.SearchStrategy:
    """Hostile values of the original's own type: they pass a type check and test what lies beyond it."""
    if isinstance(original, bool):
        return st.booleans()
    if isinstance(original, int):
        return st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([-1, 0, 101, 2**31, 2**63, 10**30]))
    if isinstance(original, str):
        return st.one_of(
            hostile_text,
            st.sampled_from(["\x00", "a\x00b", "x" * 100_000, "\ud83d", " ", ""]),
            st.randoms(use_true_random=False).map(lambda r: r.randbytes(5_000).hex()),  # huge, incompressible
        )
    return hostile_leaves


@st.composite
def mutation(draw) -> tuple[tuple, Any]:
    path = draw(st.sampled_from(TRACK_PATHS))
    return path, draw(st.one_of(_same_type(_at(BASE_TRACK, path)), hostile_values))


mutated_tracks = st.builds(_mutate, st.just(BASE_TRACK), st.lists(mutation(), min_size=1, max_size=3))
LEAF_PATHS = [p for p in TRACK_PATHS if isinstance(_at(BASE_TRACK, p), (str, int))]


@st.composite
def typed_mutation(draw) -> tuple[tuple, Any]:
    path = draw(st.sampled_from(LEAF_PATHS))
    return path, draw(_same_type(_at(BASE_TRACK, path)))


# Tracks whose every field still has its documented type, holding hostile values: they get past parsing.
well_typed_tracks = st.builds(_mutate, st.just(BASE_TRACK), st.lists(typed_mutation(), min_size=1, max_size=4))
valid_entry = st.one_of(st.just(BASE_TRACK), st.none())
batch_entry = st.one_of(mutated_tracks, mutated_tracks, mutated_tracks, mutated_tracks, st.none(), hostile_leaves)


@st.composite
def three_entries(draw) -> list[Any]:
    """One hostile entry among valid ones (or nulls: tracks Spotify does not have)."""
    entries = [draw(batch_entry), draw(valid_entry), draw(valid_entry)]
    return draw(st.permutations(entries))


def _encode(draw, body: Any) -> bytes:
    """JSON as Spotify would send it (or escaped to ASCII), now and then cut short."""
    encoded = json.dumps(body, ensure_ascii=draw(st.booleans()), default=str).encode("utf-8", errors="surrogatepass")
    if draw(st.sampled_from([False, False, False, False, True])):
        return encoded[: draw(st.integers(0, max(0, len(encoded) - 1)))]
    return encoded


@st.composite
def batch_bodies(draw) -> tuple[bytes, list[str]]:
    """A `GET /tracks?ids=` answer for three requested ids: hostile entries, nulls, wrong shapes, cut short."""
    ids = list(BATCH_IDS)
    shape = draw(st.sampled_from(["entries"] * 7 + ["count", "tracks", "body"]))
    if shape == "entries":
        body: Any = {"tracks": draw(three_entries())}
    elif shape == "count":  # not one entry per requested id
        body = {"tracks": draw(st.lists(batch_entry, max_size=5).filter(lambda e: len(e) != 3))}
    elif shape == "tracks":
        body = {"tracks": draw(hostile_leaves)}
    else:
        body = draw(hostile_leaves)
    return _encode(draw, body), ids


class CannedSpotify(requests.adapters.BaseAdapter):
    """An HTTP adapter answering every request with the body it was last given (status 200)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = b"{}"

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = 200
        response._content = self.body
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


class _StaticToken:
    def token(self) -> str:
        return "static-test-token"

    def refresh(self, rejected: str | None = None) -> str:
        return "static-test-token"


@pytest.fixture
def canned_client():
    adapter = CannedSpotify()
    session = requests.Session()
    session.mount("http://", adapter)
    config = SpotifyClientConfig(
        client_id="hostile-test", api_base_url="http://spotify.invalid/v1", app_mode="extended", max_attempts=1,
        rate_limit_per_minute=10**9,
    )
    client = build_client(config, session=session, auth=_StaticToken())
    yield client, adapter
    client.close()


@pytest.fixture
def api_engine(database_url):
    engine = create_engine(database_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO songs (title, artist, catalog_key) VALUES ('Signal in Kyoto', "
                             "'Aurélien & the Kingdom', 'k1')"))
    yield engine
    engine.dispose()


def _land_like_the_pipeline(engine: sa.Engine, tracks: dict[str, Any]) -> None:
    """What raw_spotify_tracks, spotify_catalog and spotify_popularity_snapshots write for these tracks, in
    one transaction that is rolled back afterwards (each example starts from the same tables)."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    day = utc_today()
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            land_raw_partition(conn, day, "tracks", [
                {"request_key": k, "status": 200 if t else 404, "fetched_at": now, "body": t.raw if t else None}
                for k, t in tracks.items()
            ])
            rows = normalize_tracks((t, now) for t in tracks.values() if t is not None)
            upsert_catalog(conn, albums=list(rows.albums.values()), artists=list(rows.artists.values()),
                           tracks=list(rows.tracks.values()), track_artists=rows.track_artists)
            write_popularity_snapshot(conn, day, [
                {"track_id": k, "popularity": t.popularity, "captured_at": now}
                for k, t in tracks.items() if t is not None and t.popularity is not None
            ])
            for key, track in tracks.items():
                if track is not None:
                    stored = conn.execute(sa.text("SELECT name FROM spotify_tracks WHERE track_id = :k"), {"k": key})
                    assert stored.scalar_one() == track.name
        finally:
            transaction.rollback()


@given(case=batch_bodies())
# Found: NaN (not JSON, accepted by Python) in any field reached the raw partition, which refused it.
@example(case=(json.dumps({"tracks": [{**BASE_TRACK, "type": float("nan")}, None, None]}).encode(), list(BATCH_IDS)))
@EXAMPLES
def test_hostile_track_batches_are_typed_errors_or_load_cleanly(canned_client, api_engine, case):
    client, adapter = canned_client
    body, ids = case
    adapter.body = body
    client.cache = type(client.cache)()  # nothing cached between examples
    try:
        tracks = client.get_tracks(ids)
    except SpotifyResponseError as exc:
        event("typed error: malformed body")
        assert exc.endpoint and str(exc)
        return
    except SpotifyError as exc:  # any other typed client error is acceptable too, but must say where
        assert str(exc)
        return
    assert list(tracks) == ids
    event(f"loaded: {sum(t is not None for t in tracks.values())} of 3 tracks")
    _land_like_the_pipeline(api_engine, tracks)


@given(track=well_typed_tracks, ascii_only=st.booleans())
# Found, each one failing the write of the whole batch: a lone surrogate (escaped in the JSON), a popularity
# outside 0..100, a duration beyond INTEGER, and an id too long for a key index (PostgreSQL).
@example(track=_mutate(BASE_TRACK, [(("album", "album_type"), "\ud800")]), ascii_only=True)
@example(track=_mutate(BASE_TRACK, [(("popularity",), 101)]), ascii_only=False)
@example(track=_mutate(BASE_TRACK, [(("duration_ms",), 2**31)]), ascii_only=False)
@example(track=_mutate(BASE_TRACK, [(("album", "id"), INCOMPRESSIBLE)]), ascii_only=False)
@example(track=_mutate(BASE_TRACK, [(("name",), "a\x00b")]), ascii_only=False)
@EXAMPLES
def test_well_typed_tracks_with_hostile_values_are_typed_errors_or_load_cleanly(
    canned_client, api_engine, track, ascii_only
):
    client, adapter = canned_client
    adapter.body = json.dumps({"tracks": [track]}, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass")
    client.cache = type(client.cache)()
    try:
        tracks = client.get_tracks([TRACK_ID])
    except SpotifyResponseError as exc:
        event("typed error")
        assert exc.endpoint and str(exc)
        return
    event("loaded")
    _land_like_the_pipeline(api_engine, tracks)


@st.composite
def search_bodies(draw) -> bytes:
    items = draw(st.one_of(three_entries(), st.lists(batch_entry, max_size=2)))
    shape = draw(st.sampled_from(["page"] * 4 + ["paging", "tracks"]))
    if shape == "page":
        page: Any = {"tracks": {"items": items, "total": len(items), "limit": 10, "offset": 0, "next": None}}
    elif shape == "paging":
        page = {"tracks": {"items": items, "total": draw(hostile_leaves), "next": draw(hostile_leaves)}}
    else:
        page = {"tracks": draw(hostile_leaves)}
    return _encode(draw, page)


@given(body=search_bodies())
@EXAMPLES
def test_hostile_search_answers_become_match_outcomes_that_store_cleanly(canned_client, api_engine, body):
    client, adapter = canned_client
    adapter.body = body
    song = SongToMatch(song_id=1, title="Signal in Kyoto", artist="Aurélien & the Kingdom", duration_ms=332924,
                       isrc="GBNXT0691807")
    try:
        result = TrackMatcher(client).match(song)
    except SpotifyError as exc:  # a stop-the-run error: typed and explained
        assert str(exc)
        return
    attempt = MatchAttempt(song_id=1, method=result.method, outcome=result.outcome, track_id=result.track_id,
                           confidence=max(0.0, min(1.0, float(result.confidence))), reason=result.reason,
                           candidates=result.candidates)
    with api_engine.connect() as conn:
        transaction = conn.begin()
        try:
            record_match_attempts(conn, [attempt], now=dt.datetime.now(dt.timezone.utc))
        finally:
            transaction.rollback()


def test_malformed_raw_bodies_are_skipped_and_counted_by_the_catalogue_asset(emulator, tmp_path):
    """Bodies already in a raw partition that are not track objects are skipped one by one and counted, and
    the blocking coverage check fails the catalogue so nothing downstream runs on a partial day."""
    emulator.configure(window_limit=None)
    built = build_pipeline(
        f"sqlite:///{tmp_path / 'raw.db'}", emulator, tmp_path / "cache.db", catalogue_subset(tmp_path, 20)
    )
    try:
        broken = {
            "broken-missing-id": _mutate(BASE_TRACK, [(("id",), DELETE)]),
            "broken-album-null": _mutate(BASE_TRACK, [(("album",), None)]),
            "broken-artists-text": _mutate(BASE_TRACK, [(("artists",), "Aurélien")]),
            "broken-not-an-object": ["a", "list"],
            "broken-name-number": _mutate(BASE_TRACK, [(("name",), 42)]),
        }
        now = dt.datetime.now(dt.timezone.utc)
        with built.engine.begin() as conn:
            land_raw_partition(conn, utc_today(), "tracks", [
                {"request_key": key, "status": 200, "fetched_at": now, "body": body} for key, body in broken.items()
            ] + [{"request_key": TRACK_ID, "status": 200, "fetched_at": now, "body": BASE_TRACK}])
        result = built.materialize([spotify_catalog])
        assert not result.success  # the blocking check stops the run
        [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "spotify_tracks"]
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        assert metadata["bodies_skipped"] == len(broken)
        [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "catalog_covers_raw_pull"]
        assert not check.passed
        assert check.metadata["in_catalog"].value < check.metadata["raw_tracks"].value == 1 + len(broken)
        assert built.rows("SELECT track_id FROM spotify_tracks") == [(TRACK_ID,)]
    finally:
        built.engine.dispose()
