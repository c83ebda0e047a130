"""The daily job as a production deployment loads it (resources from the environment), importable by the
subprocesses of Dagster's multiprocess executor."""

from __future__ import annotations

import dagster as dg


def daily_job() -> dg.JobDefinition:
    from spotify_pipeline.definitions import build_definitions

    return build_definitions().resolve_job_def("spotify_daily_refresh")
