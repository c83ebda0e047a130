"""Typed exceptions raised by the Spotify client.

Every HTTP failure carries the HTTP ``status``, the ``endpoint`` (a template such as ``GET /tracks/{id}``,
never a URL with ids or tokens in it) and Spotify's own ``message``, so a failed run says what went wrong
without anyone opening a debugger.
"""

from __future__ import annotations


class SpotifyError(Exception):
    """Base class of every error raised by `spotify_pipeline.spotify`."""


class SpotifyConfigError(SpotifyError, ValueError):
    """The client cannot be built from the configuration it was given (e.g. missing credentials)."""


class RateLimiterUnavailable(SpotifyError):
    """The shared rate limiter's backend (Redis) is unreachable and no local fallback is configured."""


class RequestBudgetUnavailable(SpotifyError):
    """The run's shared request budget (Redis, or the local ledger file) cannot be read or spent, and no local
    fallback is configured: the budget every process of the run shares cannot be enforced."""


class SpotifyBudgetExhausted(SpotifyError):
    """The run's request budget (or the share of it a step was given) is spent: no request was sent.

    Not a failure of the run: the caller stops this work, keeps what it did and ends successfully; what is
    left stays in the backlog for the next run. ``budget`` is the limit that ran out, ``spent`` what it had
    granted.
    """

    def __init__(self, *, budget: int, spent: int, endpoint: str | None = None) -> None:
        where = f"{endpoint}: " if endpoint else ""
        super().__init__(
            f"{where}the request budget of {budget} Web API requests is spent ({spent} granted): not sent"
        )
        self.budget = budget
        self.spent = spent
        self.endpoint = endpoint


class SpotifyConnectionError(SpotifyError):
    """The request never got an HTTP answer: connection refused/reset, DNS failure or timeout (retryable).

    The text says that Spotify (and at which ``host``, when known: never a path or a query) did not answer,
    so a failed run names the service that is down.
    """

    def __init__(self, message: str, *, endpoint: str, timeout: bool = False, host: str | None = None) -> None:
        where = f" at {host}" if host else ""
        super().__init__(f"{endpoint}: no answer from Spotify{where}: {message}")
        self.endpoint = endpoint
        self.message = message
        self.timeout = timeout
        self.host = host


class SpotifyHTTPError(SpotifyError):
    """Spotify answered with an error status. ``status``, ``endpoint`` and Spotify's ``message`` are kept."""

    def __init__(self, status: int, message: str, *, endpoint: str, reason: str | None = None) -> None:
        super().__init__(f"{endpoint} -> HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.endpoint = endpoint
        self.reason = reason


class SpotifyBadRequest(SpotifyHTTPError):
    """400: the request was malformed (not retried)."""


class SpotifyUnauthorized(SpotifyHTTPError):
    """401: the access token was rejected even after one refresh."""


class SpotifyForbidden(SpotifyHTTPError):
    """403: the app may not use this endpoint (e.g. a batch endpoint in Development Mode). Not retried."""


class SpotifyNotFound(SpotifyHTTPError):
    """404: no such object (not retried)."""


class SpotifyServerError(SpotifyHTTPError):
    """5xx: Spotify failed; 500/502/503/504 are retried."""


class SpotifyTooManyRequests(SpotifyHTTPError):
    """429 from the rolling-window rate limit, with a Retry-After the client may honour (retried)."""

    def __init__(
        self, status: int, message: str, *, endpoint: str, retry_after: float | None, reason: str | None = None
    ) -> None:
        super().__init__(status, message, endpoint=endpoint, reason=reason)
        self.retry_after = retry_after


class SpotifyRateLimited(SpotifyError):
    """Spotify (or the shared penalty box) asks to wait longer than the configured maximum.

    Raised at once instead of sleeping: a worker never blocks for hours. ``retry_after`` is in seconds.
    """

    def __init__(self, retry_after: float, *, endpoint: str | None = None, max_retry_after_s: float | None = None):
        where = f"{endpoint}: " if endpoint else ""
        cap = f" (more than the {max_retry_after_s:g} s a worker may wait)" if max_retry_after_s is not None else ""
        super().__init__(f"{where}rate limited by Spotify, retry after {retry_after:.0f} s{cap}")
        self.retry_after = retry_after
        self.endpoint = endpoint


class SpotifyQuotaExceeded(SpotifyHTTPError):
    """429 with ``"reason": "QUOTA_EXCEEDED"``: the account quota is spent; retrying cannot help."""

    def __init__(
        self, status: int, message: str, *, endpoint: str, retry_after: float | None = None, reason: str | None = None
    ) -> None:
        super().__init__(status, message, endpoint=endpoint, reason=reason or "QUOTA_EXCEEDED")
        self.retry_after = retry_after


class SpotifyAuthError(SpotifyError):
    """The token endpoint refused the client credentials (``{"error", "error_description"}``)."""

    def __init__(self, message: str, *, status: int | None = None, error: str | None = None) -> None:
        super().__init__(f"Spotify token request failed (HTTP {status}): {message}")
        self.status = status
        self.error = error
        self.message = message
        self.endpoint = "POST /api/token"


class SpotifyResponseError(SpotifyError):
    """A 2xx body Spotify sent cannot be used: not JSON, or a required field missing or of the wrong type."""

    def __init__(self, message: str, *, endpoint: str, field: str | None = None) -> None:
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{endpoint}: {message}{where}")
        self.endpoint = endpoint
        self.field = field
        self.message = message
