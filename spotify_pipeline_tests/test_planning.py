"""The request planner: how a run's budget is divided between kinds of work, and the order within a kind."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spotify_pipeline.planning import (
    BacklogColumns,
    CostModel,
    WorkItem,
    WorkKind,
    plan_columns,
    plan_run,
)

NOW = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)
EXTENDED = CostModel.for_mode("extended", searches_per_song=1.5)
DEVELOPMENT = CostModel.for_mode("development", searches_per_song=1.5)
ON_DEMAND, UNMATCHED, STALE, POPULARITY = (
    WorkKind.ON_DEMAND,
    WorkKind.UNMATCHED,
    WorkKind.STALE_METADATA,
    WorkKind.POPULARITY,
)


def hours_ago(hours: float) -> dt.datetime:
    return NOW - dt.timedelta(hours=hours)


def songs(kind: WorkKind, count: int, start: int = 0) -> list[WorkItem]:
    return [WorkItem(kind, song_id) for song_id in range(start, start + count)]


def tracks(kind: WorkKind, count: int, *, done_hours_ago: float = 48) -> list[WorkItem]:
    return [WorkItem(kind, f"track{n:06d}", last_done_at=hours_ago(done_hours_ago)) for n in range(count)]


def keys(items: list[WorkItem]) -> list[int | str]:
    return [item.key for item in items]


# -- what a request buys ---------------------------------------------------------------------------------


def test_modes_differ_in_tracks_per_request_and_popularity():
    assert (EXTENDED.tracks_per_request, EXTENDED.popularity_available) == (50, True)
    assert (DEVELOPMENT.tracks_per_request, DEVELOPMENT.popularity_available) == (1, False)
    with pytest.raises(ValueError, match="unknown app mode"):
        CostModel.for_mode("premium")


def test_request_costs_per_kind():
    assert EXTENDED.requests_for(UNMATCHED, 10) == 15
    assert EXTENDED.requests_for(STALE, 101) == 3  # 50 + 50 + 1 tracks
    assert DEVELOPMENT.requests_for(STALE, 101) == 101
    # An on-demand song is a matching attempt plus its track fetch.
    assert EXTENDED.requests_for(ON_DEMAND, 10) == 15 + 1
    assert DEVELOPMENT.requests_for(ON_DEMAND, 10) == 15 + 10
    assert EXTENDED.requests_for(POPULARITY, 50) == 1
    assert DEVELOPMENT.requests_for(POPULARITY, 50) == 0
    assert CostModel.for_mode("extended", searches_per_song=1.33).requests_for(UNMATCHED, 100) == 133


def test_cost_model_rejects_impossible_figures():
    with pytest.raises(ValueError):
        CostModel(searches_per_song=0, tracks_per_request=50, popularity_available=True)
    with pytest.raises(ValueError):
        CostModel(searches_per_song=1.5, tracks_per_request=0, popularity_available=True)


# -- budget edges -----------------------------------------------------------------------------------------


def test_zero_budget_plans_nothing_but_reports_the_backlog():
    plan = plan_run({UNMATCHED: songs(UNMATCHED, 10), STALE: tracks(STALE, 120)}, 0, EXTENDED, now=NOW)
    assert all(items == [] for items in plan.selected.values())
    assert sum(plan.planned_requests.values()) == 0
    assert plan.backlog_items[UNMATCHED] == 10 and plan.backlog_requests[UNMATCHED] == 15
    assert plan.backlog_items[STALE] == 120 and plan.backlog_requests[STALE] == 3
    assert plan.eta_days(daily_budget=9) == pytest.approx(18 / 9)


def test_negative_budget_is_an_error():
    with pytest.raises(ValueError, match="budget"):
        plan_run({}, -1, EXTENDED, now=NOW)


def test_empty_backlog_needs_no_days():
    plan = plan_run({}, 1000, EXTENDED, now=NOW)
    assert plan.eta_days(daily_budget=1000) == 0.0
    assert plan.backlog_items == dict.fromkeys(WorkKind, 0)


# -- between kinds ----------------------------------------------------------------------------------------


def test_on_demand_comes_first_and_each_lower_kind_keeps_its_minimum_share():
    backlog = {
        ON_DEMAND: songs(ON_DEMAND, 100),
        UNMATCHED: songs(UNMATCHED, 10_000, start=1000),
        STALE: tracks(STALE, 100_000),
        POPULARITY: [WorkItem(POPULARITY, f"pop{n:06d}", last_done_at=hours_ago(30)) for n in range(100_000)],
    }
    plan = plan_run(backlog, 1000, EXTENDED, now=NOW)
    # 10 % each for the three lower kinds; on-demand takes what it needs from the rest.
    assert len(plan.selected[ON_DEMAND]) == 100
    assert plan.planned_requests[ON_DEMAND] == 150 + 2
    assert plan.planned_requests[STALE] == 100 and len(plan.selected[STALE]) == 5000
    assert plan.planned_requests[POPULARITY] == 100
    # Unmatched songs get their share plus everything on-demand left of the pool.
    assert plan.planned_requests[UNMATCHED] == 1000 - 152 - 100 - 100
    assert sum(plan.planned_requests.values()) <= 1000


def test_strict_priority_gives_on_demand_everything_but_the_lower_shares():
    backlog = {ON_DEMAND: songs(ON_DEMAND, 10_000), UNMATCHED: songs(UNMATCHED, 10_000, start=20_000)}
    plan = plan_run(backlog, 1000, DEVELOPMENT, now=NOW)
    assert plan.planned_requests[UNMATCHED] == 99  # 66 songs; a 67th would need 101 requests
    assert plan.planned_requests[ON_DEMAND] == 900
    assert len(plan.selected[ON_DEMAND]) == 360  # 1.5 searches + 1 track call each


def test_a_share_the_kind_does_not_need_flows_on_to_the_next_kind():
    backlog = {STALE: tracks(STALE, 60), POPULARITY: tracks(POPULARITY, 100_000)}
    plan = plan_run(backlog, 1000, DEVELOPMENT, now=NOW)
    assert plan.planned_requests[STALE] == 60  # Development Mode: one track per request
    assert plan.selected[POPULARITY] == []  # no popularity in Development Mode

    backlog = {UNMATCHED: songs(UNMATCHED, 4), STALE: tracks(STALE, 100_000)}
    plan = plan_run(backlog, 1000, DEVELOPMENT, now=NOW)
    assert plan.planned_requests[UNMATCHED] == 6
    assert plan.planned_requests[STALE] == 994


def test_development_mode_never_plans_popularity_and_reports_no_backlog_for_it():
    plan = plan_run({POPULARITY: tracks(POPULARITY, 500)}, 10_000, DEVELOPMENT, now=NOW)
    assert plan.selected[POPULARITY] == []
    assert plan.backlog_items[POPULARITY] == 0 and plan.backlog_requests[POPULARITY] == 0


def test_extended_metadata_refresh_captures_popularity_at_no_extra_cost():
    stale = tracks(STALE, 100)
    popularity = tracks(POPULARITY, 100) + [WorkItem(POPULARITY, "only-popularity", last_done_at=hours_ago(30))]
    plan = plan_run({STALE: stale, POPULARITY: popularity}, 1000, EXTENDED, now=NOW)
    assert keys(plan.selected[STALE]) == keys(stale)
    assert keys(plan.selected[POPULARITY]) == ["only-popularity"]
    assert plan.planned_requests == {ON_DEMAND: 0, UNMATCHED: 0, STALE: 2, POPULARITY: 1}
    assert plan.backlog_items[POPULARITY] == 0


def test_a_share_freed_by_a_covering_kind_goes_round_again_instead_of_being_lost():
    """Popularity's share is set aside before metadata refreshes cover most of its tracks; what it then no
    longer needs goes back to the top of the order, here to matching."""
    stale = tracks(STALE, 5000)
    popularity = tracks(POPULARITY, 5000) + [WorkItem(POPULARITY, f"other{n}", last_done_at=hours_ago(30))
                                             for n in range(1000)]
    backlog = {UNMATCHED: songs(UNMATCHED, 10_000), STALE: stale, POPULARITY: popularity}
    plan = plan_run(backlog, 1000, EXTENDED, now=NOW)
    assert plan.planned_requests[STALE] == 100 and plan.planned_requests[POPULARITY] == 20
    assert plan.planned_requests[UNMATCHED] == 879  # its 800 of the first round + the 80 popularity freed
    assert sum(plan.planned_requests.values()) == 999  # a 587th song would need 881
    assert plan.backlog_items[POPULARITY] == 0


def test_a_song_served_on_demand_leaves_the_unmatched_backlog():
    plan = plan_run({ON_DEMAND: songs(ON_DEMAND, 3), UNMATCHED: songs(UNMATCHED, 5)}, 1000, EXTENDED, now=NOW)
    assert keys(plan.selected[ON_DEMAND]) == [0, 1, 2]
    assert keys(plan.selected[UNMATCHED]) == [3, 4]


def test_lower_kinds_keep_their_share_when_the_budget_cannot_clear_the_top():
    """No song starves: the lowest kind is served every run however large the kinds above it are."""
    backlog = {
        UNMATCHED: songs(UNMATCHED, 100_000),
        STALE: tracks(STALE, 1_000),
        POPULARITY: [WorkItem(POPULARITY, f"p{n}", last_done_at=hours_ago(30)) for n in range(60_000)],
    }
    plan = plan_run(backlog, 10_000, EXTENDED, now=NOW)
    assert plan.planned_requests[STALE] == 20
    assert plan.planned_requests[POPULARITY] >= 1_000
    assert plan.planned_requests[UNMATCHED] >= 10_000 - 20 - 1_000 - 1
    # The request matching could not use (an odd remainder at 1.5 searches a song) flows down.
    assert sum(plan.planned_requests.values()) == 10_000


# -- within a kind ----------------------------------------------------------------------------------------


def test_on_demand_is_first_come_first_served():
    requests = [
        WorkItem(ON_DEMAND, 7, requested_at=hours_ago(0.1)),
        WorkItem(ON_DEMAND, 3, requested_at=hours_ago(2)),
        WorkItem(ON_DEMAND, 5, requested_at=hours_ago(1)),
        WorkItem(ON_DEMAND, 9, requested_at=None),
    ]
    plan = plan_run({ON_DEMAND: requests}, 6, EXTENDED, now=NOW)  # 3 songs: 5 searches + 1 track call
    assert keys(plan.selected[ON_DEMAND]) == [9, 3, 5]
    assert plan.backlog_items[ON_DEMAND] == 1


def test_unmatched_never_attempted_first_then_oldest_attempt():
    backlog = [
        WorkItem(UNMATCHED, 1, last_done_at=hours_ago(5)),
        WorkItem(UNMATCHED, 2, last_done_at=hours_ago(500)),
        WorkItem(UNMATCHED, 4),
        WorkItem(UNMATCHED, 3),
    ]
    plan = plan_run({UNMATCHED: backlog}, 100, EXTENDED, now=NOW)
    assert keys(plan.selected[UNMATCHED]) == [3, 4, 2, 1]


def test_stale_metadata_stalest_first_then_most_popular_then_by_key():
    backlog = [
        WorkItem(STALE, "b", last_done_at=hours_ago(24), popularity=10),
        WorkItem(STALE, "c", last_done_at=hours_ago(24), popularity=90),
        WorkItem(STALE, "a", last_done_at=hours_ago(24), popularity=10),
        WorkItem(STALE, "d", last_done_at=hours_ago(24)),
        WorkItem(STALE, "e", last_done_at=hours_ago(99), popularity=1),
        WorkItem(STALE, "f", popularity=0),
    ]
    plan = plan_run({STALE: backlog}, 100, DEVELOPMENT, now=NOW)
    assert keys(plan.selected[STALE]) == ["f", "e", "c", "a", "b", "d"]
    plan = plan_run({STALE: backlog}, 2, DEVELOPMENT, now=NOW)
    assert keys(plan.selected[STALE]) == ["f", "e"]


def test_popularity_stalest_capture_first_then_most_popular():
    backlog = [
        WorkItem(POPULARITY, "x", last_done_at=hours_ago(25), popularity=80),
        WorkItem(POPULARITY, "y", last_done_at=hours_ago(30), popularity=5),
        WorkItem(POPULARITY, "z", last_done_at=hours_ago(25), popularity=95),
    ]
    plan = plan_run({POPULARITY: backlog}, 1, EXTENDED, now=NOW)
    assert keys(plan.selected[POPULARITY]) == ["y", "z", "x"]


def test_a_clock_running_ahead_does_not_push_work_to_the_back():
    backlog = [
        WorkItem(STALE, "ahead", last_done_at=NOW + dt.timedelta(hours=3), popularity=50),
        WorkItem(STALE, "now", last_done_at=NOW, popularity=10),
    ]
    plan = plan_run({STALE: backlog}, 10, DEVELOPMENT, now=NOW)
    assert keys(plan.selected[STALE]) == ["ahead", "now"]


def test_a_duplicated_key_is_planned_once_at_its_highest_priority():
    backlog = [
        WorkItem(ON_DEMAND, 4, requested_at=hours_ago(1)),
        WorkItem(ON_DEMAND, 8, requested_at=hours_ago(2)),
        WorkItem(ON_DEMAND, 4, requested_at=hours_ago(3)),
    ]
    plan = plan_run({ON_DEMAND: backlog}, 100, DEVELOPMENT, now=NOW)
    assert plan.selected[ON_DEMAND] == [backlog[2], backlog[1]]


def test_an_item_listed_under_the_wrong_kind_is_an_error():
    with pytest.raises(ValueError, match="listed as"):
        plan_run({UNMATCHED: [WorkItem(STALE, "t")]}, 10, EXTENDED, now=NOW)


# -- the column entry point and invariants ----------------------------------------------------------------


def test_columns_give_the_same_selection_as_items():
    rng = np.random.default_rng(7)
    backlog = {
        ON_DEMAND: [WorkItem(ON_DEMAND, int(k), requested_at=hours_ago(float(h)))
                    for k, h in zip(rng.integers(0, 500, 40), rng.uniform(0, 3, 40))],
        UNMATCHED: [WorkItem(UNMATCHED, int(k), last_done_at=None if h > 20 else hours_ago(float(h)))
                    for k, h in zip(range(2000), rng.uniform(0, 30, 2000))],
        STALE: [WorkItem(STALE, f"t{k}", last_done_at=hours_ago(float(rng.integers(0, 5))),
                         popularity=int(rng.integers(0, 100))) for k in range(3000)],
        POPULARITY: [WorkItem(POPULARITY, f"t{k}", last_done_at=hours_ago(float(rng.integers(24, 26))))
                     for k in range(0, 6000, 2)],
    }
    plan = plan_run(backlog, 900, EXTENDED, now=NOW)
    columns = {kind: BacklogColumns.from_items(kind, items) for kind, items in backlog.items()}
    column_plan = plan_columns(columns, 900, EXTENDED, now=NOW)
    for kind, items in backlog.items():
        assert [items[i] for i in column_plan.selected_positions[kind]] == plan.selected[kind]
    assert column_plan.planned_requests == plan.planned_requests
    assert column_plan.backlog_requests == plan.backlog_requests


@st.composite
def backlogs(draw: st.DrawFn) -> dict[WorkKind, list[WorkItem]]:
    backlog: dict[WorkKind, list[WorkItem]] = {}
    for kind in WorkKind:
        count = draw(st.integers(0, 60))
        hours = draw(st.lists(st.one_of(st.none(), st.integers(0, 100)), min_size=count, max_size=count))
        key_of = (lambda n: n) if kind in (ON_DEMAND, UNMATCHED) else (lambda n: f"t{n}")
        backlog[kind] = [
            WorkItem(kind, key_of(draw(st.integers(0, 80))),
                     requested_at=None if h is None else hours_ago(h),
                     last_done_at=None if h is None else hours_ago(h))
            for h in hours
        ]
    return backlog


@settings(max_examples=200, deadline=None)
@given(backlog=backlogs(), budget=st.integers(0, 400), mode=st.sampled_from(["extended", "development"]),
       searches=st.sampled_from([1.0, 1.33, 1.5, 2.0]))
def test_a_plan_never_exceeds_its_budget_and_accounts_for_every_item(backlog, budget, mode, searches):
    cost = CostModel.for_mode(mode, searches_per_song=searches)
    plan = plan_run(backlog, budget, cost, now=NOW)
    assert sum(plan.planned_requests.values()) <= budget
    for kind in WorkKind:
        selected = plan.selected[kind]
        assert plan.planned_requests[kind] == cost.requests_for(kind, len(selected))
        assert len(set(keys(selected))) == len(selected)
        if not cost.applies(kind):
            assert selected == [] and plan.backlog_items[kind] == 0
    # Every distinct key is either planned or left in the backlog (or done by the kind covering it).
    for kind, covering in ((ON_DEMAND, None), (UNMATCHED, ON_DEMAND), (STALE, None), (POPULARITY, STALE)):
        if not cost.applies(kind):
            continue
        distinct = set(keys(backlog[kind]))
        if covering is not None:
            distinct -= set(keys(plan.selected[covering]))
        assert len(plan.selected[kind]) + plan.backlog_items[kind] == len(distinct)
    # A lower kind with work gets at least its minimum share, or all it needs.
    share = budget // 10
    for kind in (UNMATCHED, STALE, POPULARITY):
        if cost.applies(kind) and plan.backlog_items[kind]:
            assert plan.planned_requests[kind] + cost.requests_for(kind, 1) > share
