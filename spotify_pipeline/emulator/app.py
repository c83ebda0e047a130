"""App factory: one `Emulator` (state) behind a Starlette app, wrapped to break connections on purpose."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spotify_pipeline.emulator.accounts import Accounts
from spotify_pipeline.emulator.catalog import Catalog
from spotify_pipeline.emulator.catalog_file import load_catalog_file
from spotify_pipeline.emulator.clock import Clock
from spotify_pipeline.emulator.config import EmulatorConfig
from spotify_pipeline.emulator.control import control_routes
from spotify_pipeline.emulator.library import UserLibrary
from spotify_pipeline.emulator.limits import Faults, RateLimits
from spotify_pipeline.emulator.render import Renderer
from spotify_pipeline.emulator.search import TrackSearchIndex
from spotify_pipeline.emulator.stats import RequestStats
from spotify_pipeline.emulator.webapi import BREAKAGE_SCOPE_KEY, WebApi


class Emulator:
    """The emulator's state. Lives on one event loop: handlers never await between reads and writes."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.initial_config = config
        self.config = config
        self.clock = Clock()
        self.catalog = (
            load_catalog_file(config.catalog_path, config.seed)
            if config.catalog_path
            else Catalog(config.seed, config.catalog_size)
        )
        self.renderer = Renderer(self.catalog)
        self.search_index = TrackSearchIndex(self.catalog)
        self.library = UserLibrary(self.catalog, config.test_user_id)
        self.accounts = Accounts(self)
        self.limits = RateLimits(self)
        self.faults = Faults(self)
        self.stats = RequestStats(self.clock.now())

    def today(self) -> date:
        """The UTC day popularity is reported for: the pinned date, else the clock's."""
        return self.config.pinned_date or self.clock.today()

    def reconfigure(self, changes: dict[str, Any]) -> None:
        self.config = self.config.updated(changes)

    def reset(self, *, config: bool = False, clock: bool = False) -> None:
        """Clear counters and rate-limit state; optionally also restore the start-up config and real time."""
        if config:
            self.config = self.initial_config
        if clock:
            self.clock.reset()
        self.stats.reset(self.clock.now())
        self.limits.reset()
        self.faults.reset()


def create_app(config: EmulatorConfig | None = None, **overrides: Any) -> ASGIApp:
    """The emulator as an ASGI app; `overrides` are `EmulatorConfig` fields."""
    base = EmulatorConfig() if config is None else config
    emulator = Emulator(replace(base, **overrides) if overrides else base)
    web_api = WebApi(emulator)

    async def token(request: Request) -> Response:
        response, client_id = await emulator.accounts.token(request)
        emulator.stats.record("/api/token", response.status_code, client_id)
        return response

    async def authorize(request: Request) -> Response:
        response = await emulator.accounts.authorize(request)
        emulator.stats.record("/authorize", response.status_code, request.query_params.get("client_id") or "anonymous")
        return response

    async def unmatched(request: Request) -> Response:
        emulator.stats.record("unmatched", 404, "anonymous")
        return Response(b'{"error":{"status":404,"message":"Service not found"}}', 404, media_type="application/json")

    routes = [
        *web_api.routes(),
        Route("/api/token", token, methods=["POST"]),
        Route("/authorize", authorize, methods=["GET"]),
        *control_routes(emulator),
        Route("/{rest:path}", unmatched),
    ]
    starlette = Starlette(routes=routes)
    starlette.state.emulator = emulator
    return ConnectionBreaker(starlette, emulator)


class ConnectionBreaker:
    """Carries out the broken connections the guard decided on (see `limits.Faults`).

    ASGI has no "close the socket" message, so: for "drop", close the server's transport, reached through
    uvicorn's `send` (a bound method of its request cycle), before a byte is written; for "truncate", send
    the headers and half the body, then stop, which makes uvicorn close the connection mid-body. On a
    server without a reachable transport, "drop" degrades to headers-only.
    """

    def __init__(self, app: Starlette, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started: dict[str, Any] = {}

        async def breaking_send(message: Message) -> None:
            breakage = scope.get(BREAKAGE_SCOPE_KEY)
            if breakage is None:
                await send(message)
                return
            if message["type"] == "http.response.start":
                transport = getattr(getattr(send, "__self__", None), "transport", None)
                if breakage == "drop" and transport is not None:
                    transport.close()
                    started["closed"] = True
                    return
                await send(message)
                started["sent"] = True
            elif message["type"] == "http.response.body" and not started.get("closed") and not started.get("done"):
                body = message.get("body", b"")
                if breakage == "truncate":
                    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
                started["done"] = True  # stop here: uvicorn closes the connection with the response unfinished

        await self.app(scope, receive, breaking_send)
