from __future__ import annotations

import pytest

from spotify_pipeline.settings import Settings
from spotify_pipeline.spotify import SpotifyClientConfig, SpotifyConfigError, build_client


def test_from_settings_carries_every_spotify_setting() -> None:
    settings = Settings.from_env(
        {
            "SPOTIFY_CLIENT_ID": "cid",
            "SPOTIFY_CLIENT_SECRET": "csecret",
            "SPOTIFY_API_BASE_URL": "http://127.0.0.1:9999/v1",
            "SPOTIFY_ACCOUNTS_BASE_URL": "http://127.0.0.1:9999",
            "SPOTIFY_MARKET": "GB",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "REDIS_KEY_PREFIX": "dep1:",
            "SPOTIFY_RATE_LIMIT_PER_MINUTE": "600",
            "SPOTIFY_LIMITER_FALLBACK": "local",
            "SPOTIFY_TRACK_TTL_S": "100",
            "SPOTIFY_POPULARITY_TTL_S": "10",
            "SPOTIFY_MAX_RETRY_AFTER_S": "30",
            "SPOTIFY_MAX_ATTEMPTS": "3",
            "SPOTIFY_MAX_RETRY_WAIT_S": "60",
            "SPOTIFY_CONNECT_TIMEOUT_S": "2",
            "SPOTIFY_READ_TIMEOUT_S": "7",
            "SPOTIFY_CACHE_PATH": "/var/cache/spotify.db",
        }
    )
    cfg = SpotifyClientConfig.from_settings(settings)
    assert (cfg.client_id, cfg.client_secret) == ("cid", "csecret")
    assert cfg.token_url == "http://127.0.0.1:9999/api/token"
    assert cfg.api_base_url == "http://127.0.0.1:9999/v1"
    assert cfg.market == "GB"
    assert cfg.redis_url == "redis://127.0.0.1:6379/0" and cfg.redis_key_prefix == "dep1:"
    assert cfg.rate_limit_per_minute == 600 and cfg.limiter_fallback == "local"
    assert (cfg.track_ttl_s, cfg.popularity_ttl_s) == (100, 10)
    assert (cfg.max_retry_after_s, cfg.max_attempts, cfg.max_retry_wait_s) == (30, 3, 60)
    assert cfg.timeout == (2.0, 7.0)
    assert cfg.cache_path == cfg.sqlite_cache_path == "/var/cache/spotify.db"


def test_defaults_match_the_issue() -> None:
    cfg = SpotifyClientConfig.from_settings(Settings())
    assert cfg.api_base_url == "https://api.spotify.com/v1"
    assert cfg.token_url == "https://accounts.spotify.com/api/token"
    assert cfg.rate_limit_per_minute == 100
    assert cfg.timeout == (5.0, 15.0)
    assert (cfg.track_ttl_s, cfg.popularity_ttl_s, cfg.max_retry_after_s) == (86_400, 3_600, 120)
    assert cfg.cache_path == ".data/spotify_cache.db"  # the local profile's persistent cache
    assert SpotifyClientConfig().sqlite_cache_path is None  # a config built directly never writes a file


@pytest.mark.parametrize(
    ("cid", "secret", "named", "not_named"),
    [
        (None, None, ["SPOTIFY_CLIENT_ID", "SPOTIFY_CLIENT_SECRET"], []),
        ("cid", None, ["SPOTIFY_CLIENT_SECRET"], ["SPOTIFY_CLIENT_ID"]),
        (None, "sec", ["SPOTIFY_CLIENT_ID"], ["SPOTIFY_CLIENT_SECRET"]),
    ],
)
def test_missing_credentials_name_the_variables(cid, secret, named, not_named) -> None:
    with pytest.raises(SpotifyConfigError) as err:
        build_client(SpotifyClientConfig(client_id=cid, client_secret=secret))
    for var in named:
        assert var in str(err.value)
    for var in not_named:
        assert var not in str(err.value)


def test_build_client_accepts_settings(tmp_path) -> None:
    client = build_client(
        Settings(spotify_client_id="cid", spotify_client_secret="sec", spotify_cache_path=str(tmp_path / "c.db"))
    )
    assert client.config.client_id == "cid"
    assert client.config.api_base_url == "https://api.spotify.com/v1"


def test_repr_hides_secret_and_redis_password() -> None:
    cfg = SpotifyClientConfig(client_id="cid", client_secret="very-secret-value", redis_url="redis://u:pw123@h:6379/0")
    text = repr(cfg)
    assert "very-secret-value" not in text and "pw123" not in text
    assert "cid" in text


@pytest.mark.parametrize(
    "bad", [dict(rate_limit_per_minute=0), dict(limiter_fallback="remote"), dict(max_attempts=0), dict(app_mode="x")]
)
def test_invalid_config_is_rejected(bad) -> None:
    with pytest.raises(SpotifyConfigError):
        SpotifyClientConfig(**bad)
