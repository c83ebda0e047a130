"""Match local songs without a Spotify id to Spotify tracks: ISRC first, then scored title + artist search.

Pure logic over a search client (anything with ``search_tracks(query, limit, offset) -> SearchPage``, normally
`spotify_pipeline.spotify.SpotifyClient`): no Dagster, no warehouse. The ``spotify_track_matches`` asset feeds
it songs and lands the `MatchResult` records it yields.

How one song is matched (`TrackMatcher.match`):

1. **ISRC.** When the song has a well-formed ISRC, search ``isrc:CODE``. Hits carrying that ISRC are releases
   of the same recording: they are accepted unless the best one's title/artist/duration similarity is below
   ``isrc_min_similarity`` (a wrong ISRC in the local tags), and the canonical release among them is the match
   (rule below). No hit, or a rejected one, falls through to 2.
2. **Search.** ``track:"<title>" artist:"<first artist>"``, each value reduced to the words no spelling drift
   can make miss (`normalize.search_words`: no feature credits, release suffixes, track-number prefix, "and",
   "&" or "the"). Only when that finds nothing acceptable: the title's significant words and the artist as free
   text (forgives a typo in a short word when the search forgives typos), then ``artist:"<first artist>"``
   alone, up to ``artist_max_tracks`` of the artist's tracks, paged (a typo in the title, the last resort).
   The first query (or page) that yields an accepted or ambiguous decision ends the search; a song found at
   once costs one request, whatever the app mode's search limit.
3. **Scoring.** Each candidate's confidence (0..1) is a weighted geometric mean of title similarity, artist
   similarity and duration agreement, computed on `normalize.fold`-ed strings so that case, accents,
   punctuation, feature credits, a track-number prefix and "- Remastered 2011" cost nothing:

   * *title*: the better of whole-title and core-title similarity, an adjacent-letter swap counting half an
     edit (the commonest typing slip: "Zeor" is "Zero", "Run On" is not "Run Out");
   * *artist*: the local field against the track's primary artist, and, when it names several artists
     (``"A feat. B"``, ``"B, A"``, ``"A & B"``), against all of the track's artists in any order; a library's
     ``"Artist, The"`` is ``"The Artist"``. A local artist who is only a featured guest on the track scores
     low: that is another artist's song;
   * *version*: remixes, live, acoustic, radio edits, instrumentals, demos, alternate takes ... are other
     recordings, so a title whose version tags differ from the local title's (or whose remixer differs:
     "Oliver Heldens Remix" is not "Jauz Remix") is multiplied by ``version_penalty``, which puts it below
     the threshold: "Summer Days" is never matched to "Summer Days - Tiësto Remix". Remasters, mono/stereo,
     "Single Version", "Original Mix" and deluxe editions are the same recording and cost nothing;
   * a title or artist below its minimum similarity multiplies the confidence by ``gate_penalty``.
   A missing duration (or album) is no evidence either way: the weights are renormalised without it.
4. **Deciding.** Candidates are grouped into *recordings*: tracks sharing an ISRC are one recording on
   several releases; a track without ISRC is a recording of its own. A recording scores as its best release.
   The best recording is accepted at ``threshold`` or above unless another recording scores within
   ``tie_margin`` of it; such a near-tie is broken only by evidence the song carries: its album clearly names
   one (album similarity ahead by `ALBUM_TIE_BREAK`), exactly one was released in its release year, or
   exactly one is spelled exactly like its title. Otherwise the song stays ``ambiguous``, never guessed; below
   the threshold it stays ``low_confidence``. Every outcome carries a reason and the best candidates with
   their scores.
5. **Canonical release.** A recording found on several releases (album, single, compilation, re-issue) is
   matched to one of them by a deterministic rule that does not depend on Spotify's ranking (which differs
   between app modes, since Development Mode has no popularity): the release whose album name agrees with
   the song's album (the release the user has; similarity at least `ALBUM_MATCH`, the closest first), then
   an album before a single before a compilation, then the earliest release date, then the smallest track
   id. Two songs of one recording without album therefore resolve to the same track.

Errors that concern one song only (`SpotifyBadRequest` for a query Spotify refuses, `SpotifyNotFound`, a
malformed search body) become outcome ``error`` and the run goes on; everything that means "stop the run"
(`SpotifyRateLimited`, `SpotifyQuotaExceeded`, auth and config errors, connection or server errors left after
the client's retries, an unreachable rate limiter) propagates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, Levenshtein

from spotify_pipeline.matching.normalize import (
    TitleParts,
    artist_variants,
    first_artist,
    fold,
    fold_artist,
    looks_like_several_artists,
    normalize_isrc,
    query_value,
    search_words,
    significant_tokens,
    split_artists,
    split_title,
    strip_credits,
)
from spotify_pipeline.spotify.errors import SpotifyBadRequest, SpotifyNotFound, SpotifyResponseError
from spotify_pipeline.spotify.models import SearchPage, Track

log = logging.getLogger(__name__)

MatchMethod = Literal["isrc", "search"]
MatchOutcome = Literal["matched", "no_candidates", "low_confidence", "ambiguous", "error"]
METHODS: tuple[MatchMethod, ...] = ("isrc", "search")
OUTCOMES: tuple[MatchOutcome, ...] = ("matched", "no_candidates", "low_confidence", "ambiguous", "error")

#: Client errors that concern one song's query only: recorded as outcome "error", the run goes on.
PER_SONG_ERRORS: tuple[type[Exception], ...] = (SpotifyBadRequest, SpotifyNotFound, SpotifyResponseError)

DEFAULT_THRESHOLD = 0.85
DEFAULT_TIE_MARGIN = 0.02
DEFAULT_DURATION_TOLERANCE_MS = 3_000
DEFAULT_DURATION_SPAN_MS = 30_000
DEFAULT_DURATION_FLOOR = 0.1
DEFAULT_MIN_TITLE_SIMILARITY = 0.8
DEFAULT_MIN_ARTIST_SIMILARITY = 0.8
DEFAULT_GATE_PENALTY = 0.8
#: Below the threshold on its own: another version of the song is another recording, never the song.
DEFAULT_VERSION_PENALTY = 0.8
DEFAULT_ISRC_MIN_SIMILARITY = 0.6
DEFAULT_WEIGHTS: dict[str, float] = {"title": 0.5, "artist": 0.35, "duration": 0.15}
DEFAULT_ARTIST_MAX_TRACKS = 50
DEFAULT_MAX_CANDIDATES = 5
#: Albums this much more alike than the runner-up's break a tie between recordings.
ALBUM_TIE_BREAK = 0.15
#: An album name at least this similar to the song's names the release the user has.
ALBUM_MATCH = 0.8
#: Remixer or venue names at least this similar name the same version ("Tiesto Remix" == "Tiësto Remix").
VERSION_NAME_MATCH = 0.8
#: Canonical release order of Spotify's album types: the original album, then a single, then a compilation.
ALBUM_TYPE_ORDER: dict[str, int] = {"album": 0, "single": 1, "compilation": 2}


class SearchClient(Protocol):
    """What the matcher needs of a Spotify client (`spotify_pipeline.spotify.SpotifyClient` is one).

    A client that also has ``capabilities.max_search_limit`` (10 in Development Mode, 50 in Extended Quota
    mode) is asked for that many results per query unless ``search_limit`` is given.
    """

    def search_tracks(self, query: str, limit: int = 10, offset: int = 0) -> SearchPage: ...


@dataclass(frozen=True)
class SongToMatch:
    """A local song without a Spotify id, as the ``songs`` table holds it."""

    song_id: int
    title: str
    artist: str
    album: str | None = None
    duration_ms: int | None = None
    isrc: str | None = None
    release_year: int | None = None


@dataclass(frozen=True)
class ScoredCandidate:
    """One Spotify track scored against one song. Similarities are in 0..1; None where the song lacks the field.

    ``confidence`` combines them (see `TrackMatcher.score`); ``rank`` is the order in which the track first
    appeared in this song's search results (0 = Spotify's best).
    """

    track: Track
    confidence: float
    title: float
    artist: float
    duration: float | None
    duration_diff_ms: int | None
    version_match: bool
    album: float | None
    year_match: bool | None
    isrc_match: bool
    rank: int
    weak: tuple[str, ...] = ()  # human-readable reasons the confidence is not 1
    exact_title: bool = False  # the track's whole title folds to the song's whole title

    @property
    def recording(self) -> str:
        """Which recording this track is: its ISRC, or (without one) the track itself."""
        return normalize_isrc(self.track.isrc) or f"track:{self.track.id}"

    def to_json(self) -> dict[str, Any]:
        """A small JSON-able summary (what `MatchResult.candidates` holds)."""
        return {
            "track_id": self.track.id,
            "name": self.track.name,
            "artists": [a.name for a in self.track.artists],
            "album": self.track.album.name,
            "album_type": self.track.album.album_type,
            "release_date": self.track.album.release_date,
            "duration_ms": self.track.duration_ms,
            "isrc": self.track.isrc,
            "confidence": round(self.confidence, 4),
            "title_score": round(self.title, 4),
            "artist_score": round(self.artist, 4),
            "duration_score": None if self.duration is None else round(self.duration, 4),
            "version_match": self.version_match,
            "isrc_match": self.isrc_match,
        }


@dataclass(frozen=True)
class MatchResult:
    """The record of one match attempt (one row of ``spotify_match_attempts``).

    * ``method``: ``"isrc"`` when the ISRC search decided (or failed with an error), else ``"search"``;
    * ``outcome``: ``matched`` | ``no_candidates`` | ``low_confidence`` | ``ambiguous`` | ``error``;
    * ``track_id`` and ``track``: the matched track (None unless matched); ``track`` is the full `Track`, so
      the caller can land it without another request;
    * ``confidence``: of the matched track, or of the best candidate when unmatched (0 without candidates);
    * ``reason``: one sentence for a human;
    * ``candidates``: JSON-able best candidates with their scores, best first (at most ``max_candidates``; for
      an ISRC match, the releases of the recording in canonical order, the matched one first);
    * ``queries``: the search queries sent, in order.
    """

    song_id: int
    method: MatchMethod
    outcome: MatchOutcome
    track_id: str | None
    confidence: float
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    track: Track | None = field(default=None, repr=False, compare=False)
    queries: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        return self.outcome == "matched"

    def to_record(self) -> dict[str, Any]:
        """Every field but ``track``, JSON-able."""
        return {
            "song_id": self.song_id,
            "method": self.method,
            "outcome": self.outcome,
            "track_id": self.track_id,
            "confidence": self.confidence,
            "reason": self.reason,
            "candidates": self.candidates,
            "queries": list(self.queries),
        }


# -- similarity functions (pure) ----------------------------------------------------------------------------


def _ratio(a: str, b: str) -> float:
    return fuzz.ratio(a, b) / 100.0 if a and b else 0.0


def typo_similarity(a: str, b: str) -> float:
    """0..1: `fuzz.ratio`, or, when higher, one minus the edit distance over the longer length with a swap of
    two adjacent letters counting half an edit. A swap is the commonest typing slip and rarely turns one
    word into another ("Zeor" -> "Zero" 0.88), where a changed letter often does ("Run On" -> "Run Out" 0.77)."""
    if not a or not b:
        return 0.0
    restricted = OSA.distance(a, b)  # a swap is one edit here and two in plain Levenshtein
    swaps = Levenshtein.distance(a, b) - restricted
    weighted = restricted - 0.5 * max(0, swaps)
    return max(_ratio(a, b), 1.0 - weighted / max(len(a), len(b)))


def title_similarity(local: TitleParts, remote: TitleParts) -> float:
    """0..1: the better of whole-title and core-title (no feature credits, no release suffix, no track number)
    similarity, forgiving typing slips (`typo_similarity`)."""
    return max(_ratio(local.full, remote.full), typo_similarity(local.core, remote.core))


def same_version(local: TitleParts, remote: TitleParts) -> bool:
    """Whether two titles name the same version of a song: the same version tags (none for the original) and,
    when both say which version it is (a remixer, a venue, "Spanish Version"), similar names."""
    if local.versions != remote.versions:
        return False
    if not local.version_names or not remote.version_names:
        return True
    local_names, remote_names = " ".join(local.version_names), " ".join(remote.version_names)
    named_alike = fuzz.token_set_ratio(local_names, remote_names) / 100.0
    return max(named_alike, typo_similarity(local_names, remote_names)) >= VERSION_NAME_MATCH


def artist_similarity(local_artist: str, track: Track) -> float:
    """0..1: the local artist field against the track's primary artist; when the field lists several artists
    (``"A & B"``, ``"A feat. B"``, ``"B, A"``) also its first one against the primary artist and its artists
    against all the track's artists, in any order. A local artist who is only a featured guest on the track
    scores low: that is another artist's song."""
    variants = artist_variants(local_artist)
    if not variants or not track.artists:
        return 0.0
    primary = fold_artist(track.artists[0].name)
    best = max(_ratio(v, primary) for v in variants)
    if len(track.artists) > 1 and looks_like_several_artists(local_artist):
        names = [fold_artist(a.name) for a in track.artists]
        for together in (" and ".join(names), " ".join(names)):
            best = max(best, _ratio(variants[0], together))
        best = max(best, _collaborators_similarity(split_artists(local_artist), names))
    return best


