"""Search as Spotify does it on real metadata: matching, filters, ranking, paging limits, what URLs clients send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from spotify_pipeline.emulator.testing import EmulatorHandle, run_emulator
from spotify_pipeline_tests.emulator.track_objects import track_object, write_jsonl

HOLD_ON = track_object("Hold On", ["Adele"], "30", release_date="2021-11-19", popularity=55)
HOLD_ON_REMASTER = track_object("Hold On - Remastered 2011", ["Wilson Phillips"], "Wilson Phillips", release_date="1990", popularity=45)
HOLD_ON_TIGHT = track_object("Hold On Tight", ["Electric Light Orchestra"], "Time", release_date="1981-07-31", popularity=70)
HELLO = track_object("Hello", ["Adele"], "25", popularity=80, isrc="GBBKS1500214")
SUMMER = track_object("Summer Days", ["Martin Garrix"], "Summer Days", album_type="single", popularity=60)
SUMMER_REMIX = track_object("Summer Days - Tiësto Remix", ["Martin Garrix"], "Summer Days (Remixes)", popularity=75)
TELL_ME = track_object("Tell Me", ["Kim Petras"], "Clarity", release_date="2019-06-28", popularity=20)
ATLANTIS = track_object("Atlantis", ["Seafret"], "Tell Me It's Real", release_date="2015-05-11", popularity=65)
CAFE = track_object("Café del Mar", ["Energy 52"], "Café del Mar", release_date="1993", popularity=40)
DONT_STOP = track_object("Don't Stop Me Now", ["Queen"], "Jazz", release_date="1978-11-10", popularity=85)
REAL_LOVE = track_object("Real Love", ["Mary J. Blige"], "What's the 411?", release_date="1992-07-28", popularity=10)
TRACKS = [HOLD_ON, HOLD_ON_REMASTER, HOLD_ON_TIGHT, HELLO, SUMMER, SUMMER_REMIX, TELL_ME, ATLANTIS, CAFE, DONT_STOP, REAL_LOVE]


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("search") / "catalog.jsonl", TRACKS)


@pytest.fixture(scope="module")
def served(catalog_file: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(catalog_path=catalog_file, window_limit=None) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def headers(served: EmulatorHandle) -> dict[str, str]:
    return served.bearer(served.client_credentials_token())


def _search(served: EmulatorHandle, headers: dict[str, str], q: str, **params: Any) -> list[str]:
    """The names of the tracks a search finds, best first."""
    response = requests.get(f"{served.api_base_url}/search", params={"q": q, "type": "track", **params}, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["tracks"]["items"]]


def test_every_word_must_match_somewhere_and_the_last_one_also_as_a_prefix(served: EmulatorHandle, headers: dict[str, str]) -> None:
    found = _search(served, headers, "a")
    # "Atlantis" by its name, Adele's songs by their artist; "Tell Me" (Kim Petras, "Clarity") has no word in "a".
    assert {"Atlantis", "Hello", "Hold On"} <= set(found) and "Tell Me" not in found
    assert _search(served, headers, "hello adele") == ["Hello"]  # a word naming the artist narrows
    assert _search(served, headers, "hello queen") == []
    assert _search(served, headers, "ado") == []  # the start of no word
    assert _search(served, headers, "hel adele") == []  # only the last word completes
    assert _search(served, headers, "adele hel") == ["Hello"]


def test_filters_narrow_to_their_field_and_ignore_case(served: EmulatorHandle, headers: dict[str, str]) -> None:
    assert _search(served, headers, 'TRACK:"hold on" Artist:adele') == ["Hold On"]
    assert _search(served, headers, "album:jazz") == ["Don't Stop Me Now"]
    assert _search(served, headers, "artist:jazz") == []
    assert set(_search(served, headers, "hold year:1980-1995")) == {"Hold On - Remastered 2011", "Hold On Tight"}
    assert _search(served, headers, "year:1990 hold") == ["Hold On - Remastered 2011"]
    assert _search(served, headers, "isrc:GBBKS1500214") == ["Hello"]
    assert _search(served, headers, "isrc:gb-bks-15-00214") == ["Hello"]


def test_spotify_forgives_accents_apostrophes_spacing_and_a_typo(served: EmulatorHandle, headers: dict[str, str]) -> None:
    assert _search(served, headers, "cafe del mar") == ["Café del Mar"]
    assert _search(served, headers, "dont stop me now") == ["Don't Stop Me Now"]
    assert _search(served, headers, "  don't   stop  me   now  ") == ["Don't Stop Me Now"]
    assert _search(served, headers, "atlantsi") == ["Atlantis"]  # one transposition, a word the catalogue lacks
    assert _search(served, headers, "queen stop") == ["Don't Stop Me Now"]


def test_ranking_puts_the_exact_name_first_then_name_hits_then_popularity(served: EmulatorHandle, headers: dict[str, str]) -> None:
    # The exact name, then the name without its version suffix, then the name only partly covered.
    assert _search(served, headers, "hold on") == ["Hold On", "Hold On - Remastered 2011", "Hold On Tight"]
    # The remix is more popular, but the original's name is exactly what was asked for.
    assert _search(served, headers, "summer days") == ["Summer Days", "Summer Days - Tiësto Remix"]
    # A title hit beats an album-only hit (Atlantis is on "Tell Me It's Real"), even a more popular one.
    assert _search(served, headers, "real") == ["Real Love", "Atlantis"]
    # Equally relevant: the more popular first.
    assert _search(served, headers, "adele")[:2] == ["Hello", "Hold On"]


def test_limit_and_offset_rules_per_mode(served: EmulatorHandle, headers: dict[str, str], catalog_file: Path) -> None:
    def status(emulator: EmulatorHandle, auth: dict[str, str], **params: Any) -> int:
        url = f"{emulator.api_base_url}/search"
        return requests.get(url, params={"q": "a", "type": "track", **params}, headers=auth, timeout=10).status_code

    assert len(_search(served, headers, "a", limit=2)) == 2
    assert [status(served, headers, limit=n) for n in (1, 50, 51, 0)] == [200, 200, 400, 400]
    assert [status(served, headers, offset=n) for n in (1000, 1001, -1)] == [200, 400, 400]
    assert _search(served, headers, "a", offset=1000) == []
    with run_emulator(catalog_path=catalog_file, mode="development", window_limit=None) as development:
        auth = development.bearer(development.client_credentials_token())
        assert [status(development, auth, limit=n) for n in (10, 11)] == [200, 400]
        page = requests.get(f"{development.api_base_url}/search", params={"q": "a", "type": "track"}, headers=auth, timeout=10)
        assert page.json()["tracks"]["limit"] == 5


def test_urls_as_widely_used_clients_send_them(served: EmulatorHandle, headers: dict[str, str]) -> None:
    base = served.api_base_url

    def get(path_and_query: str) -> requests.Response:
        return requests.get(f"{base}{path_and_query}", headers=headers, timeout=10)

    ids = f"{HELLO['id']},{ATLANTIS['id']}"
    for path in (f"/tracks?ids={ids}", f"/tracks/?ids={ids}", f"/tracks/?ids={ids.replace(',', '%2C')}"):
        assert [t["name"] for t in get(path).json()["tracks"]] == ["Hello", "Atlantis"], path
    assert get(f"/tracks/{HELLO['id']}/").json()["name"] == "Hello"
    assert get(f"/albums/{HELLO['album']['id']}/").json()["name"] == "25"
    assert get(f"/artists/{HELLO['artists'][0]['id']}/").json()["name"] == "Adele"
    encoded = get("/search/?q=track%3A%22hold+on%22%20%20artist%3AAdele&type=track").json()["tracks"]["items"]
    assert [t["name"] for t in encoded] == ["Hold On"]
    assert get("/search?q=%20%20&type=track").status_code == 400  # only spaces: no query at all
    assert served.stats()["by_endpoint"]["/v1/tracks"] >= 3  # trailing-slash calls count under one template
