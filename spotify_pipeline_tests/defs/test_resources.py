from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
import responses

from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.defs.resources import SpotifyResource, spotify_resource_from_env
from spotify_pipeline.spotify import InMemoryCache, RedisCache, SpotifyClient

API = "https://api.spotify.test/v1"
ACCOUNTS = "https://accounts.spotify.test"
SECRET = "resource-test-secret-5e8d2a"
TOKEN = "resource-test-access-token-91b7"


def _track(track_id: str) -> dict:
    return {
        "id": track_id,
        "name": f"Song {track_id}",
        "artists": [{"id": "a1", "name": "Artist"}],
        "album": {"id": "al1", "name": "Album"},
        "popularity": 40,
    }


def _resource(**kw) -> SpotifyResource:
    values = dict(
        client_id="resource-client",
        client_secret=SECRET,
        api_base_url=API,
        accounts_base_url=ACCOUNTS,
        rate_limit_per_minute=6000,
    )
    values.update(kw)
    return SpotifyResource(**values)


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{ACCOUNTS}/api/token", json={"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})

        def batch(request):
            asked = parse_qs(urlsplit(request.url).query)["ids"][0].split(",")
            return (200, {}, json.dumps({"tracks": [_track(i) for i in asked]}))

        mock.add_callback(responses.GET, re.compile(re.escape(f"{API}/tracks") + r"\?"), callback=batch)
        yield mock


def test_fields_override_settings_and_unset_fields_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "env-id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("SPOTIFY_RATE_LIMIT_PER_MINUTE", "250")
    monkeypatch.setenv("SPOTIFY_API_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.delenv("REDIS_URL", raising=False)
    cfg = SpotifyResource(api_base_url="http://override/v1").client_config()
    assert (cfg.client_id, cfg.client_secret, cfg.rate_limit_per_minute) == ("env-id", "env-secret", 250)
    assert cfg.api_base_url == "http://override/v1"


def test_resource_builds_in_process_or_redis_backends(redis_url, redis_prefix) -> None:
    local = _resource(redis_url=None).get_client()
    assert isinstance(local, SpotifyClient) and isinstance(local.cache, InMemoryCache)
    shared = _resource(redis_url=redis_url, redis_key_prefix=redis_prefix).get_client()
    assert isinstance(shared.cache, RedisCache)


def test_asset_gets_a_client_and_reports_usage_metadata(api, monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)

    @dg.asset
    def tracks(spotify: SpotifyResource) -> dg.MaterializeResult:
        client = spotify.get_client()
        got = client.get_tracks([f"t{i}" for i in range(60)])
        assert spotify.get_client() is client  # one client per run
        rows = spotify.usage_rows()
        return dg.MaterializeResult(metadata={"tracks": len(got), "rows": rows, **spotify.usage_metadata()})

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([tracks], resources={"spotify": _resource()}, instance=instance)
    assert result.success
    (mat,) = result.asset_materializations_for_node("tracks")
    meta = mat.metadata
    assert meta["tracks"].value == 60
    assert meta["spotify_requests"].value == 3  # 2 batches + 1 token
    assert meta["spotify_cache_misses"].value == 60
    assert meta["spotify_app_mode"].value == "extended"
    rows = meta["rows"].value
    assert {r["endpoint"] for r in rows} == {"GET /tracks", "POST /api/token"}
    assert all(r["run_id"] == result.run_id for r in rows)
    # The UI shows usage as a table: one record per endpoint, with the counters and latencies
    table = meta["spotify_api_usage"]
    assert isinstance(table, dg.TableMetadataValue)
    assert [c.name for c in table.schema.columns] == [
        "endpoint", "requests", "cache_hits", "cache_misses", "retries", "throttled", "errors",
        "latency_p50_ms", "latency_p95_ms",
    ]
    by_endpoint = {record.data["endpoint"]: record.data for record in table.records}
    assert by_endpoint["GET /tracks"]["requests"] == 2 and by_endpoint["POST /api/token"]["requests"] == 1
    assert by_endpoint["GET /tracks"]["latency_p95_ms"] >= by_endpoint["GET /tracks"]["latency_p50_ms"] > 0
    # client log lines reach the run's event log, and no secret does
    text = "\n".join(record.user_message for record in instance.all_logs(result.run_id))
    assert "Spotify app mode: extended" in text
    assert SECRET not in text and TOKEN not in text


def test_from_env_resolves_credentials_when_a_run_starts(api, monkeypatch) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "env-client")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("SPOTIFY_API_BASE_URL", API)
    monkeypatch.setenv("SPOTIFY_ACCOUNTS_BASE_URL", ACCOUNTS)
    monkeypatch.delenv("REDIS_URL", raising=False)

    @dg.asset
    def one(spotify: SpotifyResource) -> dg.MaterializeResult:
        client = spotify.get_client()
        assert client.config.client_id == "env-client"
        return dg.MaterializeResult(metadata={"name": client.get_tracks(["x"])["x"].name})

    result = dg.materialize([one], resources={"spotify": spotify_resource_from_env()})
    assert result.success


def test_missing_credentials_fail_the_launch_naming_the_variable(monkeypatch) -> None:
    monkeypatch.delenv("SPOTIFY_CLIENT_ID", raising=False)
    monkeypatch.delenv("SPOTIFY_CLIENT_SECRET", raising=False)

    @dg.asset
    def needs_spotify(spotify: SpotifyResource) -> None:
        spotify.get_client()

    with pytest.raises(Exception, match="SPOTIFY_CLIENT_ID"):
        dg.materialize([needs_spotify], resources={"spotify": spotify_resource_from_env()})


def test_missing_credentials_without_env_vars_still_name_them(monkeypatch) -> None:
    monkeypatch.delenv("SPOTIFY_CLIENT_ID", raising=False)
    monkeypatch.delenv("SPOTIFY_CLIENT_SECRET", raising=False)
    from spotify_pipeline.spotify import SpotifyConfigError

    with pytest.raises(SpotifyConfigError, match="SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET"):
        SpotifyResource().get_client()


def test_every_asset_check_tells_the_ui_what_it_checks() -> None:
    from spotify_pipeline.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    checks = {key: graph.get_check_spec(key) for key in graph.asset_check_keys}
    assert checks, "the pipeline declares asset checks"
    undocumented = sorted(key.to_user_string() for key, spec in checks.items() if not (spec.description or "").strip())
    assert undocumented == []


def test_the_local_emulator_setting_refuses_a_real_spotify_url(monkeypatch) -> None:
    from spotify_pipeline.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="SPOTIFY_EMULATOR is set but SPOTIFY_API_BASE_URL is https://api.spotify.com/v1"):
        Settings.from_env({"SPOTIFY_EMULATOR": "extended"})
    with pytest.raises(SettingsError, match="SPOTIFY_EMULATOR must be"):
        Settings.from_env({"SPOTIFY_EMULATOR": "yes", "SPOTIFY_API_BASE_URL": "http://127.0.0.1:9/v1"})


def test_a_missing_credential_against_real_spotify_names_the_variable(monkeypatch) -> None:
    """No emulator configured: a run fails on the missing variable by name, never falls back to the emulator."""
    from spotify_pipeline.definitions import build_definitions

    for name in ("SPOTIFY_CLIENT_ID", "SPOTIFY_CLIENT_SECRET", "SPOTIFY_EMULATOR", "SPOTIFY_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    defs = build_definitions()
    with pytest.raises(dg.DagsterError, match="SPOTIFY_CLIENT_ID"):
        defs.resolve_job_def("spotify_daily_refresh").execute_in_process(partition_key=utc_today().isoformat())
