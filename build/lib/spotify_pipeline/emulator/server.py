"""Serving the emulator with uvicorn: fastest stack available (httptools, uvloop), no access log.

Also the entry point of an emulator in its own OS process (used by `testing.run_emulator_process` and
the benchmark): `python -m spotify_pipeline.emulator.server --port 8090 --config-json '{"mode": ...}'`.
Readiness: poll `GET /_emulator/health`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import socket
import threading
import time

import requests
import uvicorn
from starlette.types import ASGIApp

from spotify_pipeline.emulator.app import create_app
from spotify_pipeline.emulator.config import EmulatorConfig

# uvicorn reports the connections the emulator breaks on purpose as application errors; they are not.
_DELIBERATE_BREAKAGE_LOGS = ("ASGI callable returned without starting response.", "ASGI callable returned without completing response.")


class _DeliberateBreakageFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in _DELIBERATE_BREAKAGE_LOGS


def quiet_deliberate_breakage() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DeliberateBreakageFilter) for f in logger.filters):
        logger.addFilter(_DeliberateBreakageFilter())


def uvicorn_config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        access_log=False,
        log_level="warning",
        lifespan="off",
        timeout_keep_alive=30,
    )
    quiet_deliberate_breakage()  # after Config, which (re)applies uvicorn's logging setup
    return config


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _exit_when_idle(server: uvicorn.Server, stats_url: str, idle_s: float, poll_s: float) -> None:
    """Stops `server` once it has answered no Spotify request for `idle_s` seconds (control hooks such as
    the health check do not count), so an emulator started in the background does not outlive its use."""
    last_total, last_change = None, time.monotonic()
    while not server.should_exit:
        time.sleep(poll_s)
        try:
            total = requests.get(stats_url, timeout=5).json()["total_requests"]
        except (requests.RequestException, ValueError, KeyError):
            continue  # not serving yet, or busy: try again next time
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change >= idle_s:
            server.should_exit = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Spotify emulator in this process.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--config-json", default="{}", help="EmulatorConfig fields as a JSON object")
    parser.add_argument(
        "--exit-when-idle", type=float, default=0, metavar="SECONDS",
        help="stop after this long without a Spotify request (0 = never)",
    )
    args = parser.parse_args(argv)
    config = EmulatorConfig(**json.loads(args.config_json))
    server = uvicorn.Server(uvicorn_config(create_app(config), args.host, args.port))
    if args.exit_when_idle > 0:
        stats_url = f"http://{args.host}:{args.port}/_emulator/stats"
        poll_s = min(30.0, args.exit_when_idle / 4)
        threading.Thread(
            target=_exit_when_idle, args=(server, stats_url, args.exit_when_idle, poll_s), daemon=True
        ).start()
    server.run()


if __name__ == "__main__":
    main()
