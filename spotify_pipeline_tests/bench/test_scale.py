"""The scale simulation (bench/scale.py) on a small catalogue: its figures are consistent with its ledgers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.scale import Assumptions, simulate

#: 20,000 songs at 5 requests a minute: 6,480 requests a day for the daily run, about four days of matching.
SMALL = Assumptions(catalog_songs=20_000, rate_limit_per_minute=5, user_requests_per_day=150.0)
DAYS = 6


@pytest.fixture(scope="module", params=["extended", "development"])
def figures(request: pytest.FixtureRequest) -> dict:
    return simulate(request.param, DAYS, SMALL) | {"mode": request.param}


def test_no_run_spends_more_than_its_budget_and_the_ledger_agrees_with_what_was_sent(figures):
    assert figures["requests_over_budget"] == 0
    assert figures["peak_requests_per_minute"] <= SMALL.rate_limit_per_minute
    assert len(figures["days"]) == DAYS
    for day in figures["days"]:
        assert day["budget"] == SMALL.settings.run_request_budget == 6_480
        assert day["spent"] == day["requests_sent"] <= day["budget"]


def test_budget_bound_runs_spend_their_budget(figures):
    bound = [day for day in figures["days"] if day["budget_bound"]]
    assert bound, "the small catalogue needs more than one day's budget"
    assert figures["budget_utilization"] == pytest.approx(
        sum(day["spent"] for day in bound) / sum(day["budget"] for day in bound), abs=1e-4)
    assert figures["budget_utilization"] >= 0.95


def test_the_whole_catalogue_is_matched_within_the_horizon_near_the_physical_minimum(figures):
    assert figures["songs_attempted"] == SMALL.catalog_songs
    assert not figures["days_to_match_all_projected"]
    # On-demand runs match songs too, out of their reserve: a little faster than the daily budget alone.
    assert 0.8 * figures["physical_min_days"] <= figures["days_to_match_all"] <= 1.2 * figures["physical_min_days"]
    assert figures["days_to_match_all"] <= DAYS


def test_searched_songs_are_enriched_within_the_hour(figures):
    assert figures["on_demand_requests"] > 0
    assert figures["priority_p95_minutes"] <= 60


def test_freshness_shares_add_up_and_popularity_needs_extended_quota(figures):
    metadata = figures["metadata_freshness"]
    assert metadata["under_1d"] <= metadata["under_7d"]
    assert metadata["under_7d"] + metadata["older_or_never"] == pytest.approx(1.0)
    if figures["mode"] == "development":
        assert figures["popularity_freshness"] == "unavailable"
    else:
        assert figures["popularity_freshness"]["under_1d"] > 0.9  # one capture a day is cheap at 50 a request


def test_the_backlog_the_runs_record_shrinks_to_nothing(figures):
    eta = [day["eta_days"] for day in figures["days"]]
    assert eta[0] > 1
    assert eta[-1] < eta[0]
    assert figures["days"][-1]["backlog_items"]["unmatched"] == 0


def test_the_simulation_is_deterministic():
    short = replace(SMALL, catalog_songs=5_000)
    assert simulate("development", 2, short) == simulate("development", 2, short)


def test_on_demand_runs_queued_behind_the_daily_run_wait_for_hours():
    side_by_side = simulate("extended", 2, SMALL)
    queued = simulate("extended", 2, replace(SMALL, on_demand_waits_for_daily_run=True))
    assert queued["priority_p95_minutes"] > 4 * 60 > side_by_side["priority_p95_minutes"]
