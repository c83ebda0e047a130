"""Match local songs without a Spotify id to Spotify tracks: ISRC first, then scored title + artist search.

Pure logic over a search client (anything with ``search_tracks(query, limit, offset) -> SearchPage``, normally
`spotify_pipeline.spotify.SpotifyClient`): no Dagster, no warehouse. The ``spotify_track_matches`` asset feeds
it songs and lands the `MatchResult` records it yields.

How one song is matched (`TrackMatcher.match`):

1. **ISRC.** When the song has a well-formed ISRC, search ``isrc:CODE``. Hits carrying that ISRC are the same
   recording; the best by title/artist/duration similarity is accepted unless that similarity is below
   ``isrc_min_similarity`` (a wrong ISRC in the local tags). Several releases of one ISRC are not a tie: album
   name, release year, then Spotify's ranking pick one. No hit, or a rejected one, falls through to 2.
2. **Search.** ``track:"<title>" artist:"<artist>"`` with the title's feature credits and release suffixes
   removed. Only when that finds nothing acceptable: the title's significant words and the artist as free
   text (no quotes: forgives ``&``/``and`` and typos in short words), then ``artist:"<artist>"`` alone
   (up to ``artist_max_tracks`` of the artist's tracks, paged). The first query (or page) that yields an
   accepted or tied candidate ends the search.
3. **Scoring.** Each candidate's confidence (0..1) is a weighted geometric mean of title similarity, artist
   similarity and duration agreement, computed with rapidfuzz on `normalize.fold`-ed strings so that case,
   accents, punctuation, feature credits and "- Remastered 2011" cost nothing; a version mismatch (a live
   take for a studio song) and a title or artist below its minimum similarity multiply it down. The best
   candidate is accepted at ``threshold`` or above unless another track scores within ``tie_margin`` of it
   and neither album nor release year tells them apart (``ambiguous``; near-equal releases of one recording,
   same ISRC, are no tie); below the threshold the song stays
   ``low_confidence``. Every outcome carries a reason and the best candidates with their scores.

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

from spotify_pipeline.matching.normalize import (
    TitleParts,
    artist_variants,
    first_artist,
    fold,
    fold_artist,
    looks_like_several_artists,
    normalize_isrc,
    query_value,
    significant_tokens,
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
DEFAULT_VERSION_PENALTY = 0.94
DEFAULT_ISRC_MIN_SIMILARITY = 0.6
DEFAULT_WEIGHTS: dict[str, float] = {"title": 0.5, "artist": 0.35, "duration": 0.15}
DEFAULT_ARTIST_MAX_TRACKS = 50
DEFAULT_MAX_CANDIDATES = 5
#: Albums this much more alike than the runner-up's break a tie.
ALBUM_TIE_BREAK = 0.15


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

    def to_json(self) -> dict[str, Any]:
        """A small JSON-able summary (what `MatchResult.candidates` holds)."""
        return {
            "track_id": self.track.id,
            "name": self.track.name,
            "artists": [a.name for a in self.track.artists],
            "album": self.track.album.name,
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
    * ``candidates``: JSON-able best candidates with their scores, best first (at most ``max_candidates``);
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


def title_similarity(local: TitleParts, remote: TitleParts) -> float:
    """0..1: the better of whole-title and core-title (no feature credits, no release suffix) similarity."""
    return max(_ratio(local.full, remote.full), _ratio(local.core, remote.core))


def artist_similarity(local_artist: str, track: Track) -> float:
    """0..1: the local artist field against the track's primary artist; when the field lists several artists
    (``"A & B"``, ``"A feat. B"``) also its first one against the primary artist and the whole field against
    all the track's artists. A local artist who is only a featured guest on the track scores low: that is
    another artist's song."""
    variants = artist_variants(local_artist)
    if not variants or not track.artists:
        return 0.0
    primary = fold_artist(track.artists[0].name)
    best = max(_ratio(v, primary) for v in variants)
    if len(track.artists) > 1 and looks_like_several_artists(local_artist):
        names = [fold_artist(a.name) for a in track.artists]
        for together in (" and ".join(names), " ".join(names)):
            best = max(best, _ratio(variants[0], together))
    return best


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


