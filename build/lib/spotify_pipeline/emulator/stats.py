"""Request counters behind `GET /_emulator/stats` (cleared by `POST /_emulator/reset`).

Shape of the JSON::

    {
      "total_requests": 21,
      "by_endpoint": {"/v1/tracks/{id}": 20, "/api/token": 1},
      "by_status": {"200": 19, "429": 1, "dropped": 0, "truncated": 0},
      "by_client": {"emulator-test-client": 21},
      "by_endpoint_status": {"/v1/tracks/{id}": {"200": 19, "429": 1}, "/api/token": {"200": 1}},
      "by_client_endpoint": {"emulator-test-client": {"/v1/tracks/{id}": 20, "/api/token": 1}},
      "throttled": {"window": 1, "quota": 0},
      "since": 1767225600.0
    }

Endpoints are path templates ("/v1/tracks/{id}", "/v1/tracks" for the batch, "/v1/search",
"/api/token", "/authorize"); paths that match no route count as "unmatched". Requests without a
usable client id (no or unknown token) count under the client "anonymous". A connection the emulator
broke on purpose counts under the pseudo-status "dropped" (nothing sent) or "truncated" (body cut).
`since` is the emulator-clock time of the last reset. Control endpoints (/_emulator/...) are not counted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


class RequestStats:
    def __init__(self, since: float) -> None:
        self.reset(since)

    def reset(self, since: float) -> None:
        self.total = 0
        self.since = since
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_client: Counter[str] = Counter()
        self.by_endpoint_status: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.by_client_endpoint: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.throttled: Counter[str] = Counter({"window": 0, "quota": 0})

    def record(self, endpoint: str, status: int | str, client_id: str) -> None:
        status_key = str(status)
        self.total += 1
        self.by_endpoint[endpoint] += 1
        self.by_status[status_key] += 1
        self.by_client[client_id] += 1
        self.by_endpoint_status[endpoint][status_key] += 1
        self.by_client_endpoint[client_id][endpoint] += 1

    def record_throttle(self, kind: str) -> None:
        self.throttled[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "total_requests": self.total,
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "by_status": dict(sorted(self.by_status.items())),
            "by_client": dict(sorted(self.by_client.items())),
            "by_endpoint_status": {k: dict(sorted(v.items())) for k, v in sorted(self.by_endpoint_status.items())},
            "by_client_endpoint": {k: dict(sorted(v.items())) for k, v in sorted(self.by_client_endpoint.items())},
            "throttled": dict(self.throttled),
            "since": self.since,
        }
