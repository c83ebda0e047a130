"""Test hooks under /_emulator (loopback-only by default, like the whole emulator; not counted in stats).

* `GET  /_emulator/health`        -> {"ok": true}
* `GET  /_emulator/stats`         -> request counters (shape in `stats.py`)
* `POST /_emulator/reset`         -> clears the counters, the rate-limit windows and quotas, re-seeds faults;
                                     body {"config": true, "clock": true} also restores the start-up config
                                     and real time
* `GET  /_emulator/config`        -> the running configuration (client secrets left out)
* `POST /_emulator/config`        -> JSON object of fields to change, e.g. {"mode": "development"}
* `GET  /_emulator/clock`         -> {"now": epoch_s, "today": "YYYY-MM-DD", "frozen": bool}
* `POST /_emulator/clock`         -> {"advance_s": 31} | {"set": epoch_s} | {"frozen": true}
* `POST /_emulator/expire-tokens` -> forced expiry of every access token issued so far
* `GET  /_emulator/fixtures`      -> the test user's id and playlist ids, the client id
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from spotify_pipeline.emulator.app import Emulator


def control_routes(emulator: Emulator) -> list[Route]:
    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> Response:
        return JSONResponse(emulator.stats.snapshot())

    async def reset(request: Request) -> Response:
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        emulator.reset(config=bool(body.get("config")), clock=bool(body.get("clock")))
        return JSONResponse({"ok": True})

    async def config(request: Request) -> Response:
        if request.method == "POST":
            changes = await _json_object(request)
            if isinstance(changes, Response):
                return changes
            try:
                emulator.reconfigure(changes)
            except (TypeError, ValueError) as error:
                return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse(emulator.config.to_dict())

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = await _json_object(request)
            if isinstance(body, Response):
                return body
            try:
                if "frozen" in body:
                    emulator.clock.freeze(bool(body["frozen"]))
                if "set" in body:
                    emulator.clock.set(float(body["set"]))
                if "advance_s" in body:
                    emulator.clock.advance(float(body["advance_s"]))
            except (TypeError, ValueError) as error:
                return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse(
            {"now": emulator.clock.now(), "today": emulator.today().isoformat(), "frozen": emulator.clock.frozen}
        )

    async def expire_tokens(request: Request) -> Response:
        return JSONResponse({"expired": emulator.accounts.expire_all_access_tokens()})

    async def fixtures(request: Request) -> Response:
        library = emulator.library
        return JSONResponse(
            {
                "user_id": library.user_id,
                "client_ids": sorted(emulator.config.clients),
                "playlists": [
                    {"id": p.id, "name": p.name, "owner_id": p.owner_id, "public": p.public, "total": len(p.track_indices)}
                    for p in library.playlists
                ],
                "saved_tracks": len(library.saved),
                "catalog_size": len(emulator.catalog.tracks),
            }
        )

    return [
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/config", config, methods=["GET", "POST"]),
        Route("/_emulator/clock", clock, methods=["GET", "POST"]),
        Route("/_emulator/expire-tokens", expire_tokens, methods=["POST"]),
        Route("/_emulator/fixtures", fixtures, methods=["GET"]),
    ]


async def _json_object(request: Request) -> dict[str, Any] | Response:
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as error:
        return JSONResponse({"error": f"invalid JSON: {error}"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "expected a JSON object"}, status_code=400)
    return body
