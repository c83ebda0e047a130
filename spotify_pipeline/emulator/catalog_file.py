"""A catalogue read from a file: JSON Lines of Spotify track objects, as `GET /v1/tracks/{id}` returns them.

One track object per line (blank lines are skipped), UTF-8, optionally gzipped (recognised by its first
bytes, whatever the file is called). What the file says is kept exactly: track, album and artist ids and
names, ISRCs, durations, disc and track numbers, explicit flags, preview URLs, album types, release dates,
cover images. The track's `popularity` becomes its base popularity: in extended mode the emulator reports
it with the same day-to-day swing as a synthetic track (0 when the line has none, as a development-mode
pull). Albums and artists are derived from the tracks:

* An album is the first `album` object seen with its id; its tracks are every line naming that id, in
  (disc, track number) order. `total_tracks` and `available_markets` are kept when the object has them
  (a file may hold two tracks of a twelve-track album). What a simplified album object does not carry is
  derived: label and UPC from the album id, popularity from its most popular track, copyright year from
  the release date.
* An artist is each (id, name) pair the file credits, so every track renders its artists as its line spells
  them (one artist id may be "J Balvin" on one line and "J. Balvin" on another); `/v1/artists/{id}` answers
  with the first spelling. What the file cannot carry is derived from the artist id: genres, followers
  (from popularity), images; popularity is that of the most popular track the artist is credited on.
* A line pulled with a market and relinked (`linked_from`) is stored under the id that was asked for,
  `linked_from.id`: the emulator relinks per request, as Spotify does.

Every problem raises `CatalogFileError` naming the file and line: a line that is not a JSON object, a track
object missing a field the emulator needs or holding one of the wrong type, a track id seen on two lines.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from spotify_pipeline.emulator import names
from spotify_pipeline.emulator.catalog import DEFAULT_SEED, Album, Artist, Catalog, Image, Track, artist_images, derived_hex

GZIP_MAGIC = b"\x1f\x8b"
ALBUM_TYPES = frozenset({"album", "single", "compilation"})
_BASE62_ID = re.compile(r"^[0-9A-Za-z]{22}$")
_RELEASE_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_PRECISION_BY_PARTS = {1: "year", 2: "month", 3: "day"}
_MISSING = object()


class CatalogFileError(ValueError):
    """A catalogue file the emulator cannot serve; the message names the file and, if it can, the line."""


class _InvalidTrack(ValueError):
    """What is wrong with one line's track object (the caller adds the file and line)."""


@dataclass(frozen=True, slots=True)
class _AlbumLine:
    id: str
    name: str
    album_type: str
    release_date: str
    release_date_precision: str
    artists: tuple[tuple[str, str], ...]  # (id, name) credits
    images: tuple[Image, ...]
    total_tracks: int | None
    available_markets: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class _TrackLine:
    id: str
    name: str
    artists: tuple[tuple[str, str], ...]
    album: _AlbumLine
    disc_number: int
    track_number: int
    duration_ms: int
    explicit: bool
    isrc: str
    preview_url: str | None
    popularity: int


def load_catalog_file(path: str | Path, seed: int = DEFAULT_SEED) -> Catalog:
    """The catalogue `path` holds (see the module docstring); `seed` drives what the emulator derives per
    request (day-to-day popularity, relinking, licensing of albums whose markets the file does not list)."""
    path = Path(path)
    lines: list[_TrackLine] = []
    line_of_id: dict[str, int] = {}
    for number, raw in _numbered_lines(path):
        if not raw.strip():
            continue
        try:
            track = _parse_track(json.loads(raw))
        except _InvalidTrack as error:
            raise CatalogFileError(f"{path}, line {number}: {error}") from None
        except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8
            raise CatalogFileError(f"{path}, line {number}: not valid JSON ({error})") from None
        if track.id in line_of_id:
            first = line_of_id[track.id]
            raise CatalogFileError(f"{path}, line {number}: track id {track.id} is already on line {first}")
        line_of_id[track.id] = number
        lines.append(track)
    if not lines:
        raise CatalogFileError(f"{path}: no track objects (expected one JSON track object per line)")
    return _build(lines, seed)


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        raw_file = path.open("rb")
    except OSError as error:  # missing, a directory, not readable
        raise CatalogFileError(f"{path}: cannot be opened ({error.strerror or error})") from None
    number = 0
    with raw_file:
        try:
            compressed = raw_file.read(2) == GZIP_MAGIC
            raw_file.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw_file) if compressed else raw_file  # type: ignore[assignment]
            for number, line in enumerate(stream, start=1):
                yield number, line
        except (OSError, EOFError) as error:  # a damaged or cut-short gzip stream
            raise CatalogFileError(f"{path}, line {number + 1}: cannot be read ({error})") from None


