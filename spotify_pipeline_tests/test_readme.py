"""The README is part of the product: its quick start, its settings table and its example queries."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.defs.popularity.assets import spotify_popularity_movers
from spotify_pipeline.settings import Settings
from spotify_pipeline_tests.defs.conftest import make_pipeline

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _code_blocks(text: str, language: str) -> list[str]:
    return [block.strip() for block in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)]


def test_quick_start_is_exactly_make_demo_then_make_test():
    [commands] = _code_blocks(_section("Quick start"), "bash")[:1]
    assert commands.splitlines() == ["make demo", "make test"]


def test_every_setting_is_documented_with_its_default():
    configuration = _section("Configuration")
    for setting in Settings.documented():
        assert f"`{setting.name}`" in configuration, setting.name


def test_there_are_at_least_five_example_queries():
    assert len(_code_blocks(_section("Querying the data"), "sql")) >= 5


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_example_query_runs_on_the_demo_warehouse(backend, request, emulator, tmp_path):
    emulator.configure(window_limit=None)
    demo = make_pipeline(request.getfixturevalue(f"{backend}_url"), emulator, tmp_path / "cache.db")
    try:
        assert demo.materialize().success
        # A second day of snapshots, so the movers and history queries have something to show.
        yesterday = utc_today() - dt.timedelta(days=1)
        with demo.engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO spotify_popularity_snapshots (snapshot_date, track_id, popularity) "
                        "SELECT :y, track_id, CASE WHEN popularity > 3 THEN popularity - 3 ELSE popularity + 3 END "
                        "FROM spotify_popularity_snapshots WHERE snapshot_date = :d"),
                {"y": yesterday.isoformat(), "d": utc_today().isoformat()},
            )
        assert demo.materialize([spotify_popularity_movers]).success
        for query in _code_blocks(_section("Querying the data"), "sql"):
            with demo.engine.connect() as conn:
                rows = conn.execute(sa.text(query)).all()
            assert rows, f"no rows from:\n{query}"
    finally:
        demo.engine.dispose()
