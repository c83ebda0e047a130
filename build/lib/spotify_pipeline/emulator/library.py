"""The test user's data: profile, saved tracks, listening history and playlists, all from the seed.

Listening history is a function of time: play `k` happens at `HISTORY_START + k * PLAY_SPACING_S` plus a
seeded jitter, so plays keep arriving as the emulator clock moves and an incremental `after=` cursor
always has something new to fetch. Spotify only keeps the last 50 plays, and so does this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from spotify_pipeline.emulator.catalog import Catalog, spotify_id, stable_hash

HISTORY_START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
PLAY_SPACING_S = 900  # one play every quarter of an hour, give or take
PLAY_JITTER_S = 600
HISTORY_KEPT = 50
SAVED_TRACKS = 137
SAVED_UNTIL = datetime(2026, 1, 15, 18, 30, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Play:
    track_index: int
    played_at_ms: int


@dataclass(frozen=True)
class Playlist:
    id: str
    name: str
    owner_id: str
    public: bool
    track_indices: tuple[int, ...]
    added_at_s: tuple[float, ...]


def iso(epoch_s: float) -> str:
    """Spotify's timestamp format: UTC, `Z` suffix, no fraction for whole seconds."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class UserLibrary:
    def __init__(self, catalog: Catalog, user_id: str) -> None:
        self.catalog = catalog
        self.user_id = user_id
        seed = catalog.seed
        size = len(catalog.tracks)
        # The user listens mostly to a favourite few hundred tracks.
        self._favourites = [stable_hash(seed, "favourite", n) % size for n in range(min(size, 300))]
        self.saved = [
            (self._favourites[n % len(self._favourites)] if n % 3 else stable_hash(seed, "saved", n) % size,
             SAVED_UNTIL - n * (3600 * 19 + stable_hash(seed, "saved-gap", n) % 7200))
            for n in range(min(SAVED_TRACKS, size))
        ]  # most recently saved first, as Spotify lists them
        self.playlists = [
            self._playlist(0, "Morning Commute", user_id, public=False, length=64),
            self._playlist(1, "Deep Focus Archive", user_id, public=False, length=118),
            self._playlist(2, "Emulator Hits", "spotify", public=True, length=40),
        ]
        self.playlist_by_id = {p.id: p for p in self.playlists}

    def _playlist(self, number: int, name: str, owner: str, *, public: bool, length: int) -> Playlist:
        seed, size = self.catalog.seed, len(self.catalog.tracks)
        start = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
        return Playlist(
            id=spotify_id(seed, "playlist", number),
            name=name,
            owner_id=owner,
            public=public,
            track_indices=tuple(stable_hash(seed, "playlist-track", number, n) % size for n in range(length)),
            added_at_s=tuple(start + n * 86_400 * 3 + stable_hash(seed, "added", number, n) % 86_400 for n in range(length)),
        )

    def _play(self, k: int) -> Play:
        seed = self.catalog.seed
        at_s = HISTORY_START + k * PLAY_SPACING_S + stable_hash(seed, "play-jitter", k) % PLAY_JITTER_S
        favourite = self._favourites[stable_hash(seed, "play", k) % len(self._favourites)]
        return Play(favourite, int(at_s * 1000) + stable_hash(seed, "play-ms", k) % 1000)

    def recent_plays(self, now_s: float) -> list[Play]:
        """The last `HISTORY_KEPT` plays up to `now_s`, most recent first."""
        newest = int((now_s - HISTORY_START) // PLAY_SPACING_S)
        plays = []
        now_ms = now_s * 1000
        k = newest
        while k >= 0 and len(plays) < HISTORY_KEPT:
            play = self._play(k)
            if play.played_at_ms <= now_ms:
                plays.append(play)
            k -= 1
        return plays
