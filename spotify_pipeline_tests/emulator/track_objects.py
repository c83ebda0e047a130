"""Small catalogue files for tests: Spotify track objects written as JSON Lines (optionally gzipped)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

OPEN = "https://open.spotify.com"
API = "https://api.spotify.com/v1"


def spotify_id(kind: str, key: str) -> str:
    """A 22-character base62 id, the same for the same (kind, key)."""
    return kind[:2].upper() + hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:20]


def _simplified(kind: str, object_id: str, name: str) -> dict[str, Any]:
    return {
        "external_urls": {"spotify": f"{OPEN}/{kind}/{object_id}"},
        "href": f"{API}/{kind}s/{object_id}",
        "id": object_id,
        "name": name,
        "type": kind,
        "uri": f"spotify:{kind}:{object_id}",
    }


def artist_object(name: str, artist_id: str | None = None) -> dict[str, Any]:
    return _simplified("artist", artist_id or spotify_id("artist", name), name)


def track_object(
    name: str,
    artists: list[str],
    album: str,
    *,
    release_date: str = "2015-10-23",
    album_type: str = "album",
    total_tracks: int = 12,
    isrc: str | None = None,
    popularity: int = 50,
    disc_number: int = 1,
    track_number: int = 1,
    duration_ms: int = 210_000,
    key: str | None = None,
) -> dict[str, Any]:
    """A full track object as `GET /v1/tracks/{id}` returns it (no market, development-mode fields kept out).

    The track id derives from `key` (default: name, first artist and album), the album id from the album name
    and first artist, so two tracks naming one album share it."""
    album_id = spotify_id("album", f"{album}|{artists[0]}")
    track_id = spotify_id("track", key or f"{name}|{artists[0]}|{album}")
    precision = {4: "year", 7: "month", 10: "day"}[len(release_date)]
    return {
        "album": {
            **_simplified("album", album_id, album),
            "album_type": album_type,
            "artists": [artist_object(artists[0])],
            "images": [{"height": 640, "url": f"https://i.scdn.co/image/{album_id}", "width": 640}],
            "release_date": release_date,
            "release_date_precision": precision,
            "total_tracks": total_tracks,
        },
        "artists": [artist_object(artist) for artist in artists],
        "disc_number": disc_number,
        "duration_ms": duration_ms,
        "explicit": False,
        "external_ids": {"isrc": isrc or f"GBAAA{int(hashlib.sha256(track_id.encode()).hexdigest(), 16) % 10**7:07d}"},
        **_simplified("track", track_id, name),
        "is_local": False,
        "popularity": popularity,
        "preview_url": None,
        "track_number": track_number,
    }


def write_jsonl(path: Path, objects: list[dict[str, Any]], *, compress: bool = False) -> Path:
    text = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode()
    path.write_bytes(gzip.compress(text) if compress else text)
    return path


def without_fields(track: dict[str, Any], *names: str) -> dict[str, Any]:
    """`track` without top-level and album fields called `names` (what development mode strips, say)."""
    stripped = {k: v for k, v in track.items() if k not in names}
    stripped["album"] = {k: v for k, v in track["album"].items() if k not in names}
    return stripped


#: The fields Spotify removed for Development Mode apps; a served object may differ from its file only there.
DEVELOPMENT_MODE_STRIPPED = ("popularity", "available_markets", "linked_from")
