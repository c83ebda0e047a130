"""Track search: Spotify's query syntax over an inverted index of the catalogue.

`q` is free text plus field filters `track:`, `artist:`, `album:`, `isrc:` and `year:` (`year:1999` or
`year:1990-1999`); filter names ignore case and a value may be quoted (`track:"hold me home"`). Matching is
token-based and, like Spotify, ignores case, accents, apostrophes and spacing ("Don't" == "dont").

* Every free-text word must match a word of the track's name, artists or album; the last one also matches
  as a prefix, as Spotify completes what is being typed (`q=a` finds every track with a word starting "a").
* Every filter word must match a word of its field (`artist:adele`); `isrc:` finds every release of the
  recording; `year:` keeps albums released in that year or range.
* A word the catalogue (or the filter's field) does not hold at all, four letters or more, matches its
  one-edit neighbours instead: Spotify forgives a small typo.

Ranking, best first: the query is the track's whole name; the query is the name without its version
suffix ("Song - Remastered 2011", "Song (Live)"); the share of the name the query covers (a completed word
counts for its typed part; in quarters); how many query words hit the name (a title hit beats an artist- or
album-only hit); the track's popularity; then catalogue order, so a query always pages through the same list.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from spotify_pipeline.emulator.catalog import Catalog

FILTERS = ("isrc", "track", "artist", "album", "year")
TEXT_FIELDS = ("track", "artist", "album")
COVERAGE_STEPS = 4
TYPO_MIN_LENGTH = 4  # shorter words have too many one-edit neighbours to guess from
_FILTER_PATTERN = re.compile(r'\b(isrc|track|artist|album|year):("[^"]*"?|\S+)', re.IGNORECASE)
_NON_WORD = re.compile(r"[^\w]+")
_YEAR_RANGE = re.compile(r"^(\d{4})(?:-(\d{4}))?$")
_VERSION_SUFFIX = re.compile(r"\s+(?:-\s.*|\(.*\)|\[.*\])$")  # " - Remastered 2011", " (Live)", " [Remix]"
_ANY = "any"  # the postings of every text field together, for free text


def normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", stripped.casefold().replace("'", "").replace("’", "")).strip()


def tokens(text: str) -> list[str]:
    return normalise(text).split()


@dataclass(frozen=True)
class Query:
    """A parsed `q`; hashable, so identical searches (the pages of one query) share one result."""

    free_text: tuple[str, ...] = ()
    fields: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (track|artist|album, its words), in query order
    isrc: str | None = None
    years: tuple[int, int] | None = None

    def field_words(self, name: str) -> tuple[str, ...]:
        return tuple(word for field, words in self.fields if field == name for word in words)


class QuerySyntaxError(ValueError):
    pass


def parse_query(q: str) -> Query:
    fields: list[tuple[str, tuple[str, ...]]] = []
    isrc: str | None = None
    years: tuple[int, int] | None = None
    for name, raw_value in _FILTER_PATTERN.findall(q):
        value = raw_value.strip('"')
        name = name.lower()
        if name == "isrc":
            isrc = value.upper().replace("-", "")  # ISRCs are often written US-RC1-76-07839
        elif name == "year":
            match = _YEAR_RANGE.match(value)
            if not match:
                raise QuerySyntaxError(f"Invalid year filter: {value} (expected year:YYYY or year:YYYY-YYYY)")
            start = int(match.group(1))
            years = (start, int(match.group(2) or start))
        else:
            fields.append((name, tuple(tokens(value))))
    return Query(tuple(tokens(_FILTER_PATTERN.sub(" ", q))), tuple(fields), isrc, years)


@dataclass(frozen=True)
class _WordMatch:
    word: str
    as_prefix: bool
    tracks: frozenset[int]
    catalogue_words: frozenset[str]  # the indexed words it matched: itself, completions, or typo neighbours

    def share_of(self, catalogue_word: str) -> float:
        """How much of `catalogue_word` this query word accounts for: a completion only its typed part."""
        if self.as_prefix and catalogue_word != self.word:
            return len(self.word) / len(catalogue_word)
        return 1.0


# Sorts best first: (not the exact name, not the exact base name, -coverage, -name hits, -popularity, index).
_RankKey = tuple[bool, bool, float, int, int, int]


class TrackSearchIndex:
    """The words of every track's name, artists and album, indexed once at start-up; `search` answers `q`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._postings: dict[str, dict[str, set[int]]] = {name: {} for name in (*TEXT_FIELDS, _ANY)}
        self._name_words: list[tuple[str, ...]] = []
        self._names: list[str] = []
        self._base_names: list[str] = []
        # Albums and artists are shared by many tracks: fold their names once.
        album_words = [tokens(album.name) for album in catalog.albums]
        artist_words = [tokens(artist.name) for artist in catalog.artists]
        for track in catalog.tracks:
            name_words = tokens(track.name)
            by_field = {
                "track": name_words,
                "artist": [word for i in track.artist_indices for word in artist_words[i]],
                "album": album_words[track.album_index],
            }
            for name, words in by_field.items():
                for word in words:
                    self._postings[name].setdefault(word, set()).add(track.index)
                    self._postings[_ANY].setdefault(word, set()).add(track.index)
            self._name_words.append(tuple(name_words))
            self._names.append(" ".join(name_words))
            self._base_names.append(normalise(_VERSION_SUFFIX.sub("", track.name)))
        self._sorted_words = {name: sorted(postings) for name, postings in self._postings.items()}

    # -- matching ---------------------------------------------------------------------------------------

    def _completions(self, field: str, prefix: str) -> Iterable[str]:
        words = self._sorted_words[field]
        position = bisect_left(words, prefix)
        while position < len(words) and words[position].startswith(prefix):
            yield words[position]
            position += 1

    @lru_cache(maxsize=2048)  # noqa: B019 - the index lives as long as the app; the cache is the point
    def _match(self, field: str, word: str, as_prefix: bool) -> _WordMatch:
        postings = self._postings[field]
        matched = set(self._completions(field, word)) if as_prefix else ({word} if word in postings else set())
        if not matched and len(word) >= TYPO_MIN_LENGTH:
            matched = {variant for variant in _one_edit_variants(word) if variant in postings}
        return _WordMatch(word, as_prefix, frozenset().union(*(postings[w] for w in matched)), frozenset(matched))

    @lru_cache(maxsize=128)  # noqa: B019 - a client pages through one query with several requests
    def search(self, query: Query) -> tuple[int, ...]:
        """Matching track indices, best first."""
        candidates: set[int] | None = None
        name_matches: list[_WordMatch] = []  # the words that speak about the track's name

        def narrow(found: Iterable[int]) -> None:
            nonlocal candidates
            candidates = set(found) if candidates is None else candidates.intersection(found)

        if query.isrc is not None:
            narrow(track.index for track in self.catalog.tracks_by_isrc.get(query.isrc, ()))
        for field, words in query.fields:
            for word in words:
                match = self._match(field, word, False)
                narrow(match.tracks)
                if field == "track":
                    name_matches.append(match)
        for position, word in enumerate(query.free_text):
            match = self._match(_ANY, word, position == len(query.free_text) - 1)
            narrow(match.tracks)
            name_matches.append(match)
        if candidates is None:
            if query.years is None:
                return ()
            candidates = set(range(len(self.catalog.tracks)))
        if query.years is not None:
            low, high = query.years
            albums, tracks = self.catalog.albums, self.catalog.tracks
            candidates = {i for i in candidates if low <= albums[tracks[i].album_index].release_year <= high}
        return tuple(sorted(candidates, key=self._ranking(query, name_matches)))

    def _ranking(self, query: Query, name_matches: list[_WordMatch]) -> Callable[[int], _RankKey]:
        wanted_name = " ".join(query.field_words("track") or query.free_text)
        covered: dict[str, float] = {}  # catalogue word -> the largest share of it a query word accounts for
        for match in name_matches:
            for word in match.catalogue_words:
                covered[word] = max(covered.get(word, 0.0), match.share_of(word))
        tracks = self.catalog.tracks

        def key(index: int) -> _RankKey:
            words = self._name_words[index]
            coverage = sum(covered.get(word, 0.0) for word in words) / len(words) if words else 0.0
            # In quarters, so that names covered about as well are ordered by popularity.
            coverage = round(coverage * COVERAGE_STEPS) / COVERAGE_STEPS
            name_hits = sum(1 for m in name_matches if not m.catalogue_words.isdisjoint(words))
            return (
                self._names[index] != wanted_name,
                self._base_names[index] != wanted_name,
                -coverage,
                -name_hits,
                -tracks[index].base_popularity,
                index,
            )

        return key


_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def _one_edit_variants(word: str) -> set[str]:
    """Every string one deletion, transposition, substitution or insertion away (Norvig's speller)."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    transposes = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    inserts = {a + c + b for a, b in splits for c in _LETTERS}
    return deletes | transposes | replaces | inserts
