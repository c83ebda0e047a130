from __future__ import annotations

import csv

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from spotify_pipeline.cli import main
from spotify_pipeline.warehouse import catalog
from spotify_pipeline.warehouse.catalog import (
    CatalogFileError,
    LoadProgress,
    catalog_key,
    load_catalog,
    sample_catalog_path,
    upsert_songs,
)

HEADER = "title,artist,album,duration_ms,isrc,release_year\n"


def _songs(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT id, title, artist, album, duration_ms, isrc, release_year FROM songs ORDER BY id")
        ).all()


def test_sample_catalogue_loads_and_reloading_adds_nothing(engine):
    with sample_catalog_path().open(newline="") as f:
        expected = sum(1 for _ in csv.DictReader(f))
    first = load_catalog(engine)
    assert first.rows_read == expected >= 900
    assert first.rows_skipped == 0
    assert first.songs_added == expected == len(_songs(engine))
    second = load_catalog(engine)
    assert second.songs_added == 0
    assert len(_songs(engine)) == expected


def test_bad_rows_are_reported_with_line_numbers_and_good_rows_load(engine, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(
        HEADER
        + "Good Song,Good Artist,Album,200000,USRC17607839,2001\n"  # line 2
        + ",No Title Artist,Album,200000,,2001\n"  # line 3: missing title
        + "No Artist,,Album,200000,,2001\n"  # line 4: missing artist
        + "Bad Duration,Artist,Album,three minutes,,2001\n"  # line 5
        + "Bad ISRC,Artist,Album,200000,NOT-AN-ISRC,2001\n"  # line 6
        + "Another Good,Artist,,,us-rc1-76-07840,\n",  # line 7: optional fields empty, ISRC normalized
        encoding="utf-8",
    )
    report = load_catalog(engine, path)
    assert [(e.line, e.message.split(" ")[0]) for e in report.errors] == [
        (3, "missing"), (4, "missing"), (5, "duration_ms"), (6, "malformed")
    ]
    assert "title" in report.errors[0].message and "artist" in report.errors[1].message
    assert report.rows_read == 6 and report.rows_loaded == 2 and report.songs_added == 2
    assert [s[1:] for s in _songs(engine)] == [
        ("Good Song", "Good Artist", "Album", 200000, "USRC17607839", 2001),
        ("Another Good", "Artist", None, None, "USRC17607840", None),
    ]


def test_same_song_with_other_case_or_spacing_is_not_duplicated(engine, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(HEADER + "Hello,Adele,25,295000,,2015\n" + "  HELLO , adele,25,295500,,2015\n")
    report = load_catalog(engine, path)
    assert report.songs_added == 1
    assert _songs(engine)[0][4] == 295500  # the later row wins


def test_file_level_problems_raise_clear_errors(engine, tmp_path):
    no_artist = tmp_path / "no_artist.csv"
    no_artist.write_text("title,album\nA,B\n")
    with pytest.raises(CatalogFileError, match="missing column"):
        load_catalog(engine, no_artist)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(HEADER.encode() + "Caf\xe9,Artist,,,,\n".encode("latin-1"))
    with pytest.raises(CatalogFileError, match="not UTF-8"):
        load_catalog(engine, latin1)
    with pytest.raises(CatalogFileError, match="no such file"):
        load_catalog(engine, tmp_path / "missing.csv")
    assert _songs(engine) == []


def test_injection_attempts_in_fields_are_stored_as_text(engine, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(HEADER + "\"x'); DROP TABLE songs; --\",Robert'); DELETE FROM songs;--,,,,\n")
    load_catalog(engine, path)
    assert [s[1:3] for s in _songs(engine)] == [("x'); DROP TABLE songs; --", "Robert'); DELETE FROM songs;--")]


def test_cli_seed_catalog_reports_skips(database_url, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(HEADER + "Song,Artist,,,,\n" + ",Artist,,,,\n")
    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    assert runner.invoke(main, ["migrate"], env=env).exit_code == 0
    result = runner.invoke(main, ["seed-catalog", "--file", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert "skipped line 3: missing title" in result.output
    assert "1 loaded (1 new songs), 1 skipped" in result.output


def test_a_file_saved_with_a_byte_order_mark_loads(engine, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeff".encode() + (HEADER + "Song,Artist,,,,\n").encode())
    assert load_catalog(engine, path).songs_added == 1


def _search_keys(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT search_title, search_artist, search_album FROM songs ORDER BY id")).all()


def test_songs_are_written_with_their_folded_search_keys(engine, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(HEADER + "Jóga,Björk,Homogenic,,,\n" + "Ørsted  Waltz,SØREN STRAND,,,,\n", encoding="utf-8")
    load_catalog(engine, path)
    assert _search_keys(engine) == [("joga", "bjork", "homogenic"), ("orsted waltz", "soren strand", None)]


def test_rewriting_a_songs_text_rewrites_its_search_keys_and_only_those(engine):
    key = catalog_key("Halo", "Beyoncé", "I Am", None)
    upsert_songs(engine, [{"title": "Halo", "artist": "Beyoncé", "album": "I Am", "catalog_key": key}])
    upsert_songs(engine, [{"title": "Halo", "artist": "Beyoncé Knowles", "catalog_key": key}])  # album kept
    assert _search_keys(engine) == [("halo", "beyonce knowles", "i am")]


def test_a_load_reports_its_progress(engine, monkeypatch):
    monkeypatch.setattr(catalog, "PROGRESS_EVERY_ROWS", 300)
    reports: list[LoadProgress] = []
    load_catalog(engine, on_progress=reports.append)
    size = sample_catalog_path().stat().st_size
    assert [r.rows_read for r in reports] == [300, 600, 900, 1000]
    assert all(r.bytes_total == size for r in reports)
    assert [r.bytes_read for r in reports] == sorted(r.bytes_read for r in reports)
    assert 0 < reports[0].bytes_read < size and reports[-1].bytes_read == size
