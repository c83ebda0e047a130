"""The sensor turning queued enrichment requests into runs of `spotify_on_demand_refresh`.

A request leaves the queue only once Dagster has recorded the run requested for it:
- a tick claims a batch and returns one `RunRequest` whose `run_key` is derived from the batch's entry ids,
  and remembers (in the sensor's cursor, saved with the run requests) which entries that run key answers;
- the next tick acknowledges the remembered entries whose run exists (Dagster tags the run with its run key);
- a tick that fails after claiming gives the claim back at once, so the next tick requests it again;
- a process that dies holding a claim: the queue delivers the same entries again after its visibility
  timeout, hence the same run key, and Dagster never creates two runs for one run key of a sensor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import dagster as dg

from spotify_pipeline.defs.on_demand.assets import OnDemandRequest, spotify_on_demand_enrichment_job
from spotify_pipeline.enrichment_queue import build_request_queue
from spotify_pipeline.settings import get_settings

#: Queue entries (one song each) folded into one run; a longer queue drains over the next ticks.
MAX_REQUESTS_PER_RUN = 500
RUN_KEY_PREFIX = "enrichment-requests-"
RUN_KEY_TAG = "dagster/run_key"
SOURCE_TAG = "spotify_pipeline/source"
SOURCE = "spotify_enrichment_requests"
ASSET_NAME = "spotify_on_demand_enrichment"


def request_run_key(entry_ids: Iterable[str]) -> str:
    """The run key of a batch: a digest of its queue entry ids, independent of their order."""
    digest = hashlib.sha256("\n".join(sorted(entry_ids)).encode("utf-8")).hexdigest()
    return RUN_KEY_PREFIX + digest[:32]


def on_demand_run_config(song_ids: Iterable[int]) -> dg.RunConfig:
    return dg.RunConfig(ops={ASSET_NAME: OnDemandRequest(song_ids=sorted({int(i) for i in song_ids}))})


def _awaiting(cursor: str | None) -> dict[str, list[str]]:
    """Run key -> queue entries requested under it and not yet acknowledged."""
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {}
    return {str(k): [str(e) for e in v] for k, v in value.items()} if isinstance(value, dict) else {}


def _run_recorded(instance: dg.DagsterInstance, run_key: str) -> bool:
    return bool(instance.get_run_records(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1))


@dg.sensor(
    name="spotify_enrichment_requests",
    job=spotify_on_demand_enrichment_job,
    minimum_interval_seconds=30,
    # Running by default, unlike most sensors: it only acts on songs a user explicitly asked for
    # (`search --enrich`), costs one queue read per tick when idle, and a stopped default would make
    # `--enrich` silently do nothing until someone found the toggle. Stop it in the UI to pause on-demand runs.
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def spotify_enrichment_requests(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Enriches songs on demand: songs a search found unmatched or stale (`spotify-pipeline search --enrich`)
    are matched and refreshed from Spotify within a minute or so, instead of waiting for the daily run.

    Every 30 s it takes up to 500 queued requests and launches one `spotify_on_demand_refresh` run (asset `spotify_on_demand_enrichment`) for
    those songs; it never touches the daily partitions. A request is acknowledged only once Dagster has
    recorded its run, so a failing tick loses nothing. The queue is the Redis stream when REDIS_URL is set,
    else the warehouse table `spotify_enrichment_requests`.
    """
    queue = build_request_queue(get_settings())
    try:
        awaiting = _awaiting(context.cursor)
        for run_key in [key for key in awaiting if _run_recorded(context.instance, key)]:
            queue.ack_entries(awaiting.pop(run_key))
        claim = queue.claim(MAX_REQUESTS_PER_RUN)
        if claim and not claim.song_ids:  # only malformed entries: nothing to run, drop them
            queue.ack(claim)
        if not claim.song_ids:
            return dg.SensorResult(skip_reason="no pending enrichment requests", cursor=json.dumps(awaiting))
        try:
            run_key = request_run_key(claim.entry_ids)
            run_request = dg.RunRequest(
                run_key=run_key,
                run_config=on_demand_run_config(claim.song_ids),
                tags={
                    SOURCE_TAG: SOURCE,
                    "spotify_pipeline/requests": str(len(claim.entry_ids)),
                    "spotify_pipeline/songs": str(len(claim.song_ids)),
                },
            )
            awaiting[run_key] = list(claim.entry_ids)
            context.log.info(
                f"requesting enrichment of {len(claim.song_ids)} song(s) from {len(claim.entry_ids)} "
                f"request(s) (run key {run_key})"
            )
            return dg.SensorResult(run_requests=[run_request], cursor=json.dumps(awaiting))
        except BaseException:
            queue.release(claim)
            raise
    finally:
        queue.close()
