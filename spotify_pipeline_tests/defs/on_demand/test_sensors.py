"""The `spotify_enrichment_requests` sensor, evaluated directly against real queues (Redis, warehouse table)."""


import time
from collections.abc import Iterator
from datetime import datetime, timezone

import dagster as dg
import pytest

from spotify_pipeline.defs.on_demand import sensors
from spotify_pipeline.defs.on_demand.sensors import request_run_key, spotify_enrichment_requests
from spotify_pipeline.defs.scope import SCOPED_ASSETS, EnrichmentScope
from spotify_pipeline.enrichment_queue import (
    Claim,
    RedisRequestQueue,
    RequestQueue,
    WarehouseRequestQueue,
    build_request_queue,
)
from spotify_pipeline.settings import get_settings
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.migrations import migrate

SHORT_VISIBILITY_S = 0.3


SEEN: list[tuple[str, list[int]]] = []


def _stand_in_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=DAILY)
    def _asset(context: dg.AssetExecutionContext, config: EnrichmentScope) -> None:
        SEEN.append((context.partition_key, config.song_ids))

    return _asset


# The real job lives in spotify_pipeline.defs; this stand-in has its name, partitioning and scoped assets.
DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_offset=1)
STAND_IN_ASSETS = [_stand_in_asset(name) for name in SCOPED_ASSETS]
STAND_IN_JOB = dg.define_asset_job("spotify_daily_refresh", selection=SCOPED_ASSETS)
DEFS = dg.Definitions(assets=STAND_IN_ASSETS, jobs=[STAND_IN_JOB], sensors=[spotify_enrichment_requests])


class SpyQueue:
    """The real queue, recording claims and acknowledgements; `fail_ack` simulates a crash before `ack`."""

    def __init__(self, queue: RequestQueue, log: dict[str, list[Claim]], fail_ack: bool) -> None:
        self._queue = queue
        self._log = log
        self._fail_ack = fail_ack

    def enqueue(self, song_ids, reason):
        return self._queue.enqueue(song_ids, reason)

    def claim(self, max_items):
        claim = self._queue.claim(max_items)
        self._log["claims"].append(claim)
        return claim

    def ack(self, claim):
        if self._fail_ack:
            raise RuntimeError("process died before ack")
        self._log["acks"].append(claim)
        return self._queue.ack(claim)

    def pending_count(self):
        return self._queue.pending_count()

    def close(self):
        self._log["closed"].append(None)
        self._queue.close()


