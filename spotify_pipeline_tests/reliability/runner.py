"""Run `spotify_daily_refresh` for one partition in this process, configured from the environment only.

The reliability tests start this as a subprocess so they can SIGKILL it, or stop a server under it, at
any point of a real run:

    python -m spotify_pipeline_tests.reliability.runner [PARTITION]   # default: today's UTC partition

It builds the production definitions (`build_definitions()`: credentials as `dg.EnvVar`, everything else
from DATABASE_URL, REDIS_URL and SPOTIFY_*), prints ``ready`` once everything is imported and the run is
about to start, then one JSON line ``{"success": bool, "errors": [...]}`` (the step failures with their
causes) and exits 0 when the run succeeded, 1 when it failed.
"""

from __future__ import annotations

import json
import sys

READY = "ready"


def _messages(error) -> list[str]:
    """An error and its causes as one string each (Dagster's SerializableErrorInfo chain)."""
    out = []
    while error is not None:
        out.append(error.message.strip())
        error = error.cause
    return out


def main(argv: list[str]) -> int:
    import dagster as dg

    from spotify_pipeline.definitions import build_definitions
    from spotify_pipeline.defs.partitions import utc_today

    partition = argv[0] if argv else utc_today().isoformat()
    job = build_definitions().resolve_job_def("spotify_daily_refresh")
    with dg.DagsterInstance.ephemeral() as instance:
        print(READY, flush=True)
        result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)
        errors = [
            " <- ".join(_messages(event.event_specific_data.error))
            for event in result.all_events
            if event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE")
            and getattr(event.event_specific_data, "error", None) is not None
        ]
    print(json.dumps({"success": result.success, "errors": errors}), flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
