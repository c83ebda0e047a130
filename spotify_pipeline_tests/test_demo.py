from __future__ import annotations

import datetime as dt
import re

import dagster as dg

from spotify_pipeline.demo import run_demo
from spotify_pipeline.emulator.local import is_answering


def test_demo_runs_the_daily_job_through_the_code_location_and_reuses_its_work_the_second_time(local_project):
    first: list[str] = []
    run_demo(local_project.settings, echo=first.append, project_dir=local_project.directory)
    text = "\n".join(first)
    assert "1000 new, 0 skipped" in text
    assert re.search(r"spotify_track_matches\s+1000\s+\d+", text)
    assert "emulator: " in text and " 0 answered 429" in text
    assert "https://open.spotify.com/track/" in text  # the search shows enriched songs

    env = local_project.env_file  # what Dagster's own commands will load in this folder
    assert env["DAGSTER_HOME"] == str(local_project.directory / ".dagster")
    assert env["SPOTIFY_EMULATOR"] == "extended" and is_answering(env["SPOTIFY_API_BASE_URL"])
    assert env["DATABASE_URL"] == local_project.settings.database_url
    assert env["SPOTIFY_FIRST_CAPTURE_DATE"] <= dt.datetime.now(dt.timezone.utc).date().isoformat()

    # The run belongs to the code location, as a UI launch does: the job page lists it and it re-executes.
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == "spotify_pipeline"
        assert run.tags["dagster/partition"]

    second: list[str] = []
    run_demo(local_project.settings, echo=second.append, project_dir=local_project.directory)
    text = "\n".join(second)
    assert "reusing 850 matches and the Spotify cache" in text
    assert "already running" in text  # the emulator recorded in .env was reused, not started twice
    requests = int(re.search(r"emulator: (\d+) requests", text).group(1))
    assert requests == 0  # tracks and the app token come from the cache
    assert local_project.env_file == env
