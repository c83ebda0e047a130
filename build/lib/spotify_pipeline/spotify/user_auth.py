"""User authorization: Authorization Code with PKCE (RFC 7636, S256), and refreshing the user's tokens.

The OAuth requests are requests-oauthlib's: `OAuth2Session.authorization_url` with ``pkce="S256"`` builds the
authorize URL (state, verifier and challenge), and the token requests go through
`spotify_pipeline.spotify.auth.TokenEndpoint` (`OAuth2Session.fetch_token` for the code exchange,
`OAuth2Session.refresh_token` for refreshes). What stays here is what requests-oauthlib has no part in: the
loopback listener, reading the redirect, the token store and its cross-process refresh lock.

A user connects their Spotify account once (`login`); from then on `UserTokenSource` hands valid access
tokens to the transport, refreshing them through the stored refresh token. This module is plain Python: it
knows no warehouse. Tokens live behind the `TokenStore` protocol below; the warehouse's encrypted store
(`spotify_pipeline.warehouse.tokens.SqlTokenStore`) matches it by shape, and the two exchange plain
dataclasses whose attributes are those of `TokenRecord`.

Login, step by step::

    request = build_authorization_request(app, redirect_uri, scopes)   # state + PKCE verifier/challenge
                                                                       # (the verifier is kept in `request`)
    with CallbackListener(request.state, port=8888) as listener:      # one-shot http://127.0.0.1:8888/callback
        open_url(request.url)                                          # the user consents in a browser
        code = listener.wait(timeout_s=300)                            # state checked, access_denied raised
    tokens = exchange_code(app, request, code)                         # code + code_verifier -> tokens
    store.save(...)                                                    # only now is anything stored

`login()` runs exactly that (or, with ``read_redirect``, takes the redirect URL the user pastes, for
machines without a browser). Every failure raises before `store.save`, so nothing is ever half-stored.

Refresh rules (`UserTokenSource`):
- one refresher at a time across processes: the store's `refreshing(account)` holds a lock (an advisory lock
  on PostgreSQL, a file or Redis lock locally), never a database transaction, across the call to Spotify;
  whoever waited finds the new token and uses it;
- the refresh token Spotify sends back (rotation) is saved before the lock is released; when Spotify sends
  none, the old one is kept; a logout or a new login made meanwhile wins over the refresh;
- ``invalid_grant`` marks the account ``needs_reauth`` and raises `ReauthorizationRequired`, which names the
  command to run; 5xx, 429, timeouts and connection errors raise the client's usual (retryable) errors and
  leave the stored tokens exactly as they were.
"""

from __future__ import annotations

import errno
import hmac
import html
import http.server
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

import requests
from oauthlib.oauth2 import WebApplicationClient

from spotify_pipeline.spotify.auth import (
    TokenEndpoint,
    TokenObserver,
    TokenResponse,
    oauth_session,
    require_https_or_loopback,
)
from spotify_pipeline.spotify.clock import Clock, SystemClock
from spotify_pipeline.spotify.errors import SpotifyAuthError, SpotifyConfigError, SpotifyError, SpotifyResponseError
from spotify_pipeline.spotify.logs import REDACTION_FILTER, get_logger
from spotify_pipeline.spotify.transport import Transport, build_session

if TYPE_CHECKING:  # pragma: no cover
    from spotify_pipeline.spotify.config import SpotifyClientConfig

log = get_logger(__name__)

DEFAULT_SCOPES: tuple[str, ...] = ("user-library-read", "user-read-recently-played")
DEFAULT_ACCOUNT = "default"
DEFAULT_PORT = 8888
CALLBACK_PATH = "/callback"
LOOPBACK_HOST = "127.0.0.1"  # Spotify no longer accepts `localhost` redirect URIs
DEFAULT_CALLBACK_TIMEOUT_S = 300.0
#: Spotify's refresh tokens die six months after consent (rotation does not extend them); 182 days is
#: the conservative reading of "six months".
REFRESH_TOKEN_LIFETIME = timedelta(days=182)
#: `assess_refresh_token` warns this long before the refresh token dies.
REFRESH_WARNING = timedelta(days=14)
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_SCOPE = re.compile(r"^[a-z0-9-]+$")


def login_command(account: str) -> str:
    """The command that connects ``account`` again (used in every error that needs it)."""
    return f"spotify-pipeline auth login --account {account}"


