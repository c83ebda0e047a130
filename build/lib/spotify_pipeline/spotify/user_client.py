"""`UserSpotifyClient`: the user-library endpoints, with a connected user's tokens.

It is a `SpotifyClient` whose transport carries the user's access token (`UserTokenSource`) instead of the
app's: the same transport, retry policy, rate limiter (the app's one budget, shared with the catalogue
jobs through Redis), metrics and cache. Build it with `build_user_client(config, store, account)`.

- ``GET /me``: `me()`.
- ``GET /me/tracks``: offset paging, 50 per page: `saved_tracks_page()`, `iter_saved_tracks()`.
- ``GET /me/player/recently-played``: cursor paging on ``after`` (Unix ms): `recently_played_page()`,
  `recently_played_since(after_ms)`. Spotify keeps only the last 50 plays; when everything it still has
  is newer than the cursor, plays may have been lost in between, and `RecentlyPlayed.possible_gap` says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from spotify_pipeline.spotify.cache import Cache
from spotify_pipeline.spotify.client import SpotifyClient, build_client
from spotify_pipeline.spotify.clock import Clock
from spotify_pipeline.spotify.config import SpotifyClientConfig
from spotify_pipeline.spotify.errors import SpotifyResponseError
from spotify_pipeline.spotify.limiter import RateLimiter
from spotify_pipeline.spotify.logs import get_logger
from spotify_pipeline.spotify.metrics import Metrics
from spotify_pipeline.spotify.models import Track
from spotify_pipeline.spotify.retry import RetryPolicy
from spotify_pipeline.spotify.transport import Transport, build_session
from spotify_pipeline.spotify.user_auth import OAuthApp, TokenStore, UserTokenSource

log = get_logger(__name__)

EP_ME = "GET /me"
EP_SAVED_TRACKS = "GET /me/tracks"
EP_RECENTLY_PLAYED = "GET /me/player/recently-played"
PAGE_LIMIT = 50
#: Spotify answers recently-played from the user's last 50 plays only.
RECENTLY_PLAYED_RETENTION = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(value: Any, *, endpoint: str, field: str) -> datetime:
    """Spotify's ISO 8601 UTC timestamps (``2026-01-15T18:30:00Z``, optionally with milliseconds)."""
    if not isinstance(value, str):
        raise SpotifyResponseError("required timestamp missing", endpoint=endpoint, field=field)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SpotifyResponseError(f"not an ISO 8601 timestamp: {value!r}", endpoint=endpoint, field=field) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_epoch_ms(moment: datetime) -> int:
    """Exact Unix milliseconds of an aware datetime (the recently-played cursor unit)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class UserProfile:
    id: str
    display_name: str | None
    raw: dict[str, Any]


@dataclass(frozen=True)
class SavedTrack:
    added_at: datetime
    track: Track


@dataclass(frozen=True)
class SavedTracksPage:
    items: list[SavedTrack]
    total: int
    limit: int
    offset: int
    next: str | None
    skipped: int = 0  # entries without a usable track (null or local files)


@dataclass(frozen=True)
class Play:
    played_at: datetime
    played_at_ms: int
    track: Track
    context_uri: str | None
    raw: dict[str, Any]


@dataclass(frozen=True)
class RecentlyPlayedPage:
    items: list[Play]  # newest first, as Spotify sends them
    cursor_after: int | None
    cursor_before: int | None
    limit: int
    next: str | None
    received: int  # items in the response, skipped ones included


@dataclass(frozen=True)
class RecentlyPlayed:
    """Every play newer than ``after_ms`` that Spotify still has (oldest first)."""

    plays: list[Play]
    after_ms: int | None
    newest_played_at_ms: int | None  # the next cursor: ``after_ms`` when nothing new was played
    requests: int
    possible_gap: bool  # plays between ``after_ms`` and the oldest play returned may be lost


class UserSpotifyClient(SpotifyClient):
    """A `SpotifyClient` acting for one connected account (see `build_user_client`)."""

    def __init__(
        self,
        config: SpotifyClientConfig,
        *,
        account: str,
        token_source: UserTokenSource,
        transport: Transport,
        limiter: RateLimiter,
        cache: Cache,
        retry: RetryPolicy,
        metrics: Metrics,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            config, transport=transport, limiter=limiter, cache=cache, retry=retry, metrics=metrics, clock=clock
        )
        self.account = account
        self.token_source = token_source

    # -- /me -------------------------------------------------------------------------------------------
    def me(self) -> UserProfile:
        body = self._get("me", endpoint=EP_ME, params={"market": None})
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise SpotifyResponseError("expected a user object with an id", endpoint=EP_ME, field="id")
        name = body.get("display_name")
        return UserProfile(id=body["id"], display_name=name if isinstance(name, str) else None, raw=body)

    # -- /me/tracks ------------------------------------------------------------------------------------
    def saved_tracks_page(self, offset: int = 0, limit: int = PAGE_LIMIT) -> SavedTracksPage:
        """One page of the user's saved tracks, most recently saved first."""
        limit = max(1, min(int(limit), PAGE_LIMIT))
        body = self._get("me/tracks", endpoint=EP_SAVED_TRACKS, params={"limit": limit, "offset": int(offset)})
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise SpotifyResponseError("expected a paging object", endpoint=EP_SAVED_TRACKS, field="items")
        items: list[SavedTrack] = []
        skipped = 0
        for i, raw in enumerate(body["items"]):
            if not isinstance(raw, dict):
                raise SpotifyResponseError("expected an object", endpoint=EP_SAVED_TRACKS, field=f"items[{i}]")
            track = raw.get("track")
            if not isinstance(track, dict) or track.get("id") is None:
                skipped += 1  # a removed track or a local file: nothing to catalogue
                continue
            items.append(
                SavedTrack(
                    added_at=parse_timestamp(raw.get("added_at"), endpoint=EP_SAVED_TRACKS, field=f"items[{i}].added_at"),
                    track=Track.from_json(track, endpoint=EP_SAVED_TRACKS, path=f"items[{i}].track"),
                )
            )
        total = body.get("total")
        return SavedTracksPage(
            items=items,
            total=total if isinstance(total, int) and not isinstance(total, bool) else offset + len(body["items"]),
            limit=limit,
            offset=int(offset),
            next=body.get("next") if isinstance(body.get("next"), str) else None,
            skipped=skipped,
        )

    def iter_saved_tracks(self, limit: int = PAGE_LIMIT) -> Iterator[SavedTrack]:
        """Every saved track, page by page (offset paging until Spotify has no more)."""
        offset = 0
        while True:
            page = self.saved_tracks_page(offset=offset, limit=limit)
            yield from page.items
            received = len(page.items) + page.skipped
            offset += received
            if received == 0 or page.next is None or offset >= page.total:
                return

    # -- /me/player/recently-played --------------------------------------------------------------------
    def recently_played_page(
        self, *, after_ms: int | None = None, before_ms: int | None = None, limit: int = PAGE_LIMIT
    ) -> RecentlyPlayedPage:
        """One page of plays (newest first); at most one of the ``after``/``before`` cursors (Unix ms)."""
        if after_ms is not None and before_ms is not None:
            raise ValueError("give at most one of after_ms and before_ms")
        limit = max(1, min(int(limit), PAGE_LIMIT))
        # "market": None keeps the client's default market out: this endpoint takes none.
        params: dict[str, Any] = {"limit": limit, "market": None}
        if after_ms is not None:
            params["after"] = int(after_ms)
        if before_ms is not None:
            params["before"] = int(before_ms)
        body = self._get("me/player/recently-played", endpoint=EP_RECENTLY_PLAYED, params=params)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise SpotifyResponseError("expected a cursor paging object", endpoint=EP_RECENTLY_PLAYED, field="items")
        plays: list[Play] = []
        for i, raw in enumerate(body["items"]):
            if not isinstance(raw, dict):
                raise SpotifyResponseError("expected an object", endpoint=EP_RECENTLY_PLAYED, field=f"items[{i}]")
            track = raw.get("track")
            if not isinstance(track, dict) or track.get("id") is None:
                continue  # a local file: no Spotify id to catalogue
            played_at = parse_timestamp(raw.get("played_at"), endpoint=EP_RECENTLY_PLAYED, field=f"items[{i}].played_at")
            context = raw.get("context")
            uri = context.get("uri") if isinstance(context, dict) else None
            plays.append(
                Play(
                    played_at=played_at,
                    played_at_ms=to_epoch_ms(played_at),
                    track=Track.from_json(track, endpoint=EP_RECENTLY_PLAYED, path=f"items[{i}].track"),
                    context_uri=uri if isinstance(uri, str) else None,
                    raw=raw,
                )
            )
        cursors = body.get("cursors") if isinstance(body.get("cursors"), dict) else {}
        return RecentlyPlayedPage(
            items=plays,
            cursor_after=_int_or_none(cursors.get("after")),
            cursor_before=_int_or_none(cursors.get("before")),
            limit=limit,
            next=body.get("next") if isinstance(body.get("next"), str) else None,
            received=len(body["items"]),
        )

    def recently_played_since(self, after_ms: int | None, *, max_pages: int = 20) -> RecentlyPlayed:
        """Every play newer than ``after_ms`` (None: all Spotify still has), oldest first, de-duplicated.

        Pages forward with ``after`` = the newest play seen so far. ``possible_gap`` is set when a cursor
        was given and the first answer was a full 50 plays: all of Spotify's retained history is newer than
        the cursor, so plays in between may have been dropped before this run could see them.
        """
        seen: dict[int, Play] = {}
        cursor = after_ms
        requests_sent = 0
        possible_gap = False
        for _ in range(max_pages):
            page = self.recently_played_page(after_ms=cursor if cursor is not None else None, limit=PAGE_LIMIT)
            requests_sent += 1
            if requests_sent == 1 and after_ms is not None and page.received >= RECENTLY_PLAYED_RETENTION:
                possible_gap = True
            fresh = [p for p in page.items if (after_ms is None or p.played_at_ms > after_ms)]
            for play in fresh:
                seen.setdefault(play.played_at_ms, play)
            newest = max((p.played_at_ms for p in page.items), default=None)
            if cursor is None:
                break  # no cursor: Spotify answered with the newest plays it has, there is nothing newer
            if page.received < page.limit or newest is None or newest <= cursor:
                break
            cursor = newest
        plays = sorted(seen.values(), key=lambda p: p.played_at_ms)
        if possible_gap:
            log.warning(
                "account %r: every play Spotify still keeps is newer than the last stored one: "
                "plays in between may be missing",
                self.account,
            )
        return RecentlyPlayed(
            plays=plays,
            after_ms=after_ms,
            newest_played_at_ms=plays[-1].played_at_ms if plays else after_ms,
            requests=requests_sent,
            possible_gap=possible_gap,
        )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def build_user_client(
    config: SpotifyClientConfig | Any,
    store: TokenStore,
    account: str,
    *,
    cache: Cache | None = None,
    limiter: RateLimiter | None = None,
    metrics: Metrics | None = None,
    session: requests.Session | None = None,
    clock: Clock | None = None,
    run_id: str | None = None,
) -> UserSpotifyClient:
    """A client acting for ``account`` (tokens from ``store``), on the same limiter/cache/retry stack as
    `build_client` (Redis backends whenever ``redis_url`` is set)."""
    if not isinstance(config, SpotifyClientConfig):
        config = SpotifyClientConfig.from_settings(config)
    app = OAuthApp.from_config(config)
    metrics = metrics or Metrics(run_id=run_id)
    session = session or build_session(config.pool_maxsize)
    source = UserTokenSource(
        store,
        account,
        app,
        session=session,
        clock=clock,
        refresh_margin_s=config.token_refresh_margin_s,
        observer=lambda endpoint, latency, status: metrics.record_request(endpoint, latency, status=status),
    )
    base = build_client(
        config, cache=cache, limiter=limiter, metrics=metrics, session=session, clock=clock, auth=source
    )
    return UserSpotifyClient(
        config,
        account=account,
        token_source=source,
        transport=base.transport,
        limiter=base.limiter,
        cache=base.cache,
        retry=base.retry,
        metrics=base.metrics,
        clock=base.clock,
    )
