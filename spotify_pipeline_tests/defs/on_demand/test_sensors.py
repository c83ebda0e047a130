"""The `spotify_enrichment_requests` sensor, evaluated directly against real queues (Redis, warehouse table)."""

import time
from collections.abc import Iterator

import dagster as dg
import pytest

from spotify_pipeline.definitions import build_definitions
from spotify_pipeline.defs.on_demand import sensors
from spotify_pipeline.defs.on_demand.sensors import RUN_KEY_TAG, request_run_key, spotify_enrichment_requests
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.enrichment_queue import (
    RedisRequestQueue,
    RequestQueue,
    WarehouseRequestQueue,
    build_request_queue,
)
from spotify_pipeline.settings import get_settings
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.migrations import migrate

SHORT_VISIBILITY_S = 0.3
ASSET = "spotify_on_demand_enrichment"


class SpyQueue:
    """The real queue, recording claims, acknowledgements and releases."""

    def __init__(self, queue: RequestQueue, log: dict[str, list]) -> None:
        self._queue = queue
        self._log = log

    def enqueue(self, song_ids, reason):
        return self._queue.enqueue(song_ids, reason)

    def claim(self, max_items):
        claim = self._queue.claim(max_items)
        self._log["claims"].append(claim)
        return claim

    def ack(self, claim):
        self._log["acks"].append(list(claim.entry_ids))
        return self._queue.ack(claim)

    def ack_entries(self, entry_ids):
        self._log["acks"].append(list(entry_ids))
        return self._queue.ack_entries(entry_ids)

    def release(self, claim):
        self._log["releases"].append(claim)
        return self._queue.release(claim)

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
    log: dict = {"claims": [], "acks": [], "releases": [], "closed": []}

    def build(settings):
        return SpyQueue(build_request_queue(settings, visibility_timeout_s=SHORT_VISIBILITY_S), log)

    monkeypatch.setattr(sensors, "build_request_queue", build)
    yield log


@pytest.fixture
def queue(backend: str) -> Iterator[RequestQueue]:
    """A producer on the same queue the sensor reads (like the CLI in another process)."""
    q = build_request_queue(get_settings())
    yield q
    q.close()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