# -- errors -----------------------------------------------------------------------------------------------


class UserAuthError(SpotifyError):
    """Connecting or using a user's Spotify account failed."""


class AuthorizationDenied(UserAuthError):
    """The user declined consent (``access_denied``) or Spotify refused the authorization request."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


class StateMismatch(UserAuthError):
    """The callback's ``state`` is not the one this login sent (a stale tab, or a forged request)."""


class InvalidRedirect(UserAuthError):
    """The callback (or the pasted URL) carries neither a code nor an error."""


class CallbackPortInUse(UserAuthError):
    """The loopback port of the redirect URI is taken by another program."""

    def __init__(self, message: str, *, port: int) -> None:
        super().__init__(message)
        self.port = port


class CallbackTimeout(UserAuthError):
    """No callback arrived in time."""


class ClientCredentialsRejected(UserAuthError):
    """The token endpoint refused the app's client id or secret (``invalid_client``)."""


class TokenExchangeFailed(UserAuthError):
    """The token endpoint refused the authorization code (expired, reused, wrong PKCE verifier, ...)."""

    def __init__(self, message: str, *, error: str | None) -> None:
        super().__init__(message)
        self.error = error


class AccountNotConnected(UserAuthError):
    """No tokens are stored for this account."""

    def __init__(self, account: str) -> None:
        super().__init__(f"no Spotify account {account!r} is connected: run `{login_command(account)}`")
        self.account = account


class ReauthorizationRequired(UserAuthError):
    """Spotify no longer accepts the account's refresh token: the user must log in again."""

    def __init__(self, account: str, reason: str) -> None:
        self.command = login_command(account)
        super().__init__(f"Spotify account {account!r} must be connected again ({reason}): run `{self.command}`")
        self.account = account
        self.reason = reason


# -- what crosses the boundary to the token store ----------------------------------------------------------


class TokenRecord(Protocol):
    """The shape of one account's tokens, whichever side built it (all datetimes timezone-aware UTC)."""

    @property
    def account(self) -> str: ...
    @property
    def access_token(self) -> str: ...
    @property
    def refresh_token(self) -> str: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def access_token_expires_at(self) -> datetime: ...
    @property
    def consented_at(self) -> datetime: ...
    @property
    def refresh_token_expires_at(self) -> datetime: ...
    @property
    def spotify_user_id(self) -> str | None: ...
    @property
    def needs_reauth(self) -> bool: ...


class RefreshTransaction(Protocol):
    """An account, locked against other refreshers until the `refreshing` block ends.

    The lock is not a database transaction: each write is stored when it is made (the old refresh token is
    spent at Spotify by then), unless a logout or a new login happened meanwhile, which win.
    """

    @property
    def current(self) -> TokenRecord | None:
        """The stored tokens as of taking the lock (None: the account is not connected)."""
        ...

    def save(self, tokens: TokenRecord) -> None:
        """Replace the account's tokens (unless a logout or a new login happened since `current`)."""
        ...

    def mark_needs_reauth(self) -> None:
        """Flag the account as needing a new login (tokens are kept)."""
        ...


@runtime_checkable
class TokenStore(Protocol):
    """Where user tokens live (implemented by `spotify_pipeline.warehouse.tokens.SqlTokenStore`)."""

    def load(self, account: str) -> TokenRecord | None:
        """The account's tokens, or None when it is not connected."""
        ...

    def save(self, tokens: TokenRecord) -> None:
        """Insert or replace the account's tokens (a login), clearing ``needs_reauth``."""
        ...

    def delete(self, account: str) -> bool:
        """Remove the account; False when it was not connected."""
        ...

    def mark_needs_reauth(self, account: str) -> bool:
        """Flag the account as needing a new login; False when it is not connected."""
        ...

    def refreshing(self, account: str) -> AbstractContextManager[RefreshTransaction]:
        """Lock the account against other refreshers (every process) for the duration of the block."""
        ...