# -- one line -----------------------------------------------------------------------------------------------


class _Fields:
    """Typed access to one JSON object's fields; errors name the field by its path in the track object."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _InvalidTrack(f"`{where}` is not a JSON object" if where else "not a JSON object (one track object per line)")
        self.value = value
        self.where = where

    def _name(self, key: str) -> str:
        return f"`{self.where}.{key}`" if self.where else f"`{key}`"

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        value = self.value.get(key)
        if value is None:
            if default is _MISSING:
                raise _InvalidTrack(f"track object has no {self._name(key)}")
            return default
        # bool is an int to Python, never to JSON: a flag where a number belongs is a mistake.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _as_tuple(kinds)):
            raise _InvalidTrack(f"{self._name(key)} must be {_describe(kinds)}, got {json.dumps(value)[:60]}")
        return value

    def spotify_id(self, key: str) -> str:
        value: str = self.get(key, str)
        if not _BASE62_ID.match(value):
            raise _InvalidTrack(f"{self._name(key)} {value!r} is not a Spotify id (22 characters, base62)")
        return value

    def count(self, key: str, default: Any = _MISSING, *, low: int = 0, high: int | None = None) -> Any:
        value = self.get(key, int, default)
        if value is not default and (value < low or (high is not None and value > high)):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise _InvalidTrack(f"{self._name(key)} must be {bounds}, got {value}")
        return value

    def nested(self, key: str) -> _Fields:
        name = f"{self.where}.{key}" if self.where else key
        if self.value.get(key) is None:
            raise _InvalidTrack(f"track object has no `{name}`")
        return _Fields(self.value[key], name)

    def credits(self, key: str, default: Any = _MISSING) -> Any:
        """A list of simplified artists as (id, name) pairs; at least one."""
        items = self.get(key, list, default)
        if items is default:
            return default
        if not items:
            raise _InvalidTrack(f"{self._name(key)} is empty: at least one artist is needed")
        where = f"{self.where}.{key}" if self.where else key
        artists = (_Fields(item, f"{where}[{n}]") for n, item in enumerate(items))
        return tuple((artist.spotify_id("id"), artist.get("name", str)) for artist in artists)


def _as_tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _describe(kinds: type | tuple[type, ...]) -> str:
    words = {str: "a string", int: "a whole number", bool: "true or false", list: "a list", dict: "an object"}
    return " or ".join(words.get(kind, kind.__name__) for kind in _as_tuple(kinds))


def _parse_track(value: Any) -> _TrackLine:
    track = _Fields(value, "")
    linked_from = track.value.get("linked_from")
    requested = _Fields(linked_from, "linked_from") if linked_from is not None else track
    track_id = requested.spotify_id("id")
    external_ids = _Fields(track.get("external_ids", dict, {}), "external_ids")
    preview_url = track.value.get("preview_url")
    if preview_url is not None and not isinstance(preview_url, str):
        raise _InvalidTrack("`preview_url` must be a string or null")
    album = _parse_album(track.nested("album"), track)
    return _TrackLine(
        id=track_id,
        name=track.get("name", str),
        artists=track.credits("artists"),
        album=album,
        disc_number=track.count("disc_number", 1, low=1),
        track_number=track.count("track_number", 1, low=1),
        duration_ms=track.count("duration_ms"),
        explicit=track.get("explicit", bool, False),
        isrc=external_ids.get("isrc", str, ""),
        preview_url=preview_url,
        popularity=track.count("popularity", 0, high=100),
    )


def _parse_album(album: _Fields, track: _Fields) -> _AlbumLine:
    release_date: str = album.get("release_date", str)
    parts = _RELEASE_DATE.match(release_date)
    if parts is None:
        raise _InvalidTrack(f"`album.release_date` must be YYYY, YYYY-MM or YYYY-MM-DD, got {release_date!r}")
    implied_precision = _PRECISION_BY_PARTS[sum(1 for part in parts.groups() if part is not None)]
    precision = album.get("release_date_precision", str, implied_precision)
    if precision != implied_precision:
        raise _InvalidTrack(
            f"`album.release_date_precision` is {precision!r} but the release date {release_date!r} is a {implied_precision}"
        )
    album_type: str = album.get("album_type", str, "album")
    if album_type.lower() not in ALBUM_TYPES:
        raise _InvalidTrack(f"`album.album_type` must be one of {sorted(ALBUM_TYPES)}, got {album_type!r}")
    images = tuple(
        _parse_image(_Fields(image, f"album.images[{n}]")) for n, image in enumerate(album.get("images", list, []))
    )
    # The emulator licenses albums, not tracks: a track's own list stands in when its album has none.
    markets = album.get("available_markets", list, None)
    if markets is None:
        markets = track.get("available_markets", list, None)
    return _AlbumLine(
        id=album.spotify_id("id"),
        name=album.get("name", str),
        album_type=album_type,
        release_date=release_date,
        release_date_precision=precision,
        artists=album.credits("artists", ()),
        images=images,
        total_tracks=album.count("total_tracks", None, low=1),
        available_markets=tuple(markets) if markets is not None else None,
    )


def _parse_image(image: _Fields) -> Image:
    return Image(url=image.get("url", str), height=image.get("height", int, None), width=image.get("width", int, None))


# -- records ------------------------------------------------------------------------------------------------


def _build(lines: list[_TrackLine], seed: int) -> Catalog:
    credits: dict[tuple[str, str], int] = {}  # (artist id, name as credited) -> artist index

    def credit(pairs: tuple[tuple[str, str], ...]) -> tuple[int, ...]:
        return tuple(credits.setdefault(pair, len(credits)) for pair in pairs)

    albums: list[Album] = []
    album_index: dict[str, int] = {}
    tracks: list[Track] = []
    for line in lines:
        artist_indices = credit(line.artists)
        index = album_index.get(line.album.id)
        if index is None:
            index = album_index[line.album.id] = len(albums)
            # An album object without artists is credited to its first track's artists.
            albums.append(_album(index, line.album, credit(line.album.artists) or artist_indices))
        albums[index].track_indices.append(len(tracks))
        tracks.append(
            Track(
                index=len(tracks),
                id=line.id,
                name=line.name,
                album_index=index,
                artist_indices=artist_indices,
                disc_number=line.disc_number,
                track_number=line.track_number,
                duration_ms=line.duration_ms,
                explicit=line.explicit,
                isrc=line.isrc,
                preview_url=line.preview_url,
                base_popularity=line.popularity,
                base_title=line.name.split(" - ", 1)[0],  # "Song - Remastered 2011" -> "Song"
            )
        )
    artist_ids = [artist_id for artist_id, _ in credits]
    popularity_by_artist_id: dict[str, int] = {}  # one figure for every spelling of an artist
    for track in tracks:
        album = albums[track.album_index]
        album.popularity = max(album.popularity, track.base_popularity)
        for artist_index in (*track.artist_indices, *album.artist_indices):
            artist_id = artist_ids[artist_index]
            popularity_by_artist_id[artist_id] = max(popularity_by_artist_id.get(artist_id, 0), track.base_popularity)
    artists = [
        _artist(index, artist_id, name, popularity_by_artist_id[artist_id]) for (artist_id, name), index in credits.items()
    ]
    for album in albums:
        album.track_indices.sort(key=lambda i: (tracks[i].disc_number, tracks[i].track_number, i))
        album.label = artists[album.artist_indices[0]].label
    return Catalog.from_records(seed, artists, albums, tracks)


def _album(index: int, line: _AlbumLine, artist_indices: tuple[int, ...]) -> Album:
    rng = random.Random(f"file-album:{line.id}")
    year = int(line.release_date[:4])
    return Album(
        index=index,
        id=line.id,
        name=line.name,
        album_type=line.album_type,
        artist_indices=artist_indices,
        release_date=line.release_date,
        release_date_precision=line.release_date_precision,
        release_year=year,
        label="",  # its first artist's, once the artists exist
        upc=f"{rng.randrange(10**11, 10**12)}",
        popularity=0,  # its most popular track's, raised as the tracks are read
        images=line.images,
        copyright_year=year,
        total_tracks=line.total_tracks,
        available_markets=line.available_markets,
    )


def _artist(index: int, artist_id: str, name: str, popularity: int) -> Artist:
    # Seeded by the id alone, so every spelling of one artist gets the same derived fields.
    rng = random.Random(f"file-artist:{artist_id}")
    return Artist(
        index=index,
        id=artist_id,
        name=name,
        genres=tuple(sorted(rng.sample(names.GENRES, rng.randint(0, 3)))),
        followers=int(10 ** (1 + popularity / 100 * 6.5) * rng.uniform(0.6, 1.4)),
        popularity=popularity,
        images=artist_images(derived_hex(0, "file-artist-image", artist_id, 24)),
        isrc_registrant="",  # only synthetic generation mints ISRCs
        label=rng.choice(names.LABELS),
    )
