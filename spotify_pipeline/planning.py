"""How a run divides its Spotify request budget between the kinds of work waiting for it.

Pure: no Dagster, no warehouse, no HTTP. The caller lists what is waiting (`WorkItem`s per `WorkKind`), the
number of requests the run may spend and what a request buys in this app mode (`CostModel`); `plan_run`
answers what to do this run, in order, and what is left (`Plan`). The pipeline turns the plan into Spotify
calls and spends through the request budget ledger (``spotify_pipeline.spotify.budget``); the benchmark's
scale simulation (``bench/scale.py``) plans with the same code through `plan_columns`.

Between kinds: strict priority with a guaranteed minimum share
    ON_DEMAND > UNMATCHED > STALE_METADATA > POPULARITY. Songs someone searched for come first, then songs
    never matched (an unmatched song has no Spotify data at all), then track metadata past its age, then
    popularity captures. Strict priority alone would starve the lower kinds for the week a large catalogue
    takes to match, so every non-empty lower kind is first set aside ``min_share`` of the budget (10 % by
    default, capped at what its backlog needs). The rest is the shared pool, offered in priority order; what
    a kind leaves unused of the pool and of its own share flows on to the next kind. What is still unused
    after the last kind (a share set aside for work that a higher kind's selection turned out to cover)
    goes round again from the top, so a plan leaves requests unplanned only when nothing more fits.

Within a kind: the longest-waiting first, then the most popular, then by key
    - ON_DEMAND: oldest request first (first come, first served). The figure that matters is the p95 delay
      between a user's search and its enrichment; when a run cannot serve every request, serving the newest
      first would leave the oldest waiting run after run and make that tail unbounded, while FIFO bounds
      every request's wait by the queue ahead of it. Requests without a time rank as oldest.
    - UNMATCHED: never attempted first, then the oldest attempt (a miss is retried only after those).
    - STALE_METADATA: never fetched or stalest first, then the most popular.
    - POPULARITY: stalest (or no) capture first, then the most popular.
    Within a kind the same key is planned once: duplicates collapse into their highest-priority entry.
    Timestamps later than ``now`` (another machine's clock running ahead) count as ``now``.

What a request buys (`CostModel`)
    - a matching attempt costs ``searches_per_song`` searches on average (the matcher's measured mean);
    - track objects come ``tracks_per_request`` at a time: 50 per ``GET /tracks?ids=`` with Extended Quota,
      1 per ``GET /tracks/{id}`` in Development Mode;
    - an ON_DEMAND song costs a matching attempt plus its track fetch;
    - with Extended Quota a track object carries popularity, so a track refreshed as STALE_METADATA has its
      popularity captured by the same request: it leaves the POPULARITY backlog at no extra cost. Likewise a
      song selected as ON_DEMAND leaves the UNMATCHED backlog;
    - Development Mode has no popularity: POPULARITY work is never planned and its backlog is reported as 0.

Requests are estimates rounded up per kind; the ledger, not the plan, enforces the budget. Matching usually
costs less than the estimate, so a caller that finds budget left after doing its plan may plan again with
what remains. Budget 0 gives an empty plan that still reports the backlog; a negative budget is an error.

Scale: the ordering and the budget split run on NumPy columns (`BacklogColumns`), so planning over a million
items takes well under a second once they are columns; `plan_run` builds the columns from `WorkItem`s and
`plan_columns` is the entry point for callers that hold their backlog as arrays already.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np

from spotify_pipeline.spotify.capabilities import Capabilities

#: Share of the budget set aside for each non-empty kind below ON_DEMAND, so none of them starves.
DEFAULT_MIN_SHARE = 0.10
#: The matcher's measured mean of search requests per song is about 1.33 (README, Performance); planning
#: with a little more keeps a run from planning more songs than its budget can match.
DEFAULT_SEARCHES_PER_SONG = 1.5


class WorkKind(StrEnum):
    """What a request is spent on, in priority order."""

    ON_DEMAND = "on_demand"
    UNMATCHED = "unmatched"
    STALE_METADATA = "stale_metadata"
    POPULARITY = "popularity"


#: Kinds from the highest priority to the lowest.
PRIORITY: tuple[WorkKind, ...] = (
    WorkKind.ON_DEMAND,
    WorkKind.UNMATCHED,
    WorkKind.STALE_METADATA,
    WorkKind.POPULARITY,
)

#: Work of the value's kind also does the key's kind of work for the same key (song id or track id).
_COVERED_BY: dict[WorkKind, WorkKind] = {
    WorkKind.UNMATCHED: WorkKind.ON_DEMAND,
    WorkKind.POPULARITY: WorkKind.STALE_METADATA,
}


@dataclass(frozen=True)
class WorkItem:
    """One piece of waiting work.

    ``key`` is a song id (ON_DEMAND, UNMATCHED) or a Spotify track id (STALE_METADATA, POPULARITY); keys of
    one kind share a type. ``requested_at`` (ON_DEMAND) is when a user searched for the song;
    ``last_done_at`` is the last attempt, refresh or capture (None: never); ``popularity`` the last known
    Spotify popularity, used for ordering only.
    """

    kind: WorkKind
    key: int | str
    requested_at: datetime | None = None
    last_done_at: datetime | None = None
    popularity: int | None = None

    @property
    def waiting_since(self) -> datetime | None:
        """The time this item's priority is ranked by: the request for ON_DEMAND, else the last time done."""
        return self.requested_at if self.kind is WorkKind.ON_DEMAND else self.last_done_at


