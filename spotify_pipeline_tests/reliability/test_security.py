"""Security: no secret in plaintext anywhere after a full run, the analyst role's reach on PostgreSQL, and
every listener bound to the loopback interface by default."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner

from spotify_pipeline import auth_cli
from spotify_pipeline.auth_cli import auth_group
from spotify_pipeline.definitions import build_definitions
from spotify_pipeline.defs.partitions import utc_today
from spotify_pipeline.defs.user_library.assets import accounts_partitions
from spotify_pipeline.settings import Settings
from spotify_pipeline.spotify import SpotifyClientConfig
from spotify_pipeline.spotify.cache import KEY_VERSION
from spotify_pipeline.spotify.sqlite_cache import SQLiteCache
from spotify_pipeline.spotify.user_auth import OAuthApp, login
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.catalog import load_catalog, sample_catalog_path
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.tokens import SqlTokenStore, StoredTokens, TokenKeyError, generate_token_key
from spotify_pipeline_tests.reliability.conftest import REPO_ROOT, catalogue_subset
from spotify_pipeline_tests.servers import free_port
from spotify_pipeline_tests.spotify.test_user_auth_support import follow_browser

pytestmark = pytest.mark.reliability

ACCOUNT = "alice"


def _found(haystacks: dict[str, bytes], needles: dict[str, str]) -> dict[tuple[str, str], int]:
    """How often each secret occurs in each source (only the non-zero counts)."""
    out = {}
    for source, data in haystacks.items():
        for name, secret in needles.items():
            count = data.count(secret.encode())
            if count:
                out[(source, name)] = count
    return out


def _files(directory: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def _table_text(engine: sa.Engine) -> bytes:
    """Every value of every table, as text."""
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                out.append(repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)))
    return "\n".join(out).encode()


class _Everything(logging.Handler):
    """Every log record of the process at DEBUG, formatted as a handler would write it (with tracebacks)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _all_logs():
    handler, root = _Everything(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_no_secret_in_logs_events_errors_status_or_warehouse_after_a_full_run(
    emulator_factory, tmp_path, monkeypatch, capfd
):
    client_id, client_secret = f"sec-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    emulator = emulator_factory(clients={client_id: client_secret}, window_limit=None, refresh_rotation="always")
    token_key = generate_token_key()
    database_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    cache_path = tmp_path / "spotify_cache.db"
    env = {
        "DATABASE_URL": database_url,
        "SPOTIFY_CLIENT_ID": client_id,
        "SPOTIFY_CLIENT_SECRET": client_secret,
        "SPOTIFY_API_BASE_URL": emulator.api_base_url,
        "SPOTIFY_ACCOUNTS_BASE_URL": emulator.accounts_base_url,
        "SPOTIFY_RATE_LIMIT_PER_MINUTE": "1000000",
        "SPOTIFY_CACHE_PATH": str(cache_path),
        "SPOTIFY_TOKEN_KEY": token_key,
        "SPOTIFY_TOKEN_KEY_FILE": str(tmp_path / "no-such.key"),
    }
    for name in ("REDIS_URL", "REDIS_KEY_PREFIX", "SPOTIFY_LIMITER_FALLBACK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    engine = create_engine(database_url)
    migrate(engine)
    load_catalog(engine, catalogue_subset(tmp_path, 60))
    store = SqlTokenStore(engine, token_key)
    needles: dict[str, str] = {"client secret": client_secret, "token key": token_key}
    errors: list[str] = []
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    with _all_logs() as logs, dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        app = OAuthApp(client_id=client_id, client_secret=client_secret,
                       accounts_base_url=emulator.accounts_base_url, api_base_url=emulator.api_base_url)
        first = login(app, store, account=ACCOUNT, port=free_port(), open_url=follow_browser, timeout_s=20)
        needles |= {"first user access token": first.access_token, "first refresh token": first.refresh_token}
        defs = build_definitions()  # production resources: credentials as dg.EnvVar, the rest from the environment
        daily = defs.resolve_job_def("spotify_daily_refresh").execute_in_process(
            partition_key=utc_today().isoformat(), instance=instance
        )
        assert daily.success
        app_key = SpotifyClientConfig.from_settings(Settings.from_env()).app_key
        app_token = SQLiteCache(cache_path).get(f"{KEY_VERSION}:token:{app_key}")
        needles["app access token"] = app_token["access_token"]

        instance.add_dynamic_partitions(accounts_partitions.name, [ACCOUNT])
        emulator.expire_tokens()  # the user runs meet a 401 and refresh (rotating the refresh token)
        for job in ("spotify_saved_tracks_refresh", "spotify_recently_played_refresh"):
            result = defs.resolve_job_def(job).execute_in_process(partition_key=ACCOUNT, instance=instance)
            assert result.success, job
        last = store.load(ACCOUNT)
        needles |= {"last user access token": last.access_token, "last refresh token": last.refresh_token}
        assert last.refresh_token != first.refresh_token  # the refresh did happen

        # Failures carry exceptions: a wrong client secret, and a wrong token key.
        wrong_secret = secrets.token_urlsafe(24)
        needles["wrong client secret"] = wrong_secret
        monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", wrong_secret)
        cache_path.unlink()  # no cached app token: the run must ask for one with the wrong secret
        failed = build_definitions().resolve_job_def("spotify_daily_refresh").execute_in_process(
            partition_key=utc_today().isoformat(), instance=instance, raise_on_error=False
        )
        assert not failed.success
        for event in failed.all_events:
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                errors.append(error.to_string())
        assert any("token request failed" in e.lower() for e in errors), errors
        monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", client_secret)
        with pytest.raises(TokenKeyError) as wrong_key:
            SqlTokenStore(engine, generate_token_key()).load(ACCOUNT)
        errors.append(str(wrong_key.value))

        run_ids = [daily.run_id, failed.run_id] + [r.run_id for r in instance.get_runs()]
        events = "\n".join(
            repr(event) + dg.serialize_value(event) for run_id in set(run_ids) for event in instance.all_logs(run_id)
        )
        assert len(events) > 10_000

    status = CliRunner().invoke(auth_group, ["status"], env=env, catch_exceptions=False)
    status_json = CliRunner().invoke(auth_group, ["status", "--json"], env=env, catch_exceptions=False)
    status_wrong_key = CliRunner().invoke(auth_group, ["status"], env={**env, "SPOTIFY_TOKEN_KEY": generate_token_key()})
    assert status.exit_code == 0 and ACCOUNT in status.output, status.output
    captured = capfd.readouterr()
    engine.dispose()
    warehouse_path = Path(engine.url.database)
    haystacks = {
        "logs": "\n".join(logs.lines).encode(),
        "stdout/stderr": (captured.out + captured.err).encode(),
        "dagster event logs": events.encode(),
        "dagster instance files": _files(dagster_home),
        "exceptions": "\n".join(errors).encode(),
        "auth status": (status.output + status_json.output + status_wrong_key.output).encode(),
        "warehouse files": b"".join(p.read_bytes() for p in warehouse_path.parent.glob(warehouse_path.name + "*")),
        "warehouse tables": _table_text(create_engine(database_url)),
    }
    assert len({v for v in needles.values()}) == len(needles)
    assert all(len(v) >= 16 for v in needles.values())
    assert len(logs.lines) > 100 and "fetched a Spotify app access token" in haystacks["logs"].decode()
    found = _found(haystacks, needles)
    print(f"scanned {sum(len(v) for v in haystacks.values()):,} bytes in {len(haystacks)} sources for "
          f"{len(needles)} secrets: {len(found)} found")
    assert found == {}


# -- the analyst role (PostgreSQL) -----------------------------------------------------------------------------

ANALYST_READS = (
    "songs_search", "songs", "spotify_tracks", "spotify_artists", "spotify_albums", "spotify_track_artists",
    "spotify_popularity_snapshots", "spotify_popularity_movers", "spotify_track_matches",
)
WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def test_analyst_role_reads_views_and_catalogue_but_not_tokens_and_writes_nothing(postgres_url):
    engine = create_engine(postgres_url)
    try:
        migrate(engine)
        loaded = load_catalog(engine, sample_catalog_path()).songs_added
        now = datetime.now(UTC)
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        SqlTokenStore(engine, generate_token_key()).save(StoredTokens(
            account=ACCOUNT, access_token=access, refresh_token=refresh, scopes=("user-library-read",),
            access_token_expires_at=now + timedelta(hours=1), consented_at=now,
            refresh_token_expires_at=now + timedelta(days=182),
        ))
        assert _found({"tables": _table_text(engine)}, {"access": access, "refresh": refresh}) == {}

        def as_analyst(sql: str):
            with engine.connect() as conn:
                conn.execute(sa.text("SET ROLE spotify_analyst"))
                return conn.execute(sa.text(sql)).all()

        for relation in ANALYST_READS:
            as_analyst(f"SELECT * FROM {relation} LIMIT 1")
        assert as_analyst("SELECT count(*) FROM songs_search") == [(loaded,)]
        denied = [
            "SELECT * FROM spotify_oauth_tokens",
            "SELECT account FROM spotify_oauth_tokens",
            "INSERT INTO songs (title, artist, catalog_key) VALUES ('t', 'a', 'analyst-key')",
            "UPDATE songs SET title = 'x'",
            "DELETE FROM spotify_tracks",
            "TRUNCATE spotify_popularity_snapshots",
            "SELECT * FROM songs FOR UPDATE",
            "CREATE TABLE public.analyst_scratch (x int)",
            "CREATE VIEW public.analyst_view AS SELECT 1",
            "DELETE FROM spotify_oauth_tokens",
        ]
        for sql in denied:
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                as_analyst(sql)
        with engine.connect() as conn:
            tables = [r[0] for r in conn.execute(sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')"
            ))]
            grants = conn.execute(sa.text(
                "SELECT t, p FROM unnest(CAST(:tables AS text[])) AS t, unnest(CAST(:privileges AS text[])) AS p "
                "WHERE has_table_privilege('spotify_analyst', quote_ident(t), p)"
            ), {"tables": tables, "privileges": list(WRITES)}).all()
            sequences = conn.execute(sa.text(
                "SELECT relname FROM (SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'S' OFFSET 0) AS s "
                "WHERE has_sequence_privilege('spotify_analyst', s.oid, 'USAGE') "
                "OR has_sequence_privilege('spotify_analyst', s.oid, 'UPDATE')"
            )).all()
            token_read = conn.execute(sa.text(
                "SELECT has_table_privilege('spotify_analyst', 'spotify_oauth_tokens', 'SELECT')"
            )).scalar_one()
        assert len(tables) > 10
        assert grants == [] and sequences == [] and token_read is False
    finally:
        engine.dispose()


# -- listeners bind the loopback interface ---------------------------------------------------------------------


def _listening(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                address, state = fields[1], fields[3]
                host_hex, port_hex = address.split(":")
                if state != "0A" or int(port_hex, 16) != port:
                    continue
                raw = bytes.fromhex(host_hex)
                if family == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def _wait_listening(port: int, process: subprocess.Popen, timeout_s: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1).status_code == 200:
                return _listening(port)
        assert process.poll() is None, "the emulator exited"
        time.sleep(0.05)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port}")


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads listening sockets from /proc")


@needs_proc
@pytest.mark.parametrize(
    "command",
    [["-m", "spotify_pipeline.cli", "emulator"], ["-m", "spotify_pipeline.emulator.server"]],
    ids=["spotify-pipeline emulator", "emulator server module"],
)
def test_emulator_binds_loopback_by_default(command):
    port = free_port()
    process = subprocess.Popen([sys.executable, *command, "--port", str(port)], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_listening(port, process) == {"127.0.0.1"}
    finally:
        process.terminate()
        process.wait(timeout=10)


@needs_proc
def test_test_emulator_and_login_callback_bind_loopback(emulator, sqlite_url, tmp_path, monkeypatch):
    assert _listening(int(emulator.base_url.rsplit(":", 1)[1])) == {"127.0.0.1"}
    migrate(create_engine(sqlite_url))
    port = free_port()
    seen: list[set[str]] = []

    def browser(url: str) -> bool:
        seen.append(_listening(port))  # the callback listener is up while the browser is sent to consent
        follow_browser(url)
        return True

    monkeypatch.setattr(auth_cli, "open_browser", browser)
    env = {
        "DATABASE_URL": sqlite_url, "SPOTIFY_CLIENT_ID": emulator.client_id,
        "SPOTIFY_CLIENT_SECRET": emulator.client_secret, "SPOTIFY_ACCOUNTS_BASE_URL": emulator.accounts_base_url,
        "SPOTIFY_API_BASE_URL": emulator.api_base_url, "SPOTIFY_TOKEN_KEY": generate_token_key(),
        "SPOTIFY_TOKEN_KEY_FILE": str(tmp_path / "no-such.key"), "REDIS_URL": None,
    }
    result = CliRunner().invoke(auth_group, ["login", "--account", "me", "--port", str(port), "--timeout", "10"],
                                env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert seen == [{"127.0.0.1"}]
