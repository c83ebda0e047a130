"""Record and replay: raw pulls landed by the pipeline, exported, served by the emulator as they were pulled."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner

from spotify_pipeline.cli import main
from spotify_pipeline.emulator.testing import EmulatorHandle, run_emulator
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.enrichment import land_raw_partition
from spotify_pipeline.warehouse.export import NothingToExportError, export_raw_tracks

DAY_ONE, DAY_TWO = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
DEVELOPMENT_MODE_STRIPPED = ("popularity", "available_markets", "linked_from")


def _pulled_tracks(emulator: EmulatorHandle, count: int) -> list[dict[str, Any]]:
    """Track objects as Spotify (here the emulator, extended mode) sends them to the pipeline."""
    headers = emulator.bearer(emulator.client_credentials_token())
    found = requests.get(f"{emulator.api_base_url}/search", params={"q": "the", "type": "track", "limit": count},
                         headers=headers, timeout=10).json()["tracks"]["items"]
    return [requests.get(f"{emulator.api_base_url}/tracks/{t['id']}", headers=headers, timeout=10).json() for t in found]


def _land(engine: sa.Engine, day: dt.date, found: list[dict[str, Any]], missing: tuple[str, ...] = ()) -> None:
    fetched_at = dt.datetime.combine(day, dt.time(6), dt.timezone.utc)
    responses = [{"request_key": t["id"], "status": 200, "fetched_at": fetched_at, "body": t} for t in found]
    responses += [{"request_key": key, "status": 404, "fetched_at": fetched_at, "body": None} for key in missing]
    with engine.begin() as conn:
        land_raw_partition(conn, day, "tracks", responses)


def _lines(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _without(track: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    kept = {k: v for k, v in track.items() if k not in names}
    kept["album"] = {k: v for k, v in track["album"].items() if k not in names}
    return kept


def test_export_then_replay_serves_what_was_pulled(engine: sa.Engine, emulator: EmulatorHandle, tmp_path: Path) -> None:
    first, second, gone = _pulled_tracks(emulator, 3)
    renamed = {**second, "name": "A Name Spotify Has Since Corrected"}
    _land(engine, DAY_ONE, [first, renamed, gone])
    _land(engine, DAY_TWO, [first, second], missing=(gone["id"],))

    latest = export_raw_tracks(engine, tmp_path / "replay.jsonl.gz")
    assert (latest.tracks, latest.not_found) == (2, 1)
    assert _lines(latest.path) == sorted([first, second], key=lambda t: t["id"])  # the newest pull of each id
    as_of_day_one = export_raw_tracks(engine, tmp_path / "day-one.jsonl", DAY_ONE)
    assert {t["name"] for t in _lines(as_of_day_one.path)} == {first["name"], renamed["name"], gone["name"]}

    with run_emulator(catalog_path=latest.path, window_limit=None) as replay:
        headers = replay.bearer(replay.client_credentials_token())

        def get(track_id: str) -> requests.Response:
            return requests.get(f"{replay.api_base_url}/tracks/{track_id}", headers=headers, timeout=10)

        for track in (first, second):
            # Extended mode: all but the day's popularity, which moves around the pulled figure.
            assert _without(get(track["id"]).json(), ("popularity",)) == _without(track, ("popularity",))
        assert get(gone["id"]).status_code == 404  # not found in the latest pull, not found on replay
        replay.configure(mode="development")
        for track in (first, second):
            assert get(track["id"]).json() == _without(track, DEVELOPMENT_MODE_STRIPPED)


def test_an_empty_warehouse_has_nothing_to_export(engine: sa.Engine, tmp_path: Path) -> None:
    out = tmp_path / "export"
    with pytest.raises(NothingToExportError, match="raw_spotify_tracks"):
        export_raw_tracks(engine, out / "empty.jsonl")
    assert list(out.iterdir()) == []  # no file, not even a partial one


def test_cli_export_catalog(database_url: str, emulator: EmulatorHandle, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    assert runner.invoke(main, ["migrate"], env=env).exit_code == 0
    out = tmp_path / "replay.jsonl"
    empty = runner.invoke(main, ["export-catalog", "--out", str(out)], env=env)
    assert empty.exit_code == 1 and "no track objects pulled" in empty.output and "Traceback" not in empty.output
    engine = create_engine(database_url)
    try:
        _land(engine, DAY_ONE, _pulled_tracks(emulator, 2))
    finally:
        engine.dispose()
    result = runner.invoke(main, ["export-catalog", "--out", str(out), "--date", DAY_ONE.isoformat()], env=env)
    assert result.exit_code == 0, result.output
    assert "wrote 2 track objects" in result.output and len(_lines(out)) == 2
    before = runner.invoke(main, ["export-catalog", "--out", str(out), "--date", "2026-02-28"], env=env)
    assert before.exit_code == 1 and "on or before 2026-02-28" in before.output
