"""Client Credentials auth (OAuth 2.0, RFC 6749 section 4.4) through oauthlib's `BackendApplicationClient`.

The token lives in the `Cache` backend, so every process sharing it (Redis) uses one token instead of each
fetching its own. It is refreshed `refresh_margin_s` (60 s) before it expires; a lock in the same backend
lets one refresher at a time fetch, and the others re-read the cache after waiting for the lock.

The token request is prepared and parsed by requests-oauthlib's client (`BackendApplicationClient`) and sent
over the client's own pooled session with HTTP Basic client authentication. (`OAuth2Session.fetch_token`
refuses plain-http token URLs unless a process-wide environment variable is set; the offline emulator
serves http on the loopback interface, so this module sends the request itself and allows http only there.)
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import OAuth2Error
from requests.auth import HTTPBasicAuth
from oauthlib.oauth2 import BackendApplicationClient  # requests-oauthlib's OAuth 2 client layer

from spotify_pipeline.spotify.cache import KEY_VERSION, Cache
from spotify_pipeline.spotify.clock import Clock, SystemClock
from spotify_pipeline.spotify.errors import SpotifyAuthError, SpotifyConfigError, SpotifyConnectionError
from spotify_pipeline.spotify.logs import REDACTION_FILTER, get_logger
from spotify_pipeline.spotify.transport import build_session, host_of

log = get_logger(__name__)

TOKEN_ENDPOINT = "POST /api/token"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ClientCredentialsAuth:
    """Supplies app access tokens to the transport (`token()`, `refresh(rejected)`)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        token_url: str,
        cache: Cache,
        *,
        app_key: str,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 15.0),
        clock: Clock | None = None,
        refresh_margin_s: float = 60.0,
        lock_timeout_s: float = 30.0,
        observer: Any = None,
    ) -> None:
        if not client_id or not client_secret:
            raise SpotifyConfigError("Spotify credentials missing: set SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET")
        parts = urlsplit(token_url)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
            raise SpotifyConfigError(
                f"token URL must use https (plain http is only allowed on the loopback interface): {token_url}"
            )
        self.client_id = client_id
        self._secret = client_secret
        REDACTION_FILTER.add_secret(client_secret)
        self.token_url = token_url
        self.cache = cache
        self.key = f"{KEY_VERSION}:token:{app_key}"
        self.session = session or build_session()
        self.timeout = timeout
        self.clock = clock or SystemClock()
        self.refresh_margin_s = refresh_margin_s
        self.lock_timeout_s = lock_timeout_s
        self.observer = observer
        self._local: dict[str, Any] | None = None  # this process's copy: no cache round trip per request
        self._mutex = threading.Lock()
        self.fetch_count = 0

    # -- TokenSource -------------------------------------------------------------------------------------
    def token(self) -> str:
        entry = self._local
        if self._fresh(entry):
            assert entry is not None
            return entry["access_token"]
        return self._obtain(rejected=None)

    def refresh(self, rejected: str | None = None) -> str:
        return self._obtain(rejected=rejected)

    # -- internals ---------------------------------------------------------------------------------------
    def _fresh(self, entry: dict[str, Any] | None, rejected: str | None = None) -> bool:
        return (
            entry is not None
            and entry.get("access_token") != rejected
            and float(entry.get("expires_at", 0)) - self.refresh_margin_s > self.clock.time()
        )

    def _obtain(self, rejected: str | None) -> str:
        with self._mutex:  # threads of this process queue here; processes queue on the backend lock
            if self._fresh(self._local, rejected):
                assert self._local is not None
                return self._local["access_token"]
            shared = self.cache.get(self.key)
            if self._fresh(shared, rejected):
                return self._adopt(shared)
            with self.cache.lock(f"token:{self.key.rsplit(':', 1)[-1]}", timeout_s=self.lock_timeout_s):
                shared = self.cache.get(self.key)  # another process may have refreshed while we waited
                if self._fresh(shared, rejected):
                    return self._adopt(shared)
                entry = self._fetch()
                ttl = max(1.0, float(entry["expires_at"]) - self.clock.time())
                self.cache.set(self.key, entry, ttl)
                return self._adopt(entry)

    def _adopt(self, entry: dict[str, Any] | None) -> str:
        assert entry is not None
        REDACTION_FILTER.add_secret(entry["access_token"])
        self._local = entry
        return entry["access_token"]

    def _fetch(self) -> dict[str, Any]:
        oauth = BackendApplicationClient(client_id=self.client_id)
        body = oauth.prepare_request_body(include_client_id=False)
        started = time.perf_counter()
        try:
            response = self.session.post(
                self.token_url,
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                auth=HTTPBasicAuth(self.client_id, self._secret),
                timeout=self.timeout,
            )
        except requests.Timeout:
            self._observe(started, None)
            raise SpotifyConnectionError(
                "token request timed out", endpoint=TOKEN_ENDPOINT, timeout=True, host=host_of(self.token_url)
            ) from None
        except requests.ConnectionError as exc:
            self._observe(started, None)
            raise SpotifyConnectionError(
                f"token request failed ({type(exc).__name__})", endpoint=TOKEN_ENDPOINT, host=host_of(self.token_url)
            ) from None
        self._observe(started, response.status_code)
        self.fetch_count += 1
        if response.status_code >= 500:
            from spotify_pipeline.spotify.transport import error_from_response

            raise error_from_response(response, TOKEN_ENDPOINT)
        if response.status_code != 200:
            raise _auth_error(response)
        try:
            token = oauth.parse_request_body_response(response.text)
        except OAuth2Error as exc:
            raise SpotifyAuthError(exc.description or exc.error, status=response.status_code, error=exc.error) from None
        except ValueError:
            raise SpotifyAuthError("token response is not JSON", status=response.status_code) from None
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise SpotifyAuthError("token response has no access_token", status=response.status_code)
        REDACTION_FILTER.add_secret(access_token)
        expires_in = float(token.get("expires_in") or 3600)
        log.info("fetched a Spotify app access token (expires in %.0f s)", expires_in)
        return {
            "access_token": access_token,
            "token_type": token.get("token_type", "Bearer"),
            "expires_at": self.clock.time() + expires_in,
        }

    def _observe(self, started: float, status: int | None) -> None:
        if self.observer is not None:
            self.observer(TOKEN_ENDPOINT, time.perf_counter() - started, status)


def _auth_error(response: requests.Response) -> SpotifyAuthError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # Web API style error object
            return SpotifyAuthError(str(err.get("message", "")), status=response.status_code)
        if isinstance(err, str):
            return SpotifyAuthError(str(body.get("error_description") or err), status=response.status_code, error=err)
    return SpotifyAuthError((response.text or response.reason or "").strip()[:200], status=response.status_code)