class Ticks:
    """Sensor ticks as the daemon runs them: each gets the cursor the previous successful tick returned."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor: str | None = None
        # Resources as configured for a deployment; nothing here calls Spotify.
        self.defs = build_definitions(resources={"spotify": SpotifyResource(client_id="id", client_secret="secret")})

    def __call__(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=self.defs)
        result = spotify_enrichment_requests(context)
        self.cursor = result.cursor
        return result

    def record_run(self, request: dg.RunRequest) -> None:
        """What Dagster does with a run request: a run tagged with its run key."""
        job = self.defs.resolve_job_def("spotify_on_demand_refresh")
        self.instance.create_run_for_job(job, run_config=request.run_config, tags={RUN_KEY_TAG: request.run_key})


@pytest.fixture
def ticks(instance: dg.DagsterInstance) -> Ticks:
    return Ticks(instance)


def _songs(request: dg.RunRequest) -> list[int]:
    return request.run_config["ops"][ASSET]["config"]["song_ids"]


def test_backend_follows_the_environment(backend: str, queue: RequestQueue):
    assert isinstance(queue, RedisRequestQueue if backend == "redis" else WarehouseRequestQueue)


def test_one_run_request_per_batch_acknowledged_only_once_dagster_recorded_it(spy, queue, ticks):
    queue.enqueue([30, 10], reason="search")
    queue.enqueue([20, 10], reason="search")
    result = ticks()
    [request] = result.run_requests
    [claim] = spy["claims"]
    assert len(claim.entry_ids) == 4
    assert request.run_key == request_run_key(claim.entry_ids)
    assert request.partition_key is None  # the on-demand job is not partitioned: no daily partition is touched
    assert _songs(request) == [10, 20, 30]
    assert request.tags["spotify_pipeline/source"] == "spotify_enrichment_requests"
    assert (request.tags["spotify_pipeline/songs"], request.tags["spotify_pipeline/requests"]) == ("3", "4")
    assert spy["acks"] == [] and queue.pending_count() == 4  # no run recorded yet: nothing acknowledged
    assert spy["closed"]

    ticks.record_run(request)
    after = ticks()
    assert after.run_requests == [] and "no pending enrichment requests" in after.skip_reason.skip_message
    assert spy["acks"] == [list(claim.entry_ids)]
    assert queue.pending_count() == 0


def test_the_run_request_is_valid_for_the_on_demand_job(spy, queue, ticks):
    queue.enqueue([5, 4], reason="search")
    [request] = ticks().run_requests
    job = ticks.defs.resolve_job_def("spotify_on_demand_refresh")
    assert dg.validate_run_config(job, request.run_config)["ops"][ASSET]["config"]["song_ids"] == [4, 5]


def _fails_once(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """The next tick dies while building its run request (after claiming); later ticks work."""
    real, failed = sensors.on_demand_run_config, []

    def flaky(song_ids):
        if not failed:
            failed.append(error)
            raise error
        return real(song_ids)

    monkeypatch.setattr(sensors, "on_demand_run_config", flaky)


def test_a_failing_tick_gives_its_claim_back_and_the_next_tick_requests_it(spy, queue, ticks, monkeypatch):
    queue.enqueue([1, 2], reason="search")
    _fails_once(monkeypatch, RuntimeError("tick failed after claiming"))
    with pytest.raises(RuntimeError, match="after claiming"):
        ticks()
    assert len(spy["releases"]) == 1 and spy["acks"] == []
    [request] = ticks().run_requests  # at once, not after the visibility timeout
    assert _songs(request) == [1, 2]
    ticks.record_run(request)
    ticks()
    assert queue.pending_count() == 0


def test_a_process_that_dies_holding_a_claim_gets_the_same_run_key_again(spy, queue, ticks, monkeypatch):
    queue.enqueue([1, 2], reason="search")
    released = []
    monkeypatch.setattr(SpyQueue, "release", lambda self, claim: released.append(claim))  # killed: never given back
    _fails_once(monkeypatch, SystemExit(9))
    with pytest.raises(SystemExit):
        ticks()
    [crashed] = spy["claims"]

    queue.enqueue([3], reason="search")  # a new request is not held up by the claimed batch
    [newer] = ticks().run_requests
    assert _songs(newer) == [3]
    ticks.record_run(newer)  # Dagster took that one: the next tick acknowledges it
    time.sleep(SHORT_VISIBILITY_S + 0.15)
    [retried] = ticks().run_requests  # the batch comes back whole: Dagster dedups it by run key
    assert retried.run_key == request_run_key(crashed.entry_ids) != newer.run_key
    assert _songs(retried) == [1, 2]


def test_a_long_queue_drains_over_several_ticks(spy, queue, ticks, monkeypatch):
    monkeypatch.setattr(sensors, "MAX_REQUESTS_PER_RUN", 2)
    queue.enqueue([1, 2, 3], reason="search")
    first, second = ticks().run_requests, ticks().run_requests
    assert [_songs(r) for [r] in (first, second)] == [[1, 2], [3]]
    for [request] in (first, second):
        ticks.record_run(request)
    assert ticks().run_requests == []
    assert queue.pending_count() == 0


def test_run_key_depends_on_the_entries_not_their_order():
    assert request_run_key(["b", "a"]) == request_run_key(["a", "b"])
    assert request_run_key(["a"]) != request_run_key(["a", "b"])
    assert request_run_key(["1:100"]) != request_run_key(["1:101"])


def test_sensor_definition():
    assert spotify_enrichment_requests.name == "spotify_enrichment_requests"
    assert spotify_enrichment_requests.job_name == "spotify_on_demand_refresh"
    assert spotify_enrichment_requests.minimum_interval_seconds == 30
    assert spotify_enrichment_requests.default_status == dg.DefaultSensorStatus.RUNNING
