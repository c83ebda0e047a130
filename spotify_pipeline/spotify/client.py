"""`SpotifyClient`: the facade composing transport, auth, limiter, retry, cache, capabilities and metrics.

Build one with `build_client(config_or_settings)`; it picks Redis backends whenever ``redis_url`` is set
(shared limiter, cache and token across processes) and in-process ones otherwise. Given a `RequestBudget`
(``budget=``), the client spends one request from it before every Web API request it sends and raises
`SpotifyBudgetExhausted`, sending nothing, once it is spent.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

from spotify_pipeline.spotify.auth import ClientCredentialsAuth
from spotify_pipeline.spotify.budget import BudgetGate, RequestBudget
from spotify_pipeline.spotify.cache import KEY_VERSION, Cache, InMemoryCache, RedisCache, redis_client, track_key
from spotify_pipeline.spotify.capabilities import Capabilities
from spotify_pipeline.spotify.clock import Clock, SystemClock
from spotify_pipeline.spotify.config import SpotifyClientConfig
from spotify_pipeline.spotify.errors import (
    SpotifyBudgetExhausted,
    SpotifyConfigError,
    SpotifyForbidden,
    SpotifyNotFound,
    SpotifyQuotaExceeded,
    SpotifyResponseError,
    SpotifyTooManyRequests,
)
from spotify_pipeline.spotify.limiter import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from spotify_pipeline.spotify.logs import get_logger
from spotify_pipeline.spotify.metrics import Metrics
from spotify_pipeline.spotify.models import Album, Artist, SearchPage, Track
from spotify_pipeline.spotify.retry import RetryPolicy
from spotify_pipeline.spotify.sqlite_cache import SQLiteCache
from spotify_pipeline.spotify.transport import TokenSource, Transport, build_session

log = get_logger(__name__)

EP_TRACKS = "GET /tracks"
EP_TRACK = "GET /tracks/{id}"
EP_SEARCH = "GET /search"
EP_ARTIST = "GET /artists/{id}"
EP_ALBUM = "GET /albums/{id}"
#: A well-formed track id used only when the app mode must be known before any batch call (search first).
PROBE_TRACK_ID = "4iV5W9uYEdYUVa79Axb7Rh"
SEARCH_MAX_RESULTS = 1000
#: Penalty when a 429 carries no Retry-After.
DEFAULT_PENALTY_S = 1.0
#: Spotify leaves popularity out of a single track now and then; only a batch of at least this many tracks
#: answered without any popularity says the app cannot see popularity.
MIN_TRACKS_TO_JUDGE_POPULARITY = 2


class SpotifyClient:
    """Typed, rate-limited, cached access to the Spotify Web API for one run."""

    def __init__(
        self,
        config: SpotifyClientConfig,
        *,
        transport: Transport,
        limiter: RateLimiter,
        cache: Cache,
        retry: RetryPolicy,
        metrics: Metrics,
        clock: Clock | None = None,
        budget_gate: BudgetGate | None = None,
    ) -> None:
        self.config = config
        self.transport = transport
        self.limiter = limiter
        self.cache = cache
        self.retry = retry
        self.metrics = metrics
        self.clock = clock or SystemClock()
        # The gate the transport asks before each request (`build_client` wires both to the same one).
        self._budget_gate = budget_gate or BudgetGate()
        self._caps: Capabilities | None = None
        self._caps_lock = threading.Lock()
        if config.app_mode != "auto":
            self._caps = Capabilities.for_mode(config.app_mode, source="configured")
        self._caps_key = f"{KEY_VERSION}:capabilities:{config.app_key}"

    # -- plumbing ----------------------------------------------------------------------------------------
    def _get(self, path: str, *, endpoint: str, params: dict[str, Any] | None = None) -> Any:
        params = dict(params or {})
        if self.config.market and "market" not in params:
            params["market"] = self.config.market

        def once() -> Any:
            try:
                return self.transport.get(path, endpoint=endpoint, params=params)
            except SpotifyTooManyRequests as exc:  # tell every process, not just this one
                self.limiter.penalize(exc.retry_after if exc.retry_after is not None else DEFAULT_PENALTY_S)
                raise
            except SpotifyQuotaExceeded as exc:
                if exc.retry_after:
                    self.limiter.penalize(exc.retry_after)
                raise

        return self.retry.call(once, endpoint=endpoint)

    # -- request budget ----------------------------------------------------------------------------------
    @property
    def budget(self) -> RequestBudget | None:
        """The budget this client's Web API requests are spent from (None: no budget), narrowed inside a
        `spending_limit` block."""
        return self._budget_gate.budget

    @contextlib.contextmanager
    def spending_limit(self, requests: int) -> Iterator[RequestBudget]:
        """Within the block, at most ``requests`` more Web API requests, each still granted by the budget;
        past it the client raises `SpotifyBudgetExhausted`. One step's share of a run's budget. Not for a
        client that other threads use for other work meanwhile."""
        with self._budget_gate.limit(requests) as limited:
            yield limited

    # -- capabilities ------------------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        """The app's mode and what it allows; detected (one probe request) at most once per run."""
        caps = self._known_capabilities()
        if caps is not None:
            return caps
        with self._caps_lock:
            caps = self._known_capabilities()
            if caps is not None:
                return caps
            try:
                body = self._get("tracks", endpoint=EP_TRACKS, params={"ids": PROBE_TRACK_ID})
            except SpotifyForbidden:
                return self._remember(Capabilities.for_mode("development"))
            except (SpotifyNotFound, SpotifyResponseError):
                return self._remember(Capabilities.for_mode("extended"))
            tracks = body.get("tracks") if isinstance(body, dict) else None
            first = tracks[0] if isinstance(tracks, list) and tracks else None
            popularity = None if not isinstance(first, dict) else ("popularity" in first and first["popularity"] is not None)
            return self._remember(Capabilities.for_mode("extended", popularity=popularity))

    @property
    def known_capabilities(self) -> Capabilities | None:
        """The capabilities if already known this run (never spends a request)."""
        return self._caps

    def _known_capabilities(self) -> Capabilities | None:
        if self._caps is not None:
            return self._caps
        cached = Capabilities.from_json(self.cache.get(self._caps_key))
        if cached is not None:
            log.info("Spotify app mode %s (remembered)", cached.mode)
            self._caps = cached
        return cached

    def _remember(self, caps: Capabilities) -> Capabilities:
        """Adopt `caps` as what Spotify's answers just established, and share them with every process."""
        previous = self._caps or self._known_capabilities()
        caps = caps.detected(self.clock.time(), previous=previous)
        if previous is not None and previous.mode != caps.mode:
            log.warning("Spotify app mode changed from %s to %s", previous.mode, caps.mode)
        if previous is None or (previous.mode, previous.popularity) != (caps.mode, caps.popularity):
            log.info(
                "Spotify app mode: %s (batch endpoints %s, popularity %s)",
                caps.mode,
                "yes" if caps.batch_endpoints else "no",
                "available" if caps.popularity else "unavailable",
            )
        self._caps = caps
        if caps.source != "configured":
            self.cache.set(self._caps_key, caps.to_json(), self.config.capabilities_ttl_s)
        return caps

    def _judge_popularity(self, batch: dict[str, Track | None]) -> None:
        """A batch answered entirely without popularity means the app lost it (an Extended Quota app cut
        back); a track or two without it is Spotify's ordinary gaps and changes nothing."""
        tracks = [t for t in batch.values() if t is not None]
        caps = self._caps
        if caps is None or not caps.popularity or len(tracks) < MIN_TRACKS_TO_JUDGE_POPULARITY:
            return
        if all(t.popularity is None for t in tracks):
            log.warning("Spotify returned %d tracks, none with popularity: marking popularity unavailable", len(tracks))
            self._remember(Capabilities.for_mode(caps.mode, popularity=False, source=caps.source))

    # -- tracks ------------------------------------------------------------------------------------------
    def get_track(self, track_id: str) -> Track:
        """One track (from cache when fresh). Raises `SpotifyNotFound` if Spotify has no such track."""
        key = track_key(track_id, self.config.market)
        entry = self.cache.get(key)
        track = self._from_cache(track_id, entry)
        if track is not None:
            self.metrics.record_cache(EP_TRACK, hits=1)
            return track
        self.metrics.record_cache(EP_TRACK, misses=1)
        body = self._get(f"tracks/{track_id}", endpoint=EP_TRACK)
        track = replace(Track.from_json(body, endpoint=EP_TRACK, requested_id=track_id), fetched_at=self.clock.time())
        self._store({track_id: track})
        return track

    def get_tracks(
        self, ids: Iterable[str], need_fresh_popularity: bool = False, *, until_budget_spent: bool = False
    ) -> dict[str, Track | None]:
        """Tracks keyed by the requested id (``None``: Spotify has no such track), in request order.

        Cached tracks are answered without a request; only the missing ones are fetched (batches of 50 in
        Extended Quota mode, one request per id in Development Mode). With ``need_fresh_popularity``, cached
        tracks whose popularity is older than the popularity TTL are fetched again too (when the app can see
        popularity at all). With ``until_budget_spent``, a spent request budget ends the read instead of
        raising `SpotifyBudgetExhausted`: the tracks read so far are returned (and cached), the ids not
        reached are left out of the result.
        """
        wanted = list(dict.fromkeys(i for i in ids if i))
        if not wanted:
            return {}
        entries = self.cache.get_many([track_key(i, self.config.market) for i in wanted])
        now = self.clock.time()
        # What every process knows (the cache), not only this one: a fresh step process must not take cached
        # Development Mode entries, which never carry popularity, for stale ones.
        caps = self._caps or self._known_capabilities()
        check_popularity = need_fresh_popularity and (caps is None or caps.popularity)
        result: dict[str, Track | None] = {}
        missing: list[str] = []
        for track_id, entry in zip(wanted, entries, strict=True):
            track = self._from_cache(track_id, entry)
            if track is not None and check_popularity:
                popularity_at = entry.get("popularity_at")
                if popularity_at is None or now - float(popularity_at) >= self.config.popularity_ttl_s:
                    track = None
            if track is None:
                missing.append(track_id)
            else:
                result[track_id] = track
        self.metrics.record_cache(EP_TRACKS, hits=len(result), misses=len(missing))
        if missing:
            fetched: dict[str, Track | None] = {}
            stop: SpotifyBudgetExhausted | None = None
            try:
                self._fetch_tracks(missing, fetched)
            except SpotifyBudgetExhausted as exc:
                stop = exc
            result.update(self._store_fetched(fetched))  # paid for: cached even when the caller hears of a stop
            if stop is not None:
                if not until_budget_spent:
                    raise stop
                log.info("request budget spent: %d of %d tracks not read", len(missing) - len(fetched), len(wanted))
        if until_budget_spent:
            return {i: result[i] for i in wanted if i in result}
        return {i: result.get(i) for i in wanted}

    def _fetch_tracks(self, ids: Sequence[str], out: dict[str, Track | None]) -> None:
        """Fetch `ids` into `out` as they arrive (so what came before an error is kept there)."""
        caps = self._caps or self._known_capabilities()
        rest = list(ids)
        if caps is None:  # the first batch call doubles as the mode probe
            with self._caps_lock:
                caps = self._caps
                if caps is None:
                    chunk = rest[:50]
                    try:
                        first = self._fetch_batch(chunk)
                    except SpotifyForbidden:
                        caps = self._remember(Capabilities.for_mode("development"))
                    else:
                        out.update(first)
                        rest = rest[len(chunk) :]
                        judged = [t for t in first.values() if t is not None]
                        popularity = len(judged) < MIN_TRACKS_TO_JUDGE_POPULARITY or any(
                            t.popularity is not None for t in judged
                        )
                        caps = self._remember(Capabilities.for_mode("extended", popularity=popularity))
        while rest:
            if caps.batch_endpoints:
                chunk = rest[: caps.batch_size]
                try:
                    batch = self._fetch_batch(chunk)
                except SpotifyForbidden:
                    if caps.source == "configured":
                        raise
                    # The app was moved to Development Mode since the mode was last established.
                    caps = self._remember(Capabilities.for_mode("development"))
                    continue
                out.update(batch)
                rest = rest[len(chunk) :]
                self._judge_popularity(batch)
                caps = self._caps or caps
            else:
                track_id = rest.pop(0)
                try:
                    body = self._get(f"tracks/{track_id}", endpoint=EP_TRACK)
                except SpotifyNotFound:
                    out[track_id] = None
                    continue
                track = out[track_id] = Track.from_json(body, endpoint=EP_TRACK, requested_id=track_id)
                if track.popularity is not None and caps.source != "configured":
                    # Development Mode never sends popularity: the app has Extended Quota (again).
                    caps = self._remember(Capabilities.for_mode("extended"))

    def _fetch_batch(self, ids: Sequence[str]) -> dict[str, Track | None]:
        body = self._get("tracks", endpoint=EP_TRACKS, params={"ids": ",".join(ids)})
        if not isinstance(body, dict) or not isinstance(body.get("tracks"), list):
            raise SpotifyResponseError("expected an object with a 'tracks' array", endpoint=EP_TRACKS, field="tracks")
        items = body["tracks"]
        if len(items) != len(ids):
            raise SpotifyResponseError(
                f"asked for {len(ids)} tracks, got {len(items)}", endpoint=EP_TRACKS, field="tracks"
            )
        out: dict[str, Track | None] = {}
        for i, (track_id, raw) in enumerate(zip(ids, items, strict=True)):
            out[track_id] = (
                None if raw is None else Track.from_json(raw, endpoint=EP_TRACKS, path=f"tracks[{i}]", requested_id=track_id)
            )
            t = out[track_id]
            if t is not None and t.relinked:
                log.debug("track %s relinked to %s", track_id, t.id)
        return out

    def _from_cache(self, track_id: str, entry: Any) -> Track | None:
        if not isinstance(entry, dict) or "track" not in entry:
            return None
        try:
            track = Track.from_json(entry["track"], endpoint="cache", requested_id=track_id)
        except SpotifyResponseError:  # an entry written by an older, incompatible version: refetch
            return None
        fetched_at = entry.get("fetched_at")
        return replace(track, fetched_at=float(fetched_at) if isinstance(fetched_at, int | float) else None)

    def _store_fetched(self, fetched: dict[str, Track | None]) -> dict[str, Track | None]:
        """Tracks just received, stamped with their arrival time and cached (those Spotify has)."""
        stamped = self._stamped(fetched)
        self._store({k: v for k, v in stamped.items() if v is not None})
        return stamped

    def _stamped(self, tracks: dict[str, Track | None]) -> dict[str, Track | None]:
        """Tracks just received from Spotify, stamped with the time they arrived."""
        now = self.clock.time()
        return {k: None if t is None else replace(t, fetched_at=now) for k, t in tracks.items()}

    def _store(self, tracks: dict[str, Track]) -> None:
        if not tracks:
            return
        now = self.clock.time()
        self.cache.set_many(
            {
                track_key(track_id, self.config.market): {
                    "track": t.raw,
                    "requested_id": track_id,
                    "served_id": t.id,
                    "fetched_at": t.fetched_at if t.fetched_at is not None else now,
                    "popularity_at": (t.fetched_at or now) if t.popularity is not None else None,
                }
                for track_id, t in tracks.items()
            },
            self.config.track_ttl_s,
        )

    # -- search ------------------------------------------------------------------------------------------
    def search_tracks(self, query: str, limit: int = 10, offset: int = 0) -> SearchPage:
        """One page of track search results; ``limit`` is capped at the app mode's maximum (10 or 50)."""
        if not query.strip():
            raise ValueError("query must not be empty")
        if offset < 0 or offset >= SEARCH_MAX_RESULTS:
            raise ValueError(f"offset must be between 0 and {SEARCH_MAX_RESULTS - 1}")
        cap = self.capabilities.max_search_limit
        # Spotify answers at most 1,000 results per query: offset + limit may not pass that horizon.
        effective = max(1, min(int(limit), cap, SEARCH_MAX_RESULTS - offset))
        if effective != limit:
            log.info("search limit %d capped at %d (%s mode)", limit, effective, self.capabilities.mode)
        body = self._get(
            "search", endpoint=EP_SEARCH, params={"q": query, "type": "track", "limit": effective, "offset": offset}
        )
        page = body.get("tracks") if isinstance(body, dict) else None
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise SpotifyResponseError("expected 'tracks.items' array", endpoint=EP_SEARCH, field="tracks.items")
        items = [
            Track.from_json(raw, endpoint=EP_SEARCH, path=f"tracks.items[{i}]") for i, raw in enumerate(page["items"])
        ]
        total = page.get("total")
        return SearchPage(
            query=query,
            items=items,
            total=total if isinstance(total, int) and not isinstance(total, bool) else len(items),
            limit=effective,
            offset=offset,
            next=page.get("next") if isinstance(page.get("next"), str) else None,
        )

    # -- artists and albums (uncached single-object reads) -----------------------------------------------
    def get_artist(self, artist_id: str) -> Artist:
        return Artist.from_json(self._get(f"artists/{artist_id}", endpoint=EP_ARTIST), endpoint=EP_ARTIST)

    def get_album(self, album_id: str) -> Album:
        return Album.from_json(self._get(f"albums/{album_id}", endpoint=EP_ALBUM), endpoint=EP_ALBUM)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> SpotifyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_client(
    config: SpotifyClientConfig | Any | None = None,
    *,
    cache: Cache | None = None,
    limiter: RateLimiter | None = None,
    metrics: Metrics | None = None,
    session: requests.Session | None = None,
    clock: Clock | None = None,
    run_id: str | None = None,
    auth: TokenSource | None = None,
    budget: RequestBudget | None = None,
) -> SpotifyClient:
    """A ready client from a `SpotifyClientConfig` or a `spotify_pipeline.settings.Settings`.

    Redis backends (limiter, cache, token store) whenever ``redis_url`` is set, in-process ones otherwise;
    without Redis the cache (and with it the app token) is the SQLite file ``config.cache_path``, shared by
    the processes of this machine and kept between runs (its directory is created), or an in-process cache
    when ``cache_path`` is unset, "" or "memory".
    Missing credentials raise `SpotifyConfigError` naming SPOTIFY_CLIENT_ID / SPOTIFY_CLIENT_SECRET.
    ``auth`` replaces the app's Client Credentials token with another token source (a user's tokens, see
    `spotify_pipeline.spotify.user_client.build_user_client`); the client id alone is then required.
    ``budget`` (see `spotify_pipeline.spotify.budget.open_request_budget`) caps the Web API requests the client
    sends: one is spent before each, once the rate limiter gave its slot (so every request spent is a request
    sent), and `SpotifyBudgetExhausted` is raised, with nothing sent, when none is left. None: no budget.
    """
    if config is None:
        config = SpotifyClientConfig()
    elif not isinstance(config, SpotifyClientConfig):
        config = SpotifyClientConfig.from_settings(config)
    if auth is None:
        client_id, client_secret = config.require_credentials()
    elif not config.client_id:
        raise SpotifyConfigError("Spotify client id missing: set SPOTIFY_CLIENT_ID")
    sys_clock = clock or SystemClock()
    redis_conn = redis_client(config.redis_url) if config.redis_url and (cache is None or limiter is None) else None
    if cache is None:
        if redis_conn is not None:
            cache = RedisCache(redis_conn, config.redis_key_prefix)
        elif (cache_path := config.sqlite_cache_path) is not None:
            cache = _open_sqlite_cache(cache_path, sys_clock)
        else:
            cache = InMemoryCache(sys_clock)
    if limiter is None:
        if redis_conn is not None:
            limiter = RedisRateLimiter(
                redis_conn,
                config.rate_limit_per_minute,
                prefix=config.redis_key_prefix,
                name=config.app_key,
                clock=clock,
                headroom=config.limiter_headroom,
                fallback=config.limiter_fallback,
            )
        else:
            limiter = InProcessRateLimiter(config.rate_limit_per_minute, clock=sys_clock, headroom=config.limiter_headroom)
    metrics = metrics or Metrics(run_id=run_id)
    session = session or build_session(config.pool_maxsize)
    if auth is None:
        auth = ClientCredentialsAuth(
            client_id,
            client_secret,
            config.token_url,
            cache,
            app_key=config.app_key,
            session=session,
            timeout=config.timeout,
            clock=sys_clock,
            refresh_margin_s=config.token_refresh_margin_s,
            observer=lambda endpoint, latency, status: metrics.record_request(endpoint, latency, status=status),
        )
    max_block = float(config.max_retry_after_s)
    gate = BudgetGate(budget)

    def before_request() -> None:
        limiter.acquire(max_block_s=max_block)
        gate.spend_one()

    transport = Transport(
        config.api_base_url,
        auth,
        session=session,
        timeout=config.timeout,
        before_request=before_request,
        observer=lambda endpoint, latency, status: metrics.record_request(endpoint, latency, status=status),
    )
    retry = RetryPolicy(
        max_attempts=config.max_attempts,
        max_retry_wait_s=config.max_retry_wait_s,
        max_retry_after_s=config.max_retry_after_s,
        backoff_initial_s=config.backoff_initial_s,
        backoff_max_s=config.backoff_max_s,
        sleep=sys_clock.sleep,
        on_retry=lambda endpoint, exc, wait: metrics.record_retry(endpoint),
    )
    return SpotifyClient(
        config,
        transport=transport,
        limiter=limiter,
        cache=cache,
        retry=retry,
        metrics=metrics,
        clock=sys_clock,
        budget_gate=gate,
    )


def _open_sqlite_cache(path: str, clock: Clock) -> SQLiteCache:
    """The local profile's persistent cache at ``path`` (parent directory created); a path that cannot be
    opened is a configuration error naming SPOTIFY_CACHE_PATH."""
    try:
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return SQLiteCache(Path(path).expanduser(), clock=clock)
    except (OSError, sqlite3.Error) as exc:
        raise SpotifyConfigError(
            f"cannot open the Spotify cache file {path!r} ({type(exc).__name__}: {exc}): set SPOTIFY_CACHE_PATH "
            "to a writable path, or to 'memory' for an in-process cache"
        ) from None
