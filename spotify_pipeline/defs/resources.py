"""Dagster resources.

`SpotifyResource` is the Dagster face of the Spotify client (`spotify_pipeline.spotify`): one client per run,
built from the pipeline's settings, with any field set here overriding the environment. Assets call
`spotify.get_client()` and put `spotify.usage_rows()` into their `MaterializeResult` metadata (and the
``spotify_api_usage`` table). Every client of a run spends from the run's request budget (`request_budget()`).
"""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from spotify_pipeline.emulator.local import ensure_emulator
from spotify_pipeline.settings import Settings, get_settings
from spotify_pipeline.spotify import (
    Metrics,
    RequestBudget,
    SpotifyClient,
    SpotifyClientConfig,
    build_client,
    open_request_budget,
)
from spotify_pipeline.spotify.logs import LOGGER_NAME, install_redaction
from spotify_pipeline.spotify.metrics import MetricsMark
from spotify_pipeline.spotify.user_auth import TokenStore
from spotify_pipeline.spotify.user_client import UserSpotifyClient, build_user_client


class _DagsterLogHandler(logging.Handler):
    """Forwards the client's (already redacted) log records to the run's Dagster logger."""

    def __init__(self, dagster_log: Any) -> None:
        super().__init__(level=logging.INFO)
        self._dagster_log = dagster_log
        install_redaction(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._dagster_log.log(record.levelno, f"[{record.name}] {self.format(record)}")
        except Exception:  # logging must never break a run
            self.handleError(record)


#: The run tag naming the job a run belongs to; runs of the on-demand job may spend the on-demand reserve.
JOB_TAG = "spotify_pipeline/job"
ON_DEMAND_JOB = "on_demand"


class SpotifyResource(dg.ConfigurableResource):
    """Rate-limited, cached, budgeted access to the Spotify Web API (Client Credentials).

    Every request of every process sharing ``REDIS_URL`` draws from one rate-limit budget
    (``SPOTIFY_RATE_LIMIT_PER_MINUTE``); tracks are cached (metadata 24 h, popularity 1 h), and the app's
    mode (Extended Quota or Development Mode) is detected once and remembered. A run sends at most
    ``SPOTIFY_RUN_REQUEST_BUDGET`` Web API requests, counted once for all its step processes; scheduled runs
    leave the day's on-demand reserve (``SPOTIFY_ON_DEMAND_RESERVE``) to runs of the on-demand job. Unset
    fields come from the environment through `spotify_pipeline.settings`; credentials are best given as
    ``dg.EnvVar`` so they are never stored in run config (see `spotify_resource_from_env`).
    """

    client_id: str | None = Field(default=None, description="Spotify app client id (SPOTIFY_CLIENT_ID).")
    client_secret: str | None = Field(
        default=None, description="Spotify app client secret (SPOTIFY_CLIENT_SECRET); use dg.EnvVar."
    )
    api_base_url: str | None = Field(default=None, description="Web API base URL (SPOTIFY_API_BASE_URL).")
    accounts_base_url: str | None = Field(
        default=None, description="Accounts base URL (SPOTIFY_ACCOUNTS_BASE_URL)."
    )
    market: str | None = Field(default=None, description="Market for track relinking (SPOTIFY_MARKET).")
    redis_url: str | None = Field(
        default=None, description="Redis shared by every process (REDIS_URL); unset: in-process backends."
    )
    redis_key_prefix: str | None = Field(default=None, description="Prefix of every Redis key (REDIS_KEY_PREFIX).")
    rate_limit_per_minute: int | None = Field(
        default=None, description="Requests per minute shared by every process (SPOTIFY_RATE_LIMIT_PER_MINUTE)."
    )
    cache_path: str | None = Field(
        default=None,
        description="SQLite cache file when REDIS_URL is unset (SPOTIFY_CACHE_PATH); 'memory' for in-process only.",
    )
    app_mode: str = Field(
        default="auto", description="'auto' detects Extended Quota vs Development Mode; or force one of them."
    )
    run_request_budget: int | None = Field(
        default=None, description="Web API requests one run may send (SPOTIFY_RUN_REQUEST_BUDGET)."
    )
    forward_logs_to_dagster: bool = Field(
        default=True, description="Copy the client's INFO+ log lines (redacted) into the run's event log."
    )

    _client: SpotifyClient | None = PrivateAttr(default=None)
    _user_clients: dict[str, SpotifyClient] = PrivateAttr(default_factory=dict)
    _metrics: Metrics | None = PrivateAttr(default=None)
    _handler: logging.Handler | None = PrivateAttr(default=None)
    _run_id: str | None = PrivateAttr(default=None)
    _on_demand_run: bool = PrivateAttr(default=False)
    _budget: RequestBudget | None = PrivateAttr(default=None)
    _saved_level: int | None = PrivateAttr(default=None)

    # -- configuration -------------------------------------------------------------------------------
    def client_config(self, settings: Settings | None = None) -> SpotifyClientConfig:
        """The client configuration: settings from the environment, overridden by the fields set here."""
        overrides: dict[str, Any] = {
            name: value
            for name, value in {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "api_base_url": self.api_base_url,
                "accounts_base_url": self.accounts_base_url,
                "market": self.market,
                "redis_url": self.redis_url,
                "redis_key_prefix": self.redis_key_prefix,
                "rate_limit_per_minute": self.rate_limit_per_minute,
                "cache_path": self.cache_path,
            }.items()
            if value is not None
        }
        overrides["app_mode"] = self.app_mode
        return SpotifyClientConfig.from_settings(settings or get_settings(), **overrides)

    # -- lifecycle -----------------------------------------------------------------------------------
    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = getattr(context, "run", None)
        self._run_id = run.run_id if run is not None else None
        self._on_demand_run = run is not None and run.tags.get(JOB_TAG) == ON_DEMAND_JOB
        if self.forward_logs_to_dagster and context.log is not None:
            logger = logging.getLogger(LOGGER_NAME)
            self._handler = _DagsterLogHandler(context.log)
            logger.addHandler(self._handler)
            if logger.getEffectiveLevel() > logging.INFO:  # let INFO lines be created during the run
                self._saved_level = logger.level
                logger.setLevel(logging.INFO)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        logger = logging.getLogger(LOGGER_NAME)
        if self._handler is not None:
            logger.removeHandler(self._handler)
            self._handler = None
        if self._saved_level is not None:
            logger.setLevel(self._saved_level)
            self._saved_level = None
        for client in [self._client, *self._user_clients.values()]:
            if client is not None:
                client.close()
        self._client = None
        self._user_clients = {}
        self._metrics = None
        close = getattr(self._budget, "close", None)
        if close is not None:
            close()
        self._budget = None

    # -- what assets use -------------------------------------------------------------------------------
    def _run_metrics(self) -> Metrics:
        if self._metrics is None:
            self._metrics = Metrics(run_id=self._run_id)
        return self._metrics

    def _checked_config(self) -> SpotifyClientConfig:
        """The client configuration, with the local profile's emulator answering if the settings ask for it."""
        settings = get_settings()
        config = self.client_config(settings)
        if settings.spotify_emulator:
            # Spotify's window is 30 s: the emulator admits what the shared limiter allows in one.
            window_limit = max(1, config.rate_limit_per_minute // 2)
            ensure_emulator(config.api_base_url, mode=settings.spotify_emulator, window_limit=window_limit)
        return config

    def budget_total(self, settings: Settings | None = None) -> int:
        """The requests one run may send: this resource's ``run_request_budget``, else the settings'."""
        if self.run_request_budget is not None:
            if self.run_request_budget <= 0:
                raise dg.Failure(f"run_request_budget must be a positive whole number, got {self.run_request_budget}")
            return self.run_request_budget
        return (settings or get_settings()).run_request_budget

    def request_budget(self) -> RequestBudget:
        """The run's request budget, shared by every client and step process of the run (see
        `spotify_pipeline.spotify.budget`); runs of the on-demand job may draw on the day's on-demand reserve."""
        if self._budget is None:
            settings = get_settings()
            self._budget = open_request_budget(
                self.client_config(settings),
                self.budget_total(settings),
                run_id=self._run_id,
                reserve=0.0 if self._on_demand_run else settings.spotify_on_demand_reserve,
            )
        return self._budget

    def get_client(self) -> SpotifyClient:
        """The run's app client (built on first use; one per run and process, so metrics are per run), spending
        from the run's request budget."""
        if self._client is None:
            self._client = build_client(
                self._checked_config(), run_id=self._run_id, metrics=self._run_metrics(), budget=self.request_budget()
            )
        return self._client

    def get_user_client(self, account: str, store: TokenStore) -> UserSpotifyClient:
        """A client acting for a connected `account` (tokens from `store`), on the same limiter, cache and
        metrics as the app client."""
        if account not in self._user_clients:
            self._user_clients[account] = build_user_client(
                self._checked_config(), store, account, run_id=self._run_id, metrics=self._run_metrics()
            )
        return self._user_clients[account]

    def usage_mark(self) -> MetricsMark:
        """The usage counters now: `usage_rows(since=mark)` later reports only what came after."""
        return self._run_metrics().mark()

    def usage_rows(self, since: MetricsMark | None = None) -> list[dict[str, Any]]:
        """Per-endpoint usage of this run in this process (app and user clients), all of it or only what
        came after `since`."""
        if self._metrics is None:
            return []
        return self._metrics.snapshot(run_id=self._run_id, since=since)

    def usage_metadata(self, since: MetricsMark | None = None) -> dict[str, Any]:
        """Usage totals and the per-endpoint table, ready for `MaterializeResult(metadata=...)`."""
        rows = self.usage_rows(since)
        counters = ("requests", "cache_hits", "cache_misses", "retries", "throttled", "errors")
        totals = {k: sum(int(r[k]) for r in rows) for k in counters}
        meta: dict[str, Any] = {f"spotify_{k}": dg.MetadataValue.int(v) for k, v in totals.items()}
        meta["spotify_api_usage"] = usage_table(rows)
        caps = self._client.known_capabilities if self._client is not None else None
        if caps is not None:  # only what is already known: metadata never spends a request
            meta["spotify_app_mode"] = dg.MetadataValue.text(caps.mode)
            meta["spotify_popularity_available"] = dg.MetadataValue.bool(caps.popularity)
        return meta


USAGE_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("endpoint", "string", description="Spotify endpoint, e.g. GET /tracks/{id}; /api/token for tokens."),
        dg.TableColumn("requests", "int", description="HTTP requests sent to Spotify, retries included."),
        dg.TableColumn("cache_hits", "int", description="Reads answered from the cache, costing no request."),
        dg.TableColumn("cache_misses", "int", description="Reads the cache could not answer."),
        dg.TableColumn("retries", "int", description="Requests sent again after a 5xx, a dropped connection or a 429."),
        dg.TableColumn("throttled", "int", description="429 answers (rate limit or quota)."),
        dg.TableColumn("errors", "int", description="Requests that failed for good."),
        dg.TableColumn("latency_p50_ms", "float", description="Median response time (ms)."),
        dg.TableColumn("latency_p95_ms", "float", description="95th percentile response time (ms)."),
    ]
)


