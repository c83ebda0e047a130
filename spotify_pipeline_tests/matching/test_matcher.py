"""Scoring and decision rules of `TrackMatcher`, against an in-memory search client (no emulator, no HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spotify_pipeline.matching import MatchResult, SongToMatch, TrackMatcher
from spotify_pipeline.matching.matcher import OUTCOMES, duration_similarity
from spotify_pipeline.spotify import (
    SpotifyAuthError,
    SpotifyBadRequest,
    SpotifyConnectionError,
    SpotifyQuotaExceeded,
    SpotifyRateLimited,
    SpotifyResponseError,
    SpotifyServerError,
    SpotifyUnauthorized,
)
from spotify_pipeline.spotify.models import SearchPage, Track

# -- fakes --------------------------------------------------------------------------------------------------

_ids = iter(range(10**6))


def track(
    name: str,
    *artists: str,
    duration_ms: int = 200_000,
    isrc: str | None = None,
    album: str = "Some Album",
    release_date: str = "2001-05-04",
    album_type: str = "album",
    track_id: str | None = None,
) -> Track:
    """A Spotify track object as the search endpoint returns it."""
    tid = track_id or f"t{next(_ids):021d}"
    raw: dict[str, Any] = {
        "id": tid,
        "name": name,
        "artists": [{"id": f"a{i}{a[:3]}", "name": a} for i, a in enumerate(artists or ("Ava Hart",))],
        "album": {"id": f"al{tid}", "name": album, "release_date": release_date, "album_type": album_type},
        "duration_ms": duration_ms,
        "external_ids": {"isrc": isrc} if isrc else {},
    }
    return Track.from_json(raw, endpoint="GET /search")


@dataclass
class FakeCaps:
    max_search_limit: int


class FakeSearch:
    """Answers queries from a function (query -> tracks, or an exception to raise); records every call."""

    def __init__(self, answer: Callable[[str], Sequence[Track] | Exception], max_search_limit: int | None = None):
        self.answer = answer
        self.calls: list[tuple[str, int, int]] = []
        if max_search_limit is not None:
            self.capabilities = FakeCaps(max_search_limit)

    def search_tracks(self, query: str, limit: int = 10, offset: int = 0) -> SearchPage:
        self.calls.append((query, limit, offset))
        found = self.answer(query)
        if isinstance(found, Exception):
            raise found
        items = list(found)[offset : offset + limit]
        more = offset + limit < len(found)
        return SearchPage(query=query, items=items, total=len(found), limit=limit, offset=offset,
                          next="https://api.spotify.com/v1/search?more" if more else None)

    @property
    def queries(self) -> list[str]:
        return [q for q, _, _ in self.calls]


def always(*tracks: Track) -> FakeSearch:
    return FakeSearch(lambda q: list(tracks))


def song(title: str, artist: str = "Ava Hart", **kw: Any) -> SongToMatch:
    kw.setdefault("duration_ms", 200_000)
    return SongToMatch(song_id=kw.pop("song_id", 1), title=title, artist=artist, **kw)


def match(s: SongToMatch, *tracks: Track, **matcher_kw: Any) -> MatchResult:
    return TrackMatcher(always(*tracks), **matcher_kw).match(s)


# -- scoring: each drift kind still matches with high confidence ---------------------------------------------

DRIFTS = [
    # (local title, local artist, Spotify title, Spotify artists)
    ("Hold Me Home", "Ava Hart", "Hold Me Home - Remastered 2011", ("Ava Hart",)),  # suffix dropped
    ("Hold Me Home", "Ava Hart", "Hold Me Home (feat. Theo Kim)", ("Ava Hart", "Theo Kim")),  # feat. dropped
    ("Hold Me Home (ft. Theo Kim)", "Ava Hart", "Hold Me Home", ("Ava Hart", "Theo Kim")),  # feat. added
    ("Hold Me Home (featuring Theo Kim)", "Ava Hart", "Hold Me Home (feat. Theo Kim)", ("Ava Hart", "Theo Kim")),
    ("hold me home", "Ava Hart", "Hold Me Home", ("Ava Hart",)),  # case
    ("HOLD ME HOME", "ava hart", "Hold Me Home", ("Ava Hart",)),
    ("Cafe Lefevre", "Amelie Sorensen", "Café Lefèvre", ("Amélie Sørensen",)),  # accents stripped
    ("Dont Wait", "Ava Hart", "Don't Wait", ("Ava Hart",)),  # punctuation
    ("River and Jungle", "Ava Hart", "River & Jungle", ("Ava Hart",)),
    ("Golden Heart Golden Roses", "Ava Hart", "Golden Heart, Golden Roses", ("Ava Hart",)),
    ("Hold Me Hoem", "Ava Hart", "Hold Me Home", ("Ava Hart",)),  # small typo (swap)
    ("Satellite Hart", "Ava Hart", "Satellite Heart", ("Ava Hart",)),  # small typo (drop)
    ("Hold Me Home [Deluxe]", "Ava Hart", "Hold Me Home", ("Ava Hart",)),  # bracketed edition suffix
    ("Hold Me Home", "The Wolves", "Hold Me Home", ("Wolves",)),  # leading "The"
    ("Hold Me Home", "Ava Hart feat. Theo Kim", "Hold Me Home", ("Ava Hart", "Theo Kim")),  # artist field lists both
    ("Hold Me Home", "Ava Hart & Theo Kim", "Hold Me Home", ("Ava Hart", "Theo Kim")),
    ("Chase Me (fat. Theo Kim) (feat. Theo Kim)", "Ava Hart", "Chase Me (feat. Theo Kim)", ("Ava Hart", "Theo Kim")),
    ("Hold Me Home", "Ava Hart with Theo Kim", "Hold Me Home (with Theo Kim)", ("Ava Hart", "Theo Kim")),
    ("Hold Me Home", "Theo Kim & Ava Hart", "Hold Me Home", ("Ava Hart", "Theo Kim")),  # collaborators reordered
    ("Hold Me Home", "Theo Kim, Ava Hart", "Hold Me Home", ("Ava Hart", "Theo Kim")),
    ("Hold Me Home", "Wolves, The", "Hold Me Home", ("The Wolves",)),  # a library's sort form
    ("Hold Me Home", "Zion and Lennox", "Hold Me Home", ("Zion & Lennox",)),
    ("07 - Hold Me Home", "Ava Hart", "Hold Me Home", ("Ava Hart",)),  # track-number prefixes
    ("07. Hold Me Home", "Ava Hart", "Hold Me Home", ("Ava Hart",)),
    ("3) Hold Me Home", "Ava Hart", "Hold Me Home", ("Ava Hart",)),
    ("7 Rings", "Ava Hart", "7 Rings", ("Ava Hart",)),  # a number that is the title stays
    ("Zeor", "Ava Hart", "Zero", ("Ava Hart",)),  # two letters swapped in a short title
]


@pytest.mark.parametrize(("local", "artist", "remote", "remote_artists"), DRIFTS)
def test_every_drift_kind_matches(local: str, artist: str, remote: str, remote_artists: tuple[str, ...]) -> None:
    t = track(remote, *remote_artists, duration_ms=201_500)  # duration drifts by 1.5 s too
    result = match(song(local, artist), t)
    assert result.outcome == "matched", result.reason
    assert result.track_id == t.id and result.track is t
    assert result.method == "search"
    assert result.confidence >= 0.9


def test_exact_match_has_full_confidence() -> None:
    s = song("Hold Me Home")
    candidate = TrackMatcher(always()).score(s, track("Hold Me Home"))
    assert candidate.confidence == 1.0 and candidate.weak == ()


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=40), st.text(max_size=25), st.text(max_size=40), st.text(min_size=1, max_size=25),
    st.one_of(st.none(), st.integers(0, 900_000)), st.integers(1, 900_000),
)
def test_confidence_is_always_in_the_unit_interval(
    title: str, artist: str, remote_title: str, remote_artist: str, local_ms: int | None, remote_ms: int
) -> None:
    s = SongToMatch(song_id=1, title=title, artist=artist, duration_ms=local_ms)
    candidate = TrackMatcher(always()).score(s, track(remote_title, remote_artist, duration_ms=remote_ms))
    assert 0.0 <= candidate.confidence <= 1.0
    assert all(0.0 <= x <= 1.0 for x in (candidate.title, candidate.artist, candidate.duration or 0.0))


def test_duration_similarity_shape() -> None:
    assert duration_similarity(200_000, 203_000) == 1.0  # within the 3 s tolerance
    assert duration_similarity(200_000, 218_000) == pytest.approx(0.5)  # 15 s over: halfway down the 30 s span
    assert duration_similarity(200_000, 300_000) == 0.0
    assert duration_similarity(None, 200_000) is None and duration_similarity(200_000, 0) is None


def test_duration_outside_tolerance_lowers_confidence() -> None:
    matcher = TrackMatcher(always())
    s = song("Hold Me Home")
    scores = [matcher.score(s, track("Hold Me Home", duration_ms=200_000 + off)).confidence for off in (0, 3_000, 8_000, 20_000, 60_000)]
    assert scores[0] == scores[1] == 1.0
    assert scores[1] > scores[2] > scores[3] > scores[4]
    far = match(s, track("Hold Me Home", duration_ms=290_000))  # 90 s longer: another version
    assert far.outcome == "low_confidence" and far.track_id is None
    assert "duration off by 90.0 s" in far.reason


def test_unknown_duration_is_neither_evidence_for_nor_against() -> None:
    result = match(song("Hold Me Home", duration_ms=None), track("Hold Me Home"))
    assert result.outcome == "matched" and result.confidence == 1.0


def test_same_title_by_another_artist_is_low_confidence_with_reason() -> None:
    result = match(song("Hold Me Home", "Ava Hart"), track("Hold Me Home", "Marcus Okafor"))
    assert result.outcome == "low_confidence"
    assert result.track_id is None and result.track is None
    assert 0.0 < result.confidence < 0.85
    assert "artist" in result.reason and "minimum" in result.reason
    assert result.candidates[0]["artists"] == ["Marcus Okafor"]


def test_a_featured_guest_is_not_the_artist_of_the_song() -> None:
    result = match(song("Omar", "Ava Hart"), track("Omar (feat. Ava Hart)", "Kim Sato", "Ava Hart"))
    assert result.outcome == "low_confidence"
    # Even when the primary artist's name is so short that "MØ Ava Hart" looks like "Ava Hart".
    assert match(song("Omar", "Ava Hart"), track("Omar", "MØ", "Ava Hart")).outcome == "low_confidence"
    # A local field naming both artists does compare with all of them.
    assert match(song("Omar", "MØ & Ava Hart"), track("Omar", "MØ", "Ava Hart")).outcome == "matched"


def test_a_different_title_by_the_same_artist_is_low_confidence() -> None:
    result = match(song("Run On"), track("Run Out"))
    assert result.outcome == "low_confidence" and "title" in result.reason


def test_live_version_loses_to_the_studio_song_and_alone_is_not_the_song() -> None:
    studio, live = track("Static"), track("Static - Live")
    assert match(song("Static"), live, studio).track_id == studio.id
    only_live = match(song("Static"), live)
    assert only_live.outcome == "low_confidence" and only_live.track_id is None
    assert only_live.candidates[0]["version_match"] is False
    assert "another version (original vs live)" in only_live.reason
    assert match(song("Static (Live)"), studio, live).track_id == live.id


@pytest.mark.parametrize(
    "other_version",
    ["Summer Days - Tiësto Remix", "Summer Days (Live at Wembley)", "Summer Days - Acoustic",
     "Summer Days - Radio Edit", "Summer Days (Instrumental)", "Summer Days - Demo", "Summer Days - Extended Mix",
     "Summer Days - Alternate Take", "Summer Days - Ao Vivo"],
)
def test_another_version_is_never_the_song(other_version: str) -> None:
    """Remixes, live takes, acoustic versions, edits, instrumentals, demos ... are other recordings."""
    result = match(song("Summer Days"), track(other_version))
    assert result.outcome == "low_confidence" and result.track_id is None
    assert result.candidates[0]["version_match"] is False


@pytest.mark.parametrize(
    "same_recording",
    ["Summer Days - Remastered 2011", "Summer Days - 2009 Remaster", "Summer Days - Single Version",
     "Summer Days - Original Mix", "Summer Days (Mono)", "Summer Days [Deluxe Edition]"],
)
def test_remasters_and_release_descriptions_are_the_same_recording(same_recording: str) -> None:
    result = match(song("Summer Days"), track(same_recording))
    assert result.outcome == "matched" and result.confidence == 1.0


def test_versions_told_apart_by_remixer_and_by_a_local_version_suffix() -> None:
    original = track("One Kiss")
    heldens = track("One Kiss (with Dua Lipa) - Oliver Heldens Remix", "Ava Hart", "Dua Lipa")
    jauz = track("One Kiss (with Dua Lipa) - Jauz Remix", "Ava Hart", "Dua Lipa")
    tracks = (original, jauz, heldens)
    assert match(song("One Kiss - Oliver Heldens Remix"), *tracks).track_id == heldens.id
    assert match(song("one kiss (oliver heldens rmx)"), *tracks).track_id == heldens.id  # spelling drift
    assert match(song("One Kiss"), *tracks).track_id == original.id
    # A local "Remix" that names no remixer fits both remixes: a tie, not a guess.
    assert match(song("One Kiss (Remix)"), *tracks).outcome == "ambiguous"
    # A typo in the version word keeps its meaning.
    assert match(song("One Kiss - Jauz Rmeix"), *tracks).track_id == jauz.id
    # Language versions are versions too.
    spanish, english = track("Bailando - Spanish Version"), track("Bailando - English Version")
    assert match(song("Bailando (Spanish Version)"), english, spanish).track_id == spanish.id


def test_a_swapped_pair_of_letters_is_a_typo_a_changed_letter_another_title() -> None:
    assert match(song("Zeor"), track("Zero")).outcome == "matched"
    assert match(song("Iec Box"), track("Ice Box")).outcome == "matched"
    assert match(song("Run On"), track("Run Out")).outcome == "low_confidence"


def test_tie_is_ambiguous() -> None:
    a = track("Hold Me Home", album="Songs from Lisbon")
    b = track("Hold Me Home", album="Greatest Hits")
    result = match(song("Hold Me Home"), a, b)
    assert result.outcome == "ambiguous"
    assert result.track_id is None and result.track is None
    assert "tie" in result.reason and a.id in result.reason and b.id in result.reason
    assert {c["track_id"] for c in result.candidates} == {a.id, b.id}


def test_other_recordings_that_nothing_tells_apart_stay_unmatched_with_candidates() -> None:
    """Two recordings of one title by one artist (different ISRCs and lengths) and a song without duration:
    nothing says which one the library holds, so it is not guessed."""
    short = track("We Like To Party", isrc="NLA111400001", duration_ms=208_771, album="We Like To Party")
    long = track("We Like To Party", isrc="NLA111400002", duration_ms=280_990, album="We Like To Party")
    result = match(song("We Like To Party", duration_ms=None, album="We Like To Party"), short, long)
    assert (result.outcome, result.track_id, result.track) == ("ambiguous", None, None)
    assert "other recordings" in result.reason and short.id in result.reason and long.id in result.reason
    assert {c["track_id"] for c in result.candidates} == {short.id, long.id}
    assert all({"album_type", "release_date", "isrc"} <= set(c) for c in result.candidates)
    # The duration, when the library has it, tells them apart.
    assert match(song("We Like To Party", duration_ms=281_500), short, long).track_id == long.id


def test_a_title_spelled_exactly_breaks_a_tie_between_recordings() -> None:
    plain = track("Hustlin'", isrc="USUM70600001")
    edited = track("Hustlin' - Album Version (Edited)", isrc="USUM70600002")
    assert match(song("Hustlin - Album Version (Edited)"), plain, edited).track_id == edited.id
    assert match(song("Hustlin"), edited, plain).track_id == plain.id


def test_tie_broken_by_album_then_by_release_year() -> None:
    a = track("Hold Me Home", album="Songs from Lisbon", release_date="1999-01-01")
    b = track("Hold Me Home", album="Greatest Hits", release_date="2010-01-01")
    by_album = match(song("Hold Me Home", album="Songs from Lisbon (Deluxe Edition)"), a, b)
    assert by_album.outcome == "matched" and by_album.track_id == a.id and "broken by album" in by_album.reason
    by_year = match(song("Hold Me Home", release_year=2010), a, b)
    assert by_year.outcome == "matched" and by_year.track_id == b.id


def test_releases_of_one_recording_are_not_a_tie() -> None:
    lp = track("Hold Me Home", isrc="USRC17607839", album="Songs from Lisbon")
    compilation = track("Hold Me Home", isrc="USRC17607839", album="Greatest Hits", album_type="compilation")
    result = match(song("Hold Me Home"), compilation, lp)
    assert result.outcome == "matched" and result.track_id == lp.id  # the album, whatever Spotify ranks first
    assert "2 releases of the same recording" in result.reason
    assert match(song("Hold Me Home", album="Greatest Hits"), lp, compilation).track_id == compilation.id
    other_recording = track("Hold Me Home", isrc="GBAYE9900001")
    assert match(song("Hold Me Home"), lp, other_recording).outcome == "ambiguous"


RECORDING = "USRC17607839"


def releases_of_one_recording() -> dict[str, Track]:
    """One recording on a single, its album, a compilation and a later re-issue (same ISRC, as on Spotify)."""
    return {
        "single": track("Hold Me Home", isrc=RECORDING, album="Hold Me Home", album_type="single",
                        release_date="2001-03-02"),
        "album": track("Hold Me Home", isrc=RECORDING, album="Songs from Lisbon", release_date="2001-05-04"),
        "compilation": track("Hold Me Home - Remastered 2015", isrc=RECORDING, album="Greatest Hits",
                             album_type="compilation", release_date="1999"),
        "reissue": track("Hold Me Home - 2021 Remaster", isrc=RECORDING, album="Songs from Lisbon (Deluxe Edition)",
                         release_date="2021-06-11"),
    }


@pytest.mark.parametrize("isrc", [None, RECORDING])
def test_canonical_release_is_the_original_album_whatever_the_search_order(isrc: str | None) -> None:
    releases = releases_of_one_recording()
    tracks = list(releases.values())
    chosen = set()
    for shift in range(len(tracks)):  # every rotation of Spotify's ranking
        ranked = tracks[shift:] + tracks[:shift]
        result = match(song("Hold Me Home", isrc=isrc), *ranked)
        assert result.outcome == "matched", result.reason
        chosen.add(result.track_id)
    assert chosen == {releases["album"].id}
    assert result.method == ("isrc" if isrc else "search")
    assert "canonical" in result.reason and "album 'Songs from Lisbon' (2001-05-04)" in result.reason


def test_canonical_release_follows_the_song_album_then_album_type_then_date_then_id() -> None:
    releases = releases_of_one_recording()
    tracks = list(releases.values())
    assert match(song("Hold Me Home", album="Greatest Hits"), *tracks).track_id == releases["compilation"].id
    assert match(song("Hold Me Home", album="Hold Me Home"), *tracks).track_id == releases["single"].id
    # "Songs from Lisbon" names the album and its re-issue alike (a deluxe edition is the same album): the earlier.
    assert match(song("Hold Me Home", album="Songs from Lisbon"), *tracks).track_id == releases["album"].id
    # Without the album, a single comes before a compilation however early the compilation is.
    no_album = [releases["compilation"], releases["single"]]
    assert match(song("Hold Me Home"), *no_album).track_id == releases["single"].id
    # Same type, same day: the smallest track id, so the choice never depends on the ranking.
    twins = [track("Hold Me Home", isrc=RECORDING, track_id=f"{c}" * 22) for c in "zab"]
    assert match(song("Hold Me Home"), *twins).track_id == "a" * 22


def test_a_clear_winner_is_not_a_tie() -> None:
    right, near = track("Hold Me Home"), track("Hold Me Home", duration_ms=210_000)
    result = match(song("Hold Me Home"), near, right)
    assert result.outcome == "matched" and result.track_id == right.id


def test_threshold_is_respected() -> None:
    t = track("Hold Me Hoem")
    assert match(song("Hold Me Home"), t).outcome == "matched"
    strict = match(song("Hold Me Home"), t, threshold=0.99)
    assert strict.outcome == "low_confidence" and "< threshold 0.99" in strict.reason


def test_candidates_are_small_sorted_and_json_able() -> None:
    tracks = [track(f"Hold Me {w}") for w in ("Home", "Close", "Now", "Down", "Again", "Tonight", "Tight")]
    result = match(song("Hold Me Home"), *tracks, max_candidates=3)
    assert len(result.candidates) == 3
    scores = [c["confidence"] for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    assert result.candidates[0]["track_id"] == tracks[0].id
    assert all(0.0 <= c["confidence"] <= 1.0 for c in result.candidates)
    json.dumps(result.to_record())
    assert set(result.candidates[0]) >= {"track_id", "name", "artists", "confidence", "title_score", "artist_score", "duration_score"}


# -- ISRC -----------------------------------------------------------------------------------------------------


def test_isrc_hit_is_matched_with_method_isrc() -> None:
    t = track("Hold Me Home", isrc="USRC17607839")
    client = always(t)
    result = TrackMatcher(client).match(song("Hold Me Home", isrc="usrc17607839"))
    assert (result.method, result.outcome, result.track_id) == ("isrc", "matched", t.id)
    assert result.confidence == 1.0
    assert client.queries == ["isrc:USRC17607839"]


def test_isrc_without_hit_falls_back_to_text_search() -> None:
    t = track("Hold Me Home")
    client = FakeSearch(lambda q: [] if q.startswith("isrc:") else [t])
    result = TrackMatcher(client).match(song("Hold Me Home", isrc="USZ121600054"))
    assert (result.method, result.outcome, result.track_id) == ("search", "matched", t.id)
    assert client.queries == ["isrc:USZ121600054", 'track:"Hold Me Home" artist:"Ava Hart"']
    assert "ISRC USZ121600054: no track" in result.reason


def test_isrc_hit_with_another_title_and_artist_is_rejected() -> None:
    wrong = track("Completely Different", "Marcus Okafor", isrc="USRC17607839")
    right = track("Hold Me Home")
    client = FakeSearch(lambda q: [wrong] if q.startswith("isrc:") else [right])
    result = TrackMatcher(client).match(song("Hold Me Home", isrc="USRC17607839"))
    assert (result.method, result.outcome, result.track_id) == ("search", "matched", right.id)
    assert "rejected" in result.reason


def test_isrc_hits_carrying_another_isrc_are_ignored() -> None:
    client = always(track("Hold Me Home", isrc="GBAYE9900001"))
    result = TrackMatcher(client).match(song("Hold Me Home", isrc="USRC17607839"))
    assert result.method == "search"  # fell through to text search


def test_a_canonical_release_reports_its_recording_confidence() -> None:
    """Releases of one recording differ a little (a few seconds of silence): the record's confidence is the
    recording's, whichever release is canonical."""
    single = track("Hold Me Home", isrc=RECORDING, album="Hold Me Home", album_type="single", duration_ms=200_000)
    lp = track("Hold Me Home", isrc=RECORDING, album="Songs from Lisbon", duration_ms=212_000)
    result = match(song("Hold Me Home", duration_ms=200_000), single, lp)
    assert (result.outcome, result.track_id, result.confidence) == ("matched", lp.id, 1.0)


