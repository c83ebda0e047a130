"""Spotify's error bodies: `{"error": {"status": N, "message": "..."}}` for the Web API and the RFC 6749
`{"error": ..., "error_description": ...}` for the accounts service."""

from __future__ import annotations

import json

from starlette.responses import Response

JSON = "application/json; charset=utf-8"


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON, as Spotify sends it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class ApiError(Exception):
    """A Web API error answer, raised anywhere below a route and turned into a response by the guard."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, reason: str | None = None
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.reason = reason

    def response(self) -> Response:
        error: dict[str, object] = {"status": self.status, "message": self.message}
        if self.reason is not None:
            error["reason"] = self.reason
        return json_response(dumps({"error": error}), self.status, self.headers)


class OAuthError(Exception):
    """A token-endpoint error (RFC 6749 section 5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> Response:
        return json_response(dumps({"error": self.error, "error_description": self.description}), self.status)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str = "Resource not found") -> ApiError:
    return ApiError(404, message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)