# -- the matcher --------------------------------------------------------------------------------------------


class TrackMatcher:
    """Matches `SongToMatch` records to Spotify tracks through a search client (see the module docstring).

    Keyword parameters:

    * ``threshold``: lowest confidence accepted (default 0.85);
    * ``tie_margin``: another track within this much of the best makes the song ``ambiguous`` (0.02);
    * ``duration_tolerance_ms``: durations this close count as equal (3 s); beyond, the duration score falls
      linearly to 0 over ``duration_span_ms`` (30 s), and counts at least ``duration_floor`` in the confidence;
    * ``min_title_similarity`` / ``min_artist_similarity``: below either, the confidence is multiplied by
      ``gate_penalty`` (0.8 / 0.8 / 0.8): a candidate whose title or artist differs is not a match however well
      the rest agrees;
    * ``version_penalty``: factor when the version tags differ (live vs studio, remix ...) (0.94);
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
        version_match = local.versions == remote.versions
        if not version_match:
            confidence *= self.version_penalty
            weak.append(
                f"version differs ({'/'.join(sorted(local.versions)) or 'original'} vs "
                f"{'/'.join(sorted(remote.versions)) or 'original'})"
            )
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
        )

    # -- steps ----------------------------------------------------------------------------------------------

    def _match_isrc(self, attempt: _Attempt, isrc: str) -> MatchResult | None:
        attempt.method = "isrc"
        page = self._search(attempt, f"isrc:{isrc}")
        hits = [c for c in self._scored(attempt, page) if c.isrc_match]
        if not hits:
            attempt.notes.append(f"ISRC {isrc}: no track on Spotify")
            return None
        hits.sort(key=_isrc_order)
        best = hits[0]
        if best.confidence < self.isrc_min_similarity:
            attempt.notes.append(
                f"ISRC {isrc} hit {_describe(best.track)} rejected: title/artist similarity "
                f"{best.confidence:.2f} < {self.isrc_min_similarity:.2f} ({', '.join(best.weak)})"
            )
            return None
        reason = f"ISRC {isrc} is {_describe(best.track)} (title/artist similarity {best.confidence:.2f})"
        if len(hits) > 1:
            reason += f"; {len(hits)} releases share the ISRC, picked by album, release year and Spotify's ranking"
        return MatchResult(
            song_id=attempt.song.song_id,
            method="isrc",
            outcome="matched",
            track_id=best.track.id,
            confidence=round(0.5 + 0.5 * best.confidence, 4),
            reason=reason,
            candidates=[c.to_json() for c in hits[: self.max_candidates]],
            track=best.track,
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
        decision: tuple[MatchOutcome, ScoredCandidate | None, str] = ("no_candidates", None, "no track found")
        for query, max_tracks in queries:  # each query only while nothing is accepted or tied
            offset = 0
            while True:
                page = self._search(attempt, query, offset=offset)
                self._scored(attempt, page)
                decision = self._decide(attempt.ranked())
                offset += len(page.items)
                if decision[0] in ("matched", "ambiguous"):
                    return attempt.result(*decision, max_candidates=self.max_candidates)
                if page.next is None or not page.items or len(page.items) < page.limit or offset >= max_tracks:
                    break
        return attempt.result(*decision, max_candidates=self.max_candidates)

    def _text_queries(self, song: SongToMatch) -> list[tuple[str, int]]:
        """(query, how many results to page through) in the order tried: strict fields, loose free text, the
        artist's tracks."""
        title = split_title(song.title)
        title_value = query_value(title.core_raw)
        artist_value = query_value(first_artist(song.artist))
        if not fold(title_value) or not fold(artist_value):
            return []
        queries = [(f'track:"{title_value}" artist:"{artist_value}"', 1)]
        words = significant_tokens(title.core)
        if words and words != title.core.split():
            queries.append((f"{' '.join(words)} {artist_value}", 1))
        if self.artist_max_tracks:
            queries.append((f'artist:"{artist_value}"', self.artist_max_tracks))
        return queries

    def _decide(self, ranked: Sequence[ScoredCandidate]) -> tuple[MatchOutcome, ScoredCandidate | None, str]:
        if not ranked:
            return "no_candidates", None, "no track found"
        best = ranked[0]
        if best.confidence < self.threshold:
            return "low_confidence", best, (
                f"best candidate {_describe(best.track)} scored {best.confidence:.2f} < threshold "
                f"{self.threshold:.2f}: {', '.join(best.weak) or 'no single weak point'}"
            )
        tied = [c for c in ranked[1:] if best.confidence - c.confidence < self.tie_margin]
        recording = normalize_isrc(best.track.isrc)
        if tied and recording and all(normalize_isrc(c.track.isrc) == recording for c in tied):
            # Releases of one recording (album, single, compilation): not a real tie, any is the song.
            winner = min([best, *tied], key=_isrc_order)
            if winner.confidence >= self.threshold:
                return "matched", winner, (
                    f"matched {_describe(winner.track)} at {winner.confidence:.2f}; {len(tied) + 1} releases of "
                    f"the same recording (ISRC {recording}), picked by album, release year and Spotify's ranking"
                )
        if tied:
            winner = _break_tie([best, *tied])
            if winner is None or winner.confidence < self.threshold:
                others = ", ".join(f"{_describe(c.track)} ({c.confidence:.2f})" for c in tied[:3])
                return "ambiguous", best, (
                    f"tie: {_describe(best.track)} ({best.confidence:.2f}) and {others} score within "
                    f"{self.tie_margin:.2f} and neither album nor release year tells them apart"
                )
            return "matched", winner, (
                f"matched {_describe(winner.track)} at {winner.confidence:.2f}; near-tie with "
                f"{len(tied)} other track(s) broken by album/release year"
            )
        return "matched", best, f"matched {_describe(best.track)} at {best.confidence:.2f}"

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
        self, outcome: MatchOutcome, best: ScoredCandidate | None, reason: str, *, max_candidates: int
    ) -> MatchResult:
        matched = outcome == "matched" and best is not None
        return MatchResult(
            song_id=self.song.song_id,
            method=self.method,
            outcome=outcome,
            track_id=best.track.id if matched and best is not None else None,
            confidence=round(best.confidence, 4) if best is not None else 0.0,
            reason="".join(f"{note}; " for note in self.notes) + reason,
            candidates=[c.to_json() for c in self.ranked()[:max_candidates]],
            track=best.track if matched and best is not None else None,
            queries=tuple(self.queries),
        )


def _isrc_order(c: ScoredCandidate) -> tuple[float, float, int, int]:
    return (-round(c.confidence, 3), -(c.album or 0.0), 0 if c.year_match else 1, c.rank)


def _break_tie(tied: Sequence[ScoredCandidate]) -> ScoredCandidate | None:
    """Of near-equal candidates, the one whose album clearly agrees best with the song's (by at least
    `ALBUM_TIE_BREAK`), else the only one released in the song's year; None when nothing tells them apart."""
    albums = sorted((c for c in tied if c.album is not None), key=lambda c: -(c.album or 0.0))
    if len(albums) == len(tied) and (albums[0].album or 0.0) - (albums[1].album or 0.0) >= ALBUM_TIE_BREAK:
        return albums[0]
    same_year = [c for c in tied if c.year_match]
    if len(same_year) == 1 and all(c.year_match is not None for c in tied):
        return same_year[0]
    return None
