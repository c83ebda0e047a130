"""Web API routes under /v1, each behind one guard: latency, authentication (401), the rate limits (429),
injected faults (5xx, broken connections), then the handler; every request is counted in the stats.

Development mode follows Spotify's February/March 2026 changes: the batch endpoints answer 403, search
`limit` stops at 10 (default 5), and the renderer leaves out the removed fields.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from spotify_pipeline.emulator.accounts import AccessToken
from spotify_pipeline.emulator.catalog import MARKETS, Track
from spotify_pipeline.emulator.errors import ApiError, bad_request, dumps, forbidden, json_response, not_found
from spotify_pipeline.emulator.library import iso
from spotify_pipeline.emulator.render import paging
from spotify_pipeline.emulator.search import QuerySyntaxError, parse_query

if TYPE_CHECKING:
    from spotify_pipeline.emulator.app import Emulator

Handler = Callable[[Request, AccessToken], Response]
BREAKAGE_SCOPE_KEY = "spotify_emulator.breakage"  # read by the outer ASGI wrapper in app.py

_BASE62_ID = re.compile(r"^[0-9A-Za-z]{22}$")
_MARKET_SET = frozenset(MARKETS)
SEARCH_TYPES = frozenset({"album", "artist", "playlist", "track", "show", "episode", "audiobook"})
SEARCH_MAX_OFFSET = 1000  # Spotify's OpenAPI description: offset 0..1000
USER_COUNTRY = "SE"
DEVELOPMENT_MODE_FORBIDDEN = "Forbidden: this endpoint is not available to apps in Development Mode"


class WebApi:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def routes(self) -> list[Route]:
        endpoints: list[tuple[str, Handler]] = [
            ("/v1/tracks/{id}", self.track),
            ("/v1/tracks", self.several_tracks),
            ("/v1/artists/{id}", self.artist),
            ("/v1/artists", self.several_artists),
            ("/v1/albums/{id}", self.album),
            ("/v1/albums", self.several_albums),
            ("/v1/search", self.search),
            ("/v1/me", self.me),
            ("/v1/me/tracks", self.saved_tracks),
            ("/v1/me/player/recently-played", self.recently_played),
            ("/v1/playlists/{id}/items", self.playlist_items),
        ]
        # Spotify answers a path with a trailing slash as the path without one (spotipy's `tracks()` asks for
        # `/v1/tracks/?ids=`); both count under the template without the slash.
        routes = [
            Route(path, self._guarded(template, handler), methods=["GET"])
            for template, handler in endpoints
            for path in (template, f"{template}/")
        ]
        routes.append(Route("/v1/{rest:path}", self._guarded("unmatched", self.unmatched)))
        return routes

    # -- the guard --------------------------------------------------------------------------------------

    def _guarded(self, template: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        emulator = self.emulator

        async def endpoint(request: Request) -> Response:
            if emulator.config.latency_ms:
                await asyncio.sleep(emulator.config.latency_ms / 1000)
            client_id = "anonymous"
            breakage = None
            try:
                token = emulator.accounts.authenticate(request.headers.get("authorization"))
                client_id = token.client_id
                emulator.limits.admit(client_id)
                fault = emulator.faults.draw()
                if isinstance(fault, ApiError):
                    raise fault
                breakage = fault
                response = handler(request, token)
            except ApiError as error:
                if error.status == 429:
                    emulator.stats.record_throttle("quota" if error.reason == "QUOTA_EXCEEDED" else "window")
                response = error.response()
            if breakage is not None:
                request.scope[BREAKAGE_SCOPE_KEY] = breakage
                emulator.stats.record(template, "dropped" if breakage == "drop" else "truncated", client_id)
            else:
                emulator.stats.record(template, response.status_code, client_id)
            return response

        return endpoint

    # -- shared parameter handling ----------------------------------------------------------------------

    @property
    def _mode(self) -> str:
        return self.emulator.config.mode

    def _market(self, request: Request, token: AccessToken) -> str | None:
        market = request.query_params.get("market")
        if market is None or market == "":
            return None
        if market == "from_token":
            if token.user_id is None:
                raise bad_request("Invalid market code: from_token needs a user access token")
            return USER_COUNTRY
        if market not in _MARKET_SET:
            raise bad_request("Invalid market code")
        return market

    @staticmethod
    def _int(request: Request, name: str, default: int, low: int, high: int | None) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise bad_request(f"Invalid {name}") from None
        if value < low or (high is not None and value > high):
            raise bad_request(f"Invalid {name}")
        return value

    @staticmethod
    def _ids(request: Request, maximum: int) -> list[str]:
        raw = request.query_params.get("ids")
        if not raw:
            raise bad_request("Missing required parameter: ids")
        ids = [value.strip() for value in raw.split(",")]  # "a, b" as "a,b"
        if len(ids) > maximum:
            raise bad_request("Too many ids requested")
        for value in ids:
            if not _BASE62_ID.match(value):
                raise bad_request("Invalid base62 id")
        return ids

    @staticmethod
    def _id(request: Request) -> str:
        value = request.path_params["id"]
        if not _BASE62_ID.match(value):
            raise bad_request("Invalid base62 id")
        return value

    def _forbid_in_development_mode(self) -> None:
        if self._mode == "development":
            raise forbidden(DEVELOPMENT_MODE_FORBIDDEN)

    @staticmethod
    def _require_user(token: AccessToken, scope: str | None) -> str:
        if token.user_id is None or (scope is not None and scope not in token.scopes):
            raise forbidden("Insufficient client scope")
        return token.user_id

    def _base_url(self, request: Request) -> str:
        """The emulator's own /v1 URL as the client reached it, for paging links the client may follow."""
        return f"{request.url.scheme}://{request.url.netloc}/v1"

    def _track_bytes(self, track: Track, market: str | None) -> bytes:
        return self.emulator.renderer.track(track, self._mode, market, self.emulator.today())

    # -- catalogue ----------------------------------------------------------------------------------------

    def track(self, request: Request, token: AccessToken) -> Response:
        track = self.emulator.catalog.track_by_id.get(self._id(request))
        market = self._market(request, token)
        if track is None:
            raise not_found()
        return json_response(self._track_bytes(track, market))

    def several_tracks(self, request: Request, token: AccessToken) -> Response:
        self._forbid_in_development_mode()
        ids = self._ids(request, 50)
        market = self._market(request, token)
        lookup = self.emulator.catalog.track_by_id
        items = [self._track_bytes(t, market) if (t := lookup.get(i)) else b"null" for i in ids]
        return json_response(b'{"tracks":[' + b",".join(items) + b"]}")

    def artist(self, request: Request, token: AccessToken) -> Response:
        artist = self.emulator.catalog.artist_by_id.get(self._id(request))
        if artist is None:
            raise not_found()
        return json_response(self.emulator.renderer.artist(artist.index, self._mode))

    def several_artists(self, request: Request, token: AccessToken) -> Response:
        self._forbid_in_development_mode()
        lookup, renderer = self.emulator.catalog.artist_by_id, self.emulator.renderer
        items = [renderer.artist(a.index, self._mode) if (a := lookup.get(i)) else b"null" for i in self._ids(request, 50)]
        return json_response(b'{"artists":[' + b",".join(items) + b"]}")

    def album(self, request: Request, token: AccessToken) -> Response:
        album = self.emulator.catalog.album_by_id.get(self._id(request))
        market = self._market(request, token)
        if album is None:
            raise not_found()
        return json_response(self.emulator.renderer.album(album.index, self._mode, market))

    def several_albums(self, request: Request, token: AccessToken) -> Response:
        self._forbid_in_development_mode()
        ids = self._ids(request, 20)
        market = self._market(request, token)
        lookup, renderer = self.emulator.catalog.album_by_id, self.emulator.renderer
        items = [renderer.album(a.index, self._mode, market) if (a := lookup.get(i)) else b"null" for i in ids]
        return json_response(b'{"albums":[' + b",".join(items) + b"]}")

    def search(self, request: Request, token: AccessToken) -> Response:
        params = request.query_params
        q = params.get("q") or params.get("query")  # Spotify's own `next` links spell it `query`
        if not q or q.isspace():
            raise bad_request("No search query")
        types = [t.strip() for t in params.get("type", "").split(",") if t.strip()]
        if not types:
            raise bad_request("Missing parameter type")
        for kind in types:
            if kind not in SEARCH_TYPES:
                raise bad_request(f"Bad search type field {kind}")
        if types != ["track"]:
            raise bad_request("The emulator searches tracks only: use type=track")
        development = self._mode == "development"
        limit = self._int(request, "limit", 5 if development else 20, 1, 10 if development else 50)
        offset = self._int(request, "offset", 0, 0, SEARCH_MAX_OFFSET)
        market = self._market(request, token)
        try:
            matches = self.emulator.search_index.search(parse_query(q))
        except QuerySyntaxError as error:
            raise bad_request(str(error)) from None
        tracks = self.emulator.catalog.tracks
        items = [self._track_bytes(tracks[i], market) for i in matches[offset : offset + limit]]
        market_part = f"&market={market}" if market else ""
        page_url = f"{self._base_url(request)}/search?offset={{offset}}&limit={{limit}}&query={quote(q, safe='')}&type=track{market_part}"
        total = len(matches)
        # No `next` link to an offset beyond the horizon, which would itself be refused.
        has_next = offset + limit < total and offset + limit <= SEARCH_MAX_OFFSET
        body = paging(page_url.format(offset=offset, limit=limit), items, limit, offset, total, page_url, has_next=has_next)
        return json_response(b'{"tracks":' + body + b"}")

    # -- user ---------------------------------------------------------------------------------------------

    def me(self, request: Request, token: AccessToken) -> Response:
        user_id = self._require_user(token, None)
        extended = self._mode == "extended"
        body: dict[str, object] = {"account_id": f"acc-{user_id}"}
        if extended and "user-read-private" in token.scopes:
            body["country"] = USER_COUNTRY
        body["display_name"] = "Emulator Test User"
        if extended and "user-read-email" in token.scopes:
            body["email"] = f"{user_id}@example.com"
        if extended and "user-read-private" in token.scopes:
            body["explicit_content"] = {"filter_enabled": False, "filter_locked": False}
        body["external_urls"] = {"spotify": f"https://open.spotify.com/user/{user_id}"}
        if extended:
            body["followers"] = {"href": None, "total": 3}
        body["href"] = f"https://api.spotify.com/v1/users/{user_id}"
        body["id"] = user_id
        body["images"] = []
        if extended and "user-read-private" in token.scopes:
            body["product"] = "premium"
        body["type"] = "user"
        body["uri"] = f"spotify:user:{user_id}"
        return json_response(dumps(body))

    def saved_tracks(self, request: Request, token: AccessToken) -> Response:
        self._require_user(token, "user-library-read")
        limit = self._int(request, "limit", 20, 1, 50)
        offset = self._int(request, "offset", 0, 0, None)
        market = self._market(request, token)
        tracks = self.emulator.catalog.tracks
        saved = self.emulator.library.saved
        items = [
            b'{"added_at":"' + iso(added_at).encode() + b'","track":' + self._track_bytes(tracks[index], market) + b"}"
            for index, added_at in saved[offset : offset + limit]
        ]
        market_part = f"&market={market}" if market else ""
        page_url = f"{self._base_url(request)}/me/tracks?offset={{offset}}&limit={{limit}}{market_part}"
        body = paging(page_url.format(offset=offset, limit=limit), items, limit, offset, len(saved), page_url)
        return json_response(body)

    def recently_played(self, request: Request, token: AccessToken) -> Response:
        self._require_user(token, "user-read-recently-played")
        limit = self._int(request, "limit", 20, 1, 50)
        before = request.query_params.get("before")
        after = request.query_params.get("after")
        if before is not None and after is not None:
            raise bad_request("Only one of before or after may be given")
        history = self.emulator.library.recent_plays(self.emulator.clock.now())  # newest first
        cursor_param = ""
        if after is not None:
            cursor = self._cursor(after)
            newer = [p for p in history if p.played_at_ms > cursor]
            page = newer[-limit:]  # the plays right after the cursor, so paging forward misses none
            cursor_param = f"&after={after}"
        else:
            older = history if before is None else [p for p in history if p.played_at_ms < self._cursor(before)]
            page = older[:limit]
            if before is not None:
                cursor_param = f"&before={before}"
        base = f"{self._base_url(request)}/me/player/recently-played"
        tracks = self.emulator.catalog.tracks
        items = [
            b'{"context":' + self._album_context(tracks[p.track_index]) + b',"played_at":"'
            + iso(p.played_at_ms / 1000).encode() + b'","track":' + self._track_bytes(tracks[p.track_index], None) + b"}"
            for p in page
        ]
        has_older = bool(page) and history[-1].played_at_ms < page[-1].played_at_ms
        head = {
            "cursors": {"after": str(page[0].played_at_ms), "before": str(page[-1].played_at_ms)} if page else None,
            "href": f"{base}?limit={limit}{cursor_param}",
            "limit": limit,
            "next": f"{base}?before={page[-1].played_at_ms}&limit={limit}" if has_older else None,
        }
        return json_response(dumps(head)[:-1] + b',"items":[' + b",".join(items) + b"]}")

    def _album_context(self, track: Track) -> bytes:
        """Plays come from the track's album (Spotify sends `null` for no context; the spec does not allow it)."""
        album_id = self.emulator.catalog.albums[track.album_index].id
        return dumps(
            {
                "external_urls": {"spotify": f"https://open.spotify.com/album/{album_id}"},
                "href": f"https://api.spotify.com/v1/albums/{album_id}",
                "type": "album",
                "uri": f"spotify:album:{album_id}",
            }
        )

    @staticmethod
    def _cursor(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise bad_request("Invalid cursor: before and after are Unix timestamps in milliseconds") from None
        if value < 0:
            raise bad_request("Invalid cursor: before and after are Unix timestamps in milliseconds")
        return value

    def playlist_items(self, request: Request, token: AccessToken) -> Response:
        library = self.emulator.library
        playlist = library.playlist_by_id.get(request.path_params["id"])
        if playlist is None:
            raise not_found()
        owned = token.user_id is not None and playlist.owner_id == token.user_id
        if not playlist.public:
            if not owned:
                raise not_found()  # Spotify does not reveal other users' private playlists
            self._require_user(token, "playlist-read-private")
        elif self._mode == "development" and not owned:
            # Since February 2026, Development Mode apps read items only of playlists the user owns.
            raise forbidden("Forbidden")
        limit = self._int(request, "limit", 20, 1, 50)
        offset = self._int(request, "offset", 0, 0, None)
        market = self._market(request, token)
        tracks = self.emulator.catalog.tracks
        added_by = dumps(
            {
                "external_urls": {"spotify": f"https://open.spotify.com/user/{playlist.owner_id}"},
                "href": f"https://api.spotify.com/v1/users/{playlist.owner_id}",
                "id": playlist.owner_id,
                "type": "user",
                "uri": f"spotify:user:{playlist.owner_id}",
            }
        )
        items = []
        for index, added_at in list(zip(playlist.track_indices, playlist.added_at_s))[offset : offset + limit]:
            track = self._track_bytes(tracks[index], market)
            # `item` is the field's name since February 2026; `track` stays as its deprecated alias.
            items.append(
                b'{"added_at":"' + iso(added_at).encode() + b'","added_by":' + added_by
                + b',"is_local":false,"item":' + track + b',"track":' + track + b"}"
            )
        market_part = f"&market={market}" if market else ""
        page_url = f"{self._base_url(request)}/playlists/{playlist.id}/items?offset={{offset}}&limit={{limit}}{market_part}"
        body = paging(page_url.format(offset=offset, limit=limit), items, limit, offset, len(playlist.track_indices), page_url)
        return json_response(body)

    def unmatched(self, request: Request, token: AccessToken) -> Response:
        raise not_found("Service not found")
