"""Benchmark: a 1,000,000-song catalogue at 100 requests a minute, run by run over simulated days.

What it shows: with a request budget per run and the planner dividing it, the daily job spends its whole
budget every day while there is work, never more, serves the songs users search for within the hour, and
keeps what each app mode can keep fresh. Nothing sleeps: a virtual clock moves minute by minute, and
Spotify's answers are drawn from a seeded generator, so a run gives the same figures every time.

The real code under test: `spotify_pipeline.planning.plan_columns` (the planner `plan_run` uses) plans every
run, `spotify_pipeline.spotify.budget.InProcessRequestBudget` is every ledger, `Settings.run_request_budget`
the daily budget and `CostModel.for_mode` what a request buys. What is modelled (`Assumptions`):

- the catalogue: 85 % of the songs are on Spotify; a matching attempt costs 1 search when the ISRC search
  finds the song (78 % of the songs on Spotify) and 2 otherwise (ISRC, then title and artist), a mean of
  1.34: the matcher's measured 1.33 (README, Performance). The planner keeps planning with its default 1.5;
- a matched song's track needs a metadata fetch (never fetched first) and, with Extended Quota, a daily
  popularity capture; metadata is stale after 7 days; a miss is retried after 30 days;
- the daily run starts at 06:00 with the default budget (the rate limit x 1440 less the 10 % on-demand
  reserve: 129,600 requests at 100 a minute), plans, spends through its ledger as fast as the rate limit
  lets it, plans again with what is left, and ends when the ledger is spent or nothing is left to do. A run
  still going at the next 06:00 delays that day's run (one Spotify run at a time);
- users search ``user_requests_per_day`` random catalogue songs a day (Poisson arrivals); a search for a
  song not yet matched or with stale metadata queues an on-demand request (one per song). Every minute the
  sensor takes up to 500 queued songs into an on-demand run starting a minute later, planned with the same
  planner over the on-demand reserve (a ledger of ``rate x 1440 - daily budget`` requests a day); songs the
  reserve cannot pay for wait in the queue, and the daily run takes what is queued when it plans;
- the rate limit is the physical cap: at most ``rate`` requests a minute for all runs together; while the
  daily run is busy an on-demand run gets at most half of each minute (their requests interleave at the
  shared limiter), and the daily run the rest.

Figures per app mode (``extended``, ``development``):

- ``budget_utilization``: requests the daily runs spent / their budgets, over the budget-bound runs (those
  that left more than a trickle, 1 % of the budget, of work undone); ``budget_utilization_all_runs`` counts
  every run (after the catalogue is matched, an Extended Quota run needs a fraction of its budget);
- ``requests_over_budget``: requests the runs sent beyond their ledger's total (daily runs: their budget;
  on-demand runs: the day's reserve), counted from what each run sent, not from the ledger's answers;
- ``days_to_match_all``: days until every song had a matching attempt (beyond the horizon: projected as
  the horizon + the searches still needed / the daily budget, flagged), beside ``physical_min_days``: the
  searches needed / the daily budget;
  ``days_to_enrich_all`` / ``enrich_physical_min_days`` the same up to every found track's first fetch;
- ``priority_p95_minutes``: p95 of (enriched - requested) over on-demand requests (those still waiting at
  the end count with their wait so far);
- ``popularity_freshness`` / ``metadata_freshness``: shares of matched tracks whose last capture / fetch is
  under a day old, under 7 days, and older or never, at the end (popularity "unavailable" in Development
  Mode); ``days``: per daily run, the budget, spent, backlog per kind and ETA the run records.

``if_on_demand_waits_for_daily_run``: the on-demand wait (Extended Quota) when on-demand runs cannot start
while the daily run goes, as when both need the single ``spotify_api`` pool slot: queued songs then wait for
the daily run's next plan.

Run ``python -m bench.scale [--quick] [--days N]``; `run(quick)` returns the dict. ``--quick`` simulates
fewer days (7 instead of 21), never fewer songs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from bench.harness import percentile
from spotify_pipeline.planning import (
    PRIORITY,
    BacklogColumns,
    CostModel,
    WorkKind,
    plan_columns,
)
from spotify_pipeline.settings import Settings
from spotify_pipeline.spotify.budget import InProcessRequestBudget

MODES = ("extended", "development")
QUICK_DAYS = 7
FULL_DAYS = 21
MINUTE_S = 60.0
DAY_S = 86_400.0
MINUTES_PER_DAY = 1440
#: The first simulated daily run: a Monday, 06:00 UTC (the daily schedule's time).
START = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Assumptions:
    """What the simulation takes as given (see the module docstring)."""

    catalog_songs: int = 1_000_000
    rate_limit_per_minute: int = 100
    on_spotify_share: float = 0.85
    isrc_hit_share: float = 0.78
    user_requests_per_day: float = 4_000.0
    metadata_max_age_days: float = 7.0
    miss_retry_days: float = 30.0
    #: The on-demand sensor's batch (`MAX_REQUESTS_PER_RUN` in spotify_pipeline/defs/on_demand/sensors.py).
    on_demand_batch: int = 500
    on_demand_launch_minutes: int = 1
    #: A daily run plans again while budget is left, unless its last plan was smaller than this share of
    #: the budget (what is left is a trickle of work coming due, for the next run), and at most this often.
    min_replan_share: float = 0.01
    max_plans_per_run: int = 20
    #: True: an on-demand run cannot start while the daily run is going (both need the one `spotify_api` pool
    #: slot); queued songs then wait for the daily run's next plan. False: they run side by side.
    on_demand_waits_for_daily_run: bool = False
    seed: int = 15

    @property
    def settings(self) -> Settings:
        return Settings(spotify_rate_limit_per_minute=self.rate_limit_per_minute)


def _moment(epoch_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC)


class _Execution:
    """Planned work in the order it is done, as units (a song, or a batch of tracks) paid request by request.

    ``unit_costs`` are the requests each unit really takes (Spotify's answers, not the plan's estimate). The
    run pays with what its ledger grants; a unit is done once everything up to it is paid.
    """

    def __init__(self, unit_costs: np.ndarray, started_at: float) -> None:
        self.cumulative = np.cumsum(unit_costs, dtype=np.int64)
        self.total = int(self.cumulative[-1]) if len(self.cumulative) else 0
        self.started_at = started_at
        self.paid = 0
        self._paid_marks: list[int] = []
        self._paid_at: list[float] = []

    def remaining(self) -> int:
        return self.total - self.paid

    def pay(self, requests: int, at: float) -> None:
        if requests:
            self.paid += requests
            self._paid_marks.append(self.paid)
            self._paid_at.append(at)

    def done_at(self) -> np.ndarray:
        """When each unit was done (NaN: not done). Units that cost nothing are done when their turn came."""
        marks = np.asarray(self._paid_marks, dtype=np.int64)
        times = np.append(np.asarray(self._paid_at, dtype=np.float64), np.nan)
        done = times[np.searchsorted(marks, self.cumulative, side="left")]
        done[self.cumulative == 0] = self.started_at
        return done


@dataclass
class _DailyPass:
    """One plan of the daily run being carried out."""

    execution: _Execution
    songs_on_demand: np.ndarray
    requested_at: np.ndarray
    songs_unmatched: np.ndarray
    tracks: np.ndarray
    #: Unit of each item above, in that order (songs on demand, unmatched songs, tracks).
    unit_of_item: np.ndarray


@dataclass
class _OnDemandRun:
    songs: np.ndarray
    requested_at: np.ndarray
    execution: _Execution
    starts_at_minute: int


@dataclass
class _DailyRun:
    day: int
    budget: InProcessRequestBudget
    started_at: float
    plans: int = 0
    requests_sent: int = 0
    current: _DailyPass | None = None
    last_planned_requests: int = 0

    def plans_again(self, assumptions: Assumptions) -> bool:
        if self.plans == 0:
            return True
        big_enough = self.last_planned_requests >= assumptions.min_replan_share * self.budget.total
        return big_enough and self.plans < assumptions.max_plans_per_run and self.budget.remaining() > 0


@dataclass
class _ModeResult:
    days: list[dict[str, Any]] = field(default_factory=list)
    on_demand_waits_min: list[float] = field(default_factory=list)
    on_demand_requests: int = 0
    on_demand_requests_sent: int = 0
    on_demand_over_reserve: int = 0
    reserve_offered: int = 0
    peak_requests_per_minute: int = 0
    requests_total: int = 0


class CatalogueSimulation:
    """One app mode over ``days`` days: the catalogue's state in arrays (one slot per song; a song's track
    has the song's number), the runs as the scheduler and the sensor would start them."""

    def __init__(self, mode: str, days: int, assumptions: Assumptions | None = None) -> None:
        self.mode = mode
        self.days = days
        self.a = assumptions or Assumptions()
        settings = self.a.settings
        self.rate = self.a.rate_limit_per_minute
        self.run_budget = settings.run_request_budget
        self.reserve_per_day = settings.daily_request_capacity - self.run_budget
        self.cost = CostModel.for_mode(mode)
        self.start_s = START.timestamp()

        rng = np.random.default_rng(self.a.seed)
        n = self.a.catalog_songs
        self.on_spotify = rng.random(n) < self.a.on_spotify_share
        isrc_hit = rng.random(n) < self.a.isrc_hit_share
        self.searches = np.where(self.on_spotify & isrc_hit, 1, 2).astype(np.int64)
        # Most catalogue songs are obscure, a few are hits: a skewed popularity on Spotify's 0-100 scale.
        self.popularity = np.clip(np.round(rng.gamma(2.0, 12.0, n)), 0, 100)
        never = np.full(n, np.nan)
        self.attempted_at = never.copy()
        self.first_attempted_at = never.copy()
        self.matched = np.zeros(n, dtype=bool)
        self.metadata_at = never.copy()
        self.first_fetched_at = never.copy()
        self.popularity_at = never.copy()
        self.known_popularity = never.copy()

        self.pending: dict[int, float] = {}  # song -> when a user asked (the on-demand queue)
        self.in_flight: set[int] = set()
        self.result = _ModeResult()

    # -- the catalogue's state ---------------------------------------------------------------------------

    def _needs_match(self, songs: np.ndarray, at: float | np.ndarray) -> np.ndarray:
        attempted = self.attempted_at[songs]
        retry_before = at - self.a.miss_retry_days * DAY_S
        return ~self.matched[songs] & (np.isnan(attempted) | (attempted <= retry_before))

    def _metadata_due(self, tracks: np.ndarray, at: float) -> np.ndarray:
        fetched = self.metadata_at[tracks]
        stale_before = at - self.a.metadata_max_age_days * DAY_S
        return self.matched[tracks] & (np.isnan(fetched) | (fetched <= stale_before))

    def _attempt(self, songs: np.ndarray, at: np.ndarray) -> None:
        self.attempted_at[songs] = at
        self.first_attempted_at[songs] = np.fmin(self.first_attempted_at[songs], at)
        self.matched[songs] |= self.on_spotify[songs]

    def _fetch(self, tracks: np.ndarray, at: np.ndarray) -> None:
        self.metadata_at[tracks] = at
        self.first_fetched_at[tracks] = np.fmin(self.first_fetched_at[tracks], at)
        if self.cost.popularity_available:  # the track object carries popularity with Extended Quota only
            self.popularity_at[tracks] = at
            self.known_popularity[tracks] = self.popularity[tracks]

    def _enrich_on_demand(self, songs: np.ndarray, at: np.ndarray, requested_at: np.ndarray) -> None:
        """Match what needs it, then fetch every matched song's track; the users' waits are recorded."""
        needs_match = self._needs_match(songs, at)
        self._attempt(songs[needs_match], at[needs_match])
        found = self.matched[songs]
        self._fetch(songs[found], at[found])
        self.result.on_demand_waits_min.extend(((at - requested_at) / MINUTE_S).tolist())

    def _on_demand_unit_costs(self, songs: np.ndarray, at: float) -> np.ndarray:
        """Requests each on-demand song really takes: its searches, and a share of the track calls (one per
        song in Development Mode, one per batch of 50, charged to the batch's first song, with Extended Quota)."""
        needs_match = self._needs_match(songs, at)
        searches = np.where(needs_match, self.searches[songs], 0)
        fetched = self.matched[songs] | (needs_match & self.on_spotify[songs])
        batch_starts = fetched & (np.cumsum(fetched) % self.cost.tracks_per_request == 1 % self.cost.tracks_per_request)
        return searches + batch_starts.astype(np.int64)

    # -- the backlog, as the daily run sees it -----------------------------------------------------------

    def backlog(self, at: float, run_started_at: float) -> dict[WorkKind, BacklogColumns]:
        """What is waiting at ``at``: queued requests, songs to match, tracks to fetch, popularity to capture
        (a track's popularity is due once per daily run: not captured since this run started)."""
        queued = np.fromiter(self.pending, dtype=np.int64, count=len(self.pending))
        songs = np.arange(self.a.catalog_songs)
        unmatched = np.flatnonzero(self._needs_match(songs, at))
        stale = np.flatnonzero(self._metadata_due(songs, at))
        columns = {
            WorkKind.ON_DEMAND: BacklogColumns.of(queued, np.fromiter(self.pending.values(), np.float64, len(queued))),
            WorkKind.UNMATCHED: BacklogColumns.of(unmatched, self.attempted_at[unmatched]),
            WorkKind.STALE_METADATA: BacklogColumns.of(stale, self.metadata_at[stale], self.known_popularity[stale]),
        }
        if self.cost.popularity_available:
            captured = self.popularity_at
            due = np.flatnonzero(self.matched & (np.isnan(captured) | (captured < run_started_at)))
            columns[WorkKind.POPULARITY] = BacklogColumns.of(due, captured[due], self.known_popularity[due])
        return columns

    def _plan_daily_pass(self, run: _DailyRun, at: float) -> _DailyPass | None:
        columns = self.backlog(at, run.started_at)
        plan = plan_columns(columns, run.budget.remaining(), self.cost, now=_moment(at))
        run.plans += 1
        run.last_planned_requests = sum(plan.planned_requests.values())
        chosen = {kind: columns[kind].keys[plan.selected_positions[kind]] if kind in columns else
                  np.array([], dtype=np.int64) for kind in PRIORITY}
        if not any(len(keys) for keys in chosen.values()):
            return None
        on_demand = chosen[WorkKind.ON_DEMAND]
        requested_at = np.array([self.pending.pop(int(song)) for song in on_demand], dtype=np.float64)
        self.in_flight.update(on_demand.tolist())
        # Tracks refreshed for metadata and for popularity are the same calls: batched together, in plan order.
        tracks = np.concatenate([chosen[WorkKind.STALE_METADATA], chosen[WorkKind.POPULARITY]])
        song_costs = np.concatenate([
            self._on_demand_unit_costs(on_demand, at),
            self.searches[chosen[WorkKind.UNMATCHED]],
        ])
        batches = -(-len(tracks) // self.cost.tracks_per_request)
        unit_costs = np.concatenate([song_costs, np.ones(batches, dtype=np.int64)])
        songs = len(song_costs)
        unit_of_item = np.concatenate([np.arange(songs), songs + np.arange(len(tracks)) // self.cost.tracks_per_request])
        return _DailyPass(
            execution=_Execution(unit_costs, at),
            songs_on_demand=on_demand,
            requested_at=requested_at,
            songs_unmatched=chosen[WorkKind.UNMATCHED],
            tracks=tracks,
            unit_of_item=unit_of_item,
        )

    def _finish_daily_pass(self, work: _DailyPass) -> None:
        done_at = work.execution.done_at()[work.unit_of_item]
        n_on_demand, n_unmatched = len(work.songs_on_demand), len(work.songs_unmatched)
        on_demand_at = done_at[:n_on_demand]
        served = ~np.isnan(on_demand_at)
        self._enrich_on_demand(work.songs_on_demand[served], on_demand_at[served], work.requested_at[served])
        for song, asked in zip(work.songs_on_demand[~served].tolist(), work.requested_at[~served].tolist()):
            self.pending[song] = asked  # back in the queue, in its place
        self.in_flight.difference_update(work.songs_on_demand.tolist())
        unmatched_at = done_at[n_on_demand:n_on_demand + n_unmatched]
        attempted = ~np.isnan(unmatched_at)
        self._attempt(work.songs_unmatched[attempted], unmatched_at[attempted])
        tracks_at = done_at[n_on_demand + n_unmatched:]
        fetched = ~np.isnan(tracks_at)
        self._fetch(work.tracks[fetched], tracks_at[fetched])

    # -- on-demand runs ----------------------------------------------------------------------------------

    def _start_on_demand_run(self, minute: int, at: float, reserve: InProcessRequestBudget) -> _OnDemandRun | None:
        waiting = sorted(self.pending.items(), key=lambda entry: (entry[1], entry[0]))[: self.a.on_demand_batch]
        songs = np.array([song for song, _ in waiting], dtype=np.int64)
        asked = np.array([when for _, when in waiting], dtype=np.float64)
        plan = plan_columns({WorkKind.ON_DEMAND: BacklogColumns.of(songs, asked)}, reserve.remaining(), self.cost,
                            now=_moment(at))
        chosen = plan.selected_positions[WorkKind.ON_DEMAND]
        if not len(chosen):
            return None
        songs, asked = songs[chosen], asked[chosen]
        for song in songs.tolist():
            del self.pending[song]
        self.in_flight.update(songs.tolist())
        start = minute + self.a.on_demand_launch_minutes
        costs = self._on_demand_unit_costs(songs, start * MINUTE_S + self.start_s)
        return _OnDemandRun(songs, asked, _Execution(costs, at), start)

    def _finish_on_demand_run(self, run: _OnDemandRun, at: float) -> None:
        """The run's results land when it ends; songs its grant did not cover go back to the queue."""
        done = ~np.isnan(run.execution.done_at())
        self._enrich_on_demand(run.songs[done], np.full(int(done.sum()), at), run.requested_at[done])
        for song, asked in zip(run.songs[~done].tolist(), run.requested_at[~done].tolist()):
            self.pending[song] = asked
        self.in_flight.difference_update(run.songs.tolist())

    def _arrivals(self, day: int) -> Iterator[tuple[float, int]]:
        """The day's user searches (time, song): Poisson arrivals, the same in both modes."""
        rng = np.random.default_rng([self.a.seed, day])
        count = rng.poisson(self.a.user_requests_per_day)
        times = self.start_s + day * DAY_S + np.sort(rng.uniform(0, DAY_S, count))
        songs = rng.integers(0, self.a.catalog_songs, count)
        return zip(times.tolist(), songs.tolist())

    def _user_searches(self, song: int, at: float) -> None:
        if song in self.pending or song in self.in_flight:
            return
        one = np.array([song])
        if self._needs_match(one, at)[0] or self._metadata_due(one, at)[0]:
            self.pending[song] = at
            self.result.on_demand_requests += 1

    # -- the clock ----------------------------------------------------------------------------------------

    def run(self) -> _ModeResult:
        result = self.result
        daily: _DailyRun | None = None
        daily_runs_due: list[int] = []
        on_demand_runs: list[_OnDemandRun] = []
        reserve = InProcessRequestBudget(0)
        reserve_sent = 0
        arrivals: Iterator[tuple[float, int]] = iter(())
        next_arrival: tuple[float, int] | None = None
        for minute in range(self.days * MINUTES_PER_DAY):
            at = self.start_s + minute * MINUTE_S
            end = at + MINUTE_S
            if minute % MINUTES_PER_DAY == 0:  # 06:00: the schedule fires, the on-demand reserve renews
                day = minute // MINUTES_PER_DAY
                daily_runs_due.append(day)
                result.on_demand_over_reserve += max(0, reserve_sent - reserve.total)
                reserve, reserve_sent = InProcessRequestBudget(self.reserve_per_day), 0
                result.reserve_offered += reserve.total
                arrivals = self._arrivals(day)
                next_arrival = next(arrivals, None)
            while next_arrival is not None and next_arrival[0] < end:
                self._user_searches(next_arrival[1], next_arrival[0])
                next_arrival = next(arrivals, None)

            if daily is None and daily_runs_due:
                daily = _DailyRun(day=daily_runs_due.pop(0), budget=InProcessRequestBudget(self.run_budget),
                                  started_at=at)
            if daily is not None and daily.current is None:
                daily.current = self._plan_daily_pass(daily, at) if daily.plans_again(self.a) else None
                if daily.current is None:
                    self._end_daily_run(daily, at)
                    daily = None
            pool_taken = self.a.on_demand_waits_for_daily_run and daily is not None
            if self.pending and reserve.remaining() and not pool_taken:
                started = self._start_on_demand_run(minute, at, reserve)
                if started is not None:
                    on_demand_runs.append(started)

            # This minute's requests: on-demand runs first within their share, the daily run the rest.
            on_demand_cap = self.rate // 2 if daily is not None else self.rate
            sent_on_demand = 0
            for run in [r for r in on_demand_runs if r.starts_at_minute <= minute]:
                want = min(run.execution.remaining(), on_demand_cap - sent_on_demand)
                granted = reserve.try_spend(want)
                run.execution.pay(granted, end)
                sent_on_demand += granted
                if run.execution.remaining() == 0 or granted < want:  # done, or the reserve is spent
                    self._finish_on_demand_run(run, end)
                    on_demand_runs.remove(run)
            reserve_sent += sent_on_demand
            result.on_demand_requests_sent += sent_on_demand
            sent_daily = 0
            if daily is not None and daily.current is not None:
                work = daily.current
                want = min(work.execution.remaining(), self.rate - sent_on_demand)
                sent_daily = daily.budget.try_spend(want)
                work.execution.pay(sent_daily, end)
                daily.requests_sent += sent_daily
                if work.execution.remaining() == 0 or sent_daily < want:
                    self._finish_daily_pass(work)
                    daily.current = None
                    if daily.budget.remaining() == 0:
                        self._end_daily_run(daily, end)
                        daily = None
            result.peak_requests_per_minute = max(result.peak_requests_per_minute, sent_on_demand + sent_daily)
            result.requests_total += sent_on_demand + sent_daily

        horizon_end = self.start_s + self.days * DAY_S
        result.on_demand_over_reserve += max(0, reserve_sent - reserve.total)
        # Still waiting at the end: counted with the wait so far (a lower bound), not left out.
        waiting = list(self.pending.values()) + [a for r in on_demand_runs for a in r.requested_at.tolist()]
        if daily is not None and daily.current is not None:
            waiting += daily.current.requested_at.tolist()
        result.on_demand_waits_min.extend((horizon_end - asked) / MINUTE_S for asked in waiting)
        return result

    def _end_daily_run(self, run: _DailyRun, at: float) -> None:
        """What the run records: its budget, what it spent, the backlog it leaves and the ETA."""
        left = plan_columns(self.backlog(at, run.started_at), 0, self.cost, now=_moment(at))
        self.result.days.append({
            "day": run.day,
            "budget": run.budget.total,
            "spent": run.budget.spent(),
            "requests_sent": run.requests_sent,
            "plans": run.plans,
            # More than a trickle left undone: the budget, not the work, ended the run.
            "budget_bound": sum(left.backlog_requests.values()) >= self.a.min_replan_share * run.budget.total,
            "hours": round((at - run.started_at) / 3600, 2),
            "late_start_minutes": round((run.started_at - self.start_s - run.day * DAY_S) / MINUTE_S),
            "backlog_items": {str(kind): left.backlog_items[kind] for kind in PRIORITY},
            "backlog_requests": {str(kind): left.backlog_requests[kind] for kind in PRIORITY},
            "eta_days": round(left.eta_days(run.budget.total), 2),
        })

    # -- figures ------------------------------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        result = self.result
        days = result.days
        horizon_end = self.start_s + self.days * DAY_S
        bound = [d for d in days if d["budget_bound"]]
        over_budget = sum(max(0, d["requests_sent"] - d["budget"]) for d in days) + result.on_demand_over_reserve
        all_songs_searches = int(self.searches.sum())
        found = int(self.on_spotify.sum())
        never_attempted = np.isnan(self.first_attempted_at)
        searches_left = int(self.searches[never_attempted].sum())
        fetches_left = self.cost.requests_for(
            WorkKind.STALE_METADATA, int((self.on_spotify & np.isnan(self.first_fetched_at)).sum()))
        figures: dict[str, Any] = {
            "daily_runs": len(days),
            "budget_utilization": _ratio(sum(d["spent"] for d in bound), sum(d["budget"] for d in bound)),
            "budget_utilization_all_runs": _ratio(sum(d["spent"] for d in days), sum(d["budget"] for d in days)),
            "budget_bound_runs": len(bound),
            "requests_over_budget": over_budget,
            "longest_run_hours": max((d["hours"] for d in days), default=0.0),
            "late_daily_starts": sum(d["late_start_minutes"] > 0 for d in days),
            "peak_requests_per_minute": result.peak_requests_per_minute,
            "rate_limit_utilization": _ratio(result.requests_total, self.rate * MINUTES_PER_DAY * self.days),
            "physical_min_days": round(all_songs_searches / self.run_budget, 2),
            **self._days_until("days_to_match_all", self.first_attempted_at, searches_left),
            "enrich_physical_min_days": round(
                (all_songs_searches + self.cost.requests_for(WorkKind.STALE_METADATA, found)) / self.run_budget, 2),
            **self._days_until("days_to_enrich_all", self.first_fetched_at[self.on_spotify],
                               searches_left + fetches_left),
            "songs_matched": int(self.matched.sum()),
            "songs_attempted": int((~never_attempted).sum()),
            "on_demand_requests": result.on_demand_requests,
            "on_demand_requests_sent": result.on_demand_requests_sent,
            "on_demand_reserve_used": _ratio(result.on_demand_requests_sent, result.reserve_offered),
            "priority_p50_minutes": _minutes(result.on_demand_waits_min, 50),
            "priority_p95_minutes": _minutes(result.on_demand_waits_min, 95),
            "metadata_freshness": _freshness(self.metadata_at[self.matched], horizon_end),
            "popularity_freshness": (_freshness(self.popularity_at[self.matched], horizon_end)
                                     if self.cost.popularity_available else "unavailable"),
            "days": days,
        }
        return figures

    def _days_until(self, name: str, first_done_at: np.ndarray, requests_left: int) -> dict[str, Any]:
        """Days from the first run until everything in ``first_done_at`` was done once; when the horizon
        ended first, projected: the horizon plus the requests still needed at the full daily budget (the
        pace the budget-bound days measured, and the floor the planner's ETA reports)."""
        if not np.isnan(first_done_at).any():
            return {name: round((float(np.nanmax(first_done_at)) - self.start_s) / DAY_S, 2), f"{name}_projected": False}
        return {name: round(self.days + requests_left / self.run_budget, 1), f"{name}_projected": True}


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _minutes(values: list[float], pct: float) -> float | None:
    return round(percentile(values, pct), 1) if values else None


def _freshness(done_at: np.ndarray, at: float) -> dict[str, float]:
    """Shares of tracks last done under a day ago, under 7 days ago, and longer ago or never."""
    if not len(done_at):
        return {"under_1d": 0.0, "under_7d": 0.0, "older_or_never": 0.0}
    age_days = (at - done_at) / DAY_S  # NaN (never) fails both comparisons below
    under_1d = float(np.mean(age_days < 1))
    under_7d = float(np.mean(age_days < 7))
    return {"under_1d": round(under_1d, 4), "under_7d": round(under_7d, 4), "older_or_never": round(1 - under_7d, 4)}


def simulate(mode: str, days: int, assumptions: Assumptions | None = None) -> dict[str, Any]:
    """One app mode's figures (see the module docstring)."""
    simulation = CatalogueSimulation(mode, days, assumptions)
    simulation.run()
    return simulation.figures()


def run(quick: bool = False, days: int | None = None, assumptions: Assumptions | None = None) -> dict[str, Any]:
    """The ``scale`` section of the benchmark results: both app modes over the same catalogue and users."""
    assumptions = assumptions or Assumptions()
    days = days or (QUICK_DAYS if quick else FULL_DAYS)
    settings = assumptions.settings
    section: dict[str, Any] = {
        "catalog_songs": assumptions.catalog_songs,
        "simulated_days": days,
        "rate_limit_per_minute": assumptions.rate_limit_per_minute,
        "run_request_budget": settings.run_request_budget,
        "on_demand_reserve_per_day": settings.daily_request_capacity - settings.run_request_budget,
        "assumptions": asdict(assumptions),
        "seconds": {},
    }
    for mode in MODES:
        started = time.perf_counter()
        section[mode] = simulate(mode, days, assumptions)
        section["seconds"][mode] = round(time.perf_counter() - started, 1)
    # The same with on-demand runs queued behind the daily run for the one `spotify_api` pool slot: what the
    # on-demand wait becomes if the deployment does not let them run side by side.
    started = time.perf_counter()
    blocked = simulate("extended", days, replace(assumptions, on_demand_waits_for_daily_run=True))
    section["if_on_demand_waits_for_daily_run"] = {
        "mode": "extended",
        **{name: blocked[name] for name in ("priority_p50_minutes", "priority_p95_minutes", "budget_utilization")},
    }
    section["seconds"]["if_on_demand_waits_for_daily_run"] = round(time.perf_counter() - started, 1)
    return section


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DAYS} simulated days instead of {FULL_DAYS}")
    parser.add_argument("--days", type=int, default=None, help="simulated days (overrides --quick)")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, days=args.days), indent=2))
