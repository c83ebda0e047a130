from __future__ import annotations

import csv
import datetime as dt
import json
import random
from dataclasses import fields

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from spotify_pipeline.cli import main
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse import search as search_module
from spotify_pipeline.warehouse.catalog import catalog_key, load_catalog, sample_catalog_path, upsert_songs
from spotify_pipeline.warehouse.enrichment import db_timestamp
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.search import MAX_LIMIT, SearchQueryError, SearchResult, fold_for_search, search

SONGS = [
    # (title, artist, album)
    ("Lovely Day", "Bill Withers", "Menagerie"),
    ("Love", "Kendrick Lamar", "DAMN."),
    ("Crazy in Love", "Beyoncé", "Dangerously in Love"),
    ("Love Story", "Taylor Swift", "Fearless"),
    ("Halo", "Beyoncé", "I Am... Sasha Fierce"),
    ("Jóga", "Björk", "Homogenic"),
    ("100% Pure Love", "Crystal Waters", "Storyteller"),
    ("Under_score", "Glove Puppet", "Plain"),
    ("Whatever", "Oasis", "Lovebox"),
]


def _load(engine, songs=SONGS) -> dict[str, int]:
    rows = [
        {"title": t, "artist": a, "album": al, "catalog_key": catalog_key(t, a, al, None)} for t, a, al in songs
    ]
    upsert_songs(engine, rows)
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT title, id FROM songs")).all())


def test_ranks_exact_title_then_prefix_then_similarity(engine):
    _load(engine)
    titles = [r.title for r in search("love", engine=engine)]
    assert titles == [
        "Love",  # exact title
        "Love Story",  # title prefix, shorter first
        "Lovely Day",
        "Crazy in Love",  # title contains it; shorter title = closer match
        "100% Pure Love",
        "Under_score",  # artist "Glove Puppet" contains it
        "Whatever",  # album "Lovebox" contains it
    ]


def test_matching_is_case_insensitive_across_unicode(engine):
    _load(engine)
    assert [r.artist for r in search("BJÖRK", engine=engine)] == ["Björk"]
    assert [r.title for r in search("jÓGA", engine=engine)] == ["Jóga"]
    assert {r.title for r in search("beyoncé", engine=engine)} == {"Crazy in Love", "Halo"}


def test_accents_are_ignored_in_the_query_and_in_the_catalogue(engine):
    _load(engine, [*SONGS, ("Beyonce Medley", "Cover Band", "Plain"), ("Ørsted Waltz", "Søren Strand", None)])
    assert [r.artist for r in search("bjork", engine=engine)] == ["Björk"]
    beyonce = {"Crazy in Love", "Halo", "Beyonce Medley"}  # accented artist, unaccented title
    assert {r.title for r in search("beyonce", engine=engine)} == beyonce
    assert {r.title for r in search("BEYONCÉ", engine=engine)} == beyonce
    assert [r.title for r in search("joga", engine=engine)] == ["Jóga"]  # an exact title match, tier 1
    assert [r.title for r in search("orsted", engine=engine)] == ["Ørsted Waltz"]  # a title prefix, tier 2
    assert [r.artist for r in search("soren", engine=engine)] == ["Søren Strand"]  # ø has no accent to drop


@pytest.mark.parametrize(
    "text, folded",
    [
        ("Björn", "bjorn"),
        ("BEYONCÉ", "beyonce"),
        ("  Sigur   Rós ", "sigur ros"),  # spacing as the query's
        ("Søren Ærø Łódź", "soren aero lodz"),  # letters NFKD does not decompose
        ("Straße", "strasse"),  # case folding, not just lower()
        ("İstanbul", "istanbul"),  # casefold's own combining dot goes too
        ("ﬁne ＷＯＲＫ", "fine work"),  # compatibility forms
        ("Ωμέγα", "ωμεγα"),
        ("がんばって", "がんばって"),  # the kana voicing mark is part of the letter
        ("100% r_s", "100% r_s"),
    ],
)
def test_fold_for_search(text, folded):
    assert fold_for_search(text) == folded


