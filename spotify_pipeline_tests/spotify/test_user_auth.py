"""Authorization Code with PKCE and token refresh against the emulator's real `/authorize` and `/api/token`
(and, HTTP mocked, what requests-oauthlib puts in the authorize URL and the code exchange).

Request counts come from the emulator's own stats. Tokens live in the warehouse's encrypted store (SQLite
here; the store itself is tested on both backends in `warehouse/test_tokens.py`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from spotify_pipeline.spotify import SpotifyClientConfig
from spotify_pipeline.spotify.errors import (
    SpotifyConfigError,
    SpotifyConnectionError,
    SpotifyServerError,
    SpotifyTooManyRequests,
)
from spotify_pipeline.spotify.user_auth import (
    REFRESH_TOKEN_LIFETIME,
    AccountNotConnected,
    AuthorizationDenied,
    CallbackListener,
    CallbackPortInUse,
    CallbackTimeout,
    ClientCredentialsRejected,
    InvalidRedirect,
    OAuthApp,
    ReauthorizationRequired,
    StateMismatch,
    TokenExchangeFailed,
    TokenStore,
    UserTokenSource,
    assess_refresh_token,
    build_authorization_request,
    exchange_code,
    login,
    loopback_redirect_uri,
    parse_redirect,
)
from spotify_pipeline.spotify.user_client import build_user_client
from spotify_pipeline_tests.servers import free_port
from spotify_pipeline_tests.spotify.test_user_auth_support import (
    app_for,
    expire_access_token,
    follow_browser,
    make_store,
    proxy,  # noqa: F401 (fixture)
    redirect_location,
    tampering_browser,
    token_requests,
)

ACCOUNT = "me"


def connect(emu, store, **kwargs):
    kwargs.setdefault("open_url", follow_browser)
    return login(app_for(emu, accounts_base_url=kwargs.pop("accounts_base_url", None)), store, account=ACCOUNT,
                 port=kwargs.pop("port", 0), timeout_s=kwargs.pop("timeout_s", 10), **kwargs)


@pytest.fixture
def store(sqlite_url):
    s = make_store(sqlite_url)
    yield s
    s.engine.dispose()


def source_for(emu, store, accounts_base_url=None, **kwargs) -> UserTokenSource:
    return UserTokenSource(store, ACCOUNT, app_for(emu, accounts_base_url=accounts_base_url, timeout=(1.0, 0.5)), **kwargs)


# -- login -------------------------------------------------------------------------------------------------


def test_the_warehouse_store_matches_the_token_store_protocol(store) -> None:
    assert isinstance(store, TokenStore)


def test_login_end_to_end_through_the_loopback_listener(emulator, store) -> None:
    opened: list[str] = []

    def browser(url: str) -> None:
        opened.append(url)
        follow_browser(url)

    before = datetime.now(UTC).replace(microsecond=0)
    tokens = connect(emulator, store, open_url=browser)

    assert len(opened) == 1 and opened[0].startswith(emulator.authorize_url + "?")
    stored = store.load(ACCOUNT)
    assert stored is not None
    assert stored.access_token == tokens.access_token and stored.refresh_token == tokens.refresh_token
    assert stored.spotify_user_id == emulator.fixtures()["user_id"]
    assert stored.scopes == ("user-library-read", "user-read-recently-played")
    assert not stored.needs_reauth
    assert before + timedelta(seconds=3590) <= stored.access_token_expires_at <= before + timedelta(seconds=3610)
    assert stored.refresh_token_expires_at == stored.consented_at + REFRESH_TOKEN_LIFETIME
    assert abs((stored.consented_at - before).total_seconds()) < 5
    # The stored access token is a real user token for the emulator.
    me = requests.get(f"{emulator.api_base_url}/me", headers=emulator.bearer(stored.access_token), timeout=5)
    assert me.status_code == 200 and me.json()["id"] == stored.spotify_user_id
    stats = emulator.stats()["by_endpoint"]
    assert stats["/authorize"] == 1 and stats["/api/token"] == 1 and stats["/v1/me"] == 2


def test_authorize_url_carries_a_fresh_state_and_an_s256_challenge(emulator) -> None:
    app = app_for(emulator)
    first = build_authorization_request(app, loopback_redirect_uri(8888), "user-library-read")
    second = build_authorization_request(app, loopback_redirect_uri(8888), "user-library-read")
    query = {k: v[0] for k, v in parse_qs(urlsplit(first.url).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == emulator.client_id
    assert query["redirect_uri"] == "http://127.0.0.1:8888/callback"
    assert query["code_challenge_method"] == "S256"
    expected = base64.urlsafe_b64encode(hashlib.sha256(first.code_verifier.encode()).digest()).decode().rstrip("=")
    assert query["code_challenge"] == expected
    assert query["state"] == first.state and len(first.state) >= 32
    assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", first.code_verifier)
    assert "code_verifier" not in first.url and first.code_verifier not in first.url
    assert first.state != second.state and first.code_verifier != second.code_verifier
    assert first.code_verifier not in repr(first)


def test_pkce_by_requests_oauthlib_the_verifier_sent_at_exchange_matches_the_challenge(rsps) -> None:
    """HTTP mocked: the authorize URL comes from requests-oauthlib, and the exchange sends its verifier."""
    app = OAuthApp(client_id="pkce-client", client_secret="fake-secret",
                   accounts_base_url="https://accounts.spotify.test", api_base_url="https://api.spotify.test/v1")
    request = build_authorization_request(app, loopback_redirect_uri(8888), "user-library-read")
    url = urlsplit(request.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://accounts.spotify.test/authorize"
    assert query["code_challenge_method"] == "S256" and query["scope"] == "user-library-read"
    rsps.post(app.token_url, json={"access_token": "user-access-1", "token_type": "Bearer", "expires_in": 3600,
                                   "refresh_token": "user-refresh-1", "scope": "user-library-read"})

    tokens = exchange_code(app, request, "code-from-the-callback")

    body = {k: v[0] for k, v in parse_qs(rsps.calls[0].request.body).items()}
    sent = body["code_verifier"]
    assert sent == request.code_verifier
    challenge = base64.urlsafe_b64encode(hashlib.sha256(sent.encode()).digest()).decode().rstrip("=")
    assert query["code_challenge"] == challenge
    assert body["code"] == "code-from-the-callback" and body["redirect_uri"] == "http://127.0.0.1:8888/callback"
    assert body["grant_type"] == "authorization_code" and "client_id" not in body  # Basic auth instead
    assert rsps.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert (tokens.access_token, tokens.refresh_token) == ("user-access-1", "user-refresh-1")


def test_an_accounts_url_over_plain_http_is_refused_off_the_loopback_interface() -> None:
    with pytest.raises(SpotifyConfigError, match="Spotify accounts URL must use https"):
        OAuthApp(client_id="c", accounts_base_url="http://accounts.example.com")
    emulator_app = OAuthApp(client_id="c", accounts_base_url="http://127.0.0.1:9999")
    assert emulator_app.token_url == "http://127.0.0.1:9999/api/token"


def test_the_code_is_only_exchanged_with_its_own_verifier(emulator) -> None:
    app = app_for(emulator, secret=None)  # a public client: PKCE is the only proof
    request = build_authorization_request(app, loopback_redirect_uri(8765), None)
    code = parse_redirect(redirect_location(request.url), request.state)
    impostor = build_authorization_request(app, loopback_redirect_uri(8765), None)
    forged = type(request)(request.url, request.redirect_uri, request.scopes, request.state, impostor.code_verifier)
    with pytest.raises(TokenExchangeFailed, match="code_verifier was incorrect"):
        exchange_code(app, forged, code)

    request = build_authorization_request(app, loopback_redirect_uri(8765), None)
    code = parse_redirect(redirect_location(request.url), request.state)
    tokens = exchange_code(app, request, code)
    assert tokens.access_token and tokens.refresh_token


def test_login_as_a_public_client_without_secret(emulator, store) -> None:
    tokens = login(app_for(emulator, secret=None), store, account=ACCOUNT, port=0, open_url=follow_browser, timeout_s=10)
    assert store.load(ACCOUNT).refresh_token == tokens.refresh_token


def test_denied_consent_stores_nothing(emulator, store) -> None:
    emulator.configure(deny_authorization=True)
    with pytest.raises(AuthorizationDenied, match="consent denied") as info:
        connect(emulator, store)
    assert info.value.error == "access_denied"
    assert store.load(ACCOUNT) is None
    assert token_requests(emulator) == 0


def test_state_mismatch_stores_nothing_and_never_spends_the_code(emulator, store) -> None:
    with pytest.raises(StateMismatch, match="state does not match"):
        connect(emulator, store, open_url=tampering_browser)
    assert store.load(ACCOUNT) is None
    assert token_requests(emulator) == 0


def test_a_failed_login_leaves_the_previous_connection_untouched(emulator, store) -> None:
    first = connect(emulator, store)
    emulator.configure(deny_authorization=True)
    with pytest.raises(AuthorizationDenied):
        connect(emulator, store)
    kept = store.load(ACCOUNT)
    assert kept.access_token == first.access_token and kept.refresh_token == first.refresh_token


def test_port_in_use_fails_before_anything_is_opened(emulator, store) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        opened: list[str] = []
        with pytest.raises(CallbackPortInUse, match=rf"127\.0\.0\.1:{port}.*port in use.*--port") as info:
            connect(emulator, store, port=port, open_url=opened.append)
    assert info.value.port == port
    assert opened == []
    assert emulator.stats()["by_endpoint"].get("/authorize", 0) == 0


def test_callback_timeout_is_clear_and_frees_the_port(emulator, store) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(CallbackTimeout, match=rf"no callback on http://127\.0\.0\.1:{port}/callback within 0\.3 s"):
        connect(emulator, store, port=port, open_url=lambda url: None, timeout_s=0.3)
    assert time.monotonic() - started < 5
    assert store.load(ACCOUNT) is None
    with socket.socket() as again:  # the one-shot listener is gone
        again.bind(("127.0.0.1", port))


def test_listener_takes_only_the_first_callback_and_ignores_other_paths() -> None:
    with CallbackListener("expected-state", port=0) as listener:
        assert requests.get(f"http://127.0.0.1:{listener.port}/favicon.ico", timeout=5).status_code == 404
        ok = requests.get(f"{listener.redirect_uri}?code=abc&state=expected-state", timeout=5)
        assert ok.status_code == 200 and "return to the terminal" in ok.text
        again = requests.get(f"{listener.redirect_uri}?code=other&state=expected-state", timeout=5)
        assert again.status_code == 410
        assert listener.wait(1) == "abc"


def test_no_browser_mode_takes_the_pasted_redirect_url(emulator, store) -> None:
    shown: list[str] = []

    def paste(url: str) -> str:
        shown.append(url)
        return "  " + redirect_location(url) + "\n"

    tokens = login(app_for(emulator), store, account=ACCOUNT, port=8899, read_redirect=paste)
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A8899%2Fcallback" in shown[0]
    assert store.load(ACCOUNT).access_token == tokens.access_token


def test_no_browser_mode_rejects_a_pasted_url_without_code(emulator, store) -> None:
    with pytest.raises(InvalidRedirect, match="paste the whole address"):
        login(app_for(emulator), store, account=ACCOUNT, read_redirect=lambda url: "http://127.0.0.1:8888/")
    assert store.load(ACCOUNT) is None


def test_wrong_client_secret_is_reported_and_nothing_stored(emulator, store) -> None:
    with pytest.raises(ClientCredentialsRejected, match="SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET"):
        login(app_for(emulator, secret="not-the-secret"), store, account=ACCOUNT, port=0, open_url=follow_browser,
              timeout_s=10)
    assert store.load(ACCOUNT) is None


def test_parse_redirect_checks_state_before_trusting_an_error() -> None:
    with pytest.raises(StateMismatch):
        parse_redirect("http://127.0.0.1:1/callback?error=access_denied&state=theirs", "ours")
    with pytest.raises(AuthorizationDenied, match="invalid_scope: Invalid scope: x"):
        parse_redirect("?error=invalid_scope&error_description=Invalid+scope%3A+x&state=ours", "ours")
    assert parse_redirect("code=abc&state=ours", "ours") == "abc"


# -- refresh -----------------------------------------------------------------------------------------------


def test_refresh_with_rotation_saves_the_new_refresh_token(emulator, store) -> None:
    emulator.configure(refresh_rotation="always")
    first = connect(emulator, store)
    expire_access_token(store, ACCOUNT)
    source = source_for(emulator, store)

    access = source.token()

    stored = store.load(ACCOUNT)
    assert access == stored.access_token != first.access_token
    assert stored.refresh_token != first.refresh_token
    assert stored.consented_at == first.consented_at  # rotation does not extend the six months
    assert stored.refresh_token_expires_at == first.refresh_token_expires_at
    old = requests.post(emulator.token_url, data={"grant_type": "refresh_token", "refresh_token": first.refresh_token},
                        auth=(emulator.client_id, emulator.client_secret), timeout=5)
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"  # the old one is spent
    expire_access_token(store, ACCOUNT)
    assert source_for(emulator, store).token() == store.load(ACCOUNT).access_token  # the saved one works
    assert token_requests(emulator) == 4  # login, refresh, the spent token tried above, refresh


def test_refresh_without_rotation_keeps_the_refresh_token(emulator, store) -> None:
    emulator.configure(refresh_rotation="never")
    first = connect(emulator, store)
    expire_access_token(store, ACCOUNT)

    access = source_for(emulator, store).token()

    stored = store.load(ACCOUNT)
    assert access == stored.access_token != first.access_token
    assert stored.refresh_token == first.refresh_token


def test_a_fresh_access_token_is_used_without_refreshing(emulator, store) -> None:
    first = connect(emulator, store)
    source = source_for(emulator, store)
    assert source.token() == first.access_token
    assert source.token() == first.access_token
    assert token_requests(emulator) == 1  # the login's exchange only


def test_invalid_grant_marks_the_account_and_names_the_command(emulator, store) -> None:
    first = connect(emulator, store)
    expire_access_token(store, ACCOUNT)
    emulator.advance_clock(183 * 86_400)  # past the refresh token's six months

    with pytest.raises(ReauthorizationRequired, match=r"run `spotify-pipeline auth login --account me`"):
        source_for(emulator, store).token()

    stored = store.load(ACCOUNT)
    assert stored.needs_reauth
    assert stored.refresh_token == first.refresh_token  # marked, never deleted
    assert assess_refresh_token(stored).level == "error"
    before = token_requests(emulator)
    with pytest.raises(ReauthorizationRequired):
        source_for(emulator, store).token()
    assert token_requests(emulator) == before  # known dead: no more requests

    emulator.reset(clock=True)
    connect(emulator, store)  # a new login clears the flag
    assert not store.load(ACCOUNT).needs_reauth


@pytest.mark.parametrize("failure", ["503", "429", "timeout"])
def test_transient_refresh_failures_keep_the_stored_tokens(emulator, store, proxy, failure) -> None:
    emulator.configure(refresh_rotation="always")
    connect(emulator, store)
    stale = expire_access_token(store, ACCOUNT)
    if failure == "503":
        proxy.fail_next(503)
        expected: type[Exception] = SpotifyServerError
    elif failure == "429":
        proxy.fail_next(429, headers={"Retry-After": "7"})
        expected = SpotifyTooManyRequests
    else:
        proxy.hang_next(1.5)
        expected = SpotifyConnectionError
    source = source_for(emulator, store, accounts_base_url=proxy.base_url)

    with pytest.raises(expected) as info:
        source.token()

    if failure == "429":
        assert info.value.retry_after == 7
    if failure == "timeout":
        assert info.value.timeout
    kept = store.load(ACCOUNT)
    assert (kept.access_token, kept.refresh_token, kept.needs_reauth) == (stale.access_token, stale.refresh_token, False)
    assert kept.access_token_expires_at == stale.access_token_expires_at
    # Once Spotify answers again, the same stored refresh token still works.
    assert source.token() == store.load(ACCOUNT).access_token != stale.access_token


def test_unknown_account(emulator, store) -> None:
    with pytest.raises(AccountNotConnected, match="spotify-pipeline auth login --account me"):
        source_for(emulator, store).token()


# -- the user client -----------------------------------------------------------------------------------------


def user_client(emu, store, accounts_base_url=None):
    config = SpotifyClientConfig(
        client_id=emu.client_id, client_secret=emu.client_secret, api_base_url=emu.api_base_url,
        accounts_base_url=accounts_base_url or emu.accounts_base_url, rate_limit_per_minute=60_000,
        backoff_initial_s=0.01, backoff_max_s=0.05, market="GB",
    )
    return build_user_client(config, store, ACCOUNT)


def test_user_client_retries_a_503_during_refresh(emulator, store, proxy) -> None:
    connect(emulator, store)
    stale = expire_access_token(store, ACCOUNT)
    proxy.fail_next(503)
    client = user_client(emulator, store, accounts_base_url=proxy.base_url)

    assert client.me().id == emulator.fixtures()["user_id"]

    assert proxy.token_requests == 2  # the 503, then the retry
    assert emulator.stats()["by_endpoint_status"]["/api/token"] == {"200": 2}  # login + the one refresh
    assert store.load(ACCOUNT).access_token != stale.access_token
    usage = {row["endpoint"]: row for row in client.metrics.snapshot()}
    assert usage["GET /me"]["requests"] == 1 and usage["POST /api/token"]["requests"] == 2


def test_user_client_refreshes_once_after_a_401(emulator, store) -> None:
    first = connect(emulator, store)
    client = user_client(emulator, store)
    assert client.me().id
    emulator.expire_tokens()  # Spotify rejects the stored (locally still fresh) token
    assert client.me().id
    assert store.load(ACCOUNT).access_token != first.access_token
    assert emulator.stats()["by_endpoint_status"]["/v1/me"] == {"200": 3, "401": 1}  # login's /me included


def test_saved_tracks_are_paged_fifty_at_a_time(emulator, store) -> None:
    connect(emulator, store, scopes="user-library-read user-read-recently-played")
    client = user_client(emulator, store)
    saved = list(client.iter_saved_tracks())
    assert len(saved) == 137
    assert all(s.added_at.tzinfo for s in saved)
    assert len({(s.added_at, s.track.id) for s in saved}) == 137  # no page read twice, none skipped
    assert emulator.stats()["by_endpoint"]["/v1/me/tracks"] == 3


def test_recently_played_follows_the_after_cursor(emulator, store) -> None:
    connect(emulator, store)
    client = user_client(emulator, store)
    everything = client.recently_played_since(None)
    assert len(everything.plays) == 50 and not everything.possible_gap
    ms = [p.played_at_ms for p in everything.plays]
    assert ms == sorted(ms) and len(set(ms)) == 50

    nothing_new = client.recently_played_since(everything.newest_played_at_ms)
    assert nothing_new.plays == [] and not nothing_new.possible_gap
    assert nothing_new.newest_played_at_ms == everything.newest_played_at_ms

    emulator.advance_clock(3 * 3600)  # a few more plays (one every ~15 minutes)
    newer = client.recently_played_since(everything.newest_played_at_ms)
    assert 5 <= len(newer.plays) < 50 and not newer.possible_gap
    assert all(p.played_at_ms > everything.newest_played_at_ms for p in newer.plays)

    emulator.advance_clock(30 * 86_400)  # far more than 50 plays later: history has moved past the cursor
    gap = client.recently_played_since(newer.newest_played_at_ms)
    assert gap.possible_gap and len(gap.plays) == 50


def test_user_client_needs_the_scope(emulator, store) -> None:
    from spotify_pipeline.spotify.errors import SpotifyForbidden

    connect(emulator, store, scopes="user-read-recently-played")
    with pytest.raises(SpotifyForbidden, match="Insufficient client scope"):
        user_client(emulator, store).saved_tracks_page()


def test_refresh_token_health_levels() -> None:
    from types import SimpleNamespace

    now = datetime(2026, 6, 1, tzinfo=UTC)

    def record(days_left: float, needs_reauth: bool = False):
        return SimpleNamespace(account="me", refresh_token_expires_at=now + timedelta(days=days_left), needs_reauth=needs_reauth)

    assert assess_refresh_token(record(30), now=now).level == "ok"
    warn = assess_refresh_token(record(13), now=now)
    assert warn.level == "warn" and "13 days left" in warn.message and "auth login --account me" in warn.message
    assert assess_refresh_token(record(14), now=now).level == "warn"
    expired = assess_refresh_token(record(-1), now=now)
    assert expired.level == "error" and "expired" in expired.message and "auth login --account me" in expired.message
    refused = assess_refresh_token(record(100, needs_reauth=True), now=now)
    assert refused.level == "error" and "'me'" in refused.message
