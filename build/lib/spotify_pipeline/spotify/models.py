"""Typed views of Spotify objects, parsed strictly where the pipeline depends on a field.

Required fields (a track's ``id``, ``name``, ``artists``, ``album``; ``id`` and ``name`` of albums and artists)
missing or of the wrong type raise `SpotifyResponseError` naming the endpoint and the field path
(e.g. ``tracks[3].album.name``). Fields Spotify removed for Development Mode apps (``popularity``,
``available_markets``, ``linked_from``, ``genres``, ``followers``) are optional: absent means ``None``,
never a KeyError. Unknown fields are ignored; the raw object is kept in ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from spotify_pipeline.spotify.errors import SpotifyResponseError

_MISSING = object()


class _Ctx:
    def __init__(self, endpoint: str, path: str) -> None:
        self.endpoint = endpoint
        self.path = path

    def child(self, name: str | int) -> _Ctx:
        if isinstance(name, int):
            return _Ctx(self.endpoint, f"{self.path}[{name}]")
        return _Ctx(self.endpoint, f"{self.path}.{name}" if self.path else name)

    def fail(self, message: str, name: str | None = None) -> SpotifyResponseError:
        path = self.child(name).path if name else self.path
        return SpotifyResponseError(message, endpoint=self.endpoint, field=path or None)


def _obj(value: Any, ctx: _Ctx) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ctx.fail(f"expected an object, got {type(value).__name__}")
    return value


def _required(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], ctx: _Ctx) -> Any:
    value = obj.get(name, _MISSING)
    if value is _MISSING or value is None:
        raise ctx.fail("required field missing", name)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ctx.fail(f"required field has wrong type {type(value).__name__}", name)
    return value


def _optional(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], ctx: _Ctx) -> Any:
    """None when absent or null; a present value of the wrong type is an error, not a silent None."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ctx.fail(f"field has wrong type {type(value).__name__}", name)
    return value


#: Largest whole number the warehouse stores in its INTEGER columns (durations, counts, image sizes).
INT_MAX = 2**31 - 1


def _optional_int(obj: dict[str, Any], name: str, ctx: _Ctx, low: int = 0, high: int = INT_MAX) -> int | None:
    """An optional whole number that must lie in ``low..high``: anything outside is a malformed field."""
    value = _optional(obj, name, int, ctx)
    if value is not None and not low <= value <= high:
        raise ctx.fail(f"field out of range {low}..{high}: {value}", name)
    return value


#: Longest Spotify id (or ISRC) accepted: Spotify's are 22 (12) characters; the bound keeps a malformed one
#: from breaking the warehouse's keys and indexes.
MAX_ID_CHARS = 255


def _id(obj: dict[str, Any], name: str, ctx: _Ctx, *, required: bool = True) -> str | None:
    """An identifier of at most `MAX_ID_CHARS` characters (a required one must not be empty)."""
    value = _required(obj, name, str, ctx) if required else _optional(obj, name, str, ctx)
    if value is not None and (len(value) > MAX_ID_CHARS or (required and not value)):
        raise ctx.fail(f"identifier is empty or longer than {MAX_ID_CHARS} characters", name)
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _str_list(obj: dict[str, Any], name: str, ctx: _Ctx) -> list[str] | None:
    value = _optional(obj, name, list, ctx)
    if value is None:
        return None
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ctx.child(name).child(i).fail(f"expected a string, got {type(item).__name__}")
    return list(value)


@dataclass(frozen=True)
class Image:
    url: str
    height: int | None
    width: int | None


def _images(obj: dict[str, Any], ctx: _Ctx) -> list[Image]:
    out = []
    for i, raw in enumerate(_optional(obj, "images", list, ctx) or []):
        c = ctx.child("images").child(i)
        item = _obj(raw, c)
        out.append(
            Image(
                url=_required(item, "url", str, c),
                height=_optional_int(item, "height", c),
                width=_optional_int(item, "width", c),
            )
        )
    return out


@dataclass(frozen=True)
class SimplifiedArtist:
    id: str
    name: str
    uri: str | None = None

    @classmethod
    def parse(cls, raw: Any, ctx: _Ctx) -> SimplifiedArtist:
        obj = _obj(raw, ctx)
        return cls(id=_id(obj, "id", ctx), name=_required(obj, "name", str, ctx), uri=_optional(obj, "uri", str, ctx))


def _artists(obj: dict[str, Any], ctx: _Ctx, *, required: bool) -> list[SimplifiedArtist]:
    raw = _required(obj, "artists", list, ctx) if required else (_optional(obj, "artists", list, ctx) or [])
    c = ctx.child("artists")
    return [SimplifiedArtist.parse(a, c.child(i)) for i, a in enumerate(raw)]


@dataclass(frozen=True)
class SimplifiedAlbum:
    id: str
    name: str
    album_type: str | None
    release_date: str | None
    release_date_precision: str | None
    total_tracks: int | None
    artists: list[SimplifiedArtist]
    images: list[Image]
    uri: str | None = None
    available_markets: list[str] | None = None  # removed for Development Mode apps

    @classmethod
    def parse(cls, raw: Any, ctx: _Ctx) -> SimplifiedAlbum:
        obj = _obj(raw, ctx)
        return cls(
            id=_id(obj, "id", ctx),
            name=_required(obj, "name", str, ctx),
            album_type=_optional(obj, "album_type", str, ctx),
            release_date=_optional(obj, "release_date", str, ctx),
            release_date_precision=_optional(obj, "release_date_precision", str, ctx),
            total_tracks=_optional_int(obj, "total_tracks", ctx),
            artists=_artists(obj, ctx, required=False),
            images=_images(obj, ctx),
            uri=_optional(obj, "uri", str, ctx),
            available_markets=_str_list(obj, "available_markets", ctx),
        )