def _collaborators_similarity(local_names: Sequence[str], track_names: Sequence[str]) -> float:
    """How well the artists a local field lists agree with the track's, in any order: the mean of each local
    name's best match; 0 unless the track's primary artist is among the local names (a guest's own song is
    not the song)."""
    if len(local_names) < 2 or not track_names:
        return 0.0
    if max(_ratio(name, track_names[0]) for name in local_names) < DEFAULT_MIN_ARTIST_SIMILARITY:
        return 0.0
    return sum(max(_ratio(name, other) for other in track_names) for name in local_names) / len(local_names)


def duration_similarity(
    local_ms: int | None,
    remote_ms: int | None,
    tolerance_ms: int = DEFAULT_DURATION_TOLERANCE_MS,
    span_ms: int = DEFAULT_DURATION_SPAN_MS,
) -> float | None:
    """1 within ``tolerance_ms``, falling linearly to 0 over the next ``span_ms``; None if either is unknown."""
    if not local_ms or not remote_ms or local_ms < 0 or remote_ms < 0:
        return None
    diff = abs(local_ms - remote_ms)
    if diff <= tolerance_ms:
        return 1.0
    return max(0.0, 1.0 - (diff - tolerance_ms) / span_ms)


def _release_year(track: Track) -> int | None:
    date = track.album.release_date
    return int(date[:4]) if date and len(date) >= 4 and date[:4].isdigit() else None


