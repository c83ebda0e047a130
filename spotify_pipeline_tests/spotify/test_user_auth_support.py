"""Shared helpers of the user-authorization tests (no tests here).

- `TokenProxy`: an HTTP proxy in front of the emulator's accounts service that can delay, fail (503, 429)
  or hang token requests, since the emulator itself only injects faults into Web API requests.
- `follow_browser`: what a browser does with the authorize URL (follow the redirect to the callback).
- `make_store`, `app_for`, `expire_access_token`: builders.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from spotify_pipeline.emulator.testing import EmulatorHandle
from spotify_pipeline.spotify.user_auth import OAuthApp
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.tokens import SqlTokenStore, generate_token_key

KEY = generate_token_key()


class TokenProxy:
    """Forwards every request to ``upstream``; ``/api/token`` requests can be delayed, failed or hung."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay_s = 0.0
        self.token_requests = 0
        self._faults: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                proxy._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def fail_next(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._faults += [("status", (status, headers or {}))] * times

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """Answer nothing for ``seconds`` (the request is not forwarded: the client times out first)."""
        with self._lock:
            self._faults += [("hang", seconds)] * times

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        fault = None
        if urlsplit(handler.path).path == "/api/token":
            with self._lock:
                self.token_requests += 1
                fault = self._faults.pop(0) if self._faults else None
            if self.delay_s:
                time.sleep(self.delay_s)
        if fault is not None and fault[0] == "hang":
            time.sleep(fault[1])
            self._send(handler, 504, {"Content-Type": "text/plain"}, b"gateway timeout")
            return
        if fault is not None:
            status, headers = fault[1]
            payload = b'{"error":"server_error","error_description":"Service unavailable"}'
            if status == 429:
                payload = b'{"error":{"status":429,"message":"API rate limit exceeded"}}'
            self._send(handler, status, {"Content-Type": "application/json", **headers}, payload)
            return
        forwarded = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        response = requests.request(
            method, self.upstream + handler.path, data=body, headers=forwarded, allow_redirects=False, timeout=10
        )
        keep = {k: v for k, v in response.headers.items() if k.lower() in ("content-type", "location", "retry-after")}
        self._send(handler, response.status_code, keep, response.content)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            handler.send_response(status)
            for k, v in headers.items():
                handler.send_header(k, v)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def proxy(emulator: EmulatorHandle) -> Iterator[TokenProxy]:
    p = TokenProxy(emulator.accounts_base_url)
    yield p
    p.close()


def app_for(
    emu: EmulatorHandle, *, accounts_base_url: str | None = None, secret: str | None | bool = True,
    timeout: tuple[float, float] = (2.0, 5.0),
) -> OAuthApp:
    return OAuthApp(
        client_id=emu.client_id,
        client_secret=emu.client_secret if secret is True else (secret or None),
        accounts_base_url=accounts_base_url or emu.accounts_base_url,
        api_base_url=emu.api_base_url,
        timeout=timeout,
    )


def make_store(database_url: str, key: str = KEY, **kwargs: Any) -> SqlTokenStore:
    engine = create_engine(database_url)
    migrate(engine)
    return SqlTokenStore(engine, key, **kwargs)


def follow_browser(url: str) -> None:
    """A browser on the authorize URL: Spotify (the emulator) redirects to the loopback callback."""
    requests.get(url, timeout=10)


def tampering_browser(url: str) -> None:
    """A browser that comes back with someone else's state."""
    location = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["state"] = "forged-" + query["state"][:8]
    requests.get(urlunsplit(parts._replace(query=urlencode(query))), timeout=10)


def redirect_location(url: str) -> str:
    """Where the emulator's consent page sends the browser (the URL a --no-browser user pastes)."""
    return requests.get(url, allow_redirects=False, timeout=10).headers["Location"]


def expire_access_token(store: SqlTokenStore, account: str) -> Any:
    """Make the stored access token stale (as if an hour had passed) and return the record before."""
    record = store.load(account)
    assert record is not None
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    stale = replace(record, access_token_expires_at=past)
    with store.refreshing(account) as txn:
        txn.save(stale)
    return stale


def token_requests(emu: EmulatorHandle) -> int:
    return int(emu.stats()["by_endpoint"].get("/api/token", 0))