@pytest.fixture(params=["warehouse", "redis"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> str:
    """The sensor's environment: the local profile (SQLite table) or production's Redis stream."""
    engine = create_engine(sqlite_url)
    migrate(engine)
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    if request.param == "redis":
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
        monkeypatch.setenv("REDIS_KEY_PREFIX", request.getfixturevalue("redis_prefix"))
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    return request.param


@pytest.fixture
def spy(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """Wraps the queue the sensor builds (from the settings of the environment) in a `SpyQueue`."""
    log: dict = {"claims": [], "acks": [], "closed": [], "fail_ack": False}

    def build(settings):
        queue = build_request_queue(settings, visibility_timeout_s=SHORT_VISIBILITY_S)
        return SpyQueue(queue, log, log["fail_ack"])

    monkeypatch.setattr(sensors, "build_request_queue", build)
    yield log


@pytest.fixture
def queue(backend: str) -> Iterator[RequestQueue]:
    """A producer on the same queue the sensor reads (like the CLI in another process)."""
    q = build_request_queue(get_settings())
    yield q
    q.close()


def _tick() -> dg.RunRequest | dg.SkipReason:
    return spotify_enrichment_requests(dg.build_sensor_context(definitions=DEFS))


def test_backend_follows_the_environment(backend: str, queue: RequestQueue):
    assert isinstance(queue, RedisRequestQueue if backend == "redis" else WarehouseRequestQueue)


def test_one_run_request_for_the_batch_then_the_queue_is_drained(spy: dict, queue: RequestQueue):
    queue.enqueue([30, 10], reason="search")
    queue.enqueue([20, 10], reason="search")
    before = datetime.now(timezone.utc).date().isoformat()
    result = spotify_enrichment_requests.evaluate_tick(dg.build_sensor_context(definitions=DEFS))
    after = datetime.now(timezone.utc).date().isoformat()

    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    [claim] = spy["claims"]
    assert len(claim.entry_ids) == 4
    assert request.run_key == request_run_key(claim.entry_ids)
    assert request.partition_key in {before, after}
    assert request.job_name in (None, "spotify_daily_refresh")
    for asset in SCOPED_ASSETS:
        assert request.run_config["ops"][asset]["config"]["song_ids"] == [10, 20, 30]
    assert request.tags["spotify_pipeline/source"] == "spotify_enrichment_requests"
    assert request.tags["spotify_pipeline/songs"] == "3"
    assert request.tags["spotify_pipeline/requests"] == "4"
    assert spy["acks"] == [claim]
    assert queue.pending_count() == 0
    assert spy["closed"]

    second = _tick()
    assert isinstance(second, dg.SkipReason)
    assert "no pending enrichment requests" in second.skip_message


def test_run_request_is_valid_for_a_daily_partitioned_job(spy: dict, queue: RequestQueue):
    queue.enqueue([5, 4], reason="search")
    request = _tick()
    assert isinstance(request, dg.RunRequest)
    SEEN.clear()
    result = DEFS.resolve_job_def("spotify_daily_refresh").execute_in_process(
        run_config=request.run_config, partition_key=request.partition_key, tags=request.tags
    )
    assert result.success
    assert SEEN == [(request.partition_key, [4, 5])] * len(SCOPED_ASSETS)


def test_empty_queue_skips(spy: dict):
    result = spotify_enrichment_requests.evaluate_tick(dg.build_sensor_context(definitions=DEFS))
    assert result.run_requests == []
    assert "no pending enrichment requests" in (result.skip_message or "")


def test_crash_before_ack_gives_the_same_run_key_again(spy: dict, queue: RequestQueue):
    queue.enqueue([1, 2], reason="search")
    spy["fail_ack"] = True
    with pytest.raises(RuntimeError, match="before ack"):
        _tick()  # the RunRequest never reaches Dagster; the batch stays claimed
    [crashed] = spy["claims"]
    spy["fail_ack"] = False

    queue.enqueue([3], reason="search")  # a new request is not held up by the claimed batch
    newer = _tick()
    assert isinstance(newer, dg.RunRequest)
    assert newer.run_config["ops"][SCOPED_ASSETS[0]]["config"]["song_ids"] == [3]

    time.sleep(SHORT_VISIBILITY_S + 0.15)
    retried = _tick()  # the crashed batch comes back whole: Dagster dedups it by run key
    assert isinstance(retried, dg.RunRequest)
    assert retried.run_key == request_run_key(crashed.entry_ids)
    assert retried.run_key != newer.run_key
    assert retried.run_config["ops"][SCOPED_ASSETS[0]]["config"]["song_ids"] == [1, 2]
    assert queue.pending_count() == 0
    assert isinstance(_tick(), dg.SkipReason)


def test_a_long_queue_drains_over_several_ticks(spy: dict, queue: RequestQueue, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sensors, "MAX_REQUESTS_PER_RUN", 2)
    queue.enqueue([1, 2, 3], reason="search")
    first, second, third = _tick(), _tick(), _tick()
    assert [r.run_config["ops"][SCOPED_ASSETS[0]]["config"]["song_ids"] for r in (first, second)] == [[1, 2], [3]]
    assert first.run_key != second.run_key
    assert isinstance(third, dg.SkipReason)


def test_run_key_depends_on_the_entries_not_their_order():
    assert request_run_key(["b", "a"]) == request_run_key(["a", "b"])
    assert request_run_key(["a"]) != request_run_key(["a", "b"])
    assert request_run_key(["1:100"]) != request_run_key(["1:101"])


def test_sensor_definition():
    assert spotify_enrichment_requests.name == "spotify_enrichment_requests"
    assert spotify_enrichment_requests.job_name == "spotify_daily_refresh"
    assert spotify_enrichment_requests.minimum_interval_seconds == 30
    assert spotify_enrichment_requests.default_status == dg.DefaultSensorStatus.RUNNING
