"""The `RequestQueue`: songs someone asked to have enriched soon (on-demand enrichment).

`spotify-pipeline search --enrich` enqueues the results that are unmatched or stale; the Dagster sensor
`spotify_enrichment_requests` claims them and requests one on-demand enrichment run for the batch, and
acknowledges them once Dagster has recorded that run (a tick that fails gives its claim back at once).
Two implementations sit behind the interface:

- `RedisRequestQueue` (production, ``REDIS_URL`` set): a Redis stream read through a consumer group
  (XADD / XREADGROUP / XACK). Entries a consumer claimed but never acknowledged (it crashed) are taken
  over by the next consumer with XAUTOCLAIM once they have been idle for the visibility timeout.
- `WarehouseRequestQueue` (local profile): the warehouse table ``spotify_enrichment_requests``, so the CLI
  and the Dagster daemon (different processes) share it on SQLite too. Claiming is one atomic statement:
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a single ``UPDATE ... RETURNING`` on SQLite (which serializes
  writers), so two consumers never receive the same entry.

Delivery is at least once: an entry leaves the queue only when acknowledged. A claim that is not acknowledged
within the visibility timeout is delivered again, as a batch of its own (redeliveries are never mixed with
new entries), so a consumer that derives its work's identity from `Claim.entry_ids` (the sensor's run key)
recognises the redelivery of a batch it already handled.

Requests are hints, not data. The daily run enriches every unmatched or stale song anyway, so a request
that is lost (Redis down when enqueueing, the stream trimmed, a run that failed after the acknowledgement)
only delays that song's enrichment to the next daily run. That is why `enqueue` never raises when the
backend is unavailable: it logs a warning and returns 0. `claim`, `ack` and `pending_count` raise
`RequestQueueUnavailable`, because their caller (the sensor) must not pretend it did its work.

Plain Python: no Dagster, no Spotify client.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, runtime_checkable

import redis
import sqlalchemy as sa

from spotify_pipeline.settings import Settings
from spotify_pipeline.warehouse.engine import create_engine

log = logging.getLogger(__name__)

#: How long a claim may stay unacknowledged before its entries are delivered to another consumer (s).
#: The sensor acknowledges a claim on its next tick (about 30 s), once the run it requested exists; this only
#: matters after a crash or a daemon that stopped ticking.
DEFAULT_VISIBILITY_TIMEOUT_S = 300.0
#: Longest `reason` stored with a request (longer ones are cut).
MAX_REASON_CHARS = 200
TABLE = "spotify_enrichment_requests"
#: Redis keys (after REDIS_KEY_PREFIX). Versioned like the cache's keys, so a format change can move on.
STREAM_KEY = "spotify:v1:enrichment_requests"
GROUP = "spotify_enrichment"
#: The stream is capped (approximately) at this many entries; the oldest unclaimed requests are dropped
#: first, which loses nothing the daily run does not pick up anyway.
STREAM_MAX_ENTRIES = 100_000
#: Consumers (one per process) that hold no entries and have been idle this long are removed from the group.
CONSUMER_MAX_IDLE_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class RequestQueueUnavailable(RuntimeError):
    """The queue's backend (Redis or the warehouse) cannot be reached or is not set up."""


@dataclass(frozen=True)
class Claim:
    """Entries claimed by one consumer: what to enrich, and what to acknowledge once a run is requested.

    `entry_ids` identify the claimed queue entries (sorted, stable across redeliveries of the same entries);
    `song_ids` are the distinct songs they ask for (sorted). `handle` is opaque: pass the claim to `ack`.
    """

    song_ids: tuple[int, ...]
    entry_ids: tuple[str, ...]
    handle: Any = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.entry_ids)

    def __len__(self) -> int:
        return len(self.entry_ids)


EMPTY_CLAIM = Claim(song_ids=(), entry_ids=(), handle=None)


