"""Track search: Spotify's query syntax over an inverted index of the catalogue.

`q` is free text plus field filters `isrc:`, `track:`, `artist:`, `album:`, `year:` (`year:1999` or
`year:1990-1999`); a filter value may be quoted (`track:"hold me home"`). Matching is token-based and,
like Spotify, ignores case, accents and apostrophes ("Don't" == "dont"). Every token must match; a token
the catalogue does not contain matches its one-edit neighbours instead (Spotify forgives small typos).
Results rank exact title matches first, then the most popular, so ordering is stable for a given seed.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field

from spotify_pipeline.emulator.catalog import Catalog

FILTERS = ("isrc", "track", "artist", "album", "year")
_FILTER_PATTERN = re.compile(r'\b(isrc|track|artist|album|year):("[^"]*"|\S+)', re.IGNORECASE)
_NON_WORD = re.compile(r"[^\w]+")
_YEAR_RANGE = re.compile(r"^(\d{4})(?:-(\d{4}))?$")


def normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", stripped.casefold().replace("'", "").replace("’", "")).strip()


def tokens(text: str) -> list[str]:
    return normalise(text).split()


@dataclass
class Query:
    free_text: list[str] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)  # track/artist/album -> tokens
    isrc: str | None = None
    years: tuple[int, int] | None = None


class QuerySyntaxError(ValueError):
    pass


def parse_query(q: str) -> Query:
    query = Query()
    for name, raw_value in _FILTER_PATTERN.findall(q):
        value = raw_value.strip('"')
        name = name.lower()
        if name == "isrc":
            query.isrc = value.upper()
        elif name == "year":
            match = _YEAR_RANGE.match(value)
            if not match:
                raise QuerySyntaxError(f"Invalid year filter: {value}")
            start = int(match.group(1))
            query.years = (start, int(match.group(2) or start))
        else:
            query.fields.setdefault(name, []).extend(tokens(value))
    query.free_text = tokens(_FILTER_PATTERN.sub(" ", q))
    return query


class TrackSearchIndex:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._by_field: dict[str, dict[str, set[int]]] = {name: defaultdict(set) for name in ("track", "artist", "album")}
        self._any: dict[str, set[int]] = defaultdict(set)
        self._normalised_titles: list[str] = []
        for track in catalog.tracks:
            album = catalog.albums[track.album_index]
            texts = {
                "track": track.name,
                "artist": " ".join(catalog.artists[i].name for i in track.artist_indices),
                "album": album.name,
            }
            for name, text in texts.items():
                for token in tokens(text):
                    self._by_field[name][token].add(track.index)
                    self._any[token].add(track.index)
            self._normalised_titles.append(normalise(track.name))
        # Exact title first, then popularity, then catalogue order: deterministic for a given seed.
        self._rank = {t.index: (-t.base_popularity, t.index) for t in catalog.tracks}

    def _matches(self, postings: dict[str, set[int]], token: str) -> set[int]:
        found = postings.get(token)
        if found is not None:
            return found
        if len(token) < 4:
            return set()
        merged: set[int] = set()
        for candidate in _one_edit_variants(token):
            merged |= postings.get(candidate, set())
        return merged

    def search(self, query: Query) -> list[int]:
        """Matching track indices, best first."""
        candidates: set[int] | None = None

        def narrow(found: set[int]) -> None:
            nonlocal candidates
            candidates = set(found) if candidates is None else candidates & found

        if query.isrc is not None:
            track = self.catalog.track_by_isrc.get(query.isrc)
            narrow({track.index} if track else set())
        for name, field_tokens in query.fields.items():
            for token in field_tokens:
                narrow(self._matches(self._by_field[name], token))
        for token in query.free_text:
            narrow(self._matches(self._any, token))
        if candidates is None:
            if query.years is None:
                return []
            candidates = set(range(len(self.catalog.tracks)))
        if query.years is not None:
            low, high = query.years
            albums = self.catalog.albums
            tracks = self.catalog.tracks
            candidates = {i for i in candidates if low <= albums[tracks[i].album_index].release_year <= high}
        wanted_title = " ".join(query.fields.get("track", []))
        return sorted(candidates, key=lambda i: (self._normalised_titles[i] != wanted_title, self._rank[i]))


_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def _one_edit_variants(word: str) -> set[str]:
    """Every string one deletion, transposition, substitution or insertion away (Norvig's speller)."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    transposes = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    inserts = {a + c + b for a, b in splits for c in _LETTERS}
    return deletes | transposes | replaces | inserts
