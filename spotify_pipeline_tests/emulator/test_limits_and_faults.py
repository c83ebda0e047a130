"""Rolling-window rate limit, daily quota and injected faults."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests

from spotify_pipeline.emulator.testing import EmulatorHandle


def _track_url_and_headers(emu: EmulatorHandle) -> tuple[str, dict[str, str]]:
    track_id = emu.sample_track_id()
    return f"{emu.api_base_url}/tracks/{track_id}", emu.bearer(emu.client_credentials_token())


def test_burst_beyond_the_window_gets_exactly_the_excess_as_429_until_retry_after(emulator_factory: Any) -> None:
    limit = 20
    emu: EmulatorHandle = emulator_factory(window_limit=limit)
    url, headers = _track_url_and_headers(emu)
    emu.freeze_clock()
    emu.reset()
    answers = [requests.get(url, headers=headers, timeout=10) for _ in range(limit + 10)]
    throttled = [a for a in answers if a.status_code == 429]
    assert Counter(a.status_code for a in answers) == {200: limit, 429: 10}
    assert all(a.json() == {"error": {"status": 429, "message": "API rate limit exceeded"}} for a in throttled)
    retry_after = {int(a.headers["Retry-After"]) for a in throttled}
    assert retry_after == {30}  # the clock is frozen: the whole window must pass
    emu.advance_clock(29)
    assert requests.get(url, headers=headers, timeout=10).status_code == 429
    emu.advance_clock(1)
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    stats = emu.stats()
    assert stats["throttled"]["window"] == 11 and stats["by_endpoint_status"]["/v1/tracks/{id}"]["429"] == 11


def test_retry_after_rounds_up_to_when_the_oldest_request_leaves_the_window(emulator_factory: Any) -> None:
    emu: EmulatorHandle = emulator_factory(window_limit=2)
    url, headers = _track_url_and_headers(emu)
    emu.freeze_clock()
    emu.reset()
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    emu.advance_clock(10.5)
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    refused = requests.get(url, headers=headers, timeout=10)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "20"  # ceil(30 - 10.5)
    emu.advance_clock(20)
    assert requests.get(url, headers=headers, timeout=10).status_code == 200


def test_window_is_counted_per_client_id(emulator_factory: Any) -> None:
    emu: EmulatorHandle = emulator_factory(window_limit=3, clients={"app-a": "secret-a", "app-b": "secret-b"})
    tokens = {}
    for client, secret in (("app-a", "secret-a"), ("app-b", "secret-b")):
        response = requests.post(emu.token_url, data={"grant_type": "client_credentials"}, auth=(client, secret), timeout=10)
        tokens[client] = response.json()["access_token"]
    found = requests.get(f"{emu.api_base_url}/search", params={"q": "the", "type": "track", "limit": 1},
                         headers=emu.bearer(tokens["app-b"]), timeout=10).json()
    url = f"{emu.api_base_url}/tracks/{found['tracks']['items'][0]['id']}"
    emu.freeze_clock()
    emu.reset()
    a = [requests.get(url, headers=emu.bearer(tokens["app-a"]), timeout=10).status_code for _ in range(4)]
    b = [requests.get(url, headers=emu.bearer(tokens["app-b"]), timeout=10).status_code for _ in range(3)]
    assert a == [200, 200, 200, 429] and b == [200, 200, 200]
    assert emu.stats()["by_client"] == {"app-a": 4, "app-b": 3}


def test_daily_quota_answers_quota_exceeded_until_utc_midnight(emulator_factory: Any) -> None:
    emu: EmulatorHandle = emulator_factory(quota=3, window_limit=None)
    url, headers = _track_url_and_headers(emu)  # the search in there spends one request
    emu.freeze_clock()
    emu.set_clock(1_767_268_800)  # 2026-01-01T12:00:00Z
    statuses = [requests.get(url, headers=headers, timeout=10) for _ in range(3)]
    assert [s.status_code for s in statuses] == [200, 200, 200]
    refused = requests.get(url, headers=headers, timeout=10)
    assert refused.status_code == 429
    assert refused.json()["error"]["reason"] == "QUOTA_EXCEEDED"
    assert int(refused.headers["Retry-After"]) == 12 * 3600
    assert emu.stats()["throttled"]["quota"] == 1
    emu.advance_clock(12 * 3600)
    assert requests.get(url, headers=emu.bearer(emu.client_credentials_token()), timeout=10).status_code == 200


def test_error_rate_injects_spotify_5xx_bodies(emulator_factory: Any) -> None:
    emu: EmulatorHandle = emulator_factory(window_limit=None)
    url, headers = _track_url_and_headers(emu)
    emu.configure(error_rate=0.5)
    answers = [requests.get(url, headers=headers, timeout=10) for _ in range(60)]
    failures = [a for a in answers if a.status_code != 200]
    assert 10 < len(failures) < 50
    assert {a.status_code for a in failures} <= {500, 502, 503} and len({a.status_code for a in failures}) > 1
    assert all(a.json()["error"]["status"] == a.status_code for a in failures)


def test_reset_rate_drops_connections_and_truncates_bodies(emulator_factory: Any) -> None:
    emu: EmulatorHandle = emulator_factory(window_limit=None)
    url, headers = _track_url_and_headers(emu)
    emu.configure(reset_rate=1.0)
    broken = 0
    for _ in range(12):
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(url, headers=headers, timeout=10)
        broken += 1
    by_status = emu.stats()["by_status"]
    assert by_status.get("dropped", 0) > 0 and by_status.get("truncated", 0) > 0
    assert by_status["dropped"] + by_status["truncated"] == broken
    emu.configure(reset_rate=0.0)
    assert requests.get(url, headers=headers, timeout=10).status_code == 200


def test_latency_is_added(emulator_factory: Any) -> None:
    emu: EmulatorHandle = emulator_factory(window_limit=None, latency_ms=150)
    url, headers = _track_url_and_headers(emu)
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 200 and response.elapsed.total_seconds() >= 0.15


def _burst(url: str, token: str, count: int, results: Any) -> None:
    session = requests.Session()
    results.put([session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code for _ in range(count)])


def test_an_emulator_process_limits_one_client_id_across_os_processes(emulator_factory: Any) -> None:
    import multiprocessing

    emu: EmulatorHandle = emulator_factory(process=True, window_limit=10)
    url, headers = _track_url_and_headers(emu)
    token = headers["Authorization"].split()[1]
    emu.freeze_clock()
    emu.reset()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_burst, args=(url, token, 8, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    statuses = Counter(status for _ in workers for status in results.get(timeout=60))
    for worker in workers:
        worker.join(timeout=10)
    assert statuses == {200: 10, 429: 6}
    assert emu.stats()["by_client"] == {emu.client_id: 16}
