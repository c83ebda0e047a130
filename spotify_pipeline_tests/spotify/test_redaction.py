"""Secrets are logged on purpose here; none may reach a handler."""

from __future__ import annotations

import gc
import io
import logging
import tracemalloc

import pytest
import responses

from spotify_pipeline.spotify import RedactionFilter, install_redaction
from spotify_pipeline.spotify.logs import MAX_RECENT_SECRETS, REDACTED, get_logger

from . import helpers

SECRET = "client-secret-7f3a9c1e5b"
TOKEN = "BQD4access-token-xyz0123456789"
REFRESH = "AQArefresh-token-abcdef987654"


@pytest.fixture
def capture():
    """A handler on this package's logger tree that records formatted lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("spotify_pipeline")
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old)


@pytest.mark.parametrize(
    "message, args",
    [
        ("Authorization: Bearer %s", (TOKEN,)),
        ("headers=%r", ({"Authorization": f"Bearer {TOKEN}", "Accept": "json"},)),
        ("headers=%r", ({"Authorization": "Basic dW5pdDpzZWNyZXQtdmFsdWU="},)),
        ("token response %s", ('{"access_token": "%s", "refresh_token": "%s"}' % (TOKEN, REFRESH),)),
        ("form body %s", (f"grant_type=refresh_token&refresh_token={REFRESH}&client_secret={SECRET}",)),
        ("dict %r", ({"access_token": TOKEN, "refresh_token": REFRESH},)),
    ],
)
def test_patterns_are_scrubbed_even_for_unknown_values(capture, message, args) -> None:
    get_logger("spotify_pipeline.spotify.test").warning(message, *args)
    line = capture.getvalue()
    assert TOKEN not in line and REFRESH not in line and SECRET not in line
    assert "dW5pdDpzZWNyZXQtdmFsdWU" not in line
    assert REDACTED in line


def test_registered_secrets_are_scrubbed_anywhere(capture, caplog) -> None:
    install_redaction().add_secret(SECRET)
    log = get_logger("spotify_pipeline.spotify.anything")
    log.error("oops, the secret is %s inside a sentence", SECRET)
    log.info("extra field", extra={"detail": f"x{SECRET}y"})
    try:
        raise RuntimeError(f"failure mentioning {SECRET}")
    except RuntimeError:
        log.exception("with traceback")
    out = capture.getvalue()
    assert SECRET not in out
    assert out.count(REDACTED) == 2  # the message and the traceback
    (extra,) = [r for r in caplog.records if r.getMessage() == "extra field"]
    assert extra.detail == f"x{REDACTED}y"


def test_filter_on_a_handler_covers_foreign_loggers() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    flt = RedactionFilter([SECRET])
    install_redaction(handler)  # the shared one
    handler.addFilter(flt)
    foreign = logging.getLogger("some.other.library")
    foreign.addHandler(handler)
    foreign.propagate = False
    try:
        foreign.warning("leaking %s and Bearer %s", SECRET, TOKEN)
    finally:
        foreign.removeHandler(handler)
        foreign.propagate = True
    assert SECRET not in stream.getvalue() and TOKEN not in stream.getvalue()


def test_client_never_logs_its_secret_or_tokens(capture, rsps) -> None:
    """Drive a whole request cycle (token, 401 refresh, retry) at DEBUG and read every line."""
    rsps.post(helpers.TOKEN_URL, json={"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})
    rsps.get(f"{helpers.API}/tracks/t1", body=helpers.spotify_error(401, "The access token expired"), status=401)
    rsps.get(f"{helpers.API}/tracks/t1", body=helpers.spotify_error(503, "down"), status=503)
    rsps.get(f"{helpers.API}/tracks/t1", json=helpers.track_json("t1"))
    client = helpers.client(app_mode="development")
    for name in ("urllib3", "requests_oauthlib", "oauthlib"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        client.get_track("t1")
        logging.getLogger("spotify_pipeline.spotify.auth").debug("dump %s %s", helpers.CLIENT_SECRET, TOKEN)
    finally:
        for name in ("urllib3", "requests_oauthlib", "oauthlib"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    out = capture.getvalue()
    assert "retrying" in out  # the cycle did log
    assert helpers.CLIENT_SECRET not in out and TOKEN not in out
    assert responses  # mocked HTTP only


# -- a process that lives for months registers tokens for ever ---------------------------------------------
def test_registering_secrets_for_ever_keeps_the_registry_bounded_and_the_recent_ones_scrubbed() -> None:
    flt = RedactionFilter(max_recent=100)
    tokens = [f"access-token-{i:08d}" for i in range(10_000)]
    for n, token in enumerate(tokens):
        flt.add_secret(token)
        if n % 50 == 0:
            flt.add_secret(SECRET)  # a client built per run registers the app's secret again
    assert flt.secret_count() == 100
    current = " ".join([SECRET, *tokens[-99:]])
    assert flt.redact(current) == " ".join([REDACTED] * 100)
    assert flt.redact(tokens[0]) == tokens[0]  # replaced 9,900 tokens ago: no longer held


def test_memory_stays_flat_however_many_secrets_are_registered() -> None:
    flt = RedactionFilter(max_recent=100)

    def register(start: int, count: int) -> None:
        for i in range(start, start + count):
            flt.add_secret(f"access-token-{i:012d}")
            flt.redact("a log line")

    register(0, 1_000)  # at the bound already
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        register(1_000, 50_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000  # bytes; holding 50,000 more tokens would take several MB


def test_a_secret_is_kept_while_its_owner_lives_however_many_come_after() -> None:
    class TokenRecord:
        def __init__(self, token: str) -> None:
            self.token = token

    flt = RedactionFilter(max_recent=10)
    record = TokenRecord(REFRESH)
    flt.add_secret(record.token, owner=record)
    for i in range(1_000):
        flt.add_secret(f"access-token-{i:08d}")
    assert flt.redact(f"refreshing with {REFRESH}") == f"refreshing with {REDACTED}"
    del record
    gc.collect()
    flt.add_secret("access-token-last")
    assert flt.secret_count() == 10  # the owner is gone: its secret is just one of the past ones
    assert flt.redact(REFRESH) == REFRESH


def test_the_shared_filter_is_bounded_by_default() -> None:
    flt = RedactionFilter()
    for i in range(MAX_RECENT_SECRETS + 10):
        flt.add_secret(f"access-token-{i:08d}")
    assert flt.secret_count() == MAX_RECENT_SECRETS
