"""OAuth 2.0 as Spotify runs it: client credentials, authorization code with PKCE, refresh, expiry."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from spotify_pipeline.emulator.testing import EmulatorHandle

REDIRECT = "http://127.0.0.1:8765/callback"
VERIFIER = "v" * 43 + "erifier-with-enough-entropy-for-the-rfc"


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _authorize(emu: EmulatorHandle, **overrides: str) -> dict[str, list[str]]:
    query = {
        "client_id": emu.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "user-library-read",
        "state": "xyz",
        "code_challenge_method": "S256",
        "code_challenge": _challenge(VERIFIER),
        **overrides,
    }
    response = requests.get(f"{emu.authorize_url}?{urlencode(query)}", allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == query["redirect_uri"]
    return parse_qs(location.query)


def _exchange(emu: EmulatorHandle, code: str, **overrides: str) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": emu.client_id,
            "code_verifier": VERIFIER, **overrides}
    return requests.post(emu.token_url, data=data, timeout=10)


def _token_error(response: requests.Response) -> tuple[int, str]:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_description"}
    return response.status_code, body["error"]


def test_client_credentials_with_basic_auth(emulator: EmulatorHandle) -> None:
    response = requests.post(emulator.token_url, data={"grant_type": "client_credentials"},
                             auth=(emulator.client_id, emulator.client_secret), timeout=10)
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and "refresh_token" not in body
    me = requests.get(f"{emulator.api_base_url}/tracks/{emulator.sample_track_id()}", headers=emulator.bearer(body["access_token"]), timeout=10)
    assert me.status_code == 200


def test_token_endpoint_errors_follow_rfc_6749(emulator: EmulatorHandle) -> None:
    wrong_secret = requests.post(emulator.token_url, data={"grant_type": "client_credentials"}, auth=(emulator.client_id, "nope"), timeout=10)
    assert _token_error(wrong_secret) == (400, "invalid_client")
    unknown = requests.post(emulator.token_url, data={"grant_type": "client_credentials"}, auth=("someone", "else"), timeout=10)
    assert _token_error(unknown) == (400, "invalid_client")
    password = requests.post(emulator.token_url, data={"grant_type": "password"}, auth=(emulator.client_id, emulator.client_secret), timeout=10)
    assert _token_error(password) == (400, "unsupported_grant_type")
    bad_code = _exchange(emulator, "not-a-code")
    assert _token_error(bad_code) == (400, "invalid_grant")


def test_authorization_code_with_pkce_and_state(emulator: EmulatorHandle) -> None:
    answer = _authorize(emulator)
    assert answer["state"] == ["xyz"]
    response = _exchange(emulator, answer["code"][0])
    body = response.json()
    assert response.status_code == 200, body
    assert body["scope"] == "user-library-read" and body["refresh_token"] and body["expires_in"] == 3600
    saved = requests.get(f"{emulator.api_base_url}/me/tracks", headers=emulator.bearer(body["access_token"]), timeout=10)
    assert saved.status_code == 200
    # Codes are single-use.
    assert _token_error(_exchange(emulator, answer["code"][0])) == (400, "invalid_grant")


def test_pkce_wrong_verifier_is_invalid_grant(emulator: EmulatorHandle) -> None:
    code = _authorize(emulator)["code"][0]
    response = _exchange(emulator, code, code_verifier="w" * 64)
    assert _token_error(response) == (400, "invalid_grant")
    assert response.json()["error_description"] == "code_verifier was incorrect"


def test_redirect_uri_must_match_and_be_a_127_0_0_1_loopback(emulator: EmulatorHandle) -> None:
    code = _authorize(emulator)["code"][0]
    assert _token_error(_exchange(emulator, code, redirect_uri="http://127.0.0.1:9999/other")) == (400, "invalid_grant")
    for bad in ("http://localhost:8765/callback", "https://example.com/callback", "http://127.0.0.1/callback"):
        query = urlencode({"client_id": emulator.client_id, "response_type": "code", "redirect_uri": bad, "state": "s"})
        response = requests.get(f"{emulator.authorize_url}?{query}", allow_redirects=False, timeout=10)
        assert response.status_code == 400 and "redirect" in response.text.lower()


def test_authorize_checks_client_scope_response_type_and_can_deny(emulator: EmulatorHandle) -> None:
    query = urlencode({"client_id": "unknown", "response_type": "code", "redirect_uri": REDIRECT, "state": "s"})
    assert requests.get(f"{emulator.authorize_url}?{query}", allow_redirects=False, timeout=10).status_code == 400
    assert _authorize(emulator, scope="user-read-everything")["error"] == ["invalid_scope"]
    assert _authorize(emulator, response_type="token")["error"] == ["unsupported_response_type"]
    assert _authorize(emulator, code_challenge_method="plain")["error"] == ["invalid_request"]
    emulator.configure(deny_authorization=True)
    denied = _authorize(emulator)
    assert denied["error"] == ["access_denied"] and denied["state"] == ["xyz"] and "code" not in denied


def test_refresh_sometimes_rotates_and_a_rotated_token_stops_working(emulator: EmulatorHandle) -> None:
    refresh = _exchange(emulator, _authorize(emulator)["code"][0]).json()["refresh_token"]
    rotated = False
    for _ in range(4):
        response = requests.post(emulator.token_url, data={"grant_type": "refresh_token", "refresh_token": refresh,
                                                           "client_id": emulator.client_id}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["access_token"]
        if "refresh_token" in body:
            rotated = True
            old, refresh = refresh, body["refresh_token"]
            stale = requests.post(emulator.token_url, data={"grant_type": "refresh_token", "refresh_token": old,
                                                            "client_id": emulator.client_id}, timeout=10)
            assert _token_error(stale) == (400, "invalid_grant")
    assert rotated


def test_refresh_token_expires_six_months_after_consent(emulator: EmulatorHandle) -> None:
    refresh = _exchange(emulator, _authorize(emulator)["code"][0]).json()["refresh_token"]
    data = {"grant_type": "refresh_token", "refresh_token": refresh}
    auth = (emulator.client_id, emulator.client_secret)
    emulator.advance_clock(181 * 86_400)
    assert requests.post(emulator.token_url, data=data, auth=auth, timeout=10).status_code == 200
    emulator.advance_clock(2 * 86_400)
    assert _token_error(requests.post(emulator.token_url, data=data, auth=auth, timeout=10)) == (400, "invalid_grant")


def test_access_tokens_expire_after_their_ttl_and_on_demand(emulator_factory: Any) -> None:
    emu = emulator_factory(access_token_ttl_s=60, window_limit=None)
    token = emu.client_credentials_token()
    track = emu.sample_track_id()
    url = f"{emu.api_base_url}/tracks/{track}"
    assert requests.get(url, headers=emu.bearer(token), timeout=10).status_code == 200
    emu.advance_clock(61)
    expired = requests.get(url, headers=emu.bearer(token), timeout=10)
    assert expired.status_code == 401
    assert expired.json() == {"error": {"status": 401, "message": "The access token expired"}}
    fresh = emu.client_credentials_token()
    assert requests.get(url, headers=emu.bearer(fresh), timeout=10).status_code == 200
    assert emu.expire_tokens() >= 2
    assert requests.get(url, headers=emu.bearer(fresh), timeout=10).json()["error"]["message"] == "The access token expired"