def test_several_releases_of_one_isrc_pick_the_song_album_else_the_canonical_one() -> None:
    single = track("Hold Me Home", isrc="USRC17607839", album="Hold Me Home", album_type="single")
    lp = track("Hold Me Home", isrc="USRC17607839", album="Songs from Lisbon")
    result = match(song("Hold Me Home", isrc="USRC17607839", album="Hold Me Home"), lp, single)
    assert (result.outcome, result.method, result.track_id) == ("matched", "isrc", single.id)
    assert "2 releases of the same recording" in result.reason
    no_album = match(song("Hold Me Home", isrc="USRC17607839"), single, lp)
    assert no_album.track_id == lp.id  # the album before the single


def test_malformed_isrc_is_not_searched() -> None:
    client = always(track("Hold Me Home"))
    TrackMatcher(client).match(song("Hold Me Home", isrc="n/a"))
    assert not any(q.startswith("isrc:") for q in client.queries)


# -- queries and fallbacks ------------------------------------------------------------------------------------


def test_strict_query_strips_features_and_suffixes_and_quotes() -> None:
    client = always()
    TrackMatcher(client, artist_max_tracks=0).match(song('Say "Hi" (feat. Theo Kim) - Remastered 2011', "Ava Hart feat. Theo Kim"))
    assert client.queries[0] == 'track:"Say Hi" artist:"Ava Hart"'


