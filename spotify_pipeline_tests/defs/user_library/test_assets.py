from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, replace

import dagster as dg
import pytest
import sqlalchemy as sa

from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.user_library.assets import accounts_partitions, spotify_recently_played, spotify_saved_tracks
from spotify_pipeline.defs.user_library.jobs import spotify_accounts_sensor, spotify_recently_played_schedule
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.spotify.user_auth import OAuthApp, login
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.tokens import SqlTokenStore, generate_token_key
from spotify_pipeline.warehouse.user_library import sync_saved_tracks
from spotify_pipeline_tests.servers import free_port
from spotify_pipeline_tests.spotify.test_user_auth_support import follow_browser

ACCOUNT = "alice"
SAVED_IN_EMULATOR = 137  # the emulator's test user has 137 saved tracks
HISTORY_KEPT = 50


@dataclass
class Library:
    engine: sa.Engine
    store: SqlTokenStore
    instance: dg.DagsterInstance
    resources: dict
    emulator: object

    def materialize(self, asset) -> dg.ExecuteInProcessResult:
        return dg.materialize([asset], resources=self.resources, partition_key=ACCOUNT, instance=self.instance,
                              raise_on_error=False)


@pytest.fixture
def library(sqlite_url, emulator, monkeypatch, tmp_path):
    """A warehouse with one connected account (a real PKCE login against the emulator)."""
    stack = contextlib.ExitStack()
    emulator.configure(window_limit=None)
    key = generate_token_key()
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SPOTIFY_TOKEN_KEY", key)
    engine = create_engine(sqlite_url)
    migrate(engine)
    store = SqlTokenStore(engine, key)
    app = OAuthApp(client_id=emulator.client_id, client_secret=emulator.client_secret,
                   accounts_base_url=emulator.accounts_base_url, api_base_url=emulator.api_base_url)
    login(app, store, account=ACCOUNT, port=free_port(), open_url=follow_browser, timeout_s=20)
    instance = stack.enter_context(dg.instance_for_test())
    instance.add_dynamic_partitions(accounts_partitions.name, [ACCOUNT])
    resources = {
        "spotify": SpotifyResource(
            client_id=emulator.client_id, client_secret=emulator.client_secret,
            api_base_url=emulator.api_base_url, accounts_base_url=emulator.accounts_base_url,
            rate_limit_per_minute=1_000_000, cache_path="memory",
        ),
        "warehouse": WarehouseResource(database_url=sqlite_url),
    }

    yield Library(engine=engine, store=store, instance=instance, resources=resources, emulator=emulator)
    engine.dispose()
    stack.close()


def _count(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def _metadata(result, asset):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_saved_tracks_are_pulled_in_full_and_catalogued(library):
    result = library.materialize(spotify_saved_tracks)
    assert result.success
    metadata = _metadata(result, "spotify_saved_tracks")
    assert metadata["saved"] == _count(library.engine, "SELECT count(*) FROM spotify_saved_tracks WHERE account = :a",
                                       a=ACCOUNT)
    assert metadata["saved"] >= SAVED_IN_EMULATOR * 0.7  # favourites repeat: distinct tracks, fewer than entries
    assert metadata["spotify_requests"] >= 3  # 50 per page
    # the tracks went through the daily job's normalization into the catalogue
    assert _count(library.engine, "SELECT count(*) FROM spotify_saved_tracks s LEFT JOIN spotify_tracks t "
                                  "ON t.track_id = s.track_id WHERE t.track_id IS NULL") == 0
    assert library.materialize(spotify_saved_tracks).success
    assert _count(library.engine, "SELECT count(*) FROM spotify_saved_tracks") == metadata["saved"]


def test_recently_played_is_incremental_and_never_duplicates(library):
    first = library.materialize(spotify_recently_played)
    assert first.success
    stored = _count(library.engine, "SELECT count(*) FROM spotify_recently_played")
    assert stored == HISTORY_KEPT == _metadata(first, "spotify_recently_played")["plays_added"]
    again = library.materialize(spotify_recently_played)
    assert _metadata(again, "spotify_recently_played")["plays_added"] == 0
    assert _metadata(again, "spotify_recently_played")["possible_gap"] is False
    assert _count(library.engine, "SELECT count(*) FROM spotify_recently_played") == stored

    library.emulator.advance_clock(2 * 3600)  # about eight new plays (one every ~15 minutes)
    later = library.materialize(spotify_recently_played)
    assert later.success
    added = _metadata(later, "spotify_recently_played")["plays_added"]
    assert 4 <= added <= 12
    assert _metadata(later, "spotify_recently_played")["possible_gap"] is False
    assert _count(library.engine, "SELECT count(*) FROM spotify_recently_played") == stored + added

    library.emulator.advance_clock(24 * 3600)  # ~96 plays: more than Spotify keeps
    gap = library.materialize(spotify_recently_played)
    assert _metadata(gap, "spotify_recently_played")["possible_gap"] is True


def _check(result):
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_refresh_token_check_warns_before_expiry_and_errors_when_invalid(library):
    record = library.store.load(ACCOUNT)
    assert _check(library.materialize(spotify_recently_played)).passed
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=10)
    with library.store.refreshing(ACCOUNT) as txn:
        txn.save(replace(record, refresh_token_expires_at=soon))
    warned = library.materialize(spotify_recently_played)
    assert warned.success
    check = _check(warned)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "spotify-pipeline auth login --account alice" in check.description

    library.store.mark_needs_reauth(ACCOUNT)
    failed = library.materialize(spotify_recently_played)
    assert not failed.success
    check = _check(failed)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "spotify-pipeline auth login --account alice" in check.description