@dataclass(frozen=True)
class UserTokens:
    """One account's tokens (the tokens are left out of ``repr``)."""

    account: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...]
    access_token_expires_at: datetime
    consented_at: datetime
    refresh_token_expires_at: datetime
    spotify_user_id: str | None = None
    needs_reauth: bool = False

    @classmethod
    def from_record(cls, record: TokenRecord) -> UserTokens:
        if isinstance(record, UserTokens):
            return record
        return cls(
            account=record.account,
            access_token=record.access_token,
            refresh_token=record.refresh_token,
            scopes=tuple(record.scopes),
            access_token_expires_at=record.access_token_expires_at,
            consented_at=record.consented_at,
            refresh_token_expires_at=record.refresh_token_expires_at,
            spotify_user_id=record.spotify_user_id,
            needs_reauth=bool(record.needs_reauth),
        )


# -- app configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthApp:
    """The Spotify app a user authorizes. Without a secret the app is a public PKCE client."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    accounts_base_url: str = "https://accounts.spotify.com"
    api_base_url: str = "https://api.spotify.com/v1"
    timeout: tuple[float, float] = (5.0, 15.0)

    def __post_init__(self) -> None:
        if not self.client_id:
            raise SpotifyConfigError("Spotify client id missing: set SPOTIFY_CLIENT_ID")
        require_https_or_loopback(self.accounts_base_url, "Spotify accounts URL")
        REDACTION_FILTER.add_secret(self.client_secret)

    @classmethod
    def from_config(cls, config: SpotifyClientConfig) -> OAuthApp:
        if not config.client_id:
            raise SpotifyConfigError("Spotify client id missing: set SPOTIFY_CLIENT_ID")
        return cls(
            client_id=config.client_id,
            client_secret=config.client_secret,
            accounts_base_url=config.accounts_base_url,
            api_base_url=config.api_base_url,
            timeout=config.timeout,
        )

    @property
    def authorize_url(self) -> str:
        return self.accounts_base_url.rstrip("/") + "/authorize"

    @property
    def token_url(self) -> str:
        return self.accounts_base_url.rstrip("/") + "/api/token"

    def token_endpoint(
        self, pool: requests.Session, *, clock: Clock | None = None, observer: TokenObserver | None = None
    ) -> TokenEndpoint:
        """This app's token endpoint, sending over ``pool``."""
        return TokenEndpoint(
            self.token_url, self.client_id, self.client_secret, pool=pool, timeout=self.timeout, clock=clock,
            observer=observer,
        )


def validate_account(account: str) -> str:
    """The account name, or ValueError: letters, digits and ``_ . @ -``, at most 64 characters."""
    if not isinstance(account, str) or not ACCOUNT_NAME.match(account):
        raise ValueError(
            f"invalid account name {account!r}: use letters, digits and _ . @ - (at most 64 characters)"
        )
    return account


def normalize_scopes(scopes: str | Iterable[str] | None) -> tuple[str, ...]:
    """Scopes from a space/comma separated string or a list: de-duplicated, sorted, validated."""
    if scopes is None:
        return DEFAULT_SCOPES
    parts = re.split(r"[\s,]+", scopes) if isinstance(scopes, str) else [p for s in scopes for p in re.split(r"[\s,]+", s)]
    found = sorted({p for p in parts if p})
    bad = [s for s in found if not _SCOPE.match(s)]
    if bad:
        raise ValueError(f"invalid scope(s): {', '.join(bad)}")
    if not found:
        raise ValueError("at least one scope is required")
    return tuple(found)


# -- the authorize URL (PKCE) ------------------------------------------------------------------------------


def loopback_redirect_uri(port: int) -> str:
    return f"http://{LOOPBACK_HOST}:{port}{CALLBACK_PATH}"


@dataclass(frozen=True)
class AuthorizationRequest:
    """One login attempt: the URL to open and what must come back (state) or go out later (verifier)."""

    url: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)


def build_authorization_request(
    app: OAuthApp, redirect_uri: str, scopes: str | Iterable[str] | None = None
) -> AuthorizationRequest:
    """A fresh state and PKCE verifier, and the authorize URL carrying the S256 challenge."""
    wanted = normalize_scopes(scopes)
    client = WebApplicationClient(app.client_id)
    oauth = oauth_session(app.authorize_url, client=client, redirect_uri=redirect_uri, scope=list(wanted), pkce="S256")
    # Our own state (192 random bits, 32 characters) rather than requests-oauthlib's 30-character default.
    url, state = oauth.authorization_url(app.authorize_url, state=secrets.token_urlsafe(24))
    # requests-oauthlib leaves the verifier it made on the oauthlib client. The exchange comes after the browser
    # round trip, on a session of its own, so the verifier travels in the request from here.
    verifier: str = client.code_verifier
    REDACTION_FILTER.add_secret(verifier)
    return AuthorizationRequest(url=url, redirect_uri=redirect_uri, scopes=wanted, state=state, code_verifier=verifier)


