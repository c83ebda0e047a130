"""Logging for the client: the standard `logging` tree plus a filter that keeps secrets out of every line.

`RedactionFilter` scrubs, from the message, its arguments and any formatted traceback:
- every secret registered with it (the client secret, each access token as it is fetched) that is still
  held: a long-lived process (a daemon, a code server building a client per run) registers tokens for
  ever, so the filter keeps the most recently registered ones (`MAX_RECENT_SECRETS`) plus every secret
  whose registered owner is still alive,
- ``Authorization: Bearer/Basic ...`` headers (in header dumps, dict reprs and plain text),
- ``access_token`` / ``refresh_token`` / ``client_secret`` values in JSON, dict reprs or form bodies.

Every logger of this package carries the shared filter (`get_logger`); `install_redaction(target)` adds it to
any other logger or handler (e.g. the root handler, or Dagster's captured loggers).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import OrderedDict

REDACTED = "[REDACTED]"
LOGGER_NAME = "spotify_pipeline.spotify"
#: How many of the most recently registered secrets a filter keeps (those with a live owner are kept beyond
#: it): far more than a process uses at once (an app's secret and token, two tokens per user account of a
#: run), few enough that scrubbing a line stays cheap.
MAX_RECENT_SECRETS = 1024
MIN_SECRET_LENGTH = 6

_PATTERNS = [
    # Authorization: Bearer xxx / 'Authorization': 'Basic xxx' / authorization=Bearer xxx
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?\s*(?:bearer|basic)?\s*)([A-Za-z0-9\-._~+/=]+)"),
    re.compile(r"\b(Bearer|Basic|bearer|basic)(\s+)(?=[A-Za-z0-9\-._~+/]*[0-9])([A-Za-z0-9\-._~+/]{8,}=*)"),
    # "access_token": "xxx" / 'refresh_token': 'xxx' / access_token=xxx (form / query)
    re.compile(
        r"(?i)(['\"]?(?:access_token|refresh_token|client_secret|id_token)['\"]?\s*[:=]\s*['\"]?)([^'\"&\s,}]+)"
    ),
]


class RedactionFilter(logging.Filter):
    """Rewrites each record so secrets never reach a handler. Always returns True (never drops a record)."""

    def __init__(self, secrets: tuple[str, ...] | list[str] = (), *, max_recent: int = MAX_RECENT_SECRETS) -> None:
        super().__init__()
        self._max_recent = max_recent
        self._recent: OrderedDict[str, None] = OrderedDict()  # least recently registered first
        # Secrets kept while an owner lives, by id(owner): (weak reference to the owner, its secrets).
        self._owned: dict[int, tuple[weakref.ref[object], set[str]]] = {}
        # Owners that died. Filled by weakref callbacks, which may run inside any allocation (even while
        # this thread holds the lock), so they only append here; the lock holder tidies up.
        self._dead_owners: list[int] = []
        self._lock = threading.Lock()
        self._longest_first: tuple[str, ...] | None = ()  # what `redact` scrubs; None: out of date
        for s in secrets:
            self.add_secret(s)

    def add_secret(self, secret: str | None, *, owner: object | None = None) -> None:
        """Scrub this exact value from now on (ignored if too short to be a secret).

        It is kept among the `max_recent` most recently registered secrets (registering it again makes it
        recent again). With an ``owner`` (the object that holds the secret and is dropped with it, e.g. a
        token record; weakly referenced) it is also kept for as long as the owner lives, however many
        secrets are registered after it.
        """
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._forget_dead_owners()
            self._recent[secret] = None
            self._recent.move_to_end(secret)
            while len(self._recent) > self._max_recent:
                self._recent.popitem(last=False)
            self._longest_first = None
            if owner is not None:
                self._owned_by(owner).add(secret)

    def _owned_by(self, owner: object) -> set[str]:
        key = id(owner)
        held = self._owned.get(key)
        if held is None or held[0]() is not owner:  # new, or a dead owner's id reused
            held = (weakref.ref(owner, lambda _ref: self._dead_owners.append(key)), set())
            self._owned[key] = held
        return held[1]

    def _forget_dead_owners(self) -> None:
        while self._dead_owners:
            key = self._dead_owners.pop()
            held = self._owned.get(key)
            if held is not None and held[0]() is None:
                del self._owned[key]
                self._longest_first = None

    def secret_count(self) -> int:
        """How many secrets the filter holds (and scrubs) now."""
        return len(self._secrets())

    def _secrets(self) -> tuple[str, ...]:
        with self._lock:
            self._forget_dead_owners()
            if self._longest_first is None:
                kept = set(self._recent).union(*(secrets for _, secrets in self._owned.values()))
                self._longest_first = tuple(sorted(kept, key=len, reverse=True))
            return self._longest_first

    def redact(self, text: str) -> str:
        for s in self._secrets():
            if s in text:
                text = text.replace(s, REDACTED)
        text = _PATTERNS[0].sub(lambda m: m.group(1) + REDACTED, text)
        text = _PATTERNS[1].sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        text = _PATTERNS[2].sub(lambda m: m.group(1) + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_spotify_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw message, still scrubbed
            message = str(record.msg)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):  # `extra=` values
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self.redact(value))
        record._spotify_redacted = True
        return True


_STANDARD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}

# One filter per process: secrets registered by any client are scrubbed from every logger that carries it.
REDACTION_FILTER = RedactionFilter()
_INSTALL_LOCK = threading.Lock()

# Third-party loggers that see request bodies or headers at DEBUG level.
_THIRD_PARTY = ("requests_oauthlib", "oauthlib", "urllib3", "requests")


def install_redaction(target: logging.Logger | logging.Handler | None = None) -> RedactionFilter:
    """Attach the shared filter to a logger or handler (default: this package's loggers and noisy libraries)."""
    targets: list[logging.Logger | logging.Handler] = (
        [target] if target is not None else [logging.getLogger(LOGGER_NAME)] + [logging.getLogger(n) for n in _THIRD_PARTY]
    )
    with _INSTALL_LOCK:
        for t in targets:
            if REDACTION_FILTER not in t.filters:
                t.addFilter(REDACTION_FILTER)
    return REDACTION_FILTER


def get_logger(name: str) -> logging.Logger:
    """A logger of this package's tree that already carries the redaction filter."""
    logger = logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")
    install_redaction(logger)
    return logger
