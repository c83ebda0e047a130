"""The client spends its request budget: one per Web API request sent (retries and re-sends included, token
requests not), nothing sent once it is spent, and a read that stops there keeps what it got."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
import responses

from spotify_pipeline.spotify import (
    InMemoryCache,
    InProcessRequestBudget,
    SpotifyBudgetExhausted,
    build_client,
    track_key,
)

from . import helpers
from .helpers import API, TOKEN_URL, dev_track_json, spotify_error, track_json

TRACKS_URL = f"{API}/tracks"
SEARCH_URL = f"{API}/search"


def _budgeted(total: int, **overrides):
    budget = InProcessRequestBudget(total)
    client = build_client(helpers.config(**overrides), clock=helpers.FakeClock(), budget=budget)
    return client, budget


def _web_api_calls(rsps) -> list:
    return [c for c in rsps.calls if not c.request.url.startswith(TOKEN_URL)]


def _search_page(request):
    return (200, {}, json.dumps({"tracks": {"items": [track_json("t1")], "total": 1, "limit": 10, "offset": 0}}))


def test_each_request_sent_spends_one_and_token_requests_spend_nothing(rsps) -> None:
    helpers.add_token(rsps)
    rsps.add_callback(responses.GET, SEARCH_URL, callback=_search_page)
    client, budget = _budgeted(5, app_mode="extended")
    for _ in range(3):
        client.search_tracks("song")
    assert budget.spent() == 3 == len(_web_api_calls(rsps))
    assert len(rsps.calls) == 4  # and the token request, free


def test_a_spent_budget_raises_before_anything_is_sent(rsps) -> None:
    helpers.add_token(rsps)
    rsps.add_callback(responses.GET, SEARCH_URL, callback=_search_page)
    client, budget = _budgeted(2, app_mode="extended")
    client.search_tracks("one")
    client.search_tracks("two")
    with pytest.raises(SpotifyBudgetExhausted) as err:
        client.search_tracks("three")
    assert (err.value.budget, err.value.spent) == (2, 2)
    assert len(_web_api_calls(rsps)) == 2  # the third was never sent
    assert client.metrics.snapshot()[0]["requests"] == 2  # usage counts what was sent, nothing else


def test_retries_and_the_resend_after_a_refused_token_each_spend_one(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(SEARCH_URL, body=spotify_error(503, "busy"), status=503)
    rsps.get(SEARCH_URL, body=spotify_error(401, "The access token expired"), status=401)
    rsps.add_callback(responses.GET, SEARCH_URL, callback=_search_page)
    client, budget = _budgeted(10, app_mode="extended", backoff_initial_s=0.0)
    client.search_tracks("song")
    assert budget.spent() == 3 == len(_web_api_calls(rsps))  # 503, then 401 and its re-send


def test_a_retry_the_budget_cannot_pay_for_stops_the_call(rsps) -> None:
    helpers.add_token(rsps)
    rsps.get(SEARCH_URL, body=spotify_error(503, "busy"), status=503)
    client, budget = _budgeted(1, app_mode="extended", backoff_initial_s=0.0)
    with pytest.raises(SpotifyBudgetExhausted):
        client.search_tracks("song")
    assert len(_web_api_calls(rsps)) == 1


def test_a_read_until_the_budget_is_spent_keeps_and_caches_what_it_got(rsps) -> None:
    helpers.add_token(rsps)

    def single(request):
        return (200, {}, json.dumps(dev_track_json(urlsplit(request.url).path.rsplit("/", 1)[-1])))

    rsps.add_callback(responses.GET, re.compile(rf"{re.escape(API)}/tracks/[^/?]+"), callback=single)
    cache = InMemoryCache()
    budget = InProcessRequestBudget(3)
    client = build_client(helpers.config(app_mode="development"), clock=helpers.FakeClock(), cache=cache, budget=budget)
    wanted = [f"id{i}" for i in range(5)]
    with pytest.raises(SpotifyBudgetExhausted):
        client.get_tracks(wanted)  # without until_budget_spent the caller hears of it
    assert [k for k in wanted if cache.get(track_key(k, None))] == wanted[:3]  # yet nothing read was lost
    budget2 = InProcessRequestBudget(1)
    client2 = build_client(
        helpers.config(app_mode="development"), clock=helpers.FakeClock(), cache=cache, budget=budget2
    )
    got = client2.get_tracks(wanted, until_budget_spent=True)
    assert list(got) == wanted[:4]  # three from the cache, one within the budget; the fifth left out
    assert budget2.spent() == 1


def test_a_spending_limit_narrows_the_budget_for_a_block(rsps) -> None:
    helpers.add_token(rsps)
    rsps.add_callback(responses.GET, SEARCH_URL, callback=_search_page)
    client, budget = _budgeted(10, app_mode="extended")
    with client.spending_limit(2) as share:
        client.search_tracks("a")
        client.search_tracks("b")
        with pytest.raises(SpotifyBudgetExhausted):
            client.search_tracks("c")
        assert share.spent() == 2
    assert client.budget is budget and budget.spent() == 2
    client.search_tracks("d")  # the run's budget again
    with client.spending_limit(50) as wide:
        assert wide.remaining() == 7  # never more than the run has left
    assert budget.spent() == 3


def test_without_a_budget_every_request_may_go(rsps) -> None:
    helpers.add_token(rsps)
    rsps.add_callback(
        responses.GET, TRACKS_URL, callback=lambda r: (200, {}, json.dumps({"tracks": [track_json("x")]}))
    )
    client = helpers.client(app_mode="extended")
    assert client.budget is None
    client.get_tracks(["x"])
    with client.spending_limit(0):
        with pytest.raises(SpotifyBudgetExhausted):
            client.get_tracks(["y"])