def parse_redirect(redirect: str, expected_state: str) -> str:
    """The authorization code from the URL Spotify redirected to (or just its query string).

    Hand-written rather than oauthlib's `parse_authorization_code_response`, which wants the whole URL, takes
    an http (loopback) one only with oauthlib's insecure-transport switch on, and compares the state in
    variable time; this one also takes what a user pastes (quotes, blanks, a bare query string).
    Raises `StateMismatch` when ``state`` is not ours (checked first: an unmatched callback is never
    trusted, not even its error), `AuthorizationDenied` for ``error=...`` and `InvalidRedirect` otherwise.
    """
    text = (redirect or "").strip().strip("'\"<>")
    query = urlsplit(text).query if "?" in text else text
    params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if not params or not ({"code", "error", "state"} & params.keys()):
        raise InvalidRedirect(
            "that is not the URL Spotify redirected to: paste the whole address the browser was sent to "
            f"(it starts with http://{LOOPBACK_HOST}:PORT{CALLBACK_PATH}?)"
        )
    state = params.get("state", "")
    if not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise StateMismatch(
            "the callback's state does not match this login (a stale browser tab or a forged request): "
            "nothing was stored; run the login again"
        )
    error = params.get("error")
    if error:
        if error == "access_denied":
            raise AuthorizationDenied(
                "consent denied: the Spotify user did not authorize the app; nothing was stored", error=error
            )
        detail = params.get("error_description")
        raise AuthorizationDenied(
            f"Spotify refused the authorization request ({error}{': ' + detail if detail else ''}); nothing was stored",
            error=error,
        )
    code = params.get("code")
    if not code:
        raise InvalidRedirect("the callback carries no authorization code")
    REDACTION_FILTER.add_secret(code)
    return code


# -- the one-shot loopback listener -------------------------------------------------------------------------

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>spotify-pipeline</title></head>"
    "<body style='font-family:sans-serif;margin:3em'><h2>{title}</h2><p>{body}</p></body></html>"
)


class _CallbackServer(http.server.HTTPServer):
    listener: CallbackListener


class _CallbackHandler(http.server.BaseHTTPRequestHandler):
    server: _CallbackServer
    server_version = "spotify-pipeline-login"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self._send(404, "Not found", "This address only answers the Spotify login callback.")
            return
        ok = self.server.listener._receive(parts.query)
        if ok is None:
            self._send(410, "Already handled", "This login already received its callback; return to the terminal.")
        elif ok:
            self._send(200, "Spotify authorization received", "You can close this tab and return to the terminal.")
        else:
            error = self.server.listener._error
            self._send(400, "Spotify login failed", html.escape(str(error)))

    def _send(self, status: int, title: str, body: str) -> None:
        payload = _PAGE.format(title=html.escape(title), body=body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # the request line carries the code: never log it
        pass


class CallbackListener:
    """A one-shot HTTP listener on ``http://127.0.0.1:PORT/callback`` (a thread of this process).

    The port is bound on construction, so a taken port fails before any URL is shown. The first callback
    decides: a code with our state ends the wait, anything else (denied, wrong state) fails it.
    """

    def __init__(
        self, expected_state: str | None = None, port: int = DEFAULT_PORT, *, host: str = LOOPBACK_HOST
    ) -> None:
        self.expected_state = expected_state
        try:
            self._server = _CallbackServer((host, port), _CallbackHandler)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise CallbackPortInUse(
                    f"cannot listen on {host}:{port} for the login callback "
                    f"({'port in use' if exc.errno == errno.EADDRINUSE else 'permission denied'}): "
                    "stop the program using it, or pass --port N with another port "
                    f"(then register http://{host}:N{CALLBACK_PATH} as a redirect URI of the Spotify app)",
                    port=port,
                ) from None
            raise
        self._server.listener = self
        self.port = int(self._server.server_address[1])
        self.redirect_uri = f"http://{host}:{self.port}{CALLBACK_PATH}"
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._code: str | None = None
        self._error: UserAuthError | None = None
        self._thread: threading.Thread | None = None

    def _receive(self, query: str) -> bool | None:
        """Record the callback; True for a code, False for a failure, None when one was already recorded."""
        with self._lock:
            if self._done.is_set():
                return None
            try:
                if self.expected_state is None:
                    raise StateMismatch("a callback arrived before this login sent its authorization request")
                self._code = parse_redirect(query, self.expected_state)
            except UserAuthError as exc:
                self._error = exc
            self._done.set()
            return self._error is None

    def start(self) -> CallbackListener:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="spotify-login-callback",
                daemon=True,
            )
            self._thread.start()
        return self

    def wait(self, timeout_s: float = DEFAULT_CALLBACK_TIMEOUT_S) -> str:
        """The authorization code; raises the callback's error, or `CallbackTimeout`."""
        if not self._done.wait(timeout_s):
            raise CallbackTimeout(
                f"no callback on {self.redirect_uri} within {timeout_s:g} s: nothing was stored. Finish the consent "
                "page in the browser, or use --no-browser and paste the redirect URL; if Spotify showed "
                f"INVALID_CLIENT, check SPOTIFY_CLIENT_ID and that {self.redirect_uri} is a redirect URI of the app"
            )
        if self._error is not None:
            raise self._error
        assert self._code is not None
        return self._code

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> CallbackListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the token endpoint ------------------------------------------------------------------------------------


