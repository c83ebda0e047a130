"""Run the emulator from tests and benchmarks, in one line.

    with run_emulator(mode="development", window_limit=5) as emu:
        token = emu.client_credentials_token()
        requests.get(f"{emu.api_base_url}/tracks/{emu.sample_track_id()}", headers=emu.bearer(token))
        assert emu.stats()["by_endpoint"]["/v1/tracks/{id}"] == 1

`run_emulator` serves in a background thread of this process; `run_emulator_process` in a separate OS
process (for multi-process tests and benchmarks, where the emulator must not share this process's GIL).
Both take `EmulatorConfig` fields as keyword arguments and yield the same `EmulatorHandle`, which talks
to the emulator over HTTP only (the control endpoints in `control.py`), so it works identically for both.
`catalog_path=` serves a catalogue file (JSON Lines of track objects, see `catalog_file`) instead of the
synthetic catalogue:

    with run_emulator(catalog_path="catalog.jsonl.gz", mode="development") as emu: ...
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
import uvicorn

from spotify_pipeline.emulator.app import create_app
from spotify_pipeline.emulator.config import EmulatorConfig
from spotify_pipeline.emulator.server import free_port, uvicorn_config

STARTUP_TIMEOUT_S = 30.0
LOOPBACK_REDIRECT_URI = "http://127.0.0.1:8765/callback"  # nothing listens there: tests read the Location header


class EmulatorHandle:
    """A running emulator: its URLs, the test credentials it accepts, and its test hooks."""

    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        self.base_url = base_url
        self.api_base_url = f"{base_url}/v1"
        self.accounts_base_url = base_url
        self.token_url = f"{base_url}/api/token"
        self.authorize_url = f"{base_url}/authorize"
        self.client_id = client_id
        self.client_secret = client_secret
        self._http = requests.Session()

    def __repr__(self) -> str:
        return f"EmulatorHandle({self.base_url!r})"

    # -- test hooks -------------------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._http.request(method, f"{self.base_url}/_emulator/{path}", json=body, timeout=10)
        if response.status_code >= 400:
            raise ValueError(f"emulator rejected {method} {path}: {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def stats(self) -> dict[str, Any]:
        """Request counters; shape documented in `spotify_pipeline.emulator.stats`."""
        return self._control("GET", "stats")

    def reset(self, *, config: bool = False, clock: bool = False) -> None:
        """Clear the counters and the rate-limit state (windows, quotas); re-seed faults. `config=True`
        also restores the start-up configuration, `clock=True` the real, running clock."""
        self._control("POST", "reset", {"config": config, "clock": clock})

    def config(self) -> dict[str, Any]:
        return self._control("GET", "config")

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change running config, e.g. `configure(mode="development", window_limit=5, error_rate=0.1)`."""
        return self._control("POST", "config", changes)

    def now(self) -> float:
        return float(self._control("GET", "clock")["now"])

    def advance_clock(self, seconds: float) -> float:
        return float(self._control("POST", "clock", {"advance_s": seconds})["now"])

    def set_clock(self, epoch_s: float) -> float:
        return float(self._control("POST", "clock", {"set": epoch_s})["now"])

    def freeze_clock(self, frozen: bool = True) -> None:
        self._control("POST", "clock", {"frozen": frozen})

    def set_today(self, day: date | str | None) -> None:
        """Pin the day popularity is reported for (None: follow the emulator clock again)."""
        self.configure(date=day.isoformat() if isinstance(day, date) else day)

    def expire_tokens(self) -> int:
        """Forced token expiry: every access token issued so far answers 401 "The access token expired"."""
        return int(self._control("POST", "expire-tokens")["expired"])

    def fixtures(self) -> dict[str, Any]:
        """The test user's id and playlists, the client ids, the catalogue size."""
        return self._control("GET", "fixtures")

    # -- conveniences for tests -------------------------------------------------------------------------

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def client_credentials_token(self) -> str:
        response = self._http.post(
            self.token_url, data={"grant_type": "client_credentials"}, auth=(self.client_id, self.client_secret), timeout=10
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def user_tokens(self, scopes: str = "", redirect_uri: str = LOOPBACK_REDIRECT_URI) -> dict[str, Any]:
        """Authorization Code + PKCE end to end as the test user; returns the token response JSON."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        query = {
            "client_id": self.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": scopes,
            "state": secrets.token_urlsafe(8),
            "code_challenge_method": "S256",
            "code_challenge": challenge,
        }
        consent = self._http.get(f"{self.authorize_url}?{urlencode(query)}", allow_redirects=False, timeout=10)
        location = parse_qs(urlsplit(consent.headers["Location"]).query)
        if "code" not in location:
            raise ValueError(f"authorization refused: {location}")
        response = self._http.post(
            self.token_url,
            data={
                "grant_type": "authorization_code",
                "code": location["code"][0],
                "redirect_uri": redirect_uri,
                "client_id": self.client_id,
                "code_verifier": verifier,
            },
            timeout=10,
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def sample_track_id(self) -> str:
        """A track id the catalogue holds (the first search hit for a common word)."""
        token = self.client_credentials_token()
        found = self._http.get(
            f"{self.api_base_url}/search", params={"q": "the", "type": "track", "limit": 1}, headers=self.bearer(token), timeout=10
        )
        found.raise_for_status()
        return str(found.json()["tracks"]["items"][0]["id"])

    def close(self) -> None:
        self._http.close()


def _credentials(config: EmulatorConfig) -> tuple[str, str]:
    return next(iter(config.clients.items()))


def _wait_until_healthy(base_url: str, alive: Any) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the emulator exited during start-up")
        try:
            if requests.get(f"{base_url}/_emulator/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"the emulator did not answer on {base_url} within {STARTUP_TIMEOUT_S:.0f} s")


def _with_catalog_path(config: dict[str, Any], catalog_path: str | Path | None) -> dict[str, Any]:
    if catalog_path is None:
        return config
    # Absolute, so an emulator in another process (another working directory) finds the same file.
    return {**config, "catalog_path": str(Path(catalog_path).resolve())}


@contextmanager
def run_emulator(*, catalog_path: str | Path | None = None, **config: Any) -> Iterator[EmulatorHandle]:
    """Serve an emulator (keyword arguments: `EmulatorConfig` fields) on a free 127.0.0.1 port in a
    background thread of this process, for the duration of the `with` block.

    `catalog_path`: serve that JSON Lines file of track objects (see `catalog_file`) instead of the
    synthetic catalogue; a file it cannot serve raises `CatalogFileError` here, before anything starts."""
    emulator_config = EmulatorConfig(**_with_catalog_path(config, catalog_path))
    port = free_port()
    server = uvicorn.Server(uvicorn_config(create_app(emulator_config), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, name=f"spotify-emulator-{port}", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    handle = EmulatorHandle(base_url, *_credentials(emulator_config))
    try:
        _wait_until_healthy(base_url, thread.is_alive)
        yield handle
    finally:
        handle.close()
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def run_emulator_process(*, catalog_path: str | Path | None = None, **config: Any) -> Iterator[EmulatorHandle]:
    """Like `run_emulator`, but the emulator runs in its own OS process (own interpreter, own GIL)."""
    config = _with_catalog_path(config, catalog_path)
    emulator_config = EmulatorConfig(**config)
    port = free_port()
    command = [
        sys.executable, "-m", "spotify_pipeline.emulator.server",
        "--host", "127.0.0.1", "--port", str(port), "--config-json", json.dumps(config),
    ]
    process = subprocess.Popen(command, env=os.environ.copy())
    base_url = f"http://127.0.0.1:{port}"
    handle = EmulatorHandle(base_url, *_credentials(emulator_config))
    try:
        _wait_until_healthy(base_url, lambda: process.poll() is None)
        yield handle
    finally:
        handle.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
