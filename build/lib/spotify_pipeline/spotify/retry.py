"""Retry policy (tenacity): what is retried, how long to wait, and when to give up at once.

Retried: connection errors and timeouts, HTTP 500/502/503/504, and rolling-window 429s. The wait is
exponential backoff with jitter, except after a 429 with ``Retry-After``, which is honoured (plus a little
jitter so processes do not return in lockstep). Attempts (``max_attempts``) and the total time spent
waiting between attempts (``max_retry_wait_s``) are both capped.

Never slept on: a Retry-After above ``max_retry_after_s`` raises `SpotifyRateLimited(retry_after=...)`, and a
429 with ``"reason": "QUOTA_EXCEEDED"`` raises `SpotifyQuotaExceeded`, at once. 400/401/403/404 (and any other
4xx) and malformed bodies are not retried either.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

import tenacity

from spotify_pipeline.spotify.errors import (
    SpotifyConnectionError,
    SpotifyRateLimited,
    SpotifyServerError,
    SpotifyTooManyRequests,
)
from spotify_pipeline.spotify.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, SpotifyConnectionError):
        return True
    if isinstance(exc, SpotifyServerError):
        return exc.status in RETRYABLE_STATUSES
    return isinstance(exc, SpotifyTooManyRequests)


class RetryPolicy:
    def __init__(
        self,
        *,
        max_attempts: int = 5,
        max_retry_wait_s: float = 300.0,
        max_retry_after_s: float = 120.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_jitter_s: float = 0.5,
        sleep: Callable[[float], None] | None = None,
        on_retry: Callable[[str, BaseException, float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.max_retry_wait_s = max_retry_wait_s
        self.max_retry_after_s = max_retry_after_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_jitter_s = retry_after_jitter_s
        self._sleep = sleep or tenacity.nap.sleep
        self.on_retry = on_retry
        self._rng = rng or random.Random()

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for the wait after attempt number ``attempt`` (1-based)."""
        base = min(self.backoff_max_s, self.backoff_initial_s * (2 ** (attempt - 1)))
        return min(self.backoff_max_s, base + self._rng.uniform(0, self.backoff_initial_s))

    def _wait(self, rs: tenacity.RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, SpotifyTooManyRequests) and exc.retry_after is not None:
            return exc.retry_after + self._rng.uniform(0, self.retry_after_jitter_s)
        return self.backoff(rs.attempt_number)

    def _stop(self, rs: tenacity.RetryCallState) -> bool:
        if rs.attempt_number >= self.max_attempts:
            return True
        return rs.idle_for + (rs.upcoming_sleep or 0.0) > self.max_retry_wait_s

    def check_immediate(self, exc: BaseException) -> None:
        """Raise the 'do not wait' error for a 429 whose Retry-After exceeds the cap."""
        if (
            isinstance(exc, SpotifyTooManyRequests)
            and exc.retry_after is not None
            and exc.retry_after > self.max_retry_after_s
        ):
            raise SpotifyRateLimited(
                exc.retry_after, endpoint=exc.endpoint, max_retry_after_s=self.max_retry_after_s
            ) from exc

    def call(self, fn: Callable[[], T], *, endpoint: str) -> T:
        """Run ``fn`` under the policy; the last error is re-raised when attempts or wait budget run out."""

        def attempt() -> T:
            try:
                return fn()
            except SpotifyTooManyRequests as exc:
                self.check_immediate(exc)
                raise

        def before_sleep(rs: tenacity.RetryCallState) -> None:
            exc = rs.outcome.exception() if rs.outcome else None
            assert exc is not None
            log.warning(
                "%s: attempt %d failed (%s), retrying in %.2f s",
                endpoint,
                rs.attempt_number,
                exc,
                rs.upcoming_sleep,
            )
            if self.on_retry is not None:
                self.on_retry(endpoint, exc, rs.upcoming_sleep)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_retryable),
            wait=self._wait,
            stop=self._stop,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(attempt)