def test_fallback_queries_run_only_while_nothing_is_accepted() -> None:
    t = track("Hey Children")

    def answer(q: str) -> list[Track]:
        # Like Spotify: every query word must be in the track, and a typo in a short word is not forgiven.
        return [] if "Hye" in q else [t]

    client = FakeSearch(answer)
    result = TrackMatcher(client).match(song("Hye Children"))
    assert result.outcome == "matched" and result.track_id == t.id
    assert client.queries == ['track:"Hye Children" artist:"Ava Hart"', "children Ava Hart"]
    assert result.queries == tuple(client.queries)


def test_queries_leave_out_words_another_spelling_would_miss() -> None:
    """Every query word must match on Spotify: "and" (for "&"), "the", feature credits, release suffixes and a
    track number would make the song's other spellings miss, so they stay out of the query."""
    client = always()
    matcher = TrackMatcher(client, artist_max_tracks=0)
    matcher.match(song("07 - River and Jungle (feat. Theo Kim) - Remastered 2011", "Zion and Lennox feat. J Balvin"))
    matcher.match(song("Kills You Slowly", "Chainsmokers, The"))
    matcher.match(song("Boom", "X Ambassadors"))
    assert [q for q in client.queries if q.startswith("track:")] == [
        'track:"River Jungle" artist:"Zion Lennox"',
        'track:"Kills You Slowly" artist:"Chainsmokers"',
        'track:"Boom" artist:"X Ambassadors"',
    ]