def exchange_code(
    app: OAuthApp,
    request: AuthorizationRequest,
    code: str,
    *,
    session: requests.Session | None = None,
    clock: Clock | None = None,
) -> TokenResponse:
    """Trade the authorization code and the PKCE verifier for tokens (`OAuth2Session.fetch_token`).

    Raises `ClientCredentialsRejected` (wrong client id/secret), `TokenExchangeFailed` (code refused) or the
    client's HTTP/connection errors.
    """
    own_session = session is None
    session = session or build_session(2)
    endpoint = app.token_endpoint(session, clock=clock)
    try:
        tokens = endpoint.fetch_token(code=code, code_verifier=request.code_verifier, redirect_uri=request.redirect_uri)
    except SpotifyAuthError as exc:
        if exc.error == "invalid_client" or exc.status == 401:
            raise ClientCredentialsRejected(
                f"Spotify rejected the app's client credentials ({exc.message}): check SPOTIFY_CLIENT_ID and "
                "SPOTIFY_CLIENT_SECRET; nothing was stored"
            ) from None
        raise TokenExchangeFailed(
            f"Spotify refused the authorization code ({exc.error or exc.status}: {exc.message}); nothing was stored",
            error=exc.error,
        ) from None
    finally:
        if own_session:
            session.close()
    if tokens.refresh_token is None:
        raise TokenExchangeFailed("Spotify returned no refresh token; nothing was stored", error=None)
    return tokens


def _granted_scopes(response: TokenResponse) -> tuple[str, ...] | None:
    """The scopes Spotify says it granted, normalized; None when it named none this client can read."""
    try:
        return normalize_scopes(response.scope) if response.scope else None
    except ValueError:  # the code or refresh token is spent by now: keep the known scopes rather than fail
        return None


def fetch_profile(app: OAuthApp, access_token: str, *, session: requests.Session | None = None) -> dict[str, Any]:
    """``GET /me`` with a fresh access token (login uses it to learn the Spotify user id)."""
    transport = Transport(app.api_base_url, _FixedToken(access_token), session=session or build_session(2), timeout=app.timeout)
    try:
        body = transport.get("me", endpoint="GET /me")
    finally:
        if session is None:
            transport.close()
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise SpotifyResponseError("expected a user object with an id", endpoint="GET /me", field="id")
    return body


class _FixedToken:
    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def refresh(self, rejected: str | None = None) -> str:
        raise SpotifyAuthError("Spotify rejected the access token it has just issued", status=401)


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC).replace(microsecond=0)


# -- login ---------------------------------------------------------------------------------------------------


