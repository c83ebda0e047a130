"""Daily partitions keyed by the UTC capture date, today included."""

from __future__ import annotations

import datetime as dt

import dagster as dg

#: First day the pipeline keeps data for; backfills start no earlier.
START_DATE = "2026-01-01"

# end_offset=1 makes the current UTC day a partition, so the 06:00 schedule captures today rather
# than yesterday (a DailyPartitionsDefinition otherwise ends at the last complete day).
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, end_offset=1, timezone="UTC")

# A backfill of many days runs once over the whole range instead of launching one run per day; every
# daily asset therefore handles a range of partitions in one materialization.
single_run_backfill = dg.BackfillPolicy.single_run()


def partition_dates(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The UTC dates a (possibly multi-partition) run covers, oldest first."""
    window = context.partition_time_window
    days = (window.end.date() - window.start.date()).days
    return [window.start.date() + dt.timedelta(days=i) for i in range(days)]


def utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()