def test_a_query_of_accents_only_is_empty(engine):
    with pytest.raises(SearchQueryError, match="empty once accents are ignored"):
        search("\u0301\u0308", engine=engine)


def test_search_finds_exactly_the_songs_whose_folded_fields_contain_the_query(engine):
    load_catalog(engine)
    with engine.connect() as conn:
        songs = conn.execute(sa.text("SELECT id, title, artist, album FROM songs")).all()
    folded = {song_id: [fold_for_search(f) for f in fields if f] for song_id, *fields in songs}
    rng = random.Random(7)
    queries = []
    for _, title, artist, album in rng.sample(songs, 60):
        text = rng.choice([f for f in (title, artist, album) if f])
        start = rng.randrange(len(text))
        piece = text[start : rng.randint(start + 1, len(text))]
        queries += [piece, piece.swapcase(), fold_for_search(piece)]
    for query in queries:
        if not fold_for_search(query):
            continue
        expected = {song_id for song_id, texts in folded.items() if any(fold_for_search(query) in t for t in texts)}
        found = [r.song_id for r in search(query, MAX_LIMIT, engine=engine)]
        assert set(found) <= expected, f"{query!r}: {set(found) - expected} do not contain it"
        assert len(found) == len(set(found)) == min(MAX_LIMIT, len(expected)), query


def test_like_wildcards_in_the_query_are_literal(engine):
    _load(engine)
    assert [r.title for r in search("100%", engine=engine)] == ["100% Pure Love"]
    assert [r.title for r in search("r_s", engine=engine)] == ["Under_score"]
    assert search("%", engine=engine) == [r for r in search("%", engine=engine) if "%" in r.title]
    assert search("e_e", engine=engine) == []


def test_results_carry_the_enrichment_fields(engine):
    ids = _load(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE songs SET spotify_track_id = '4uLU6hMCjMI75M1A2tKUQC', spotify_popularity = 77, "
                "spotify_synced_at = CURRENT_TIMESTAMP WHERE id = :id"
            ),
            {"id": ids["Halo"]},
        )
        conn.execute(
            sa.text("UPDATE songs SET spotify_track_id = 'x1', spotify_synced_at = '2001-01-01 00:00:00' WHERE id = :id"),
            {"id": ids["Love"]},
        )
    by_title = {r.title: r for r in search("a", limit=50, engine=engine)}
    halo = by_title["Halo"]
    assert (halo.song_id, halo.popularity, halo.enrichment_status) == (ids["Halo"], 77, "matched")
    assert halo.spotify_url == "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC"
    assert by_title["Lovely Day"].enrichment_status == "unmatched"
    assert by_title["Lovely Day"].spotify_url is None
    assert {r.enrichment_status for r in search("love", engine=engine) if r.title == "Love"} == {"stale"}


def test_results_carry_every_field_of_the_view_typed_alike_on_both_backends(engine):
    ids = _load(engine)
    synced = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.timezone.utc)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE songs SET spotify_track_id = 'trk1', spotify_uri = 'spotify:track:trk1', "
                "spotify_popularity = 61, spotify_popularity_read_at = :synced, spotify_explicit = :explicit, "
                "spotify_match_method = 'isrc', spotify_match_confidence = 0.5, spotify_synced_at = :synced "
                "WHERE id = :id"
            ),
            {"synced": db_timestamp(conn, synced), "explicit": True, "id": ids["Halo"]},
        )
    view_columns = [c["name"] for c in sa.inspect(engine).get_columns("songs_search")]
    assert [f.name for f in fields(SearchResult)] == view_columns
    [halo] = search("halo", engine=engine)
    assert (halo.synced_at, halo.popularity_read_at) == (synced, synced)
    assert (halo.explicit, halo.match_confidence, halo.match_method, halo.popularity) == (True, 0.5, "isrc", 61)
    assert halo.spotify_uri == "spotify:track:trk1" and halo.enrichment_status == "stale"
    assert halo.as_dict()["synced_at"] == "2026-03-01T12:30:00+00:00"
    [love] = search("love", limit=1, engine=engine)
    assert (love.explicit, love.synced_at, love.popularity_read_at) == (None, None, None)


