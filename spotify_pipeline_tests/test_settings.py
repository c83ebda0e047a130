"""The run request budget's settings: the default derived from the rate limit, and clear errors."""

from __future__ import annotations

import pytest

from spotify_pipeline.settings import Settings, SettingsError


def test_the_default_budget_is_a_day_of_the_rate_limit_less_the_on_demand_reserve() -> None:
    default = Settings.from_env({})
    assert default.daily_request_capacity == 144_000  # 100 a minute, 1,440 minutes between daily runs
    assert default.run_request_budget == 129_600
    faster = Settings.from_env({"SPOTIFY_RATE_LIMIT_PER_MINUTE": "1000000", "SPOTIFY_ON_DEMAND_RESERVE": "0.3"})
    assert faster.run_request_budget == 1_008_000_000  # 0.7 of the day, not a request lost to rounding
    assert Settings.from_env({"SPOTIFY_ON_DEMAND_RESERVE": "0"}).run_request_budget == 144_000


def test_an_explicit_budget_wins() -> None:
    assert Settings.from_env({"SPOTIFY_RUN_REQUEST_BUDGET": " 300 "}).run_request_budget == 300


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "SPOTIFY_RUN_REQUEST_BUDGET must be a positive whole number of requests, got 0"),
        ("-5", "SPOTIFY_RUN_REQUEST_BUDGET must be a positive whole number of requests, got -5"),
        ("300.5", "SPOTIFY_RUN_REQUEST_BUDGET must be a whole number, got '300.5'"),
        ("lots", "SPOTIFY_RUN_REQUEST_BUDGET must be a whole number, got 'lots'"),
    ],
)
def test_a_bad_budget_is_refused_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"SPOTIFY_RUN_REQUEST_BUDGET": value})
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1", "nan", "some"])
def test_a_bad_reserve_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="SPOTIFY_ON_DEMAND_RESERVE must be"):
        Settings.from_env({"SPOTIFY_ON_DEMAND_RESERVE": value})