@dataclass(frozen=True)
class Album(SimplifiedAlbum):
    label: str | None = None
    upc: str | None = None
    popularity: int | None = None  # removed for Development Mode apps
    genres: list[str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: Any, *, endpoint: str, path: str = "") -> Album:
        ctx = _Ctx(endpoint, path)
        base = SimplifiedAlbum.parse(raw, ctx)
        obj = raw
        ext = _optional(obj, "external_ids", dict, ctx) or {}
        return cls(
            **vars(base),
            label=_optional(obj, "label", str, ctx),
            upc=_optional(ext, "upc", str, ctx.child("external_ids")),
            popularity=_optional_int(obj, "popularity", ctx, 0, 100),
            genres=_str_list(obj, "genres", ctx),
            raw=obj,
        )


@dataclass(frozen=True)
class Artist:
    id: str
    name: str
    uri: str | None
    images: list[Image]
    genres: list[str] | None = None  # removed for Development Mode apps
    followers: int | None = None  # removed for Development Mode apps
    popularity: int | None = None  # removed for Development Mode apps
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: Any, *, endpoint: str, path: str = "") -> Artist:
        ctx = _Ctx(endpoint, path)
        obj = _obj(raw, ctx)
        followers_obj = _optional(obj, "followers", dict, ctx)
        followers = None
        if followers_obj is not None:
            followers = _optional_int(followers_obj, "total", ctx.child("followers"))
        return cls(
            id=_id(obj, "id", ctx),
            name=_required(obj, "name", str, ctx),
            uri=_optional(obj, "uri", str, ctx),
            images=_images(obj, ctx),
            genres=_str_list(obj, "genres", ctx),
            followers=followers,
            popularity=_optional_int(obj, "popularity", ctx, 0, 100),
            raw=obj,
        )


@dataclass(frozen=True)
class Track:
    """A track object. ``requested_id`` is the id the caller asked for; ``id`` is the one Spotify served.

    They differ when Spotify relinked the track for the market (``linked_from``); results are always keyed
    by ``requested_id``, and ``relinked`` tells that the served id is another one.
    """

    id: str
    name: str
    artists: list[SimplifiedArtist]
    album: SimplifiedAlbum
    requested_id: str
    duration_ms: int | None = None
    explicit: bool | None = None
    disc_number: int | None = None
    track_number: int | None = None
    isrc: str | None = None
    uri: str | None = None
    is_playable: bool | None = None
    is_local: bool | None = None
    popularity: int | None = None  # removed for Development Mode apps
    available_markets: list[str] | None = None  # removed for Development Mode apps
    linked_from_id: str | None = None  # removed for Development Mode apps
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: When Spotify sent this object (epoch seconds), kept through the cache; None when not known.
    fetched_at: float | None = field(default=None, compare=False)

    def fetched_at_utc(self, default: datetime) -> datetime:
        """When Spotify sent this object, to the second, as an aware UTC datetime; `default` when not known."""
        if self.fetched_at is None:
            return default
        return datetime.fromtimestamp(self.fetched_at, timezone.utc).replace(microsecond=0)

    @property
    def relinked(self) -> bool:
        return self.id != self.requested_id

    @classmethod
    def from_json(cls, raw: Any, *, endpoint: str, path: str = "", requested_id: str | None = None) -> Track:
        ctx = _Ctx(endpoint, path)
        obj = _obj(raw, ctx)
        track_id = _id(obj, "id", ctx)
        name = _required(obj, "name", str, ctx)
        artists = _artists(obj, ctx, required=True)
        album = SimplifiedAlbum.parse(_required(obj, "album", dict, ctx), ctx.child("album"))
        linked = _optional(obj, "linked_from", dict, ctx)
        linked_from_id = _id(linked, "id", ctx.child("linked_from"), required=False) if linked is not None else None
        ext = _optional(obj, "external_ids", dict, ctx) or {}
        if requested_id is None:
            requested_id = linked_from_id or track_id
        return cls(
            id=track_id,
            name=name,
            artists=artists,
            album=album,
            requested_id=requested_id,
            duration_ms=_optional_int(obj, "duration_ms", ctx),
            explicit=_optional(obj, "explicit", bool, ctx),
            disc_number=_optional_int(obj, "disc_number", ctx),
            track_number=_optional_int(obj, "track_number", ctx),
            isrc=_id(ext, "isrc", ctx.child("external_ids"), required=False),
            uri=_optional(obj, "uri", str, ctx),
            is_playable=_optional(obj, "is_playable", bool, ctx),
            is_local=_optional(obj, "is_local", bool, ctx),
            popularity=_optional_int(obj, "popularity", ctx, 0, 100),
            available_markets=_str_list(obj, "available_markets", ctx),
            linked_from_id=linked_from_id,
            raw=obj,
        )


@dataclass(frozen=True)
class SearchPage:
    """One page of track search results."""

    query: str
    items: list[Track]
    total: int
    limit: int
    offset: int
    next: str | None
