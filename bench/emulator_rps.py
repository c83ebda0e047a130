"""Single-track GETs per second the Spotify emulator serves.

The emulator runs in its own OS process (uvicorn, httptools, no access log, rate limit off); the load
generator runs in another: asyncio keep-alive connections speaking minimal HTTP/1.1, so the client costs
far less CPU than the server and the figure measures the emulator, not the generator. Every response
must be a 200 with a full body, or the run fails.

Also: how long the emulator takes to start on a real catalogue file, the matching corpus
(`../shared/matching-corpus/catalog.jsonl.gz` from the repository root; skipped when it is absent).

    python bench/emulator_rps.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import requests

from spotify_pipeline.emulator.app import create_app
from spotify_pipeline.emulator.config import EmulatorConfig
from spotify_pipeline.emulator.testing import run_emulator_process

CONNECTIONS = 32
TRACK_IDS = 200
MATCHING_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "matching-corpus" / "catalog.jsonl.gz"


async def _connection(host: str, port: int, requests_bytes: list[bytes], stop_at: float, counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while time.perf_counter() < stop_at:
            writer.write(requests_bytes[i % len(requests_bytes)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if status == b"200" and body.endswith(b"}"):
                counts["ok"] += 1
            else:
                counts["failed"] += 1
    finally:
        writer.close()


def _load(
    host: str, port: int, token: str, track_ids: list[str], seconds: float, result_queue: Any,
    paths: list[str] | None = None,
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    requests_bytes = [
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        for path in (paths or [f"/v1/tracks/{track_id}" for track_id in track_ids])
    ]
    counts = {"ok": 0, "failed": 0}

    async def main() -> float:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(_connection(host, port, requests_bytes, stop_at, counts) for _ in range(CONNECTIONS)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    result_queue.put({**counts, "elapsed_s": elapsed})


def _generate_load(
    host: str, port: int, token: str, track_ids: list[str], seconds: float, paths: list[str] | None = None
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_load, args=(host, port, token, track_ids, seconds, queue, paths))
    process.start()
    result: dict[str, Any] = queue.get(timeout=seconds + 60)
    process.join(timeout=30)
    return result


def catalog_load(path: Path = MATCHING_CORPUS) -> dict[str, Any]:
    """Seconds from a catalogue file to an emulator ready to serve it (records, search index, renderer);
    empty when the file is absent."""
    if not path.is_file():
        return {}
    started = time.perf_counter()
    app = create_app(EmulatorConfig(catalog_path=str(path)))
    seconds = time.perf_counter() - started
    return {"catalog_load_s": round(seconds, 2), "catalog_tracks": len(app.state.emulator.catalog.tracks)}


def run(quick: bool = False) -> dict[str, Any]:
    """Measure; returns {"rps": float, "requests": int, "failed": int, "seconds": float, "health_rps", ...}."""
    seconds = 3.0 if quick else 10.0
    with run_emulator_process(window_limit=None) as emulator:
        token = emulator.client_credentials_token()
        found = requests.get(
            f"{emulator.api_base_url}/search",
            params={"q": "the", "type": "track", "limit": 50},
            headers=emulator.bearer(token),
            timeout=10,
        ).json()["tracks"]
        track_ids = [item["id"] for item in found["items"]][:TRACK_IDS]
        host, port = emulator.base_url.removeprefix("http://").split(":")
        _generate_load(host, int(port), token, track_ids, 1.0)  # warm caches and connections
        emulator.reset()
        result = _generate_load(host, int(port), token, track_ids, seconds)
        served = emulator.stats()["by_endpoint"].get("/v1/tracks/{id}", 0)
        # The anchor: the same server and load generator on the emulator's cheapest route (a constant
        # health answer: no auth, no catalogue, no rate-limit bookkeeping), i.e. what the stack itself costs.
        health = _generate_load(host, int(port), token, [], seconds, paths=["/_emulator/health"])
    completed = result["ok"] + result["failed"]
    if result["failed"] or health["failed"]:
        raise RuntimeError(f"{result['failed']} of {completed} requests failed ({health['failed']} health checks)")
    return {
        "rps": round(result["ok"] / result["elapsed_s"], 1),
        "requests": result["ok"],
        "failed": result["failed"],
        "seconds": round(result["elapsed_s"], 2),
        "connections": CONNECTIONS,
        "server_counted": served,
        "health_rps": round(health["ok"] / health["elapsed_s"], 1),
        "cpus": os.cpu_count(),
        **catalog_load(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s instead of 10 s")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