def test_artist_tracks_are_the_last_resort_and_paged_up_to_the_cap() -> None:
    target = track("Sae Me Now".replace("Sae", "Save"))
    others = [track(f"Other Song {i}") for i in range(60)]
    client = FakeSearch(lambda q: others[:25] + [target] + others[25:] if q.startswith("artist:") else [], max_search_limit=10)
    result = TrackMatcher(client).match(song("Sae Me Now"))
    assert result.outcome == "matched" and result.track_id == target.id
    assert client.calls[-1] == ('artist:"Ava Hart"', 10, 20)  # third page of ten: found, stopped
    assert all(limit == 10 for _, limit, _ in client.calls)

    missing = FakeSearch(lambda q: others if q.startswith("artist:") else [], max_search_limit=10)
    TrackMatcher(missing).match(song("Sae Me Now"))
    assert [off for q, _, off in missing.calls if q.startswith("artist:")] == [0, 10, 20, 30, 40]  # 50 tracks max
    none = FakeSearch(lambda q: [], max_search_limit=10)
    assert TrackMatcher(none, artist_max_tracks=0).match(song("Sae Me Now")).outcome == "no_candidates"
    assert none.queries == ['track:"Sae Me Now" artist:"Ava Hart"']


def test_search_limit_follows_the_client_mode_or_the_setting() -> None:
    extended = FakeSearch(lambda q: [], max_search_limit=50)
    TrackMatcher(extended).match(song("Hold Me Home"))
    assert {limit for _, limit, _ in extended.calls} == {50}
    plain = FakeSearch(lambda q: [])
    TrackMatcher(plain).match(song("Hold Me Home"))
    assert {limit for _, limit, _ in plain.calls} == {10}
    fixed = FakeSearch(lambda q: [], max_search_limit=50)
    TrackMatcher(fixed, search_limit=5).match(song("Hold Me Home"))
    assert {limit for _, limit, _ in fixed.calls} == {5}


