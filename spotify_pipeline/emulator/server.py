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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Spotify emulator in this process.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--config-json", default="{}", help="EmulatorConfig fields as a JSON object")
    args = parser.parse_args(argv)
    config = EmulatorConfig(**json.loads(args.config_json))
    uvicorn.Server(uvicorn_config(create_app(config), args.host, args.port)).run()


if __name__ == "__main__":
    main()
