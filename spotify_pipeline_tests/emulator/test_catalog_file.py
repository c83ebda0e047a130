"""The emulator serves a catalogue file: JSON Lines of track objects, albums and artists derived from them."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from spotify_pipeline.emulator.catalog_file import CatalogFileError, load_catalog_file
from spotify_pipeline.emulator.cli import emulator_command
from spotify_pipeline.emulator.search import TrackSearchIndex, parse_query
from spotify_pipeline.emulator.testing import EmulatorHandle, run_emulator
from spotify_pipeline_tests.emulator.track_objects import (
    DEVELOPMENT_MODE_STRIPPED,
    artist_object,
    track_object,
    without_fields,
    write_jsonl,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MATCHING_CORPUS = REPO_ROOT.parent / "shared" / "matching-corpus" / "catalog.jsonl.gz"
CORPUS_TRACKS = 27_782
CORPUS_LOAD_BUDGET_S = 10.0

ROLLING = track_object("Rolling in the Deep", ["Adele"], "21", release_date="2011-01-24", track_number=1, popularity=70)
SOMEONE = track_object("Someone Like You", ["Adele"], "21", release_date="2011-01-24", track_number=11, popularity=75)
TURNING = track_object("Turning Tables", ["Adele"], "21", release_date="2011-01-24", track_number=5, popularity=40)
HELLO_ALBUM = track_object("Hello", ["Adele"], "25", isrc="GBBKS1500214", popularity=80)
HELLO_SINGLE = track_object("Hello", ["Adele"], "Hello", album_type="single", total_tracks=1, isrc="GBBKS1500214", popularity=60)
# One artist id credited under two spellings, as real catalogues (and the matching corpus) have it.
MI_GENTE = track_object("Mi Gente", ["J Balvin"], "Vibras", release_date="2018", popularity=73)
LOCO = track_object("Loco Contigo", ["DJ Snake"], "Carte Blanche", popularity=88)
LOCO["artists"].append(artist_object("J. Balvin", MI_GENTE["artists"][0]["id"]))
TRACKS = [SOMEONE, ROLLING, HELLO_ALBUM, MI_GENTE, TURNING, HELLO_SINGLE, LOCO]


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("catalog") / "catalog.jsonl.gz", TRACKS, compress=True)


@pytest.fixture(scope="module")
def served(catalog_file: Path) -> Any:
    with run_emulator(catalog_path=catalog_file, window_limit=None) as emulator:
        yield emulator


def _get(emulator: EmulatorHandle, path: str, **params: Any) -> requests.Response:
    headers = emulator.bearer(emulator.client_credentials_token())
    return requests.get(f"{emulator.api_base_url}{path}", params=params, headers=headers, timeout=10)


def test_tracks_are_served_exactly_as_the_file_has_them(served: EmulatorHandle) -> None:
    assert served.fixtures()["catalog_size"] == len(TRACKS)
    for track in TRACKS:
        got = _get(served, f"/tracks/{track['id']}").json()
        # Extended mode adds what the file left to the emulator: markets, the day's popularity.
        assert without_fields(got, *DEVELOPMENT_MODE_STRIPPED) == without_fields(track, *DEVELOPMENT_MODE_STRIPPED)
        assert abs(got["popularity"] - track["popularity"]) <= 10 and got["available_markets"]


def test_albums_and_artists_are_derived_from_the_tracks(served: EmulatorHandle) -> None:
    album = _get(served, f"/albums/{ROLLING['album']['id']}").json()
    # The album lists the tracks the file holds, in track-number order, whatever the file's line order.
    assert [t["name"] for t in album["tracks"]["items"]] == ["Rolling in the Deep", "Turning Tables", "Someone Like You"]
    assert album["total_tracks"] == 12  # as the file states it, though it holds three
    assert album["popularity"] == 75 and album["label"] and album["release_date"] == "2011-01-24"
    balvin_id = MI_GENTE["artists"][0]["id"]
    artist = _get(served, f"/artists/{balvin_id}").json()
    assert artist["name"] == "J Balvin" and artist["popularity"] == 88  # first spelling; his most popular track
    assert artist["followers"]["total"] > 0 and len(artist["images"]) == 3
    # Each track keeps the spelling its own line credits.
    assert [a["name"] for a in _get(served, f"/tracks/{LOCO['id']}").json()["artists"]] == ["DJ Snake", "J. Balvin"]


def test_isrc_search_finds_every_release_of_a_recording(served: EmulatorHandle) -> None:
    found = _get(served, "/search", q="isrc:GBBKS1500214", type="track").json()["tracks"]
    assert found["total"] == 2
    assert [t["id"] for t in found["items"]] == [HELLO_ALBUM["id"], HELLO_SINGLE["id"]]  # the more popular first


def test_modes_and_faults_apply_to_a_catalogue_file(catalog_file: Path) -> None:
    with run_emulator(catalog_path=catalog_file, mode="development", window_limit=None) as emulator:
        got = _get(emulator, f"/tracks/{HELLO_SINGLE['id']}").json()
        assert got == without_fields(HELLO_SINGLE, *DEVELOPMENT_MODE_STRIPPED)
        assert _get(emulator, "/tracks", ids=HELLO_SINGLE["id"]).status_code == 403
        emulator.configure(error_rate=1.0)
        assert _get(emulator, f"/tracks/{HELLO_SINGLE['id']}").status_code in (500, 502, 503)


def test_a_plain_file_reads_as_its_gzipped_twin(catalog_file: Path, tmp_path: Path) -> None:
    plain = load_catalog_file(write_jsonl(tmp_path / "catalog.jsonl", TRACKS))
    zipped = load_catalog_file(catalog_file)
    assert [(t.id, t.name, t.isrc, t.album_index) for t in plain.tracks] == [
        (t.id, t.name, t.isrc, t.album_index) for t in zipped.tracks
    ]
    assert [t.id for t in plain.tracks_by_isrc["GBBKS1500214"]] == [HELLO_ALBUM["id"], HELLO_SINGLE["id"]]


def test_a_relinked_object_is_stored_under_the_id_that_was_asked_for(tmp_path: Path) -> None:
    relinked = dict(HELLO_SINGLE, id="0" * 22, linked_from={"id": HELLO_SINGLE["id"], "type": "track"})
    catalog = load_catalog_file(write_jsonl(tmp_path / "relinked.jsonl", [relinked]))
    assert list(catalog.track_by_id) == [HELLO_SINGLE["id"]]


def _error(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CatalogFileError) as caught:
        load_catalog_file(path)
    return str(caught.value)


def test_bad_lines_are_one_error_naming_the_file_and_line(tmp_path: Path) -> None:
    good = json.dumps(ROLLING)
    assert "bad.jsonl, line 2: not valid JSON" in _error(tmp_path, [good, '{"id": "broken'])
    no_date = dict(SOMEONE, album={k: v for k, v in SOMEONE["album"].items() if k != "release_date"})
    message = _error(tmp_path, [good, "", json.dumps(no_date)])
    assert "bad.jsonl, line 3:" in message and "`album.release_date`" in message
    assert "line 1: `duration_ms` must be a whole number" in _error(tmp_path, [json.dumps(dict(ROLLING, duration_ms="3:30"))])
    assert "line 1: `artists` is empty" in _error(tmp_path, [json.dumps(dict(ROLLING, artists=[]))])
    assert "is not a Spotify id" in _error(tmp_path, [json.dumps(dict(ROLLING, id="not-an-id"))])
    assert "line 1: not a JSON object" in _error(tmp_path, ["[1, 2]"])
    duplicate = _error(tmp_path, [good, json.dumps(SOMEONE), good])
    assert f"line 3: track id {ROLLING['id']} is already on line 1" in duplicate
    assert "no track objects" in _error(tmp_path, [""])
    with pytest.raises(CatalogFileError, match="missing.jsonl: cannot be opened"):
        load_catalog_file(tmp_path / "missing.jsonl")
    cut_short = tmp_path / "cut.jsonl.gz"
    cut_short.write_bytes(gzip.compress((good + "\n").encode())[:-20])
    with pytest.raises(CatalogFileError, match="cut.jsonl.gz, line .*: cannot be read"):
        load_catalog_file(cut_short)


def test_the_command_line_reports_a_bad_file_as_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROLLING) + "\nnot json\n", encoding="utf-8")
    result = CliRunner().invoke(emulator_command, ["--catalog", str(path)])
    assert result.exit_code == 2 and "line 2: not valid JSON" in result.output and "Traceback" not in result.output
    both = CliRunner().invoke(emulator_command, ["--catalog", str(path), "--catalog-size", "100"])
    assert both.exit_code == 2 and "exclude each other" in both.output


@pytest.mark.skipif(not MATCHING_CORPUS.is_file(), reason=f"the matching corpus is not at {MATCHING_CORPUS}")
def test_the_matching_corpus_loads_within_its_budget() -> None:
    started = time.perf_counter()
    catalog = load_catalog_file(MATCHING_CORPUS)
    index = TrackSearchIndex(catalog)
    seconds = time.perf_counter() - started
    assert len(catalog.tracks) == CORPUS_TRACKS
    assert seconds <= CORPUS_LOAD_BUDGET_S, f"loading took {seconds:.1f} s"
    assert len(index.search(parse_query("a"))) > 1_000  # Spotify returns thousands for a one-letter search