@dataclass(frozen=True)
class CostModel:
    """What Spotify requests buy in one app mode."""

    searches_per_song: float
    tracks_per_request: int
    popularity_available: bool

    def __post_init__(self) -> None:
        if not self.searches_per_song > 0:
            raise ValueError(f"searches_per_song must be positive, got {self.searches_per_song}")
        if self.tracks_per_request < 1:
            raise ValueError(f"tracks_per_request must be at least 1, got {self.tracks_per_request}")

    @classmethod
    def for_mode(cls, mode: str, searches_per_song: float = DEFAULT_SEARCHES_PER_SONG) -> CostModel:
        """The cost model of an app in ``"extended"`` (Extended Quota) or ``"development"`` mode."""
        if mode not in ("extended", "development"):
            raise ValueError(f"unknown app mode {mode!r}: expected 'extended' or 'development'")
        capabilities = Capabilities.for_mode(mode)  # type: ignore[arg-type]  # checked just above
        return cls(
            searches_per_song=searches_per_song,
            tracks_per_request=capabilities.batch_size,
            popularity_available=capabilities.popularity,
        )

    def applies(self, kind: WorkKind) -> bool:
        """Whether this mode can do `kind` at all (popularity needs Extended Quota)."""
        return kind is not WorkKind.POPULARITY or self.popularity_available

    def requests_for(self, kind: WorkKind, items: int) -> int:
        """Requests that `items` items of `kind` need, rounded up (0 for work this mode cannot do)."""
        if items < 0:
            raise ValueError(f"items must not be negative, got {items}")
        if items == 0 or not self.applies(kind):
            return 0
        # Rounded to 9 places first so that 100 x 1.33 is 133 requests, not 134.
        searches = math.ceil(round(items * self.searches_per_song, 9))
        track_calls = -(-items // self.tracks_per_request)
        if kind is WorkKind.ON_DEMAND:
            return searches + track_calls
        if kind is WorkKind.UNMATCHED:
            return searches
        return track_calls

    def affordable(self, kind: WorkKind, requests: int, available: int) -> int:
        """The most items of `kind`, at most `available`, that `requests` requests pay for."""
        if not self.applies(kind):
            return 0
        low, high = 0, available  # requests_for grows with items: binary search for the last that fits
        while low < high:
            middle = (low + high + 1) // 2
            if self.requests_for(kind, middle) <= requests:
                low = middle
            else:
                high = middle - 1
        return low


class _BacklogFigures:
    """What both plan shapes report about the work left after the run."""

    backlog_requests: dict[WorkKind, int]

    def eta_days(self, daily_budget: int) -> float:
        """Days to clear the whole backlog left after this run at `daily_budget` requests a day.

        New work arriving meanwhile is not counted: this is the floor the budget sets, not a forecast.
        """
        left = sum(self.backlog_requests.values())
        if left == 0:
            return 0.0
        if daily_budget <= 0:
            raise ValueError(f"daily_budget must be positive, got {daily_budget}")
        return left / daily_budget


@dataclass(frozen=True)
class Plan(_BacklogFigures):
    """What a run does with its budget and what it leaves for the next runs."""

    budget: int
    selected: dict[WorkKind, list[WorkItem]]
    planned_requests: dict[WorkKind, int]
    backlog_items: dict[WorkKind, int]
    backlog_requests: dict[WorkKind, int]

    @property
    def total_planned_requests(self) -> int:
        return sum(self.planned_requests.values())


@dataclass(frozen=True)
class BacklogColumns:
    """One kind's backlog as parallel arrays: the planner's input at scale.

    ``keys``: song or track ids (integers or strings); ``waiting_since``: epoch seconds of the time the item
    ranks by (see `WorkItem.waiting_since`), NaN for never; ``popularity``: last known popularity, NaN if
    unknown.
    """

    keys: np.ndarray
    waiting_since: np.ndarray
    popularity: np.ndarray

    def __post_init__(self) -> None:
        if not len(self.keys) == len(self.waiting_since) == len(self.popularity):
            raise ValueError("keys, waiting_since and popularity must have the same length")

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def of(
        cls,
        keys: np.ndarray | Sequence[int] | Sequence[str],
        waiting_since: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
    ) -> BacklogColumns:
        """Columns from arrays; a missing ``waiting_since`` or ``popularity`` column means never / unknown."""
        keys = np.asarray(keys)
        unknown = np.full(len(keys), np.nan)
        return cls(
            keys=keys,
            waiting_since=unknown if waiting_since is None else np.asarray(waiting_since, dtype=np.float64),
            popularity=unknown if popularity is None else np.asarray(popularity, dtype=np.float64),
        )

    @classmethod
    def from_items(cls, kind: WorkKind, items: Sequence[WorkItem]) -> BacklogColumns:
        misfiled = next((item for item in items if item.kind is not kind), None)
        if misfiled is not None:
            raise ValueError(f"a {misfiled.kind} item (key {misfiled.key!r}) is listed as {kind} work")
        if not items:
            return cls.of(np.array([], dtype=np.int64))
        nan = math.nan
        return cls.of(
            keys=np.array([item.key for item in items]),
            waiting_since=np.array(
                [nan if (since := item.waiting_since) is None else since.timestamp() for item in items]
            ),
            popularity=np.array([nan if item.popularity is None else item.popularity for item in items]),
        )


@dataclass(frozen=True)
class ColumnPlan(_BacklogFigures):
    """`Plan` over `BacklogColumns`: the selection as positions into each kind's columns, in priority order."""

    budget: int
    selected_positions: dict[WorkKind, np.ndarray]
    planned_requests: dict[WorkKind, int]
    backlog_items: dict[WorkKind, int]
    backlog_requests: dict[WorkKind, int]


def plan_run(
    backlog: Mapping[WorkKind, Sequence[WorkItem]],
    budget: int,
    cost: CostModel,
    *,
    now: datetime,
    min_share: float = DEFAULT_MIN_SHARE,
) -> Plan:
    """Choose this run's work: at most `budget` requests, by the rules in this module's docstring.

    `backlog` lists the waiting items per kind (kinds left out have none). ``selected`` keeps the given
    `WorkItem` objects, in the order to do them.
    """
    items = {kind: list(backlog.get(kind, ())) for kind in PRIORITY}
    columns = {kind: BacklogColumns.from_items(kind, kind_items) for kind, kind_items in items.items()}
    chosen = plan_columns(columns, budget, cost, now=now, min_share=min_share)
    return Plan(
        budget=chosen.budget,
        selected={kind: [items[kind][int(i)] for i in chosen.selected_positions[kind]] for kind in PRIORITY},
        planned_requests=chosen.planned_requests,
        backlog_items=chosen.backlog_items,
        backlog_requests=chosen.backlog_requests,
    )


def plan_columns(
    backlog: Mapping[WorkKind, BacklogColumns],
    budget: int,
    cost: CostModel,
    *,
    now: datetime,
    min_share: float = DEFAULT_MIN_SHARE,
) -> ColumnPlan:
    """`plan_run` for a backlog held as arrays: the same rules, the selection as positions."""
    if budget < 0:
        raise ValueError(f"budget must not be negative, got {budget}")
    lower_kinds = PRIORITY[1:]
    if not 0 <= min_share <= 1 / len(lower_kinds):
        raise ValueError(f"min_share must lie between 0 and 1/{len(lower_kinds)}, got {min_share}")
    now_s = now.timestamp()
    empty = BacklogColumns.of(np.array([], dtype=np.int64))
    columns = {kind: backlog.get(kind, empty) for kind in PRIORITY}
    eligible = {
        kind: _distinct_positions(columns[kind], now_s) if cost.applies(kind) else np.array([], dtype=np.intp)
        for kind in PRIORITY
    }

    share = math.floor(min_share * budget)
    reserved = {kind: min(share, cost.requests_for(kind, len(eligible[kind]))) for kind in lower_kinds}
    positions = dict(eligible)
    selected = {kind: np.array([], dtype=np.intp) for kind in PRIORITY}
    planned = dict.fromkeys(PRIORITY, 0)
    covering_seen = dict.fromkeys(PRIORITY, 0)  # how many of the covering kind's items were taken out already

    def offer(kind: WorkKind, requests: int) -> int:
        """Let `kind` take more of its backlog for up to `requests` more requests; returns what it left."""
        covering = _COVERED_BY.get(kind)
        if covering is not None and len(selected[covering]) > covering_seen[kind]:
            # Items the covering kind now does leave this kind's backlog, and their requests come back.
            done = columns[covering].keys[selected[covering]]
            covering_seen[kind] = len(selected[covering])
            positions[kind] = positions[kind][~np.isin(columns[kind].keys[positions[kind]], done)]
            selected[kind] = selected[kind][~np.isin(columns[kind].keys[selected[kind]], done)]
        allowance = planned[kind] + requests  # what it had planned (covered items' requests included) + the offer
        count = cost.affordable(kind, allowance, len(positions[kind]))
        if count > len(selected[kind]):  # the first `count` in priority order extend the ones already chosen
            selected[kind] = _first_in_priority(columns[kind], positions[kind], count, now_s)
        planned[kind] = cost.requests_for(kind, len(selected[kind]))
        return allowance - planned[kind]

    pool = budget - sum(reserved.values())
    for kind in PRIORITY:  # strict priority: each kind's share plus what the kinds above it left
        pool = offer(kind, pool + reserved.get(kind, 0))
    # Requests still unused (a lower kind's share it no longer needed once a covering kind did part of its
    # work) go round again from the top, until nothing more fits.
    for _ in PRIORITY:
        left_before = pool
        for kind in PRIORITY:
            pool = offer(kind, pool)
        if pool in (0, left_before):
            break
    backlog_items = {kind: len(positions[kind]) - len(selected[kind]) for kind in PRIORITY}
    return ColumnPlan(
        budget=budget,
        selected_positions=selected,
        planned_requests=planned,
        backlog_items=backlog_items,
        backlog_requests={kind: cost.requests_for(kind, backlog_items[kind]) for kind in PRIORITY},
    )


def _rank_columns(columns: BacklogColumns, positions: np.ndarray, now_s: float) -> tuple[np.ndarray, ...]:
    """Sort keys for `np.lexsort` (last = primary): waiting since (never first), popularity (high first), key."""
    waiting = columns.waiting_since[positions]
    since = np.where(np.isnan(waiting), -np.inf, np.minimum(waiting, now_s))
    popularity = columns.popularity[positions]
    popularity_rank = np.where(np.isnan(popularity), np.inf, -popularity)
    return columns.keys[positions], popularity_rank, since


def _distinct_positions(columns: BacklogColumns, now_s: float) -> np.ndarray:
    """Positions of the items, one per key: a duplicated key keeps its highest-priority entry."""
    positions = np.arange(len(columns))
    if not _has_duplicates(columns.keys):
        return positions
    ordered = positions[np.lexsort(_rank_columns(columns, positions, now_s))]
    _, first = np.unique(columns.keys[ordered], return_index=True)
    return np.sort(ordered[first])


def _has_duplicates(keys: np.ndarray) -> bool:
    if keys.dtype.kind in "iu":
        ordered = np.sort(keys)
        return bool(np.any(ordered[1:] == ordered[:-1]))
    return len(set(keys.tolist())) != len(keys)  # hashing beats NumPy's string sort several times over


def _first_in_priority(columns: BacklogColumns, positions: np.ndarray, count: int, now_s: float) -> np.ndarray:
    """The `count` highest-priority of `positions`, in priority order."""
    if count == 0:
        return np.array([], dtype=np.intp)
    if count < len(positions):
        # Only items waiting at least as long as the count-th longest can be among the first `count`:
        # sorting just those keeps a small selection from a million items cheap.
        since = _rank_columns(columns, positions, now_s)[2]
        threshold = np.partition(since, count - 1)[count - 1]
        positions = positions[since <= threshold]
    return positions[np.lexsort(_rank_columns(columns, positions, now_s))][:count]