def login(
    app: OAuthApp,
    store: TokenStore,
    *,
    account: str = DEFAULT_ACCOUNT,
    scopes: str | Iterable[str] | None = None,
    port: int = DEFAULT_PORT,
    open_url: Callable[[str], Any] | None = None,
    read_redirect: Callable[[str], str] | None = None,
    timeout_s: float = DEFAULT_CALLBACK_TIMEOUT_S,
    session: requests.Session | None = None,
    clock: Clock | None = None,
) -> UserTokens:
    """Connect ``account``: consent in a browser, exchange the code, learn the user id, store the tokens.

    Loopback mode (default): a one-shot listener on ``http://127.0.0.1:{port}/callback`` is started, then
    ``open_url(url)`` is called (open a browser and/or print the URL). No-browser mode (``read_redirect``
    given): ``read_redirect(url)`` shows the URL and returns the redirect URL the user pastes back.
    Nothing is stored unless every step succeeds; an existing login of the account is replaced only then.
    """
    validate_account(account)
    clock = clock or SystemClock()
    if read_redirect is not None:
        request = build_authorization_request(app, loopback_redirect_uri(port), scopes)
        code = parse_redirect(read_redirect(request.url), request.state)
    else:
        normalize_scopes(scopes)  # a bad scope fails before anything listens
        # The listener binds first: a taken port fails before the user is sent anywhere. (Port 0 lets the OS
        # choose; the redirect URI names the port actually bound.)
        with CallbackListener(port=port) as listener:
            request = build_authorization_request(app, listener.redirect_uri, scopes)
            listener.expected_state = request.state
            if open_url is not None:
                open_url(request.url)
            code = listener.wait(timeout_s)
    own_session = session is None
    session = session or build_session(2)
    try:
        response = exchange_code(app, request, code, session=session, clock=clock)
        profile = fetch_profile(app, response.access_token, session=session)
    finally:
        if own_session:
            session.close()
    assert response.refresh_token is not None
    consented = _utc(response.obtained_at)
    tokens = UserTokens(
        account=account,
        access_token=response.access_token,
        refresh_token=response.refresh_token,
        scopes=_granted_scopes(response) or request.scopes,
        access_token_expires_at=_utc(response.obtained_at + response.expires_in),
        consented_at=consented,
        refresh_token_expires_at=consented + REFRESH_TOKEN_LIFETIME,
        spotify_user_id=str(profile["id"]),
    )
    store.save(tokens)
    log.info(
        "connected Spotify account %r (user %s, scopes %s)", account, tokens.spotify_user_id, " ".join(tokens.scopes)
    )
    return tokens


# -- refreshing ------------------------------------------------------------------------------------------------


