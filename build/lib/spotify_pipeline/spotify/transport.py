"""HTTP transport: one pooled `requests.Session`, timeouts, bearer auth, and Spotify errors as exceptions.

The transport sends one logical request: it asks the rate limiter for a slot before every HTTP exchange
(``before_request``), reports every exchange to ``observer`` (metrics), and on a 401 refreshes the token
once and retries once. Everything else (backoff, Retry-After) is the retry layer's business.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from spotify_pipeline.spotify.errors import (
    SpotifyBadRequest,
    SpotifyConnectionError,
    SpotifyForbidden,
    SpotifyHTTPError,
    SpotifyNotFound,
    SpotifyQuotaExceeded,
    SpotifyResponseError,
    SpotifyServerError,
    SpotifyTooManyRequests,
    SpotifyUnauthorized,
)
from spotify_pipeline.spotify.logs import get_logger

log = get_logger(__name__)

USER_AGENT = "spotify-pipeline/0.1 (+requests)"


class TokenSource(Protocol):
    def token(self) -> str:
        """A valid access token."""
        ...

    def refresh(self, rejected: str | None = None) -> str:
        """A new access token, after Spotify rejected ``rejected``."""
        ...


def build_session(pool_maxsize: int = 10) -> requests.Session:
    """A session with a connection pool sized for the client's threads and no urllib3-level retries."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
    return session


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def host_of(url: str) -> str | None:
    """``host:port`` of a URL (no credentials, path or query: safe in an error message)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    except ValueError:
        return None


def error_from_response(response: requests.Response, endpoint: str) -> SpotifyHTTPError:
    """The typed exception for an error response, carrying Spotify's message, the endpoint and the status."""
    status = response.status_code
    message = response.reason or "error"
    reason: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
        text = (response.text or "").strip()
        if text:
            message = text[:200]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            reason = err.get("reason") if isinstance(err.get("reason"), str) else None
        elif isinstance(err, str):  # OAuth-style {"error", "error_description"}
            message = str(body.get("error_description") or err)
        if reason is None and isinstance(body.get("reason"), str):
            reason = body["reason"]
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        if reason == "QUOTA_EXCEEDED":
            return SpotifyQuotaExceeded(status, message, endpoint=endpoint, retry_after=retry_after, reason=reason)
        return SpotifyTooManyRequests(status, message, endpoint=endpoint, retry_after=retry_after, reason=reason)
    cls: type[SpotifyHTTPError] = {
        400: SpotifyBadRequest,
        401: SpotifyUnauthorized,
        403: SpotifyForbidden,
        404: SpotifyNotFound,
    }.get(status, SpotifyServerError if status >= 500 else SpotifyHTTPError)
    return cls(status, message, endpoint=endpoint, reason=reason)


# JSON escapes that decode to text no database stores (NUL, halves of surrogate pairs). Bodies are UTF-8, so
# only escaped forms can carry them: the bytes are searched first, the decoded body walked only on a hit.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")  # NaN, Infinity, -Infinity: Python accepts them, JSON does not


def _storable(value: Any) -> bool:
    """No NUL character and no unpaired surrogate in any string (key or value) of a decoded JSON body."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


class Transport:
    def __init__(
        self,
        api_base_url: str,
        auth: TokenSource,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 15.0),
        before_request: Callable[[], Any] | None = None,
        observer: Callable[[str, float, int | None], None] | None = None,
    ) -> None:
        self.base_url = api_base_url.rstrip("/")
        self.auth = auth
        self.session = session or build_session()
        self.timeout = timeout
        self.before_request = before_request
        self.observer = observer

    def get(self, path: str, *, endpoint: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, endpoint=endpoint, params=params)

    def request(self, method: str, path: str, *, endpoint: str, params: Mapping[str, Any] | None = None) -> Any:
        """Send one request; return the decoded JSON body (None for 204) or raise a typed exception."""
        token = self.auth.token()
        response = self._send(method, path, endpoint, params, token)
        if response.status_code == 401:
            log.info("%s: access token rejected (401), refreshing once", endpoint)
            token = self.auth.refresh(token)
            response = self._send(method, path, endpoint, params, token)
        if response.status_code >= 400:
            raise error_from_response(response, endpoint)
        if response.status_code == 204 or not response.content:
            return None
        try:
            body = response.json(parse_constant=_reject_constant)
        except (ValueError, json.JSONDecodeError):
            ctype = response.headers.get("Content-Type", "?")
            raise SpotifyResponseError(
                f"HTTP {response.status_code} body is not JSON (Content-Type {ctype})", endpoint=endpoint
            ) from None
        if _SUSPECT_ESCAPE.search(response.content) and not _storable(body):
            raise SpotifyResponseError(
                f"HTTP {response.status_code} body holds a NUL character or an unpaired surrogate (invalid text "
                "that no warehouse can store)",
                endpoint=endpoint,
            )
        return body

    def _send(
        self, method: str, path: str, endpoint: str, params: Mapping[str, Any] | None, token: str
    ) -> requests.Response:
        if self.before_request is not None:
            self.before_request()
        url = f"{self.base_url}/{path.lstrip('/')}"
        started = time.perf_counter()
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout,
            )
        except requests.Timeout as exc:
            self._observe(endpoint, started, None)
            raise SpotifyConnectionError(
                f"timed out ({type(exc).__name__})", endpoint=endpoint, timeout=True, host=host_of(self.base_url)
            ) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            self._observe(endpoint, started, None)
            raise SpotifyConnectionError(
                f"connection failed ({type(exc).__name__})", endpoint=endpoint, host=host_of(self.base_url)
            ) from None
        self._observe(endpoint, started, response.status_code)
        log.debug("%s %s -> %s", method, endpoint, response.status_code)
        return response

    def _observe(self, endpoint: str, started: float, status: int | None) -> None:
        if self.observer is not None:
            self.observer(endpoint, time.perf_counter() - started, status)

    def close(self) -> None:
        self.session.close()