def test_no_candidates_and_nothing_to_search() -> None:
    client = always()
    result = TrackMatcher(client).match(song("Hold Me Home"))
    assert (result.outcome, result.track_id, result.confidence, result.candidates) == ("no_candidates", None, 0.0, [])
    assert result.reason == "no track found"
    empty = always(track("x"))
    no_artist = TrackMatcher(empty).match(song("Hold Me Home", artist=" "))
    assert no_artist.outcome == "no_candidates" and "no artist" in no_artist.reason
    assert TrackMatcher(empty).match(song("?!", artist="Ava Hart")).outcome == "no_candidates"
    assert empty.calls == []


# -- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        SpotifyBadRequest(400, "Invalid query", endpoint="GET /search"),
        SpotifyResponseError("expected 'tracks.items' array", endpoint="GET /search", field="tracks.items"),
    ],
)
def test_per_song_errors_become_error_records(error: Exception) -> None:
    result = TrackMatcher(FakeSearch(lambda q: error)).match(song("Hold Me Home"))
    assert (result.outcome, result.method, result.track_id, result.confidence) == ("error", "search", None, 0.0)
    assert type(error).__name__ in result.reason


def test_error_during_isrc_search_is_recorded_as_isrc() -> None:
    client = FakeSearch(lambda q: SpotifyBadRequest(400, "bad isrc", endpoint="GET /search"))
    result = TrackMatcher(client).match(song("Hold Me Home", isrc="USRC17607839"))
    assert (result.outcome, result.method) == ("error", "isrc")


