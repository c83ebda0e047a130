"""The accounts service: `GET /authorize` and `POST /api/token` (OAuth 2.0 as Spotify runs it).

* `client_credentials` with HTTP Basic client authentication (or client_id/client_secret in the body);
* `authorization_code`, checking the redirect_uri and, when the code was issued with a PKCE
  code_challenge (S256 only), the code_verifier; public PKCE clients need no secret;
* `refresh_token`, which sometimes returns a new refresh token (then the old one stops working) and
  sometimes not, as Spotify does; refresh tokens die `refresh_token_ttl_days` after consent.

Token strings are derived from the seed and a counter, so a replayed test gets identical bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from spotify_pipeline.emulator.errors import ApiError, OAuthError, dumps, json_response

if TYPE_CHECKING:
    from spotify_pipeline.emulator.app import Emulator

SCOPES = frozenset(
    {
        "ugc-image-upload", "user-read-playback-state", "user-modify-playback-state",
        "user-read-currently-playing", "app-remote-control", "streaming", "playlist-read-private",
        "playlist-read-collaborative", "playlist-modify-private", "playlist-modify-public", "user-follow-modify",
        "user-follow-read", "user-read-playback-position", "user-top-read", "user-read-recently-played",
        "user-library-modify", "user-library-read", "user-read-email", "user-read-private",
        "user-personalized", "user-soa-link", "user-soa-unlink", "soa-manage-entitlements",
        "soa-manage-partner", "soa-create-partner",
    }
)
AUTHORIZATION_CODE_TTL_S = 600
_DAY_S = 86_400
_CODE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


@dataclass
class AccessToken:
    value: str
    client_id: str
    scopes: frozenset[str]
    user_id: str | None  # None for client-credentials tokens
    expires_at: float


@dataclass
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    code_challenge: str | None
    user_id: str
    consented_at: float
    expires_at: float


@dataclass
class RefreshGrant:
    client_id: str
    scopes: frozenset[str]
    user_id: str
    consented_at: float
    uses: int = 0


class Accounts:
    """Issued tokens and codes, and the two accounts endpoints."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.access_tokens: dict[str, AccessToken] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.refresh_grants: dict[str, RefreshGrant] = {}
        self._issued = 0

    # -- token strings ------------------------------------------------------------------------------------

    def _new_secret(self, kind: str, length: int) -> str:
        self._issued += 1
        digest = hashlib.shake_256(f"{self.emulator.config.seed}:{kind}:{self._issued}".encode()).digest(length)
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:length]

    def _issue_access_token(self, client_id: str, scopes: frozenset[str], user_id: str | None) -> AccessToken:
        config = self.emulator.config
        token = AccessToken(
            value="BQ" + self._new_secret("access", 110),
            client_id=client_id,
            scopes=scopes,
            user_id=user_id,
            expires_at=self.emulator.clock.now() + config.access_token_ttl_s,
        )
        self.access_tokens[token.value] = token
        return token

    def _issue_refresh_token(self, grant: RefreshGrant) -> str:
        value = "AQ" + self._new_secret("refresh", 130)
        self.refresh_grants[value] = grant
        return value

    def expire_all_access_tokens(self) -> int:
        """Forced expiry: every issued access token is expired from now on."""
        now = self.emulator.clock.now()
        for token in self.access_tokens.values():
            token.expires_at = min(token.expires_at, now)
        return len(self.access_tokens)

    # -- Web API side -----------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> AccessToken:
        """The token behind an `Authorization: Bearer ...` header, or the 401 Spotify would send."""
        if not authorization:
            raise ApiError(401, "No token provided", headers=_www_authenticate("invalid_request", "No token provided"))
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise ApiError(400, "Only valid bearer authentication supported")
        token = self.access_tokens.get(value.strip())
        if token is None:
            raise ApiError(401, "Invalid access token", headers=_www_authenticate("invalid_token", "Invalid access token"))
        if self.emulator.clock.now() >= token.expires_at:
            raise ApiError(
                401, "The access token expired", headers=_www_authenticate("invalid_token", "The access token expired")
            )
        return token

    # -- /authorize -------------------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        params = request.query_params
        config = self.emulator.config
        client_id = params.get("client_id", "")
        if client_id not in config.clients:
            return PlainTextResponse("INVALID_CLIENT: Invalid client", status_code=400)
        redirect_uri = params.get("redirect_uri", "")
        if not _is_loopback_redirect(redirect_uri):
            # Spotify shows an error page rather than redirecting to an unverified URI.
            return PlainTextResponse("INVALID_CLIENT: Invalid redirect URI", status_code=400)
        state = params.get("state")

        def back(**query: str) -> Response:
            if state is not None:
                query["state"] = state
            separator = "&" if urlsplit(redirect_uri).query else "?"
            return RedirectResponse(f"{redirect_uri}{separator}{urlencode(query)}", status_code=302)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if not state:
            return back(error="invalid_request", error_description="state is required")
        scopes = frozenset(params.get("scope", "").split())
        if scopes - SCOPES:
            return back(error="invalid_scope", error_description=f"Invalid scope: {' '.join(sorted(scopes - SCOPES))}")
        challenge = params.get("code_challenge")
        if challenge is not None:
            if params.get("code_challenge_method") != "S256":
                return back(error="invalid_request", error_description="code_challenge_method must be S256")
            if not re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge):
                return back(error="invalid_request", error_description="Invalid code_challenge")
        if config.deny_authorization:
            return back(error="access_denied")
        now = self.emulator.clock.now()
        code = self._new_secret("code", 200)
        self.codes[code] = AuthorizationCode(
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            code_challenge=challenge,
            user_id=config.test_user_id,
            consented_at=now,
            expires_at=now + AUTHORIZATION_CODE_TTL_S,
        )
        return back(code=code)

    # -- /api/token -----------------------------------------------------------------------------------------

    async def token(self, request: Request) -> tuple[Response, str]:
        """The token response and the client id to count it under."""
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        client_id = form.get("client_id") or _basic_client_id(request.headers.get("authorization")) or "anonymous"
        try:
            if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
                raise OAuthError("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
            grant_type = form.get("grant_type")
            if grant_type == "client_credentials":
                body = self._client_credentials(request, form)
            elif grant_type == "authorization_code":
                body = self._authorization_code(request, form)
            elif grant_type == "refresh_token":
                body = self._refresh(request, form)
            elif not grant_type:
                raise OAuthError("invalid_request", "grant_type must be provided")
            else:
                raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials, authorization_code or refresh_token")
        except OAuthError as error:
            return error.response(), client_id
        return json_response(dumps(body)), client_id

    def _authenticated_client(self, request: Request, form: dict[str, str], *, secret_required: bool) -> str:
        """The client id after checking its secret (HTTP Basic or body); PKCE clients may send only the id."""
        clients = self.emulator.config.clients
        basic = _basic_credentials(request.headers.get("authorization"))
        if basic is not None:
            client_id, secret = basic
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret")
        if client_id not in clients:
            raise OAuthError("invalid_client", "Invalid client")
        if secret is None:
            if secret_required:
                raise OAuthError("invalid_client", "Invalid client secret")
        elif secret != clients[client_id]:
            raise OAuthError("invalid_client", "Invalid client secret")
        return client_id

    def _client_credentials(self, request: Request, form: dict[str, str]) -> dict[str, object]:
        client_id = self._authenticated_client(request, form, secret_required=True)
        token = self._issue_access_token(client_id, frozenset(), None)
        return {"access_token": token.value, "token_type": "Bearer", "expires_in": self.emulator.config.access_token_ttl_s}

    def _authorization_code(self, request: Request, form: dict[str, str]) -> dict[str, object]:
        code = self.codes.pop(form.get("code", ""), None)  # codes are single-use, even when the exchange fails
        verifier = form.get("code_verifier")
        pkce = code is not None and code.code_challenge is not None
        # A public PKCE client proves itself with the verifier instead of a secret.
        client_id = self._authenticated_client(request, form, secret_required=not (pkce or verifier))
        if code is None or code.expires_at <= self.emulator.clock.now():
            raise OAuthError("invalid_grant", "Invalid authorization code")
        if code.client_id != client_id:
            raise OAuthError("invalid_grant", "Invalid authorization code")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "Invalid redirect URI")
        if pkce:
            if not verifier or not _CODE_VERIFIER.match(verifier):
                raise OAuthError("invalid_request", "code_verifier required")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if digest != code.code_challenge:
                raise OAuthError("invalid_grant", "code_verifier was incorrect")
        grant = RefreshGrant(client_id, code.scopes, code.user_id, code.consented_at)
        token = self._issue_access_token(client_id, code.scopes, code.user_id)
        return {
            "access_token": token.value,
            "token_type": "Bearer",
            "expires_in": self.emulator.config.access_token_ttl_s,
            "refresh_token": self._issue_refresh_token(grant),
            "scope": " ".join(sorted(code.scopes)),
        }

    def _refresh(self, request: Request, form: dict[str, str]) -> dict[str, object]:
        value = form.get("refresh_token", "")
        grant = self.refresh_grants.get(value)
        client_id = self._authenticated_client(request, form, secret_required=False)
        if grant is None or grant.client_id != client_id:
            raise OAuthError("invalid_grant", "Invalid refresh token")
        config = self.emulator.config
        if self.emulator.clock.now() >= grant.consented_at + config.refresh_token_ttl_days * _DAY_S:
            del self.refresh_grants[value]
            raise OAuthError("invalid_grant", "Refresh token expired")
        grant.uses += 1
        token = self._issue_access_token(client_id, grant.scopes, grant.user_id)
        body: dict[str, object] = {
            "access_token": token.value,
            "token_type": "Bearer",
            "expires_in": config.access_token_ttl_s,
            "scope": " ".join(sorted(grant.scopes)),
        }
        rotate = config.refresh_rotation == "always" or (config.refresh_rotation == "sometimes" and grant.uses % 2 == 0)
        if rotate:
            # The replacement keeps the original consent time: rotation never extends the six months.
            del self.refresh_grants[value]
            body["refresh_token"] = self._issue_refresh_token(grant)
        return body


def _is_loopback_redirect(uri: str) -> bool:
    """Spotify accepts only `http://127.0.0.1:PORT/...` (or [::1]) for loopback apps, never `localhost`."""
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        return False
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1") and port is not None and not parts.fragment


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _basic_client_id(authorization: str | None) -> str | None:
    credentials = _basic_credentials(authorization)
    return credentials[0] if credentials else None


def _www_authenticate(error: str, description: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer realm="spotify", error="{error}", error_description="{description}"'}