@runtime_checkable
class RequestQueue(Protocol):
    """Songs waiting for an on-demand enrichment run, shared by every process of a deployment."""

    def enqueue(self, song_ids: Iterable[int], reason: str) -> int:
        """Queue one request per distinct song id; returns how many were queued.

        Never raises because the backend is unavailable: logs a warning and returns 0 instead (the daily run
        enriches every unmatched or stale song, so a lost request only delays it).
        """
        ...

    def claim(self, max_items: int) -> Claim:
        """Take up to `max_items` entries no other consumer holds; an empty (falsy) claim when there are none.

        Entries claimed earlier and not acknowledged within the visibility timeout come back, as a claim of
        their own.
        """
        ...

    def ack(self, claim: Claim) -> int:
        """Remove the claimed entries from the queue (a run was requested for them); returns how many."""
        ...

    def ack_entries(self, entry_ids: Sequence[str]) -> int:
        """Remove entries by their `Claim.entry_ids` (a claim acknowledged later, e.g. by the next sensor tick,
        once Dagster has recorded the run requested for it); unknown ids are ignored."""
        ...

    def release(self, claim: Claim) -> None:
        """Give claimed entries back at once (their consumer failed before requesting a run), instead of
        after the visibility timeout."""
        ...

    def pending_count(self) -> int:
        """Entries queued and not yet acknowledged (claimed or not)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def build_request_queue(
    settings: Settings, *, visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S
) -> RequestQueue:
    """The deployment's queue: the Redis stream when ``REDIS_URL`` is set, else the warehouse table."""
    if settings.redis_url:
        return RedisRequestQueue.from_url(
            settings.redis_url, prefix=settings.redis_key_prefix, visibility_timeout_s=visibility_timeout_s
        )
    return WarehouseRequestQueue(
        create_engine(settings.database_url), visibility_timeout_s=visibility_timeout_s, owns_engine=True
    )


def _distinct_song_ids(song_ids: Iterable[int]) -> list[int]:
    ids: dict[int, None] = {}
    for value in song_ids:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"song ids must be integers, got {value!r}")
        if value <= 0:
            raise ValueError(f"song ids are positive integers, got {value}")
        ids[value] = None
    return list(ids)


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("an enrichment request needs a reason (e.g. 'search')")
    return reason.strip()[:MAX_REASON_CHARS]


def _check_max_items(max_items: int) -> None:
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
        raise ValueError(f"max_items must be a positive integer, got {max_items!r}")


def _warn_not_queued(backend: str, count: int, exc: BaseException) -> None:
    log.warning(
        "%s request queue unavailable (%s: %s): %d enrichment request(s) not queued; the daily run "
        "enriches every unmatched or stale song anyway",
        backend, type(exc).__name__, exc, count,
    )


# --------------------------------------------------------------------------------------------- Redis


_PRUNE_CONSUMERS = """
local removed = 0
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, consumer in ipairs(consumers) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
"""