@pytest.mark.parametrize(
    "error",
    [
        SpotifyRateLimited(3600, endpoint="GET /search", max_retry_after_s=120),
        SpotifyQuotaExceeded(429, "quota", endpoint="GET /search"),
        SpotifyUnauthorized(401, "The access token expired", endpoint="GET /search"),
        SpotifyAuthError("invalid_client", status=400, error="invalid_client"),
        SpotifyConnectionError("connection refused", endpoint="GET /search"),
        SpotifyServerError(503, "unavailable", endpoint="GET /search"),
    ],
)
def test_stop_the_run_errors_propagate(error: Exception) -> None:
    ok = track("Hold Me Home")
    calls = iter([[ok], error])
    client = FakeSearch(lambda q: next(calls))
    results = TrackMatcher(client).match_many([song("Hold Me Home", song_id=1), song("Hold Me Home", song_id=2)])
    assert next(results).track_id == ok.id
    with pytest.raises(type(error)):
        next(results)


def test_match_many_yields_one_record_per_song_in_order() -> None:
    t = track("Hold Me Home")
    client = FakeSearch(lambda q: [t] if "Hold" in q else [])
    songs = [song("Hold Me Home", song_id=7), song("Nothing Here", song_id=3), song("Hold Me Home", song_id=5)]
    results = list(TrackMatcher(client).match_many(songs))
    assert [r.song_id for r in results] == [7, 3, 5]
    assert [r.outcome for r in results] == ["matched", "no_candidates", "matched"]
    assert all(r.outcome in OUTCOMES and 0.0 <= r.confidence <= 1.0 for r in results)


def test_invalid_settings_are_refused() -> None:
    for kw in ({"threshold": 1.5}, {"tie_margin": -0.1}, {"search_limit": 0}, {"weights": {"title": 1.0}},
               {"version_penalty": 0.0}, {"duration_span_ms": 0}):
        with pytest.raises(ValueError):
            TrackMatcher(always(), **kw)


def test_matcher_imports_neither_dagster_nor_the_warehouse_nor_the_emulator() -> None:
    code = (
        "import sys, spotify_pipeline.matching.matcher, spotify_pipeline.matching.evaluation\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'dagster'"
        " or m.startswith(('spotify_pipeline.warehouse', 'spotify_pipeline.emulator'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
