from __future__ import annotations

import re
from dataclasses import replace

from spotify_pipeline.demo import run_demo
from spotify_pipeline.settings import Settings


def test_demo_runs_the_daily_job_end_to_end_and_reuses_its_work_the_second_time(tmp_path):
    settings = replace(
        Settings(),
        database_url=f"sqlite:///{tmp_path / 'warehouse.db'}",
        dagster_home=str(tmp_path / "dagster"),
        spotify_cache_path=str(tmp_path / "spotify_cache.db"),
    )
    first: list[str] = []
    run_demo(settings, echo=first.append)
    text = "\n".join(first)
    assert "1000 new, 0 skipped" in text
    assert re.search(r"spotify_track_matches\s+1000\s+\d+", text)
    assert "emulator: " in text and " 0 answered 429" in text
    assert "https://open.spotify.com/track/" in text  # the search shows enriched songs
    assert any((tmp_path / "dagster").iterdir())  # the run is recorded in the instance

    second: list[str] = []
    run_demo(settings, echo=second.append)
    text = "\n".join(second)
    assert "reusing 850 matches and the Spotify cache" in text
    requests = int(re.search(r"emulator: (\d+) requests", text).group(1))
    assert requests <= 2  # at most a token for the new emulator process: tracks come from the cache