def _describe(track: Track) -> str:
    return f"{track.id} {track.name!r} by {', '.join(a.name for a in track.artists)}"


def canonical_release_order(candidate: ScoredCandidate) -> tuple[float, int, str, str]:
    """Sort key of the canonical release among releases of one recording (smallest first; see the module
    docstring): the song's own album, then album before single before compilation, the earliest release
    date, the smallest track id. Never Spotify's ranking, which differs between app modes."""
    album = candidate.album if candidate.album is not None and candidate.album >= ALBUM_MATCH else 0.0
    album_type = ALBUM_TYPE_ORDER.get((candidate.track.album.album_type or "").lower(), len(ALBUM_TYPE_ORDER))
    # ISO dates sort as text; a year-only date sorts before the days of its year. Unknown dates go last.
    released = candidate.track.album.release_date or "9999"
    return (-round(album, 2), album_type, released, candidate.track.id)


def canonical_release(releases: Iterable[ScoredCandidate]) -> ScoredCandidate:
    """The canonical release among releases of one recording (`canonical_release_order`)."""
    return min(releases, key=canonical_release_order)


# -- the matcher --------------------------------------------------------------------------------------------


class TrackMatcher:
    """Matches `SongToMatch` records to Spotify tracks through a search client (see the module docstring).

    Keyword parameters:

    * ``threshold``: lowest confidence accepted (default 0.85);
    * ``tie_margin``: another recording within this much of the best makes the song ``ambiguous`` (0.02);
    * ``duration_tolerance_ms``: durations this close count as equal (3 s); beyond, the duration score falls
      linearly to 0 over ``duration_span_ms`` (30 s), and counts at least ``duration_floor`` in the confidence;
    * ``min_title_similarity`` / ``min_artist_similarity``: below either, the confidence is multiplied by
      ``gate_penalty`` (0.8 / 0.8 / 0.8): a candidate whose title or artist differs is not a match however well
      the rest agrees;
    * ``version_penalty``: factor when the versions differ (live vs studio, one remix vs another ...) (0.8,
      which keeps another version below the default threshold);
    * ``isrc_min_similarity``: an ISRC hit is accepted only if its title/artist/duration confidence reaches
      this (0.6); the reported confidence of an ISRC match is ``0.5 + 0.5 * similarity``;
    * ``weights``: exponents of title, artist and duration (renormalised when the duration is unknown);
    * ``search_limit``: results per query; None: the client's maximum for its app mode, else 10;
    * ``artist_max_tracks``: how many of the artist's tracks the last-resort ``artist:"..."`` query pages
      through (50: one request in Extended Quota mode, five in Development Mode; 0 disables the query);
    * ``max_candidates``: candidates kept in a `MatchResult` (5).
    """

    def __init__(
        self,
        client: SearchClient,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        tie_margin: float = DEFAULT_TIE_MARGIN,
        duration_tolerance_ms: int = DEFAULT_DURATION_TOLERANCE_MS,
        duration_span_ms: int = DEFAULT_DURATION_SPAN_MS,
        duration_floor: float = DEFAULT_DURATION_FLOOR,
        min_title_similarity: float = DEFAULT_MIN_TITLE_SIMILARITY,
        min_artist_similarity: float = DEFAULT_MIN_ARTIST_SIMILARITY,
        gate_penalty: float = DEFAULT_GATE_PENALTY,
        version_penalty: float = DEFAULT_VERSION_PENALTY,
        isrc_min_similarity: float = DEFAULT_ISRC_MIN_SIMILARITY,
        weights: dict[str, float] | None = None,
        search_limit: int | None = None,
        artist_max_tracks: int = DEFAULT_ARTIST_MAX_TRACKS,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
    ) -> None:
        for name, value in (
            ("threshold", threshold),
            ("duration_floor", duration_floor),
            ("min_title_similarity", min_title_similarity),
            ("min_artist_similarity", min_artist_similarity),
            ("isrc_min_similarity", isrc_min_similarity),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name, value in (("gate_penalty", gate_penalty), ("version_penalty", version_penalty)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if not 0.0 <= tie_margin < 1.0:
            raise ValueError(f"tie_margin must be in [0, 1), got {tie_margin}")
        if duration_tolerance_ms < 0 or duration_span_ms <= 0:
            raise ValueError("duration_tolerance_ms must be >= 0 and duration_span_ms > 0")
        if search_limit is not None and search_limit < 1:
            raise ValueError("search_limit must be positive")
        if artist_max_tracks < 0 or max_candidates < 1:
            raise ValueError("artist_max_tracks must be >= 0 and max_candidates >= 1")
        w = dict(DEFAULT_WEIGHTS if weights is None else weights)
        if set(w) != set(DEFAULT_WEIGHTS) or any(v < 0 for v in w.values()) or w["title"] + w["artist"] <= 0:
            raise ValueError("weights must map 'title', 'artist' and 'duration' to non-negative exponents")
        self.client = client
        self.threshold = threshold
        self.tie_margin = tie_margin
        self.duration_tolerance_ms = duration_tolerance_ms
        self.duration_span_ms = duration_span_ms
        self.duration_floor = duration_floor
        self.min_title_similarity = min_title_similarity
        self.min_artist_similarity = min_artist_similarity
        self.gate_penalty = gate_penalty
        self.version_penalty = version_penalty
        self.isrc_min_similarity = isrc_min_similarity
        self.weights = w
        self.artist_max_tracks = artist_max_tracks
        self.max_candidates = max_candidates
        self._search_limit = search_limit

    # -- public API ---------------------------------------------------------------------------------------

    def match_many(self, songs: Iterable[SongToMatch]) -> Iterator[MatchResult]:
        """One `MatchResult` per song, in order, lazily; a stop-the-run error propagates from the iterator
        (results already yielded stay valid)."""
        for song in songs:
            yield self.match(song)

    def match(self, song: SongToMatch) -> MatchResult:
        """Match one song. Always returns a record, unless the run must stop (see the module docstring)."""
        attempt = _Attempt(song)
        try:
            isrc = normalize_isrc(song.isrc)
            if isrc:
                result = self._match_isrc(attempt, isrc)
                if result is not None:
                    return result
            return self._match_search(attempt)
        except PER_SONG_ERRORS as exc:
            log.warning("song %s: %s query failed: %s", song.song_id, attempt.method, exc)
            return attempt.result(
                "error", None, f"{type(exc).__name__}: {exc}", max_candidates=self.max_candidates
            )

    def score(self, song: SongToMatch, track: Track, *, rank: int = 0) -> ScoredCandidate:
        """Score one track against one song (pure: no request). What candidates are ranked and accepted by."""
        local = split_title(song.title)
        remote = split_title(track.name)
        title = title_similarity(local, remote)
        if len(track.artists) > 1 and title < 1.0:  # a feature credit spelled in a way split_title missed
            credited = split_title(strip_credits(song.title, (a.name for a in track.artists[1:])))
            title = max(title, title_similarity(credited, remote))
        artist = artist_similarity(song.artist, track)
        duration = duration_similarity(song.duration_ms, track.duration_ms, self.duration_tolerance_ms, self.duration_span_ms)
        diff = abs(song.duration_ms - track.duration_ms) if song.duration_ms and track.duration_ms else None
        w = self.weights
        parts = [(title, w["title"]), (artist, w["artist"])]
        if duration is not None:
            parts.append((max(duration, self.duration_floor), w["duration"]))
        total = sum(weight for _, weight in parts)
        confidence = math.prod(max(score, 1e-6) ** (weight / total) for score, weight in parts if weight)
        weak: list[str] = []
        for name, value, minimum in (
            ("title", title, self.min_title_similarity),
            ("artist", artist, self.min_artist_similarity),
        ):
            if value < minimum:
                confidence *= self.gate_penalty
                weak.append(f"{name} {value:.2f} (below the {minimum:.2f} minimum)")
            elif value < 1.0:
                weak.append(f"{name} {value:.2f}")
        if diff is not None and diff > self.duration_tolerance_ms:
            weak.append(f"duration off by {diff / 1000:.1f} s (tolerance {self.duration_tolerance_ms / 1000:g} s)")
        version_match = same_version(local, remote)
        if not version_match:
            confidence *= self.version_penalty
            weak.append(f"another version ({_version_label(local)} vs {_version_label(remote)})")
        album = None
        if song.album:
            album = _ratio(split_title(song.album).core, split_title(track.album.name).core)
        year = _release_year(track)
        isrc = normalize_isrc(song.isrc)
        return ScoredCandidate(
            track=track,
            confidence=round(min(1.0, confidence), 6),
            title=title,
            artist=artist,
            duration=duration,
            duration_diff_ms=diff,
            version_match=version_match,
            album=album,
            year_match=None if song.release_year is None or year is None else year == song.release_year,
            isrc_match=isrc is not None and normalize_isrc(track.isrc) == isrc,
            rank=rank,
            weak=tuple(weak),
            exact_title=local.full == remote.full,
        )

    # -- steps ----------------------------------------------------------------------------------------------

    def _match_isrc(self, attempt: _Attempt, isrc: str) -> MatchResult | None:
        attempt.method = "isrc"
        page = self._search(attempt, f"isrc:{isrc}")
        hits = [c for c in self._scored(attempt, page) if c.isrc_match]
        if not hits:
            attempt.notes.append(f"ISRC {isrc}: no track on Spotify")
            return None
        best = max(hits, key=lambda c: c.confidence)
        if best.confidence < self.isrc_min_similarity:
            attempt.notes.append(
                f"ISRC {isrc} hit {_describe(best.track)} rejected: title/artist similarity "
                f"{best.confidence:.2f} < {self.isrc_min_similarity:.2f} ({', '.join(best.weak)})"
            )
            return None
        release = canonical_release(hits)
        reason = f"ISRC {isrc} is {_describe(release.track)} (title/artist similarity {best.confidence:.2f})"
        if len(hits) > 1:
            reason += f"; {_canonical_note(release, len(hits))}"
        return MatchResult(
            song_id=attempt.song.song_id,
            method="isrc",
            outcome="matched",
            track_id=release.track.id,
            confidence=round(0.5 + 0.5 * best.confidence, 4),
            reason=reason,
            candidates=[c.to_json() for c in sorted(hits, key=canonical_release_order)[: self.max_candidates]],
            track=release.track,
            queries=tuple(attempt.queries),
        )

    def _match_search(self, attempt: _Attempt) -> MatchResult:
        attempt.method = "search"
        queries = self._text_queries(attempt.song)
        if not queries:
            missing = "title" if not fold(attempt.song.title) else "artist"
            return attempt.result(
                "no_candidates", None, f"nothing to search: the song has no {missing}", max_candidates=self.max_candidates
            )
        decision = _Decision("no_candidates", None, "no track found")
        for query, max_tracks in queries:  # each query only while nothing is accepted or tied
            offset = 0
            while True:
                page = self._search(attempt, query, offset=offset)
                self._scored(attempt, page)
                decision = self._decide(attempt.ranked())
                offset += len(page.items)
                if decision.outcome in ("matched", "ambiguous"):
                    return decision.result(attempt, self.max_candidates)
                if page.next is None or not page.items or len(page.items) < page.limit or offset >= max_tracks:
                    break
        return decision.result(attempt, self.max_candidates)

    def _text_queries(self, song: SongToMatch) -> list[tuple[str, int]]:
        """(query, how many results to page through) in the order tried: strict fields, loose free text, the
        artist's tracks."""
        title = split_title(song.title)
        title_value = query_value(search_words(title.core_raw))
        artist_value = query_value(search_words(first_artist(song.artist)))
        if not fold(title_value) or not fold(artist_value):
            return []
        queries = [(f'track:"{title_value}" artist:"{artist_value}"', 1)]
        words = significant_tokens(title.core)
        if words and words != fold(title_value).split():
            queries.append((f"{' '.join(words)} {artist_value}", 1))
        if self.artist_max_tracks:
            queries.append((f'artist:"{artist_value}"', self.artist_max_tracks))
        return queries

    def _decide(self, ranked: Sequence[ScoredCandidate]) -> _Decision:
        if not ranked:
            return _Decision("no_candidates", None, "no track found")
        recordings = _recordings(ranked)
        best = recordings[0]
        top = best[0]
        if top.confidence < self.threshold:
            return _Decision("low_confidence", top, (
                f"best candidate {_describe(top.track)} scored {top.confidence:.2f} < threshold "
                f"{self.threshold:.2f}: {', '.join(top.weak) or 'no single weak point'}"
            ))
        tied = [r for r in recordings[1:] if top.confidence - r[0].confidence < self.tie_margin]
        note = ""
        if tied:
            winner = _break_tie([best, *tied])
            if winner is None or winner[0].confidence < self.threshold:
                others = ", ".join(f"{_describe(r[0].track)} ({r[0].confidence:.2f})" for r in tied[:3])
                return _Decision("ambiguous", top, (
                    f"tie: {_describe(top.track)} ({top.confidence:.2f}) and {others} are other recordings "
                    f"scoring within {self.tie_margin:.2f}, and neither album, release year nor exact title "
                    "tells them apart"
                ))
            best = winner
            note = f"; near-tie with {len(tied)} other recording(s) broken by album, release year or exact title"
        release = canonical_release(best)
        reason = f"matched {_describe(release.track)} at {best[0].confidence:.2f}"
        if len(best) > 1:
            reason += f"; {_canonical_note(release, len(best))}"
        return _Decision("matched", release, reason + note, best[0].confidence)

    # -- helpers --------------------------------------------------------------------------------------------

    def _limit(self) -> int:
        if self._search_limit is None:
            caps = getattr(self.client, "capabilities", None)
            max_limit = getattr(caps, "max_search_limit", None)
            self._search_limit = max_limit if isinstance(max_limit, int) and max_limit > 0 else 10
        return self._search_limit

    def _search(self, attempt: _Attempt, query: str, offset: int = 0) -> SearchPage:
        attempt.queries.append(query if not offset else f"{query} (offset {offset})")
        return self.client.search_tracks(query, limit=self._limit(), offset=offset)

    def _scored(self, attempt: _Attempt, page: SearchPage) -> list[ScoredCandidate]:
        scored = []
        for track in page.items:
            scored.append(attempt.seen.get(track.id) or self.score(attempt.song, track, rank=len(attempt.seen)))
            attempt.seen.setdefault(track.id, scored[-1])
        return scored


@dataclass(frozen=True)
class _Decision:
    """What the candidates seen so far decide: the outcome, the candidate it names (the canonical release when
    matched, the best candidate otherwise), why, and the confidence to report (the recording's best)."""

    outcome: MatchOutcome
    candidate: ScoredCandidate | None
    reason: str
    confidence: float | None = None

    def result(self, attempt: _Attempt, max_candidates: int) -> MatchResult:
        return attempt.result(
            self.outcome, self.candidate, self.reason, max_candidates=max_candidates, confidence=self.confidence
        )


class _Attempt:
    """One song's attempt in progress: queries sent, candidates seen (by track id), notes for the reason."""

    def __init__(self, song: SongToMatch) -> None:
        self.song = song
        self.method: MatchMethod = "search"
        self.queries: list[str] = []
        self.notes: list[str] = []
        self.seen: dict[str, ScoredCandidate] = {}

    def ranked(self) -> list[ScoredCandidate]:
        return sorted(self.seen.values(), key=lambda c: (-c.confidence, c.rank))

    def result(
        self,
        outcome: MatchOutcome,
        best: ScoredCandidate | None,
        reason: str,
        *,
        max_candidates: int,
        confidence: float | None = None,
    ) -> MatchResult:
        """The record; ``confidence`` defaults to ``best``'s (a canonical release reports its recording's)."""
        matched = outcome == "matched" and best is not None
        if confidence is None:
            confidence = best.confidence if best is not None else 0.0
        return MatchResult(
            song_id=self.song.song_id,
            method=self.method,
            outcome=outcome,
            track_id=best.track.id if matched and best is not None else None,
            confidence=round(confidence, 4),
            reason="".join(f"{note}; " for note in self.notes) + reason,
            candidates=[c.to_json() for c in self.ranked()[:max_candidates]],
            track=best.track if matched and best is not None else None,
            queries=tuple(self.queries),
        )


def _version_label(parts: TitleParts) -> str:
    label = "/".join(sorted(parts.versions)) or "original"
    return f"{' '.join(parts.version_names)} {label}" if parts.versions and parts.version_names else label


def _canonical_note(release: ScoredCandidate, releases: int) -> str:
    album_type = release.track.album.album_type or "release"
    return (
        f"{releases} releases of the same recording (ISRC {release.track.isrc}); the canonical one is the "
        f"{album_type} {release.track.album.name!r} ({release.track.album.release_date or 'undated'}): "
        "the song's album, else album before single before compilation, earliest, smallest id"
    )


def _recordings(ranked: Sequence[ScoredCandidate]) -> list[list[ScoredCandidate]]:
    """Candidates grouped by recording, each group best-first, groups ordered by their best candidate."""
    groups: dict[str, list[ScoredCandidate]] = {}
    for candidate in ranked:  # already best first, so each group's first candidate is its best
        groups.setdefault(candidate.recording, []).append(candidate)
    return list(groups.values())


def _break_tie(tied: Sequence[list[ScoredCandidate]]) -> list[ScoredCandidate] | None:
    """Of near-equal recordings, the one the song's own data points to: its album clearly agrees best (by at
    least `ALBUM_TIE_BREAK`), else the only one released in its year, else the only one whose title is spelled
    exactly like the song's; None when nothing tells them apart."""

    def album(recording: list[ScoredCandidate]) -> float | None:
        scores = [c.album for c in recording if c.album is not None]
        return max(scores) if scores else None

    albums = [(album(r), r) for r in tied]
    if all(score is not None for score, _ in albums):
        albums.sort(key=lambda pair: -(pair[0] or 0.0))
        if (albums[0][0] or 0.0) - (albums[1][0] or 0.0) >= ALBUM_TIE_BREAK:
            return albums[0][1]
    years = [[c.year_match for c in r] for r in tied]
    if all(None not in y for y in years):
        same_year = [r for r, y in zip(tied, years, strict=True) if any(y)]
        if len(same_year) == 1:
            return same_year[0]
    exact = [r for r in tied if any(c.exact_title for c in r)]
    if len(exact) == 1:
        return exact[0]
    return None