def usage_table(rows: list[dict[str, Any]]) -> dg.MetadataValue:
    """Per-endpoint Spotify usage as a table the Dagster UI renders (one row per endpoint)."""
    columns = [column.name for column in USAGE_TABLE_SCHEMA.columns]
    records = [dg.TableRecord({name: row.get(name) for name in columns}) for row in rows]
    return dg.MetadataValue.table(records=records, schema=USAGE_TABLE_SCHEMA)


def spotify_resource_from_env() -> SpotifyResource:
    """The resource as `Definitions` should declare it: credentials as `dg.EnvVar`, the rest from settings.

    Dagster resolves the variables when a run starts, so a missing ``SPOTIFY_CLIENT_ID`` or
    ``SPOTIFY_CLIENT_SECRET`` fails the launch with the variable's name and the secret never appears in
    run config or the UI.
    """
    return SpotifyResource(
        client_id=dg.EnvVar("SPOTIFY_CLIENT_ID"),
        client_secret=dg.EnvVar("SPOTIFY_CLIENT_SECRET"),
    )


@dg.definitions
def resources() -> dg.Definitions:
    """The code location's resources: Spotify (credentials from the environment) and the warehouse."""
    from spotify_pipeline.defs.warehouse_resource import WarehouseResource

    return dg.Definitions(resources={"spotify": spotify_resource_from_env(), "warehouse": WarehouseResource()})
