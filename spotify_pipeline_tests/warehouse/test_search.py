from __future__ import annotations

import csv
import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from spotify_pipeline.cli import main
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.bulk import bulk_upsert
from spotify_pipeline.warehouse import search as search_module
from spotify_pipeline.warehouse.catalog import catalog_key, load_catalog, sample_catalog_path
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.search import SearchQueryError, search

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
    bulk_upsert(engine, "songs", rows, key=["catalog_key"])
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
    _load(engine)
    engine.dispose()
    table = runner.invoke(main, ["search", "love", "--limit", "2"], env=env)
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split() == ["id", "title", "artist", "album", "pop", "status", "spotify"]
    assert "Love Story" in table.output and "Lovely Day" not in table.output
    as_json = runner.invoke(main, ["search", "BJÖRK", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    [row] = json.loads(as_json.output)
    assert row["artist"] == "Björk" and row["enrichment_status"] == "unmatched"
    empty = runner.invoke(main, ["search", " "], env=env)
    assert empty.exit_code != 0 and "empty" in empty.output