def test_no_secret_reaches_the_run_events(library):
    result = library.materialize(spotify_recently_played)
    assert result.success
    record = library.store.load(ACCOUNT)
    secrets = {record.access_token, record.refresh_token, library.emulator.client_secret}
    events = library.instance.all_logs(result.run_id)
    text = "\n".join(str(event) for event in events)
    assert len(events) > 10
    assert [s for s in secrets if s and s in text] == []


def test_the_accounts_sensor_keeps_partitions_in_step_with_connected_accounts(library):
    instance = dg.DagsterInstance.ephemeral()
    result = spotify_accounts_sensor(dg.build_sensor_context(instance=instance))
    [request] = result.dynamic_partitions_requests
    assert list(request.partition_keys) == [ACCOUNT]
    instance.add_dynamic_partitions(accounts_partitions.name, [ACCOUNT, "bob"])
    result = spotify_accounts_sensor(dg.build_sensor_context(instance=instance))
    [request] = result.dynamic_partitions_requests
    assert isinstance(request, dg.DeleteDynamicPartitionsRequest) and list(request.partition_keys) == ["bob"]


def test_the_hourly_schedule_requests_one_run_per_account(library):
    context = dg.build_schedule_context(
        instance=library.instance, scheduled_execution_time=dt.datetime(2026, 11, 28, 7, tzinfo=dt.timezone.utc)
    )
    requests = spotify_recently_played_schedule(context)
    assert [(r.partition_key, r.run_key) for r in requests] == [(ACCOUNT, f"{ACCOUNT}@2026-11-28T07:00:00+00:00")]


def test_a_track_no_longer_saved_is_marked_removed_not_deleted(database_url):
    engine = create_engine(database_url)
    migrate(engine)
    day1 = dt.datetime(2026, 11, 1, 6, tzinfo=dt.timezone.utc)
    saved = [{"track_id": t, "added_at": day1 - dt.timedelta(days=i)} for i, t in enumerate(["a", "b", "c"])]
    with engine.begin() as conn:
        assert sync_saved_tracks(conn, ACCOUNT, saved, now=day1) == {"saved": 3, "added": 3, "removed": 0}
    with engine.begin() as conn:
        counts = sync_saved_tracks(conn, ACCOUNT, saved[:2], now=day1 + dt.timedelta(days=1))
    assert counts == {"saved": 2, "added": 0, "removed": 1}
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT track_id, removed_on FROM spotify_saved_tracks")).all())
    assert {k: (str(v) if v else None) for k, v in rows.items()} == {"a": None, "b": None, "c": "2026-11-02"}
    with engine.begin() as conn:  # saved again
        assert sync_saved_tracks(conn, ACCOUNT, saved, now=day1 + dt.timedelta(days=2))["added"] == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM spotify_saved_tracks WHERE removed_on IS NULL")).scalar_one() == 3
    engine.dispose()