class RedisRequestQueue:
    """A Redis stream with one consumer group, shared by every process using the same ``prefix``.

    Each entry is one request (``song_id``, ``reason``); acknowledging deletes it (XACK + XDEL), so the
    stream holds exactly the entries not yet acknowledged. Consumers are named after host and process; any
    consumer may take over another's idle entries, so the name only shows who holds what (XPENDING).
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "",
        *,
        visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
        consumer: str | None = None,
        max_entries: int = STREAM_MAX_ENTRIES,
        consumer_max_idle_s: float = CONSUMER_MAX_IDLE_S,
    ) -> None:
        if visibility_timeout_s <= 0:
            raise ValueError("visibility_timeout_s must be positive")
        self._r = client
        self._key = prefix + STREAM_KEY
        self._consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._visibility_ms = max(1, int(visibility_timeout_s * 1000))
        self._max_entries = max_entries
        self._consumer_max_idle_ms = max(1, int(consumer_max_idle_s * 1000))
        self._group_ready = False
        self._prune = client.register_script(_PRUNE_CONSUMERS)

    @classmethod
    def from_url(cls, url: str, prefix: str = "", **kwargs: Any) -> RedisRequestQueue:
        """A queue on the Redis at `url`, with short timeouts so an unreachable Redis fails fast."""
        client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
        return cls(client, prefix, **kwargs)

    @property
    def key(self) -> str:
        """The stream's full Redis key."""
        return self._key

    def enqueue(self, song_ids: Iterable[int], reason: str) -> int:
        ids = _distinct_song_ids(song_ids)
        reason = _check_reason(reason)
        if not ids:
            return 0
        try:
            with self._r.pipeline(transaction=True) as pipe:
                for song_id in ids:
                    pipe.xadd(self._key, {"song_id": song_id, "reason": reason}, maxlen=self._max_entries)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            _warn_not_queued("Redis", len(ids), exc)
            return 0
        return len(ids)

    def claim(self, max_items: int) -> Claim:
        _check_max_items(max_items)
        try:
            try:
                return self._claim(max_items)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream was deleted (or Redis restarted empty) since the group was created here.
                self._group_ready = False
                return self._claim(max_items)
        except (redis.RedisError, OSError) as exc:
            raise RequestQueueUnavailable(f"Redis request queue unavailable: {type(exc).__name__}: {exc}") from exc

    def _claim(self, max_items: int) -> Claim:
        self._ensure_group()
        # Each process adds a consumer to the group; forget those of processes long gone (holding nothing).
        self._prune(keys=[self._key], args=[GROUP, self._consumer_max_idle_ms, self._consumer])
        entries, gone = self._reclaim(max_items)
        if not entries:
            replies = self._r.xreadgroup(GROUP, self._consumer, {self._key: ">"}, count=max_items)
            if isinstance(replies, dict):  # RESP3
                replies = list(replies.items())
            for _stream, stream_entries in replies or []:
                entries.extend(stream_entries)
        if gone:
            # Entries deleted from the stream while pending (trimmed): nothing to run, just forget them.
            self._r.xack(self._key, GROUP, *gone)
        return self._to_claim(entries)

    def _reclaim(self, max_items: int) -> tuple[list[tuple[Any, Any]], list[Any]]:
        """Take over entries idle longer than the visibility timeout (a consumer crashed before `ack`)."""
        entries: list[tuple[Any, Any]] = []
        gone: list[Any] = []
        start: Any = "0-0"
        while len(entries) < max_items:
            reply = self._r.xautoclaim(
                self._key, GROUP, self._consumer, min_idle_time=self._visibility_ms, start_id=start,
                count=max_items - len(entries),
            )
            next_start, claimed = reply[0], reply[1]
            for entry_id, fields in claimed:
                if fields is None:  # Redis 6.2 reports deleted entries inline
                    gone.append(entry_id)
                else:
                    entries.append((entry_id, fields))
            if _text(next_start) == "0-0":
                break
            start = next_start
        return entries, gone

    def _to_claim(self, entries: Sequence[tuple[Any, Any]]) -> Claim:
        if not entries:
            return EMPTY_CLAIM
        song_ids: set[int] = set()
        entry_ids: list[str] = []
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            entry_ids.append(entry_id)
            values = {_text(k): _text(v) for k, v in fields.items()}
            try:
                song_ids.add(int(values["song_id"]))
            except (KeyError, ValueError):
                # Claimed (so it is acknowledged with the rest and never comes back) but not run.
                log.warning("ignoring malformed enrichment request %s in %s: %r", entry_id, self._key, values)
        entry_ids.sort(key=_stream_id_order)
        return Claim(
            song_ids=tuple(sorted(song_ids)), entry_ids=tuple(entry_ids), handle=(self._key, tuple(entry_ids))
        )

    def ack(self, claim: Claim) -> int:
        if not claim:
            return 0
        if not (isinstance(claim.handle, tuple) and len(claim.handle) == 2 and claim.handle[0] == self._key):
            raise ValueError("this claim was made on another queue")
        return self.ack_entries(claim.handle[1])

    def ack_entries(self, entry_ids: Sequence[str]) -> int:
        if not entry_ids:
            return 0
        try:
            with self._r.pipeline(transaction=True) as pipe:
                pipe.xack(self._key, GROUP, *entry_ids)
                pipe.xdel(self._key, *entry_ids)
                acked, _deleted = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise RequestQueueUnavailable(f"Redis request queue unavailable: {type(exc).__name__}: {exc}") from exc
        return int(acked)

    def release(self, claim: Claim) -> None:
        if not claim:
            return
        # A stream entry cannot be un-claimed: it is re-added (a new entry, so a new batch) and the old one
        # acknowledged, atomically.
        try:
            entries = self._r.xrange(self._key, min=claim.entry_ids[0], max=claim.entry_ids[-1])
            wanted = set(claim.entry_ids)
            with self._r.pipeline(transaction=True) as pipe:
                for raw_id, fields in entries:
                    if _text(raw_id) in wanted:
                        pipe.xadd(self._key, fields, maxlen=self._max_entries)
                pipe.xack(self._key, GROUP, *claim.entry_ids)
                pipe.xdel(self._key, *claim.entry_ids)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise RequestQueueUnavailable(f"Redis request queue unavailable: {type(exc).__name__}: {exc}") from exc

    def pending_count(self) -> int:
        try:
            return int(self._r.xlen(self._key))
        except (redis.RedisError, OSError) as exc:
            raise RequestQueueUnavailable(f"Redis request queue unavailable: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._r.close()

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From id 0: requests queued before the group existed are delivered too.
            self._r.xgroup_create(self._key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _stream_id_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# ----------------------------------------------------------------------------------------- warehouse


_INSERT = sa.text(f"INSERT INTO {TABLE} (song_id, reason) VALUES (:song_id, :reason)")
_COUNT = sa.text(f"SELECT count(*) FROM {TABLE}")
_DELETE = sa.text(f"DELETE FROM {TABLE} WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
_RELEASE = sa.text(f"UPDATE {TABLE} SET claimed_at = NULL, claim_token = NULL WHERE id IN :ids").bindparams(
    sa.bindparam("ids", expanding=True)
)

# Redeliveries (rows whose claim expired) are claimed apart from new rows, so a crashed batch comes back as
# the same batch. Each claim is one UPDATE whose row selection and update are atomic.
_CLAIMABLE = {
    ("postgresql", "expired"): "claimed_at <= clock_timestamp() - :timeout_s * interval '1 second'",
    ("postgresql", "new"): "claimed_at IS NULL",
    ("sqlite", "expired"): "claimed_at <= strftime('%Y-%m-%d %H:%M:%f', 'now', :expiry_modifier)",
    ("sqlite", "new"): "claimed_at IS NULL",
}
_CLAIM_SQL = {
    # SKIP LOCKED: a concurrent claimer passes over rows another transaction is claiming; the WHERE clause
    # is re-checked on rows that changed meanwhile, so a row is never claimed twice.
    "postgresql": f"""
UPDATE {TABLE} AS r
SET claimed_at = clock_timestamp(), claim_token = :token, attempts = r.attempts + 1
WHERE r.id IN (
    SELECT id FROM {TABLE} WHERE {{claimable}} ORDER BY id LIMIT :max_items FOR UPDATE SKIP LOCKED
)
RETURNING r.id, r.song_id, r.requested_at
""",
    # SQLite has one writer at a time: the statement runs under the database's write lock.
    "sqlite": f"""
UPDATE {TABLE}
SET claimed_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), claim_token = :token, attempts = attempts + 1
WHERE id IN (SELECT id FROM {TABLE} WHERE {{claimable}} ORDER BY id LIMIT :max_items)
RETURNING id, song_id, requested_at
""",
}
_CLAIMS = {
    (dialect, kind): sa.text(_CLAIM_SQL[dialect].format(claimable=where))
    for (dialect, kind), where in _CLAIMABLE.items()
}


class WarehouseRequestQueue:
    """The table ``spotify_enrichment_requests`` (migration 0012) as a queue, on SQLite or PostgreSQL.

    A row is one request; claiming stamps ``claimed_at`` and a fresh ``claim_token``, acknowledging deletes
    the row. A row whose ``claimed_at`` is older than the visibility timeout is claimable again. Times come
    from the database's clock, so consumers on machines with skewed clocks agree.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
        owns_engine: bool = False,
    ) -> None:
        if visibility_timeout_s <= 0:
            raise ValueError("visibility_timeout_s must be positive")
        self._engine = engine
        self._visibility_s = float(visibility_timeout_s)
        self._owns_engine = owns_engine
        self._dialect = engine.dialect.name

    def enqueue(self, song_ids: Iterable[int], reason: str) -> int:
        ids = _distinct_song_ids(song_ids)
        reason = _check_reason(reason)
        if not ids:
            return 0
        try:
            with self._engine.begin() as conn:
                conn.execute(_INSERT, [{"song_id": song_id, "reason": reason} for song_id in ids])
        except sa.exc.DBAPIError as exc:
            _warn_not_queued("Warehouse", len(ids), exc.orig or exc)
            return 0
        return len(ids)

    def claim(self, max_items: int) -> Claim:
        _check_max_items(max_items)
        token = uuid.uuid4().hex
        try:
            rows = self._claim(token, max_items, "expired") or self._claim(token, max_items, "new")
        except sa.exc.DBAPIError as exc:
            raise RequestQueueUnavailable(f"warehouse request queue unavailable: {exc.orig or exc}") from exc
        if not rows:
            return EMPTY_CLAIM
        rows.sort(key=lambda row: row[0])
        return Claim(
            song_ids=tuple(sorted({int(song_id) for _, song_id, _ in rows})),
            entry_ids=tuple(_entry_id(row_id, requested_at) for row_id, _, requested_at in rows),
            handle=(TABLE, tuple(int(row_id) for row_id, _, _ in rows)),
        )

    def _claim(self, token: str, max_items: int, kind: str) -> list[tuple[Any, Any, Any]]:
        # One statement in its own transaction. On SQLite the UPDATE is the transaction's first statement,
        # so it waits for the write lock (busy_timeout) instead of failing to upgrade a read lock.
        params: dict[str, Any] = {"token": token, "max_items": max_items}
        if kind == "expired":
            if self._dialect == "postgresql":
                params["timeout_s"] = self._visibility_s
            else:
                params["expiry_modifier"] = f"-{self._visibility_s:.3f} seconds"
        with self._engine.begin() as conn:
            return [tuple(row) for row in conn.execute(_CLAIMS[(self._dialect, kind)], params).all()]

    def ack(self, claim: Claim) -> int:
        if not claim:
            return 0
        if not (isinstance(claim.handle, tuple) and len(claim.handle) == 2 and claim.handle[0] == TABLE):
            raise ValueError("this claim was made on another queue")
        return self._delete(list(claim.handle[1]))

    def ack_entries(self, entry_ids: Sequence[str]) -> int:
        return self._delete([int(entry_id.split(":", 1)[0]) for entry_id in entry_ids])

    def _delete(self, row_ids: list[int]) -> int:
        if not row_ids:
            return 0
        try:
            with self._engine.begin() as conn:
                return conn.execute(_DELETE, {"ids": row_ids}).rowcount
        except sa.exc.DBAPIError as exc:
            raise RequestQueueUnavailable(f"warehouse request queue unavailable: {exc.orig or exc}") from exc

    def release(self, claim: Claim) -> None:
        if not claim:
            return
        try:
            with self._engine.begin() as conn:
                conn.execute(_RELEASE, {"ids": list(claim.handle[1])})
        except sa.exc.DBAPIError as exc:
            raise RequestQueueUnavailable(f"warehouse request queue unavailable: {exc.orig or exc}") from exc

    def pending_count(self) -> int:
        try:
            with self._engine.connect() as conn:
                return int(conn.execute(_COUNT).scalar_one())
        except sa.exc.DBAPIError as exc:
            raise RequestQueueUnavailable(f"warehouse request queue unavailable: {exc.orig or exc}") from exc

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()


def _entry_id(row_id: int, requested_at: datetime | str) -> str:
    """``<row id>:<requested_at in µs since the epoch>``: unique even if the table is recreated and its ids
    start again, so run keys derived from entry ids never match an older deployment's runs."""
    if isinstance(requested_at, str):  # SQLite: 'YYYY-MM-DD HH:MM:SS.SSS' in UTC
        requested_at = datetime.fromisoformat(requested_at)
    if requested_at.tzinfo is None:
        requested_at = requested_at.replace(tzinfo=timezone.utc)
    return f"{int(row_id)}:{(requested_at - _EPOCH) // timedelta(microseconds=1)}"
