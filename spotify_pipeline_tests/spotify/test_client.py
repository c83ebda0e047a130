"""The facade: batching by app mode, cache-first reads, capabilities, search limits, metrics."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from spotify_pipeline.spotify import (
    FakeClock,
    InMemoryCache,
    InProcessRateLimiter,
    RedisCache,
    RedisRateLimiter,
    SpotifyClientConfig,
    SpotifyResponseError,
    build_client,
    track_key,
)

from . import helpers
from .helpers import API, dev_track_json, spotify_error, track_json

TRACKS_URL = f"{API}/tracks"


def ids(n: int, prefix: str = "id") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def batch_callback(request):
    asked = parse_qs(urlsplit(request.url).query)["ids"][0].split(",")
    assert len(asked) <= 50
    return (200, {}, json.dumps({"tracks": [track_json(i) for i in asked]}))


def single_callback(request):
    track_id = urlsplit(request.url).path.rsplit("/", 1)[-1]
    if track_id.startswith("gone"):
        return (404, {}, spotify_error(404, "Resource not found"))
    return (200, {}, json.dumps(dev_track_json(track_id)))


def extended_api(rsps) -> None:
    helpers.add_token(rsps)
    rsps.add_callback(responses.GET, TRACKS_URL, callback=batch_callback)


def development_api(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(TRACKS_URL, body=spotify_error(403, "Forbidden"), status=403)
    rsps.add_callback(responses.GET, re.compile(rf"{re.escape(API)}/tracks/[^/?]+"), callback=single_callback)


def api_calls(rsps, path: str = "/tracks") -> list:
    return [c for c in rsps.calls if urlsplit(c.request.url).path.startswith("/v1" + path)]


def test_extended_mode_batches_of_50(rsps) -> None:
    extended_api(rsps)
    client = helpers.client()
    wanted = ids(120)
    result = client.get_tracks(wanted)
    assert list(result) == wanted and all(result[i].id == i for i in wanted)
    batches = [parse_qs(urlsplit(c.request.url).query)["ids"][0].split(",") for c in api_calls(rsps)]
    assert [len(b) for b in batches] == [50, 50, 20]
    assert sum(batches, []) == wanted
    assert client.capabilities.mode == "extended" and client.capabilities.popularity is True


def test_development_mode_falls_back_to_single_calls(rsps) -> None:
    development_api(rsps)
    client = helpers.client()
    wanted = ids(7) + ["gone1"]
    result = client.get_tracks(wanted)
    assert result["gone1"] is None
    assert [t.id for t in result.values() if t] == wanted[:7]
    assert all(t.popularity is None for t in result.values() if t)
    calls = api_calls(rsps)
    assert len([c for c in calls if urlsplit(c.request.url).path == "/v1/tracks"]) == 1  # the one 403 probe
    assert len([c for c in calls if urlsplit(c.request.url).path != "/v1/tracks"]) == 8
    caps = client.capabilities
    assert (caps.mode, caps.batch_endpoints, caps.popularity, caps.max_search_limit) == ("development", False, False, 10)
    client.get_tracks(ids(3, "more"))  # mode remembered: no second probe
    assert len([c for c in api_calls(rsps) if urlsplit(c.request.url).path == "/v1/tracks"]) == 1


def test_mode_is_remembered_across_clients_until_the_capabilities_ttl(rsps) -> None:
    development_api(rsps)
    clock = FakeClock()
    cache = InMemoryCache(clock)
    helpers.client(clock, cache=cache).get_tracks(["a1"])
    clock.advance(3601)
    helpers.client(clock, cache=cache).get_tracks(["a2"])  # a later run, a fresh process
    probes = [c for c in api_calls(rsps) if urlsplit(c.request.url).path == "/v1/tracks"]
    assert len(probes) == 1
    clock.advance(helpers.config().capabilities_ttl_s)
    assert helpers.client(clock, cache=cache).capabilities.mode == "development"
    assert len([c for c in api_calls(rsps) if urlsplit(c.request.url).path == "/v1/tracks"]) == 2


def test_a_fresh_client_trusts_remembered_development_mode_for_cached_tracks(rsps) -> None:
    """A fresh process (a Dagster step) must not refetch cached Development Mode tracks for popularity they
    can never carry."""
    development_api(rsps)
    clock = FakeClock()
    cache = InMemoryCache(clock)
    helpers.client(clock, cache=cache).get_tracks(ids(5))
    sent = len(api_calls(rsps))
    clock.advance(2 * 3600)  # past the popularity TTL, within the track TTL
    fresh = helpers.client(clock, cache=cache)
    assert len(fresh.get_tracks(ids(5), need_fresh_popularity=True)) == 5
    assert len(api_calls(rsps)) == sent


def test_capabilities_are_per_app_and_spotify_service(rsps) -> None:
    development_api(rsps)
    clock = FakeClock()
    cache = InMemoryCache(clock)
    helpers.client(clock, cache=cache).get_tracks(["a1"])
    other = helpers.client(clock, cache=cache, api_base_url="http://127.0.0.1:9/v1")
    assert other.known_capabilities is None and other._known_capabilities() is None
    assert helpers.client(clock, cache=cache)._known_capabilities().mode == "development"


def test_an_app_moved_to_development_mode_is_detected_from_a_refused_batch_call(rsps) -> None:
    clock = FakeClock()
    cache = InMemoryCache(clock)
    extended_api(rsps)
    helpers.client(clock, cache=cache).get_tracks(ids(3, "e"))
    rsps.reset()
    development_api(rsps)
    clock.advance(60)
    moved_after = clock.time()
    client = helpers.client(clock, cache=cache)
    got = client.get_tracks(ids(3, "d"))
    assert all(t is not None for t in got.values())
    caps = client.capabilities
    assert (caps.mode, caps.previous_mode) == ("development", "extended")
    assert moved_after <= caps.changed_at <= clock.time()
    batch_calls = [c for c in api_calls(rsps) if urlsplit(c.request.url).path == "/v1/tracks"]
    assert len(batch_calls) == 1  # the refused one; then one single-track call per id
    assert len(api_calls(rsps)) == 1 + 3
    assert helpers.client(clock, cache=cache)._known_capabilities().previous_mode == "extended"


def test_an_app_back_on_extended_quota_is_detected_from_popularity_in_a_single_track_answer(rsps) -> None:
    clock = FakeClock()
    cache = InMemoryCache(clock)
    development_api(rsps)
    helpers.client(clock, cache=cache).get_tracks(["d1"])
    rsps.reset()
    helpers.add_token(rsps)
    rsps.add_callback(responses.GET, TRACKS_URL, callback=batch_callback)
    rsps.add_callback(
        responses.GET, re.compile(rf"{re.escape(API)}/tracks/[^/?]+"),
        callback=lambda request: (200, {}, json.dumps(track_json(urlsplit(request.url).path.rsplit("/", 1)[-1]))),
    )
    client = helpers.client(clock, cache=cache)
    got = client.get_tracks(ids(60, "x"))
    assert len(got) == 60 and client.capabilities.mode == "extended"
    assert client.capabilities.previous_mode == "development"
    # one single-track call told the mode; the other 59 came in batches of 50
    singles = [c for c in api_calls(rsps) if urlsplit(c.request.url).path != "/v1/tracks"]
    batches = [c for c in api_calls(rsps) if urlsplit(c.request.url).path == "/v1/tracks"]
    assert (len(singles), len(batches)) == (1, 2)


def test_cached_tracks_answered_without_requests_and_only_missing_fetched(rsps) -> None:
    extended_api(rsps)
    clock = FakeClock()
    client = helpers.client(clock)
    client.get_tracks(ids(60))
    before = len(api_calls(rsps))
    again = client.get_tracks(ids(60))
    assert len(api_calls(rsps)) == before and all(again.values())
    client.get_tracks(ids(70))  # 60 cached + 10 new -> one batch of exactly the 10 missing
    last = api_calls(rsps)[-1]
    assert parse_qs(urlsplit(last.request.url).query)["ids"][0].split(",") == ids(70)[60:]
    row = next(r for r in client.metrics.snapshot() if r["endpoint"] == "GET /tracks")
    assert (row["cache_hits"], row["cache_misses"], row["requests"]) == (120, 70, 3)


def test_track_metadata_expires_after_its_ttl(rsps) -> None:
    extended_api(rsps)
    clock = FakeClock()
    client = helpers.client(clock, track_ttl_s=100)
    client.get_tracks(["x1"])
    clock.advance(99)
    client.get_tracks(["x1"])
    assert len(api_calls(rsps)) == 1
    clock.advance(2)
    client.get_tracks(["x1"])
    assert len(api_calls(rsps)) == 2


def test_need_fresh_popularity_refetches_only_stale_popularity(rsps) -> None:
    extended_api(rsps)
    clock = FakeClock()
    client = helpers.client(clock, popularity_ttl_s=3600)
    client.get_tracks(["old1", "old2"])
    clock.advance(3000)
    client.get_tracks(["new1"])
    clock.advance(700)  # old*: popularity 3700 s old; new1: 700 s old
    result = client.get_tracks(["old1", "old2", "new1"], need_fresh_popularity=True)
    last = api_calls(rsps)[-1]
    assert parse_qs(urlsplit(last.request.url).query)["ids"][0].split(",") == ["old1", "old2"]
    assert set(result) == {"old1", "old2", "new1"}
    # without the flag, the 24 h metadata TTL applies: no request
    n = len(api_calls(rsps))
    client.get_tracks(["old1", "old2", "new1"])
    assert len(api_calls(rsps)) == n


def test_need_fresh_popularity_does_not_refetch_when_popularity_is_unavailable(rsps) -> None:
    development_api(rsps)
    clock = FakeClock()
    client = helpers.client(clock)
    client.get_tracks(["d1"])
    clock.advance(7200)
    n = len(api_calls(rsps))
    client.get_tracks(["d1"], need_fresh_popularity=True)
    assert len(api_calls(rsps)) == n


def test_one_track_without_popularity_is_not_an_app_without_popularity(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(TRACKS_URL, json={"tracks": [track_json("p1", drop=("popularity",)), track_json("p2")]})
    client = helpers.client()
    got = client.get_tracks(["p1", "p2"])
    assert got["p1"].popularity is None and got["p2"].popularity is not None
    assert client.capabilities.mode == "extended" and client.capabilities.popularity is True


def test_a_batch_without_any_popularity_marks_it_unavailable(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(TRACKS_URL, json={"tracks": [track_json(i, drop=("popularity",)) for i in ("p1", "p2", "p3")]})
    client = helpers.client()
    got = client.get_tracks(["p1", "p2", "p3"])
    assert all(t is not None and t.popularity is None for t in got.values())
    assert client.capabilities.mode == "extended" and client.capabilities.popularity is False


def test_relinked_track_is_keyed_by_requested_id(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(TRACKS_URL, json={"tracks": [track_json("served", linked_from={"id": "asked"}), None]})
    client = helpers.client(market="GB")
    result = client.get_tracks(["asked", "missing"])
    assert result["missing"] is None
    t = result["asked"]
    assert (t.requested_id, t.id, t.relinked) == ("asked", "served", True)
    assert parse_qs(urlsplit(rsps.calls[-1].request.url).query)["market"] == ["GB"]
    cached = client.cache.get(track_key("asked", "GB"))
    assert cached["requested_id"] == "asked" and cached["served_id"] == "served"
    assert client.get_tracks(["asked"])["asked"].id == "served"  # from cache, still keyed by the asked id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": []}, "tracks"),
        ({"tracks": "nope"}, "tracks"),
        ({"tracks": [track_json("a")]}, "tracks"),  # asked for two, got one
        ({"tracks": [track_json("a"), track_json("b", drop=("album",))]}, "tracks[1].album"),
    ],
)
def test_malformed_and_partial_batch_bodies(rsps, body, field) -> None:
    helpers.add_token(rsps)
    rsps.get(TRACKS_URL, json=body)
    with pytest.raises(SpotifyResponseError) as err:
        helpers.client(app_mode="extended").get_tracks(["a", "b"])
    assert err.value.endpoint == "GET /tracks" and err.value.field == field


def test_non_json_body_is_a_response_error(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(f"{API}/tracks/a", body="<html>oops</html>", content_type="text/html")
    with pytest.raises(SpotifyResponseError) as err:
        helpers.client(app_mode="development").get_track("a")
    assert err.value.endpoint == "GET /tracks/{id}"


def test_get_track_uses_the_cache(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(f"{API}/tracks/t1", json=track_json("t1"))
    client = helpers.client()
    assert client.get_track("t1").name == "The Song"
    assert client.get_track("t1").name == "The Song"
    assert len(api_calls(rsps)) == 1


@pytest.mark.parametrize(("mode", "cap"), [("development", 10), ("extended", 50)])
def test_search_limit_is_capped_by_mode(rsps, mode, cap) -> None:
    helpers.add_token(rsps)
    rsps.get(
        f"{API}/search",
        json={"tracks": {"items": [track_json("s1")], "total": 1, "limit": cap, "offset": 0, "next": None}},
    )
    page = helpers.client(app_mode=mode).search_tracks("isrc:GBAAA9900001", limit=100, offset=5)
    q = parse_qs(urlsplit(api_calls(rsps, "/search")[0].request.url).query)
    assert q["limit"] == [str(cap)] and q["type"] == ["track"] and q["offset"] == ["5"]
    assert q["q"] == ["isrc:GBAAA9900001"]
    assert page.limit == cap and [t.id for t in page.items] == ["s1"] and page.total == 1


def test_search_detects_the_mode_with_one_probe(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(TRACKS_URL, body=spotify_error(403, "Forbidden"), status=403)
    rsps.get(f"{API}/search", json={"tracks": {"items": [], "total": 0, "limit": 10, "offset": 0, "next": None}})
    client = helpers.client()
    client.search_tracks("track:x", limit=50)
    client.search_tracks("track:y", limit=50)
    assert len(api_calls(rsps, "/tracks")) == 1
    assert [parse_qs(urlsplit(c.request.url).query)["limit"] for c in api_calls(rsps, "/search")] == [["10"], ["10"]]


def test_search_malformed_body(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(f"{API}/search", json={"tracks": {"items": [{"id": "x"}]}})
    with pytest.raises(SpotifyResponseError) as err:
        helpers.client(app_mode="extended").search_tracks("q")
    assert err.value.endpoint == "GET /search" and err.value.field == "tracks.items[0].name"


def test_metrics_count_requests_token_and_latency(rsps) -> None:
    extended_api(rsps)
    client = helpers.client()
    client.get_tracks(ids(100))
    rows = {r["endpoint"]: r for r in client.metrics.snapshot()}
    assert rows["GET /tracks"]["requests"] == 2 and rows["GET /tracks"]["errors"] == 0
    assert rows["POST /api/token"]["requests"] == 1
    assert rows["GET /tracks"]["latency_p95_ms"] >= rows["GET /tracks"]["latency_p50_ms"] >= 0


def test_build_client_uses_in_process_backends_without_redis() -> None:
    client = build_client(helpers.config())
    assert isinstance(client.cache, InMemoryCache) and isinstance(client.limiter, InProcessRateLimiter)


def test_build_client_uses_redis_backends_when_redis_url_is_set(rsps, redis_url, redis_prefix, redis_conn) -> None:
    cfg = helpers.config(redis_url=redis_url, redis_key_prefix=redis_prefix, app_mode="extended")
    client = build_client(cfg)
    assert isinstance(client.cache, RedisCache) and isinstance(client.limiter, RedisRateLimiter)
    extended_api(rsps)
    client.get_tracks(["r1"])
    assert redis_conn.exists(f"{redis_prefix}spotify:v1:track:-:r1")
    # a second client (another process) shares the token and the cache: no new request at all
    n = len(rsps.calls)
    assert build_client(cfg).get_tracks(["r1"])["r1"].id == "r1"
    assert len(rsps.calls) == n


def test_redis_down_cache_degrades_but_limiter_fails_clearly(rsps, dead_redis_url) -> None:
    from spotify_pipeline.spotify import RateLimiterUnavailable

    extended_api(rsps)
    client = build_client(helpers.config(redis_url=dead_redis_url, app_mode="extended"))
    with pytest.raises(RateLimiterUnavailable):
        client.get_tracks(["z1"])
    fallback = build_client(helpers.config(redis_url=dead_redis_url, app_mode="extended", limiter_fallback="local"))
    assert fallback.get_tracks(["z1"])["z1"].id == "z1"


def test_config_object_is_reused() -> None:
    cfg = SpotifyClientConfig(client_id="a", client_secret="b")
    assert build_client(cfg).config is cfg