@pytest.mark.parametrize(
    "query, message",
    [("", "empty"), ("   ", "empty"), ("x" * 201, "longer than 200"), (None, "must be text"), (42, "must be text")],
)
def test_bad_queries_get_clear_errors(engine, query, message):
    with pytest.raises(SearchQueryError, match=message):
        search(query, engine=engine)


def test_bad_limits_get_clear_errors(engine):
    for limit in (0, 101, "5", True):
        with pytest.raises(SearchQueryError, match="limit"):
            search("love", limit=limit, engine=engine)


def test_limit_and_a_200_character_query(engine):
    _load(engine)
    assert len(search("e", limit=3, engine=engine)) == 3
    assert search("y" * 200, engine=engine) == []


def test_injection_attempts_change_nothing(engine):
    _load(engine)
    for attack in ("'; DROP TABLE songs; --", "\" OR 1=1 --", "love' OR '1'='1", "*) OR rowid > 0 --"):
        assert search(attack, engine=engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM songs")).scalar_one() == len(SONGS)


@pytest.mark.parametrize("candidate_cap", [search_module.CANDIDATE_CAP, 3], ids=["default-cap", "tiny-cap"])
def test_sample_catalogue_gives_identical_results_on_sqlite_and_postgres(
    sqlite_url, postgres_url, monkeypatch, candidate_cap
):
    # A tiny cap sends every PostgreSQL substring tier down its planner-ranked path; the default cap
    # keeps them on the GIN candidate path. Both must agree with SQLite exactly.
    monkeypatch.setattr(search_module, "CANDIDATE_CAP", candidate_cap)
    engines = [create_engine(sqlite_url), create_engine(postgres_url)]
    try:
        for engine in engines:
            migrate(engine)
            load_catalog(engine)
        with sample_catalog_path().open(newline="") as f:
            rows = list(csv.DictReader(f))
        queries = ["love", "the", "night", "a", "LO", "remaster", "é", "summer", "blue", "light", "ing", "x"]
        queries += ["bjorn", "BJÖRN", "montreal", "soren", "valdes", "reykjavik", "ibanez"]  # accents ignored
        queries += [row["title"] for row in rows[::50]] + [row["artist"] for row in rows[25::50]]
        queries += [f"{row['title']} {row['artist']}"[:40] for row in rows[::200]]  # long: signature path
        compared = 0
        for query in queries:
            on_sqlite, on_postgres = (search(query, limit=25, engine=e) for e in engines)
            assert on_sqlite == on_postgres, query
            compared += len(on_sqlite)
        assert compared > 300  # the queries actually exercise the ranking
    finally:
        for engine in engines:
            engine.dispose()


def test_cli_search_prints_a_table_and_json(database_url):
    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    engine = create_engine(database_url)
    migrate(engine)
    ids = _load(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE songs SET spotify_track_id = 'trk1', spotify_synced_at = :t WHERE id = :id"),
            {"t": db_timestamp(conn, dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.timezone.utc)), "id": ids["Jóga"]},
        )
    engine.dispose()
    table = runner.invoke(main, ["search", "love", "--limit", "2"], env=env)
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split() == ["id", "title", "artist", "album", "pop", "status", "spotify"]
    assert "Love Story" in table.output and "Lovely Day" not in table.output
    as_json = runner.invoke(main, ["search", "bjork", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    [row] = json.loads(as_json.stdout)
    assert list(row) == [f.name for f in fields(SearchResult)]  # every field of the view
    assert row["artist"] == "Björk" and row["spotify_url"] == "https://open.spotify.com/track/trk1"
    assert row["synced_at"] == "2026-03-01T12:30:00+00:00"
    empty = runner.invoke(main, ["search", " "], env=env)
    assert empty.exit_code != 0 and "empty" in empty.output
