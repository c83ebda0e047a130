"""The emulator's catalogue: artists, albums and tracks, synthetic (derived from a seed) or read from a file.

A `Catalog(seed, size)` is synthetic; `catalog_file.load_catalog_file` builds one from real track objects
with `Catalog.from_records`. Either way every route, mode and fault works on the same records.

Generation is *prefix-stable*: album `j` (and every artist it introduces) depends only on the seed and
on albums `0..j-1`, never on the requested catalogue size. A catalogue of 10,000 tracks is therefore the
first 10,000 tracks of one of 50,000, so the sample CSV (drawn from the first `SAMPLE_POOL_SIZE` tracks)
is contained in every catalogue at least that large. Each record draws from its own `random.Random`
seeded by a string (hashed with SHA-512 by the stdlib, stable across processes and Python versions),
so the same seed always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import date

from spotify_pipeline.emulator import names

DEFAULT_SEED = 2026
DEFAULT_CATALOG_SIZE = 10_000
MAX_CATALOG_SIZE = 100_000  # ISRC designation codes are a bijection on 0..99,999
# The sample CSV only uses tracks below this index, so any catalogue at least this large contains it.
SAMPLE_POOL_SIZE = 4_000

# Markets Spotify serves (a representative subset of the ~185); the order is Spotify's (alphabetical).
MARKETS: tuple[str, ...] = (
    "AD", "AE", "AR", "AT", "AU", "BE", "BG", "BO", "BR", "CA", "CH", "CL", "CO", "CR", "CY", "CZ", "DE",
    "DK", "DO", "EC", "EE", "EG", "ES", "FI", "FR", "GB", "GR", "GT", "HK", "HN", "HU", "ID", "IE", "IL",
    "IN", "IS", "IT", "JP", "KR", "LT", "LU", "LV", "MA", "MT", "MX", "MY", "NG", "NI", "NL", "NO", "NZ",
    "PA", "PE", "PH", "PL", "PT", "PY", "RO", "SA", "SE", "SG", "SK", "SV", "TH", "TR", "TW", "UA", "US",
    "UY", "VN", "ZA",
)
ISRC_COUNTRIES = ("US", "GB", "DE", "FR", "SE", "NL", "CA", "AU", "JP", "BR", "ES", "IT", "NO")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ISRC_DESIGNATION_STRIDE = 48_271  # coprime with 100,000, so index -> designation is one-to-one


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that, unlike `hash()`, is identical in every process."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def spotify_id(seed: int, kind: str, index: int) -> str:
    """A 22-character base62 id, the shape of Spotify's ids."""
    number = int.from_bytes(hashlib.blake2b(f"{seed}:{kind}:{index}".encode(), digest_size=17).digest(), "big")
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


