"""Connected users' libraries: saved tracks and listening history, one partition per account."""

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from spotify_pipeline.defs.catalog.landing import write_catalog
from spotify_pipeline.defs.resources import SpotifyResource
from spotify_pipeline.defs.usage import UsageTracker
from spotify_pipeline.defs.warehouse_resource import WarehouseResource
from spotify_pipeline.settings import get_settings
from spotify_pipeline.spotify import Track
from spotify_pipeline.spotify.user_auth import assess_refresh_token
from spotify_pipeline.warehouse.enrichment import utc_now
from spotify_pipeline.warehouse.tokens import SqlTokenStore
from spotify_pipeline.warehouse.user_library import add_plays, last_played_at_ms, sync_saved_tracks

#: One partition per account connected with `spotify-pipeline auth login`; kept in step by a sensor.
accounts_partitions = dg.DynamicPartitionsDefinition(name="spotify_accounts")

REFRESH_TOKEN_CHECK = "refresh_token_valid"


def token_store(warehouse: WarehouseResource) -> SqlTokenStore:
    return SqlTokenStore.from_settings(get_settings(), engine=warehouse.engine)


def _land_tracks(warehouse: WarehouseResource, tracks: Iterable[Track], fetched_at: dt.datetime) -> int:
    """Tracks seen in a library go into the catalogue tables; their popularity (which the user endpoints may
    omit) stays the daily snapshot's."""
    with warehouse.engine.begin() as conn:
        counts = write_catalog(conn, ((track, fetched_at) for track in tracks), with_popularity=False)
    return counts["tracks"]


@dg.asset(
    group_name="spotify_user",
    kinds={"spotify", "sql"},
    partitions_def=accounts_partitions,
    pool="spotify_api",
)
def spotify_saved_tracks(
    context: dg.AssetExecutionContext, spotify: SpotifyResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Every track the account has saved ("Liked Songs"), in `spotify_saved_tracks`.

    A full pull (50 per page) each time: tracks still saved are upserted with their `added_at`; tracks
    no longer saved keep their row with `removed_on` set to the day the pull noticed, never deleted. The
    tracks also land in the normalized catalogue (`spotify_tracks`, `spotify_albums`, `spotify_artists`).
    """
    account = context.partition_key
    usage = UsageTracker(context, spotify, warehouse)
    client = spotify.get_user_client(account, token_store(warehouse))
    saved = list(client.iter_saved_tracks())
    now = utc_now()
    with warehouse.engine.begin() as conn:
        counts = sync_saved_tracks(
            conn, account, [{"track_id": s.track.requested_id, "added_at": s.added_at} for s in saved], now=now
        )
    catalogued = _land_tracks(warehouse, (s.track for s in saved), now)
    return dg.MaterializeResult(
        metadata={"account": account, **counts, "tracks_catalogued": catalogued, **usage.metadata()}
    )


@dg.asset(
    group_name="spotify_user",
    kinds={"spotify", "sql"},
    partitions_def=accounts_partitions,
    pool="spotify_api",
    check_specs=[dg.AssetCheckSpec(
            REFRESH_TOKEN_CHECK, asset="spotify_recently_played",
            description="Warns 14 days before the account's refresh token expires (Spotify ends them 6 months "
            "after consent) and fails once it has expired or been revoked: run `spotify-pipeline auth login`.",
        )],
)
def spotify_recently_played(
    context: dg.AssetExecutionContext, spotify: SpotifyResource, warehouse: WarehouseResource
):
    """The account's listening history, one row per play, in `spotify_recently_played`.

    Incremental: each pull asks Spotify for plays after the newest stored one (the `after` cursor, in ms)
    and a play already stored is never stored twice. Spotify keeps only the last 50 plays, so when a pull
    comes back full the plays between it and the previous pull may be lost: `possible_gap` says so (run
    it at least hourly). The check `refresh_token_valid` warns 14 days before the account's refresh token
    expires and fails once it has expired or been revoked, naming the command that fixes it.
    """
    account = context.partition_key
    store = token_store(warehouse)
    record = store.load(account)
    if record is None:
        raise dg.Failure(f"account {account!r} is not connected: run `spotify-pipeline auth login --account {account}`")
    health = assess_refresh_token(record)
    yield dg.AssetCheckResult(
        check_name=REFRESH_TOKEN_CHECK,
        passed=health.level == "ok",
        severity=dg.AssetCheckSeverity.ERROR if health.level == "error" else dg.AssetCheckSeverity.WARN,
        description=health.message,
        metadata={"account": account},
    )
    if health.level == "error":
        raise dg.Failure(health.message)
    usage = UsageTracker(context, spotify, warehouse)
    client = spotify.get_user_client(account, store)
    with warehouse.engine.connect() as conn:
        after_ms = last_played_at_ms(conn, account)
    pulled = client.recently_played_since(after_ms)
    now = utc_now()
    with warehouse.engine.begin() as conn:
        added = add_plays(
            conn,
            account,
            [
                {"played_at": p.played_at, "played_at_ms": p.played_at_ms, "track_id": p.track.requested_id,
                 "context_uri": p.context_uri}
                for p in pulled.plays
            ],
        )
    catalogued = _land_tracks(warehouse, (p.track for p in pulled.plays), now)
    if pulled.possible_gap:
        context.log.warning(
            f"{account}: the pull returned a full page of plays; plays older than them may have been missed"
        )
    yield dg.MaterializeResult(
        metadata={
            "account": account,
            "plays_added": added,
            "plays_returned": len(pulled.plays),
            "cursor_after_ms": after_ms if after_ms is not None else 0,
            "possible_gap": pulled.possible_gap,
            "tracks_catalogued": catalogued,
            **usage.metadata(),
        }
    )
