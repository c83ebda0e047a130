"""Logging for the client: the standard `logging` tree plus a filter that keeps secrets out of every line.

`RedactionFilter` scrubs, from the message, its arguments and any formatted traceback:
- every secret registered with it (the client secret, each access token as it is fetched),
- ``Authorization: Bearer/Basic ...`` headers (in header dumps, dict reprs and plain text),
- ``access_token`` / ``refresh_token`` / ``client_secret`` values in JSON, dict reprs or form bodies.

Every logger of this package carries the shared filter (`get_logger`); `install_redaction(target)` adds it to
any other logger or handler (e.g. the root handler, or Dagster's captured loggers).
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "[REDACTED]"
LOGGER_NAME = "spotify_pipeline.spotify"

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

    def __init__(self, secrets: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        for s in secrets:
            self.add_secret(s)

    def add_secret(self, secret: str | None) -> None:
        """Scrub this exact value from now on (ignored if too short to be a secret)."""
        if secret and len(secret) >= 6:
            with self._lock:
                self._secrets.add(secret)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for s in secrets:
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
