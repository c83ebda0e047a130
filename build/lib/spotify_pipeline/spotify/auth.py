"""Spotify's token endpoint through requests-oauthlib, and the app's own token (Client Credentials).

Every token request of the project (the app token here; a user's code exchange and refresh in `user_auth`)
is an `OAuth2Session.fetch_token` or `OAuth2Session.refresh_token` call made by `TokenEndpoint`.
requests-oauthlib builds the request body and reads the token or the OAuth error out of the answer;
`TokenEndpoint` adds what Spotify and this client need on top of it:

- client authentication as Spotify wants it: HTTP Basic when the app has a secret, the client id in the
  body for a public (PKCE-only) client;
- the request goes over the client's pooled session, with its timeouts, and is reported to the metrics
  observer as ``POST /api/token``;
- the answer becomes the client's typed errors: 5xx (and 429, unless told otherwise) raise the retryable
  HTTP errors of `transport`; a ``{"error", "error_description"}`` body, which oauthlib turns into an
  `OAuth2Error` subclass (`InvalidGrantError`, `InvalidClientError`, ...), raises `SpotifyAuthError` with
  Spotify's description, error code and the real HTTP status; timeouts and refused connections raise
  `SpotifyConnectionError`;
- the tokens are registered with the redaction filter.

`ClientCredentialsAuth` (RFC 6749 section 4.4, oauthlib's `BackendApplicationClient`) keeps the app token in
the `Cache` backend, so every process sharing it (Redis) uses one token instead of each fetching its own.
It is refreshed `refresh_margin_s` (60 s) before it expires; a lock in the same backend lets one refresher
at a time fetch, and the others re-read the cache after waiting for the lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import BackendApplicationClient, Client, MissingTokenError, OAuth2Error, is_secure_transport
from oauthlib.oauth2.rfc6749.utils import scope_to_list
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from spotify_pipeline.spotify.cache import KEY_VERSION, Cache
from spotify_pipeline.spotify.clock import Clock, SystemClock
from spotify_pipeline.spotify.errors import SpotifyAuthError, SpotifyConfigError, SpotifyConnectionError
from spotify_pipeline.spotify.logs import REDACTION_FILTER, get_logger, install_redaction
from spotify_pipeline.spotify.transport import build_session, error_from_response, host_of

log = get_logger(__name__)

TOKEN_ENDPOINT = "POST /api/token"
#: Reports each token request: (endpoint, latency in seconds, HTTP status or None when nothing answered).
TokenObserver = Callable[[str, float, int | None], None]
#: Spotify documents one hour; a response without ``expires_in`` is taken to mean that.
DEFAULT_EXPIRES_IN_S = 3600.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# requests-oauthlib logs token request bodies and token responses at DEBUG level on its own module logger.
# A logger's filter never sees the records of its children, so that very logger carries the redaction filter.
install_redaction(logging.getLogger(OAuth2Session.__module__))


def require_https_or_loopback(url: str, what: str = "token URL") -> str:
    """``url``, or `SpotifyConfigError` unless it uses https (plain http is allowed on the loopback interface
    only, where the offline emulator serves)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise SpotifyConfigError(f"{what} must use https (plain http is only allowed on the loopback interface): {url}")
    return url


def oauth_session(url: str, *, pool: requests.Session | None = None, **kwargs: Any) -> OAuth2Session:
    """A requests-oauthlib session for ``url`` (https, or http on the loopback interface).

    With ``pool``, the session sends like ``pool`` does: over its connection pools (and their retry settings),
    with its headers, proxies and TLS settings. Never close the returned session: it would close ``pool``'s
    adapters too.
    """
    require_https_or_loopback(url, "OAuth URL")
    if not is_secure_transport(url):
        # oauthlib refuses every non-https URL unless the process-wide OAUTHLIB_INSECURE_TRANSPORT is set; it
        # has no per-session switch. Only a loopback URL gets here (checked just above), so turning the switch
        # on lets the offline emulator work and never lets plain http cross a network.
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    oauth = OAuth2Session(**kwargs)
    if pool is not None:
        for prefix, adapter in pool.adapters.items():
            oauth.mount(prefix, adapter)
        oauth.headers.update(pool.headers)
        oauth.proxies, oauth.verify, oauth.cert, oauth.trust_env = pool.proxies, pool.verify, pool.cert, pool.trust_env
    return oauth


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response, as obtained at ``obtained_at`` (epoch seconds, taken before sending)."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: float
    refresh_token: str | None = field(repr=False)
    scope: tuple[str, ...]  # the granted scope as Spotify sent it (empty when it sent none)
    obtained_at: float