class UserTokenSource:
    """Access tokens of one connected account for the transport (`token()`, `refresh(rejected)`).

    The access token is remembered in this process until ``refresh_margin_s`` before it expires; then the
    stored row is read again (another process may have refreshed it) and, if it is stale there too,
    refreshed under the store's lock.
    """

    def __init__(
        self,
        store: TokenStore,
        account: str,
        app: OAuthApp,
        *,
        session: requests.Session | None = None,
        clock: Clock | None = None,
        refresh_margin_s: float = 60.0,
        observer: TokenObserver | None = None,
    ) -> None:
        self.store = store
        self.account = validate_account(account)
        self.app = app
        self.session = session or build_session(2)
        self.clock = clock or SystemClock()
        self.refresh_margin_s = refresh_margin_s
        self.endpoint = app.token_endpoint(self.session, clock=self.clock, observer=observer)
        self._local: TokenRecord | None = None
        self._mutex = threading.Lock()
        self.refresh_count = 0  # token requests this source sent (tests and metrics)

    def token(self) -> str:
        local = self._local
        if local is not None and self._fresh(local):
            return local.access_token
        return self._obtain(rejected=None)

    def refresh(self, rejected: str | None = None) -> str:
        return self._obtain(rejected=rejected)

    def _fresh(self, record: TokenRecord, rejected: str | None = None) -> bool:
        return (
            record.access_token != rejected
            and record.access_token_expires_at.timestamp() - self.refresh_margin_s > self.clock.time()
        )

    def _adopt(self, record: TokenRecord) -> str:
        REDACTION_FILTER.add_secret(record.access_token)
        REDACTION_FILTER.add_secret(record.refresh_token)
        self._local = record
        return record.access_token

    def _obtain(self, rejected: str | None) -> str:
        with self._mutex:  # threads of this process queue here; processes queue on the store's lock
            if self._local is not None and self._fresh(self._local, rejected):
                return self._local.access_token
            stored = self.store.load(self.account)
            if stored is None:
                raise AccountNotConnected(self.account)
            if self._fresh(stored, rejected):
                return self._adopt(stored)
            if stored.needs_reauth:
                raise ReauthorizationRequired(self.account, "its last refresh was refused")
            refused: ReauthorizationRequired | None = None
            new: UserTokens | None = None
            with self.store.refreshing(self.account) as txn:
                current = txn.current
                if current is None:
                    raise AccountNotConnected(self.account)
                if self._fresh(current, rejected):  # another process refreshed while we waited for the lock
                    return self._adopt(current)
                if current.needs_reauth:
                    raise ReauthorizationRequired(self.account, "its last refresh was refused")
                REDACTION_FILTER.add_secret(current.refresh_token)
                try:
                    self.refresh_count += 1
                    response = self.endpoint.refresh_token(current.refresh_token)
                except SpotifyAuthError as exc:
                    if exc.error == "invalid_client":
                        raise ClientCredentialsRejected(
                            f"Spotify rejected the app's client credentials while refreshing account "
                            f"{self.account!r} ({exc.message}): check SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET; "
                            "the stored tokens were kept"
                        ) from None
                    if exc.error != "invalid_grant":
                        raise
                    txn.mark_needs_reauth()
                    refused = ReauthorizationRequired(
                        self.account, f"Spotify refused its refresh token: {exc.message}"
                    )
                else:
                    new = UserTokens(
                        account=current.account,
                        access_token=response.access_token,
                        # Spotify may or may not rotate the refresh token; without a new one, keep the old
                        # (requests-oauthlib already puts the old one back; an empty one is ignored here).
                        refresh_token=response.refresh_token or current.refresh_token,
                        scopes=_granted_scopes(response) or tuple(current.scopes),
                        access_token_expires_at=_utc(response.obtained_at + response.expires_in),
                        consented_at=current.consented_at,
                        refresh_token_expires_at=current.refresh_token_expires_at,
                        spotify_user_id=current.spotify_user_id,
                    )
                    txn.save(new)  # while still holding the lock under which the old refresh token was spent
            if refused is not None:
                log.warning("%s", refused)
                raise refused
            assert new is not None
            log.info(
                "refreshed the access token of Spotify account %r (refresh token %s)",
                self.account,
                "rotated" if new.refresh_token != current.refresh_token else "kept",
            )
            # A new `auth login` during the refresh wins over it in the store; act with what is stored.
            stored = self.store.load(self.account)
            if stored is not None and stored.access_token != new.access_token:
                return self._adopt(stored)
            return self._adopt(new)


# -- refresh-token health (for status output and asset checks) ------------------------------------------------


@dataclass(frozen=True)
class TokenHealth:
    level: Literal["ok", "warn", "error"]
    message: str


class _HealthRecord(Protocol):
    @property
    def account(self) -> str: ...
    @property
    def refresh_token_expires_at(self) -> datetime: ...
    @property
    def needs_reauth(self) -> bool: ...


def assess_refresh_token(
    record: _HealthRecord, *, now: datetime | None = None, warn_within: timedelta = REFRESH_WARNING
) -> TokenHealth:
    """ERROR when the account needs a new login or its refresh token has expired, WARN within
    ``warn_within`` of expiry, OK otherwise; the message names the account and, when needed, the command."""
    now = now or datetime.now(UTC)
    command = login_command(record.account)
    if record.needs_reauth:
        return TokenHealth("error", f"account {record.account!r}: Spotify refused its refresh token: run `{command}`")
    left = record.refresh_token_expires_at - now
    if left <= timedelta(0):
        return TokenHealth(
            "error",
            f"account {record.account!r}: refresh token expired on {record.refresh_token_expires_at:%Y-%m-%d}: "
            f"run `{command}`",
        )
    if left <= warn_within:
        return TokenHealth(
            "warn",
            f"account {record.account!r}: refresh token expires on {record.refresh_token_expires_at:%Y-%m-%d} "
            f"({left.days} days left): run `{command}` before then",
        )
    return TokenHealth("ok", f"account {record.account!r}: refresh token valid until {record.refresh_token_expires_at:%Y-%m-%d}")