def derived_hex(seed: int, kind: str, key: int | str, length: int) -> str:
    """`length` hex digits derived from (seed, kind, key): the variable part of image and preview URLs."""
    return hashlib.blake2b(f"{seed}:{kind}:{key}".encode(), digest_size=length // 2 + 1).hexdigest()[:length]


@dataclass(frozen=True, slots=True)
class Image:
    url: str
    height: int | None  # Spotify sends null sizes for some images
    width: int | None


@dataclass(slots=True)
class Artist:
    index: int
    id: str
    name: str
    genres: tuple[str, ...]
    followers: int
    popularity: int
    images: tuple[Image, ...]
    isrc_registrant: str
    label: str


@dataclass(slots=True)
class Album:
    index: int
    id: str
    name: str
    album_type: str  # album | single | compilation
    artist_indices: tuple[int, ...]
    release_date: str
    release_date_precision: str  # year | month | day
    release_year: int
    label: str
    upc: str
    popularity: int
    images: tuple[Image, ...]
    copyright_year: int
    track_indices: list[int] = field(default_factory=list)
    # What a catalogue file states; None: derived (the tracks held, the licensing model in render.py).
    # A file may hold a few tracks of a 12-track album, and its object still says 12.
    total_tracks: int | None = None
    available_markets: tuple[str, ...] | None = None


@dataclass(slots=True)
class Track:
    index: int
    id: str
    name: str
    album_index: int
    artist_indices: tuple[int, ...]  # the first is the primary artist, the rest are featured
    disc_number: int
    track_number: int
    duration_ms: int
    explicit: bool
    isrc: str
    preview_url: str | None
    base_popularity: int
    # The song's title without the " - Remastered 2011" style suffix Spotify appends (same as name if none).
    base_title: str


class Catalog:
    """All records of one (seed, size), with id lookups. Built once at start-up; read-only afterwards."""

    def __init__(self, seed: int = DEFAULT_SEED, size: int = DEFAULT_CATALOG_SIZE) -> None:
        if not 1 <= size <= MAX_CATALOG_SIZE:
            raise ValueError(f"catalog size must be between 1 and {MAX_CATALOG_SIZE}, got {size}")
        self.seed = seed
        self.size = size
        self.artists: list[Artist] = []
        self.albums: list[Album] = []
        self.tracks: list[Track] = []
        self._artist_names: set[str] = set()
        self._titles_by_artist: dict[int, set[str]] = {}
        while len(self.tracks) < size:
            self._add_album(len(self.albums))
        self._build_lookups()

    @classmethod
    def from_records(cls, seed: int, artists: list[Artist], albums: list[Album], tracks: list[Track]) -> Catalog:
        """A catalogue of ready-made records (each record's `index` is its position in its list).

        `seed` still drives what is derived per request: day-to-day popularity, relinking, licensing."""
        catalog = cls.__new__(cls)  # skips generation; the records are given
        catalog.seed = seed
        catalog.size = len(tracks)
        catalog.artists, catalog.albums, catalog.tracks = artists, albums, tracks
        catalog._build_lookups()
        return catalog

    def _build_lookups(self) -> None:
        self.track_by_id = {t.id: t for t in self.tracks}
        self.album_by_id = {a.id: a for a in self.albums}
        # An artist id may stand for several records (one per spelling a file credits it under): the first wins.
        self.artist_by_id: dict[str, Artist] = {}
        for artist in self.artists:
            self.artist_by_id.setdefault(artist.id, artist)
        # One recording (one ISRC) is often on several releases: a single, its album, a compilation.
        self.tracks_by_isrc: dict[str, list[Track]] = {}
        for track in self.tracks:
            if track.isrc:
                self.tracks_by_isrc.setdefault(track.isrc, []).append(track)

    # -- generation -----------------------------------------------------------------------------------

    def _rng(self, kind: str, index: int) -> random.Random:
        return random.Random(f"{self.seed}:{kind}:{index}")

    def _new_artist(self) -> Artist:
        index = len(self.artists)
        rng = self._rng("artist", index)
        name = names.artist_name(rng)
        while name in self._artist_names:  # unique names keep (title, artist) a reliable key for labels
            name = names.artist_name(rng)
        self._artist_names.add(name)
        popularity = min(100, int(rng.betavariate(2.2, 3.0) * 100))
        # ISRC prefix: the registrant's country and code. Registrant codes never start with "Z", which the
        # sample catalogue reserves for songs that are not on Spotify.
        registrant = rng.choice(ISRC_COUNTRIES) + rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXY") + "".join(
            rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(2)
        )
        artist = Artist(
            index=index,
            id=spotify_id(self.seed, "artist", index),
            name=name,
            genres=tuple(sorted(rng.sample(names.GENRES, rng.randint(0, 3)))),
            followers=int(10 ** (1 + popularity / 100 * 6.5) * rng.uniform(0.6, 1.4)),
            popularity=popularity,
            images=artist_images(derived_hex(self.seed, "artist-image", index, 24)),
            isrc_registrant=registrant,
            label=rng.choice(names.LABELS),
        )
        self.artists.append(artist)
        return artist

    def _pick_artist(self, rng: random.Random) -> Artist:
        # Early on, and then one album in two, a new artist debuts; otherwise an existing one releases again.
        if len(self.artists) < 8 or rng.random() < 0.5:
            return self._new_artist()
        return self.artists[int(len(self.artists) * (rng.random() ** 0.8))]

    def _add_album(self, index: int) -> None:
        rng = self._rng("album", index)
        artist = self._pick_artist(rng)
        kind = rng.random()
        album_type, track_count = (
            ("single", rng.randint(1, 3)) if kind < 0.38 else
            ("album", rng.randint(8, 14)) if kind < 0.93 else
            ("compilation", rng.randint(12, 18))
        )
        year = min(2025, int(1962 + 64 * (rng.random() ** 0.55)))
        precision = "day" if year >= 1990 or rng.random() < 0.6 else rng.choice(("year", "month"))
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        release_date = {
            "day": f"{year:04d}-{month:02d}-{day:02d}",
            "month": f"{year:04d}-{month:02d}",
            "year": f"{year:04d}",
        }[precision]
        # Re-releases of old records carry "- Remastered YYYY" on their track names, as on Spotify.
        remaster_year = rng.randint(max(year + 8, 2001), 2024) if year < 2005 and rng.random() < 0.35 else None
        album = Album(
            index=index,
            id=spotify_id(self.seed, "album", index),
            name=names.album_title(rng) if album_type != "single" else "",
            album_type=album_type,
            artist_indices=(artist.index,),
            release_date=release_date,
            release_date_precision=precision,
            release_year=year,
            label=artist.label,
            upc=f"{rng.randrange(10**11, 10**12)}",
            popularity=max(0, min(100, artist.popularity + rng.randint(-15, 10))),
            images=_images(derived_hex(self.seed, "album-image", index, 24), "ab67616d", ((640, "0000b273"), (300, "00001e02"), (64, "00004851"))),
            copyright_year=year,
        )
        self.albums.append(album)
        disc_size = 10 if track_count > 14 else track_count
        for position in range(track_count):
            if len(self.tracks) >= self.size:
                break
            track = self._new_track(album, artist, position, disc_size, remaster_year, rng)
            album.track_indices.append(track.index)
        if album_type == "single":
            album.name = self.tracks[album.track_indices[0]].base_title

    def _new_track(
        self,
        album: Album,
        artist: Artist,
        position: int,
        disc_size: int,
        remaster_year: int | None,
        album_rng: random.Random,
    ) -> Track:
        index = len(self.tracks)
        rng = self._rng("track", index)
        used_titles = self._titles_by_artist.setdefault(artist.index, set())
        title = self._borrowed_title(rng, artist) or names.track_title(rng)
        while title in used_titles:  # one artist never has two different songs with one title
            title = names.track_title(rng)
        used_titles.add(title)
        featured: tuple[int, ...] = ()
        name = title
        if len(self.artists) > 12 and rng.random() < 0.12:
            guest = self.artists[rng.randrange(len(self.artists))]
            if guest.index != artist.index:
                featured = (guest.index,)
                if rng.random() < 0.5:  # Spotify names vary: some carry the feature, some only list the artist
                    name = f"{title} (feat. {guest.name})"
        if remaster_year is not None:
            name = f"{name} - Remastered {remaster_year}"
        elif rng.random() < 0.02:
            name = f"{name} - {rng.choice(('Radio Edit', 'Live', 'Acoustic'))}"
        registrant_year = (remaster_year or album.release_year) % 100
        designation = (index * _ISRC_DESIGNATION_STRIDE + self.seed) % 100_000
        isrc = f"{artist.isrc_registrant}{registrant_year:02d}{designation:05d}"
        track = Track(
                index=index,
                id=spotify_id(self.seed, "track", index),
                name=name,
                album_index=album.index,
                artist_indices=(artist.index, *featured),
                disc_number=position // disc_size + 1,
                track_number=position % disc_size + 1,
                duration_ms=int(rng.triangular(105_000, 420_000, 205_000)),
                explicit=rng.random() < 0.15,
                isrc=isrc,
                preview_url=f"https://p.scdn.co/mp3-preview/{derived_hex(self.seed, 'preview', index, 40)}"
                if rng.random() < 0.3 else None,
                base_popularity=max(0, min(100, int(album.popularity * 0.8 + album_rng.randint(-12, 20)))),
                base_title=title,
        )
        self.tracks.append(track)
        return track

    def _borrowed_title(self, rng: random.Random, artist: Artist) -> str | None:
        """Sometimes reuse an earlier song's title by another artist: real catalogues are full of those."""
        if len(self.tracks) < 50 or rng.random() >= 0.07:
            return None
        other = self.tracks[rng.randrange(len(self.tracks))]
        return other.base_title if other.artist_indices[0] != artist.index else None

    # -- queries ---------------------------------------------------------------------------------------

    def popularity_on(self, track: Track, day: date) -> int:
        """Popularity of `track` on a UTC day: a slow seasonal swing plus day-to-day noise, so daily
        snapshots differ while staying near the track's base popularity."""
        ordinal = day.toordinal()
        swing_phase = stable_hash(self.seed, "phase", track.index) % 28
        # A triangle wave (-7..7, one step a day, four-week period): no jump when the cycle wraps.
        swing = abs((ordinal + swing_phase) % 28 - 14) - 7
        noise = stable_hash(self.seed, "pop", track.index, ordinal) % 7 - 3  # -3..3
        return max(0, min(100, track.base_popularity + swing + noise))


def artist_images(digest: str) -> tuple[Image, ...]:
    """An artist's three image sizes, Spotify-shaped URLs whose variable part is `digest`."""
    return _images(digest, "ab676161", ((640, "0000e5eb"), (320, "00005174"), (160, "0000f178")))


def _images(digest: str, prefix: str, sizes: tuple[tuple[int, str], ...]) -> tuple[Image, ...]:
    return tuple(Image(f"https://i.scdn.co/image/{prefix}{code}{digest}", px, px) for px, code in sizes)
