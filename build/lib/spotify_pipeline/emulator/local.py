"""The local profile's emulator: attach to the one answering at a loopback URL, or start it in the background.

`make demo` writes the emulator's URL and test credentials into `.env`; Dagster loads that file, so the UI,
the schedules, the sensor and `dagster asset materialize` all talk to the emulator. Whichever process needs it
first (the demo, a run's step, a sensor tick) calls `ensure_emulator`: if something already answers the
emulator's health check at that URL it is used as it is, otherwise one emulator process is started, detached
from the caller (it outlives a run), and it stops by itself after `IDLE_EXIT_S` without a Spotify request.
A file lock makes concurrent callers (the steps of a multiprocess run) start at most one.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import requests

#: An emulator started in the background stops after this long without a Spotify request.
IDLE_EXIT_S = 2 * 3600
STARTUP_TIMEOUT_S = 30.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class LocalEmulatorError(RuntimeError):
    """The emulator could not be reached or started at the configured URL."""


def emulator_address(api_base_url: str) -> tuple[str, int]:
    """(host, port) of an emulator serving `api_base_url` (`http://127.0.0.1:PORT/v1`); loopback only."""
    parts = urlsplit(api_base_url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or parts.port is None:
        raise LocalEmulatorError(
            f"the bundled emulator serves http://127.0.0.1:PORT/v1 only, not {api_base_url!r}"
        )
    return parts.hostname, parts.port


def is_answering(api_base_url: str, timeout_s: float = 1.0) -> bool:
    """True when the bundled emulator answers its health check at `api_base_url`'s host and port."""
    host, port = emulator_address(api_base_url)
    try:
        response = requests.get(f"http://{host}:{port}/_emulator/health", timeout=timeout_s)
        return response.status_code == 200 and response.json().get("ok") is True
    except (requests.RequestException, ValueError):
        return False


def ensure_emulator(
    api_base_url: str, *, mode: str = "extended", window_limit: int | None = None
) -> Literal["attached", "started"]:
    """Make sure the bundled emulator answers at `api_base_url`, starting it in the background if not.

    `window_limit` is the emulator's rolling 30 s budget per client (None: the emulator's default); give it
    the same budget as the shared rate limiter so an overshoot would show up as a 429, as on Spotify.
    """
    if is_answering(api_base_url):
        return "attached"
    host, port = emulator_address(api_base_url)
    with _start_lock(port):
        if is_answering(api_base_url):  # another process started it while this one waited for the lock
            return "attached"
        _start_detached(host, port, mode=mode, window_limit=window_limit)
    return "started"


def log_path(port: int) -> Path:
    """Where a background emulator on `port` writes its output."""
    return Path(tempfile.gettempdir()) / f"spotify-pipeline-emulator-{port}.log"


def _pid_path(port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"spotify-pipeline-emulator-{port}.pid"


def stop_emulator(api_base_url: str, timeout_s: float = 10.0) -> bool:
    """Stop the background emulator this module started for `api_base_url`; False if there was none."""
    _, port = emulator_address(api_base_url)
    pid_file = _pid_path(port)
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    pid_file.unlink(missing_ok=True)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


@contextmanager
def _start_lock(port: int) -> Iterator[None]:
    lock_file = Path(tempfile.gettempdir()) / f"spotify-pipeline-emulator-{port}.lock"
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _start_detached(host: str, port: int, *, mode: str, window_limit: int | None) -> None:
    config: dict[str, object] = {"mode": mode}
    if window_limit is not None:
        config["window_limit"] = window_limit
    command = [
        sys.executable, "-m", "spotify_pipeline.emulator.server", "--host", host, "--port", str(port),
        "--config-json", json.dumps(config), "--exit-when-idle", str(IDLE_EXIT_S),
    ]
    log = log_path(port)
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with the run, the sensor tick or the terminal that started it
            env=os.environ.copy(),
        )
    _pid_path(port).write_text(str(process.pid))
    base = f"http://{host}:{port}/v1"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if is_answering(base, timeout_s=0.5):
            return
        if process.poll() is not None:
            raise LocalEmulatorError(
                f"the bundled Spotify emulator could not start on {host}:{port} (is the port taken by another "
                f"program?); its output is in {log}"
            )
        time.sleep(0.1)
    process.terminate()
    raise LocalEmulatorError(f"the bundled Spotify emulator did not answer on {host}:{port} within "
                             f"{STARTUP_TIMEOUT_S:.0f} s; its output is in {log}")
