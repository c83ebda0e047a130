"""Two OS processes find the same stale access token at the same moment: exactly one refresh reaches
Spotify's token endpoint (counted by the emulator) and both processes end up with the new token.

The token proxy holds every token request for 0.5 s, so the second process certainly arrives while the first
is refreshing; without the lock both would refresh (and, with rotation, the second would spend a refresh
token that is already dead). Runs on the three lock kinds: SQLite with a file lock, SQLite with a Redis
lock, PostgreSQL with an advisory lock.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest

from spotify_pipeline_tests.spotify.test_user_auth_support import (
    KEY,
    app_for,
    expire_access_token,
    follow_browser,
    make_store,
    proxy,  # noqa: F401 (fixture)
    token_requests,
)

ACCOUNT = "shared"
WORKERS = 2


def _refresh_in_a_process(spec: dict[str, Any], barrier: Any, results: Any) -> None:
    from spotify_pipeline.spotify.user_auth import OAuthApp, UserTokenSource
    from spotify_pipeline.warehouse import create_engine
    from spotify_pipeline.warehouse.tokens import SqlTokenStore

    try:
        store = SqlTokenStore(
            create_engine(spec["database_url"]), spec["key"], redis_url=spec["redis_url"],
            redis_key_prefix=spec["redis_prefix"], lock_timeout_s=20,
        )
        source = UserTokenSource(store, ACCOUNT, OAuthApp(**spec["app"]))
        barrier.wait(timeout=30)
        token = source.token()
        results.put(("ok", token, source.refresh_count))
    except Exception as exc:  # reported to the test, which fails on it
        results.put(("error", f"{type(exc).__name__}: {exc}", 0))


@pytest.mark.parametrize("lock", ["sqlite-file", "sqlite-redis", "postgres-advisory"])
def test_two_processes_refresh_once_and_share_the_new_token(
    lock, request, emulator, proxy, redis_url, redis_prefix  # noqa: F811
) -> None:
    database_url = request.getfixturevalue("postgres_url" if lock == "postgres-advisory" else "sqlite_url")
    use_redis = lock == "sqlite-redis"
    store = make_store(database_url, redis_url=redis_url if use_redis else None, redis_key_prefix=redis_prefix)
    emulator.configure(refresh_rotation="always")
    from spotify_pipeline.spotify.user_auth import login

    first = login(app_for(emulator), store, account=ACCOUNT, port=0, open_url=follow_browser, timeout_s=10)
    stale = expire_access_token(store, ACCOUNT)
    emulator.reset()  # count only what the workers send
    proxy.delay_s = 0.5
    app = app_for(emulator, accounts_base_url=proxy.base_url)
    spec = {
        "database_url": database_url,
        "key": KEY,
        "redis_url": redis_url if use_redis else None,
        "redis_prefix": redis_prefix,
        "app": {
            "client_id": app.client_id, "client_secret": app.client_secret,
            "accounts_base_url": app.accounts_base_url, "api_base_url": app.api_base_url, "timeout": (5.0, 10.0),
        },
    }
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    workers = [ctx.Process(target=_refresh_in_a_process, args=(spec, barrier, results)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    try:
        outcomes = [results.get(timeout=60) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()

    assert [o[0] for o in outcomes] == ["ok"] * WORKERS, outcomes
    tokens = {o[1] for o in outcomes}
    stored = store.load(ACCOUNT)
    assert tokens == {stored.access_token}  # both got the new token
    assert stored.access_token != stale.access_token
    assert stored.refresh_token != first.refresh_token  # the rotated refresh token was kept
    assert sorted(o[2] for o in outcomes) == [0, 1]  # one process refreshed, the other waited and reused
    assert token_requests(emulator) == 1  # exactly one request reached the token endpoint
    assert emulator.stats()["by_endpoint_status"]["/api/token"] == {"200": 1}
    store.engine.dispose()