class TokenEndpoint:
    """Spotify's token endpoint for one app, spoken to through requests-oauthlib (see the module docstring).

    Each request runs on a fresh `OAuth2Session` (requests-oauthlib sessions hold per-request state), so one
    `TokenEndpoint` may serve several threads.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str | None,
        *,
        pool: requests.Session,
        timeout: tuple[float, float],
        clock: Clock | None = None,
        observer: TokenObserver | None = None,
        rate_limit_is_retryable: bool = True,
    ) -> None:
        self.token_url = require_https_or_loopback(token_url)
        self.client_id = client_id
        REDACTION_FILTER.add_secret(client_secret)
        self._basic_auth = HTTPBasicAuth(client_id, client_secret) if client_secret else None
        self.pool = pool
        self.timeout = timeout
        self.clock = clock or SystemClock()
        self.observer = observer
        self.rate_limit_is_retryable = rate_limit_is_retryable

    def fetch_token(
        self, client: Client | None = None, *, redirect_uri: str | None = None, **params: str
    ) -> TokenResponse:
        """A token for the grant of ``client`` (default: authorization code); ``params`` go into the body."""
        # A confidential client authenticates with HTTP Basic; a public one names itself in the body.
        credentials: dict[str, Any] = {"auth": self._basic_auth} if self._basic_auth else {"include_client_id": True}
        return self._request(
            lambda oauth: oauth.fetch_token(self.token_url, timeout=self.timeout, **credentials, **params),
            client=client,
            redirect_uri=redirect_uri,
        )

    def refresh_token(self, refresh_token: str) -> TokenResponse:
        """A ``grant_type=refresh_token`` request. requests-oauthlib puts ``refresh_token`` back into the answer
        when Spotify sends no new one."""
        credentials: dict[str, Any] = {"auth": self._basic_auth} if self._basic_auth else {"client_id": self.client_id}
        return self._request(
            lambda oauth: oauth.refresh_token(
                self.token_url, refresh_token=refresh_token, timeout=self.timeout, **credentials
            )
        )

    def _request(self, send: Callable[[OAuth2Session], Mapping[str, Any]], **session_kwargs: Any) -> TokenResponse:
        status: int | None = None

        def record_and_screen(response: requests.Response) -> requests.Response:
            nonlocal status
            status = response.status_code
            self._raise_before_parsing(response)
            return response

        oauth = oauth_session(self.token_url, pool=self.pool, client_id=self.client_id, **session_kwargs)
        # Compliance hooks run after the HTTP exchange and before oauthlib parses the body.
        oauth.register_compliance_hook("access_token_response", record_and_screen)
        oauth.register_compliance_hook("refresh_token_response", record_and_screen)
        obtained_at = self.clock.time()  # expiry counts from the request, never later than Spotify's own clock
        started = time.perf_counter()
        try:
            token = send(oauth)
        except requests.Timeout:
            raise SpotifyConnectionError(
                "token request timed out", endpoint=TOKEN_ENDPOINT, timeout=True, host=host_of(self.token_url)
            ) from None
        except requests.ConnectionError as exc:
            raise SpotifyConnectionError(
                f"token request failed ({type(exc).__name__})", endpoint=TOKEN_ENDPOINT, host=host_of(self.token_url)
            ) from None
        except MissingTokenError:
            raise SpotifyAuthError("token response has no access_token", status=status) from None
        except OAuth2Error as exc:
            raise SpotifyAuthError(exc.description or str(exc.error), status=status, error=exc.error) from None
        except ValueError as exc:  # oauthlib: an expires_in that is not a number
            if status is None:  # not about an answer (e.g. requests refusing the URL): let it show as it is
                raise
            raise SpotifyAuthError(f"token response is not usable ({exc})", status=status) from None
        finally:
            if self.observer is not None:
                self.observer(TOKEN_ENDPOINT, time.perf_counter() - started, status)
        return self._response(token, status, obtained_at)

    def _raise_before_parsing(self, response: requests.Response) -> None:
        """Raise for the answers oauthlib must not parse: the retryable ones, and bodies it cannot read."""
        status = response.status_code
        if status >= 500 or (status == 429 and self.rate_limit_is_retryable):
            raise error_from_response(response, TOKEN_ENDPOINT)  # retryable: nothing about the tokens changes
        try:
            body = response.json()
        except ValueError:
            body = None
        if status == 200:
            # Spotify always answers JSON; oauthlib would also accept a form-encoded body.
            if not isinstance(body, dict):
                raise SpotifyAuthError("token response is not JSON", status=status)
            return
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return  # an OAuth error: oauthlib raises the matching OAuth2Error subclass
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):  # the Web API's error shape ({"error": {"status", "message"}})
            raise SpotifyAuthError(str(error.get("message", "")), status=status)
        raise SpotifyAuthError((response.text or response.reason or "").strip()[:200], status=status)

    @staticmethod
    def _response(token: Mapping[str, Any], status: int | None, obtained_at: float) -> TokenResponse:
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise SpotifyAuthError("token response has no access_token", status=status)
        REDACTION_FILTER.add_secret(access_token)
        refresh_token = token.get("refresh_token")
        if isinstance(refresh_token, str) and refresh_token:
            REDACTION_FILTER.add_secret(refresh_token)
        else:
            refresh_token = None
        return TokenResponse(
            access_token=access_token,
            token_type=str(token.get("token_type") or "Bearer"),
            expires_in=float(token.get("expires_in") or DEFAULT_EXPIRES_IN_S),
            refresh_token=refresh_token,
            scope=tuple(scope_to_list(token.get("scope")) or ()),
            obtained_at=obtained_at,
        )


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
        observer: TokenObserver | None = None,
    ) -> None:
        if not client_id or not client_secret:
            raise SpotifyConfigError("Spotify credentials missing: set SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET")
        self.client_id = client_id
        self.token_url = token_url
        self.cache = cache
        self.key = f"{KEY_VERSION}:token:{app_key}"
        self.session = session or build_session()
        self.clock = clock or SystemClock()
        self.refresh_margin_s = refresh_margin_s
        self.lock_timeout_s = lock_timeout_s
        self.endpoint = TokenEndpoint(
            token_url,
            client_id,
            client_secret,
            pool=self.session,
            timeout=timeout,
            clock=self.clock,
            observer=observer,
            # A 429 on the app token has always failed the run as an auth error instead of being retried.
            rate_limit_is_retryable=False,
        )
        self._local: dict[str, Any] | None = None  # this process's copy: no cache round trip per request
        self._mutex = threading.Lock()
        self.fetch_count = 0  # token requests sent (tests and metrics)

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
        self.fetch_count += 1
        token = self.endpoint.fetch_token(BackendApplicationClient(client_id=self.client_id))
        log.info("fetched a Spotify app access token (expires in %.0f s)", token.expires_in)
        return {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_at": token.obtained_at + token.expires_in,
        }
