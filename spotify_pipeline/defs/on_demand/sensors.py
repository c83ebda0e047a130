"""The sensor turning queued enrichment requests into runs of `spotify_daily_refresh` for those songs only.

Order of work in one tick: claim a batch, build one `RunRequest`, acknowledge the batch, return the request.
Dagster creates the run only after the evaluation returns; it records the reserved run in the tick first, and
resumes an interrupted tick, so an acknowledged batch reaches a run.

Crash windows:
- before the acknowledgement (the tick fails, the process dies): the batch stays claimed and comes back
  after the queue's visibility timeout as the same entries, hence the same `run_key`; Dagster skips a run
  request whose run key this sensor already used, so no batch runs twice.
- after the acknowledgement, if the run is never created: the request is lost, and the daily run enriches
  the song instead (requests are hints; every unmatched or stale song is enriched daily anyway).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone

import dagster as dg

from spotify_pipeline.defs.scope import scoped_run_config
from spotify_pipeline.enrichment_queue import build_request_queue
from spotify_pipeline.settings import get_settings

JOB_NAME = "spotify_daily_refresh"
#: Queue entries (one song each) folded into one run; a longer queue drains over the next ticks.
MAX_REQUESTS_PER_RUN = 500
RUN_KEY_PREFIX = "enrichment-requests-"
SOURCE_TAG = "spotify_pipeline/source"
SOURCE = "spotify_enrichment_requests"


def request_run_key(entry_ids: Iterable[str]) -> str:
    """The run key of a batch: a digest of its queue entry ids, independent of their order."""
    digest = hashlib.sha256("\n".join(sorted(entry_ids)).encode("utf-8")).hexdigest()
    return RUN_KEY_PREFIX + digest[:32]


def _today_utc() -> str:
    return datetime.now(timezone.utc).date().isoformat()


@dg.sensor(
    name="spotify_enrichment_requests",
    job_name=JOB_NAME,
    minimum_interval_seconds=30,
    # Running by default, unlike most sensors: it only acts on songs a user explicitly asked for
    # (`search --enrich`), costs one queue read per tick when idle, and a stopped default would make
    # `--enrich` silently do nothing until someone found the toggle. Stop it in the UI to pause on-demand runs.
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def spotify_enrichment_requests(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Enriches songs on demand: songs a search found unmatched or stale (`spotify-pipeline search --enrich`)
    are matched and refreshed from Spotify within a minute or so, instead of waiting for the daily run.

    Every 30 s it takes up to 500 queued requests and launches one `spotify_daily_refresh` run for today's
    partition, scoped to those songs. The queue is the Redis stream when REDIS_URL is set, else the
    warehouse table `spotify_enrichment_requests`.
    """
    queue = build_request_queue(get_settings())
    try:
        claim = queue.claim(MAX_REQUESTS_PER_RUN)
        if not claim.song_ids:
            if claim:  # only malformed entries: nothing to run, drop them
                queue.ack(claim)
            return dg.SkipReason("no pending enrichment requests")
        run_key = request_run_key(claim.entry_ids)
        run_request = dg.RunRequest(
            run_key=run_key,
            partition_key=_today_utc(),
            run_config=scoped_run_config(claim.song_ids),
            tags={
                SOURCE_TAG: SOURCE,
                "spotify_pipeline/requests": str(len(claim.entry_ids)),
                "spotify_pipeline/songs": str(len(claim.song_ids)),
            },
        )
        queue.ack(claim)
        context.log.info(
            f"requesting enrichment of {len(claim.song_ids)} song(s) from {len(claim.entry_ids)} "
            f"request(s) (run key {run_key})"
        )
        return run_request
    finally:
        queue.close()
