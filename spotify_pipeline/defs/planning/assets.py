"""`spotify_refresh_plan` (what a daily run spends its requests on) and `spotify_refresh_backlog` (what it left)."""

from collections.abc import Mapping
from typing import Literal

import dagster as dg

from spotify_pipeline.defs.partitions import refuse_capture_runs_for_other_days
from spotify_pipeline.defs.planning.plan import (
    DEFAULT_MISS_RETRY_DAYS,
    app_capabilities,
    backlog_after,
    ensure_plan,
)
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.usage import UsageTracker
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.planning import DEFAULT_SEARCHES_PER_SONG, PRIORITY, WorkKind
from spotify_pipeline.settings import get_settings
from spotify_pipeline.spotify import Capabilities
from spotify_pipeline.spotify.auth import TOKEN_ENDPOINT
from spotify_pipeline.warehouse.backlog import (
    KindFigures,
    load_plan,
    record_run_outcome,
    requests_recorded,
)
from spotify_pipeline.warehouse.enrichment import utc_now

PLAN_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("kind", "string", description="on_demand, unmatched, stale_metadata or popularity."),
        dg.TableColumn("planned_items", "int", description="Songs or tracks this run does."),
        dg.TableColumn("planned_requests", "int", description="Requests planned for them (an estimate for songs)."),
        dg.TableColumn("backlog_items", "int", description="Songs or tracks left for the next runs."),
        dg.TableColumn("backlog_requests", "int", description="Requests estimated to clear them."),
    ]
)


class RefreshPlanConfig(dg.Config):
    miss_retry_days: float = DEFAULT_MISS_RETRY_DAYS
    """A song that found no match is planned again only after this many days (songs asked for on demand are
    planned at once)."""


@dg.asset(group_name="spotify", kinds={"spotify", "sql"}, pool="spotify_api")
def spotify_refresh_plan(
    context: dg.AssetExecutionContext,
    config: RefreshPlanConfig,
    spotify: SpotifyResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """What this run spends its Spotify request budget on, in `spotify_refresh_runs`, `spotify_refresh_kinds`
    and `spotify_refresh_plan_items`.

    A run may send `SPOTIFY_RUN_REQUEST_BUDGET` Web API requests (by default what the rate limit allows
    between two daily runs, less the on-demand reserve), never more than the app has left today. The plan
    divides them: songs users searched for first (oldest request first), then songs never matched (never
    tried first), then track metadata past its 24 h (stalest first), then today's popularity (stalest, then
    most popular first); every waiting kind is set aside a tenth of the budget, so none starves while a large
    catalogue is matched. The later steps of the run do only their planned share, and the next run continues
    with what is left. Costs no request, but one to learn the app's mode the first time.
    """
    refuse_capture_runs_for_other_days(context)
    usage = UsageTracker(context, spotify, warehouse)
    plan = ensure_plan(context, spotify, warehouse, miss_retry_days=config.miss_retry_days)
    return dg.MaterializeResult(
        metadata={
            "budget": dg.MetadataValue.int(plan.run_budget),
            "available": dg.MetadataValue.int(plan.available),
            "planned_requests": dg.MetadataValue.int(plan.total_planned_requests),
            **{f"planned_{kind.value}": dg.MetadataValue.int(f.planned_items) for kind, f in plan.kinds.items()},
            "eta_days": dg.MetadataValue.float(round(plan.eta_days(), 3)),
            "app_mode": dg.MetadataValue.text(plan.app_mode),
            "searches_per_song": dg.MetadataValue.float(plan.searches_per_song),
            "plan": _plan_table(plan.kinds),
            **usage.metadata(),
        }
    )


@dg.asset(group_name="spotify", kinds={"sql"}, deps=["spotify_refresh_plan", "songs_enriched"])
def spotify_refresh_backlog(
    context: dg.AssetExecutionContext, spotify: SpotifyResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """The Spotify work left once the run's work is done, and what the run spent: plotted run after run.

    `requests_spent` is what the run sent to the Web API (its steps' `spotify_api_usage` rows, token requests
    aside), at most `budget`. The backlog, per kind: songs searched for on demand and not tried yet, songs due
    for matching, tracks whose metadata is older than 24 h, tracks without today's popularity (Extended Quota
    only); `backlog_requests` estimates the requests to clear it and `eta_days` the days that takes at one
    run's budget a day (new songs arriving meanwhile not counted). Recorded in `spotify_refresh_runs` and
    `spotify_refresh_kinds`. Costs no request (but one to learn the app's mode, materialized on its own).
    """
    run_id = context.run.run_id
    engine = warehouse.engine
    usage = UsageTracker(context, spotify, warehouse)
    with engine.connect() as conn:
        plan = load_plan(conn, run_id)
    client = spotify.get_client()
    if plan is not None:  # measured as the plan was made (the app's mode as this run last saw it)
        mode: Literal["extended", "development"] = "extended" if plan.app_mode == "extended" else "development"
        caps = client.known_capabilities or Capabilities.for_mode(mode)
        searches, run_budget, miss_retry_days = plan.searches_per_song, plan.run_budget, plan.miss_retry_days
    else:  # materialized on its own
        caps = app_capabilities(client)
        searches, run_budget, miss_retry_days = (
            DEFAULT_SEARCHES_PER_SONG, spotify.budget_total(get_settings()), DEFAULT_MISS_RETRY_DAYS
        )
    own_usage = usage.metadata()  # recorded now, so what the run spent includes it
    with engine.connect() as conn:
        spent = requests_recorded(conn, run_id, except_endpoint=TOKEN_ENDPOINT)
    left = backlog_after(warehouse, caps, searches, miss_retry_days=miss_retry_days)
    eta = left.eta_days(run_budget)
    with engine.begin() as conn:
        record_run_outcome(
            conn, run_id, finished_at=utc_now(), requests_spent=spent, eta_days=eta,
            remaining={kind: (left.backlog_items[kind], left.backlog_requests[kind]) for kind in PRIORITY},
        )
    return dg.MaterializeResult(
        metadata={
            "budget": dg.MetadataValue.int(run_budget),
            "requests_spent": dg.MetadataValue.int(spent),
            **{f"backlog_{kind.value}": dg.MetadataValue.int(left.backlog_items[kind]) for kind in PRIORITY},
            "backlog_requests": dg.MetadataValue.int(sum(left.backlog_requests.values())),
            "eta_days": dg.MetadataValue.float(round(eta, 3)),
            "backlog": _plan_table(
                {
                    kind: KindFigures(
                        planned_items=plan.kinds[kind].planned_items if plan and kind in plan.kinds else 0,
                        planned_requests=plan.kinds[kind].planned_requests if plan and kind in plan.kinds else 0,
                        backlog_items=left.backlog_items[kind],
                        backlog_requests=left.backlog_requests[kind],
                    )
                    for kind in PRIORITY
                }
            ),
            **own_usage,
        }
    )


def _plan_table(kinds: Mapping[WorkKind, KindFigures]) -> dg.MetadataValue:
    records = [
        dg.TableRecord(
            {"kind": kind.value, "planned_items": f.planned_items, "planned_requests": f.planned_requests,
             "backlog_items": f.backlog_items, "backlog_requests": f.backlog_requests}
        )
        for kind, f in kinds.items()
    ]
    return dg.MetadataValue.table(records=records, schema=PLAN_TABLE_SCHEMA)
