"""The encrypted token store on SQLite and PostgreSQL (`database_url` runs each test on both)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from spotify_pipeline.settings import Settings, SettingsError
from spotify_pipeline.spotify import SpotifyClientConfig
from spotify_pipeline.spotify.user_auth import UserTokenSource, login
from spotify_pipeline.spotify.user_client import build_user_client
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.tokens import (
    SqlTokenStore,
    StoredTokens,
    TokenKeyError,
    TokenLockTimeout,
    TokenStoreError,
    ensure_local_token_key,
    generate_token_key,
    token_cipher,
)
from spotify_pipeline_tests.spotify.test_user_auth_support import app_for, expire_access_token, follow_browser

T = TypeVar("T")

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ACCESS = "BQ-access-token-for-the-store-test-0123456789"
REFRESH = "AQ-refresh-token-for-the-store-test-9876543210"


def tokens(account: str = "alice", **changes) -> StoredTokens:
    base = StoredTokens(
        account=account,
        access_token=ACCESS + account,
        refresh_token=REFRESH + account,
        scopes=("user-read-recently-played", "user-library-read"),
        access_token_expires_at=NOW + timedelta(hours=1),
        consented_at=NOW,
        refresh_token_expires_at=NOW + timedelta(days=182),
        spotify_user_id=f"user-{account}",
    )
    return replace(base, **changes)


@pytest.fixture
def key() -> str:
    return generate_token_key()


@pytest.fixture
def store(engine, key) -> SqlTokenStore:
    return SqlTokenStore(engine, key)


def raw_rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT * FROM spotify_oauth_tokens"))]


def raw_bytes(engine: sa.Engine) -> bytes:
    """Everything the table holds, as bytes: on SQLite the database files themselves."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database)
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())
    out = []
    for row in raw_rows(engine):
        for value in row:
            out.append(bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode())
    with engine.connect() as conn:
        out.append(str(conn.execute(sa.text("SELECT row_to_json(t)::text FROM spotify_oauth_tokens t")).all()).encode())
    return b"\n".join(out)


# -- storage and encryption ------------------------------------------------------------------------------


def test_save_and_load_round_trip(store) -> None:
    store.save(tokens())
    loaded = store.load("alice")
    assert loaded is not None
    assert (loaded.access_token, loaded.refresh_token) == (ACCESS + "alice", REFRESH + "alice")
    assert loaded.scopes == ("user-library-read", "user-read-recently-played")
    assert loaded.access_token_expires_at == NOW + timedelta(hours=1)
    assert loaded.refresh_token_expires_at == NOW + timedelta(days=182)
    assert loaded.consented_at == NOW and loaded.access_token_expires_at.tzinfo is not None
    assert loaded.spotify_user_id == "user-alice" and not loaded.needs_reauth
    assert store.load("bob") is None
    assert ACCESS not in repr(loaded) and REFRESH not in repr(loaded)


def test_the_table_holds_ciphertext_only(store, engine) -> None:
    store.save(tokens())
    data = raw_bytes(engine)
    assert b"user-alice" in data  # the scan does see the row
    for secret in (ACCESS, REFRESH):
        assert secret.encode() not in data
        assert secret.encode().hex().encode() not in data
    (row,) = raw_rows(engine)
    ciphertexts = [bytes(v) for v in row if isinstance(v, (bytes, memoryview))]
    assert len(ciphertexts) == 2 and all(c.startswith(b"gAAAAA") for c in ciphertexts)  # Fernet tokens


def test_save_replaces_a_login_and_clears_needs_reauth(store) -> None:
    store.save(tokens())
    assert store.mark_needs_reauth("alice")
    assert store.load("alice").needs_reauth
    store.save(tokens(access_token="BQ-second-login-access-token"))
    again = store.load("alice")
    assert again.access_token == "BQ-second-login-access-token" and not again.needs_reauth
    assert store.accounts() == ["alice"]


def test_delete_and_mark_report_unknown_accounts(store) -> None:
    store.save(tokens())
    store.save(tokens("bob"))
    assert store.delete("alice") and not store.delete("alice")
    assert not store.mark_needs_reauth("alice")
    assert store.accounts() == ["bob"]


def test_summaries_never_carry_tokens(store, engine) -> None:
    store.save(tokens())
    (summary,) = store.summaries()
    assert summary.readable is True and summary.account == "alice"
    assert ACCESS not in repr(summary) and REFRESH not in repr(summary)
    other = SqlTokenStore(engine, generate_token_key())
    assert other.summaries()[0].readable is False
    assert SqlTokenStore(engine, None).summaries()[0].readable is None


# -- keys ------------------------------------------------------------------------------------------------------


def test_missing_key_names_the_variable(engine) -> None:
    store = SqlTokenStore(engine, None)
    with pytest.raises(TokenKeyError, match="SPOTIFY_TOKEN_KEY is not set"):
        store.save(tokens())
    with pytest.raises(TokenKeyError, match="SPOTIFY_TOKEN_KEY is not set"):
        SqlTokenStore(engine, " , ").refreshing("alice").__enter__()


@pytest.mark.parametrize("bad", ["not-a-key", "c2hvcnQ=", "x" * 44])
def test_malformed_key_names_the_variable_and_not_the_key(bad, engine) -> None:
    with pytest.raises(TokenKeyError, match="SPOTIFY_TOKEN_KEY is not a Fernet key") as info:
        SqlTokenStore(engine, bad).save(tokens())
    assert bad not in str(info.value) and "padding" not in str(info.value).lower()
    with pytest.raises(TokenKeyError, match="key 2 of 2 in SPOTIFY_TOKEN_KEY"):
        token_cipher(f"{generate_token_key()},{bad}")


def test_wrong_key_is_a_clear_error_not_a_padding_traceback(store, engine, caplog) -> None:
    store.save(tokens())
    wrong = SqlTokenStore(engine, generate_token_key())
    with pytest.raises(TokenKeyError) as info:
        wrong.load("alice")
    message = str(info.value)
    assert "SPOTIFY_TOKEN_KEY" in message and "'alice'" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    for word in ("padding", "InvalidToken", "binascii", "signature"):
        assert word.lower() not in message.lower()
    with pytest.raises(TokenKeyError):
        wrong.verify()


def test_several_keys_decrypt_and_the_first_encrypts(engine) -> None:
    old, new = generate_token_key(), generate_token_key()
    SqlTokenStore(engine, old).save(tokens("alice"))
    both = SqlTokenStore(engine, f"{new}, {old}")
    assert both.load("alice").access_token == ACCESS + "alice"  # the old key still decrypts
    both.save(tokens("bob"))
    assert SqlTokenStore(engine, new).load("bob").access_token == ACCESS + "bob"  # the new key encrypted
    with pytest.raises(TokenKeyError):
        SqlTokenStore(engine, old).load("bob")


def test_rotate_keys_re_encrypts_every_row(engine) -> None:
    old, new = generate_token_key(), generate_token_key()
    SqlTokenStore(engine, old).save(tokens("alice"))
    SqlTokenStore(engine, old).save(tokens("bob"))
    before = raw_rows(engine)

    assert SqlTokenStore(engine, [new, old]).rotate_keys() == 2

    after = raw_rows(engine)
    assert before != after
    only_new = SqlTokenStore(engine, new)
    assert {only_new.load(a).refresh_token for a in ("alice", "bob")} == {REFRESH + "alice", REFRESH + "bob"}
    for account in ("alice", "bob"):
        with pytest.raises(TokenKeyError):
            SqlTokenStore(engine, old).load(account)


def test_rotation_is_all_or_nothing(engine) -> None:
    old, stranger, new = generate_token_key(), generate_token_key(), generate_token_key()
    SqlTokenStore(engine, old).save(tokens("alice"))
    SqlTokenStore(engine, stranger).save(tokens("zed"))  # encrypted with a key the rotation does not list
    before = raw_rows(engine)
    with pytest.raises(TokenKeyError, match="'zed'"):
        SqlTokenStore(engine, [new, old]).rotate_keys()
    assert raw_rows(engine) == before


# -- refreshes and their locks ------------------------------------------------------------------------------


def test_a_refresh_commits_each_write_at_once_and_an_error_before_saving_writes_nothing(store) -> None:
    store.save(tokens())
    with store.refreshing("alice") as txn:
        assert txn.current.refresh_token == REFRESH + "alice"
        txn.save(tokens(access_token="BQ-refreshed-access", refresh_token="AQ-rotated-refresh"))
    assert store.load("alice").refresh_token == "AQ-rotated-refresh"

    with pytest.raises(RuntimeError, match="spotify answered 503"):
        with store.refreshing("alice") as txn:
            raise RuntimeError("spotify answered 503")
    kept = store.load("alice")
    assert (kept.access_token, kept.refresh_token, kept.needs_reauth) == ("BQ-refreshed-access", "AQ-rotated-refresh", False)

    # Once Spotify has answered, the old refresh token is spent: an error later in the block must not bring
    # it back. A refresh's own save is not taken for a new login by the write after it.
    with pytest.raises(RuntimeError, match="after the save"):
        with store.refreshing("alice") as txn:
            txn.save(tokens(access_token="BQ-saved-early", refresh_token="AQ-saved-early"))
            assert store.load("alice").refresh_token == "AQ-saved-early"  # committed, seen by all
            txn.mark_needs_reauth()
            raise RuntimeError("after the save")
    kept = store.load("alice")
    assert (kept.access_token, kept.refresh_token, kept.needs_reauth) == (
        "BQ-saved-early", "AQ-saved-early", True,
    )

    store.save(tokens())  # a new login clears the flag
    with store.refreshing("alice") as txn:
        txn.mark_needs_reauth()
    assert store.load("alice").needs_reauth
    with store.refreshing("nobody") as txn:
        assert txn.current is None


def test_a_held_refresh_lock_makes_the_next_refresher_wait_then_time_out(store, engine, key) -> None:
    store.save(tokens())
    other = SqlTokenStore(engine, key, lock_timeout_s=0.3)
    with store.refreshing("alice"):
        with pytest.raises(TokenLockTimeout, match="refreshing the Spotify tokens of account 'alice'"):
            with other.refreshing("alice"):
                pass
    with other.refreshing("alice") as txn:  # released: free again
        assert txn.current is not None


def test_a_waiting_refresher_sees_what_the_holder_committed(store, engine, key) -> None:
    store.save(tokens())
    other = SqlTokenStore(engine, key)
    seen: list[str] = []
    entered = threading.Event()

    def waiter() -> None:
        entered.set()
        with other.refreshing("alice") as txn:
            seen.append(txn.current.refresh_token)

    with store.refreshing("alice") as txn:
        thread = threading.Thread(target=waiter)
        thread.start()
        entered.wait(5)
        thread.join(0.3)
        assert thread.is_alive()  # blocked on the lock
        txn.save(tokens(refresh_token="AQ-rotated-while-you-waited"))
    thread.join(10)
    assert seen == ["AQ-rotated-while-you-waited"]


# While a refresher waits for Spotify (between reading `current` and saving), the rest of the pipeline writes
# to the warehouse, and logins, logouts and key rotations go ahead instead of queueing behind the HTTP call.


def finishes_promptly(action: Callable[[], T], *, within_s: float = 5.0) -> T:
    """``action``'s result, run on another thread (so on another connection); fails the test when it is
    still waiting after ``within_s``, e.g. for a refresher's transaction to end."""
    results: list[T] = []
    errors: list[Exception] = []

    def run() -> None:
        try:
            results.append(action())
        except Exception as exc:  # re-raised on the test's thread
            errors.append(exc)

    # A daemon thread, not an executor: a test failing here must not then wait for the action forever.
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within_s)
    if thread.is_alive():
        pytest.fail(f"still waiting after {within_s:g} s: blocked behind the refresher")
    if errors:
        raise errors[0]
    return results[0]


def sessions_idle_in_transaction(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT coalesce(query, '') FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            ).scalars()
        )


def advisory_locks_held(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
            )
        ).scalar_one()


def test_the_warehouse_stays_writable_while_a_refresher_waits_for_spotify(store, engine) -> None:
    store.save(tokens())
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE pipeline_writes (note TEXT NOT NULL)"))

    def write_elsewhere() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO pipeline_writes (note) VALUES ('written during the refresh')"))

    with store.refreshing("alice") as txn:
        assert txn.current is not None
        finishes_promptly(write_elsewhere)  # SQLite: no write lock held by the refresher
        finishes_promptly(lambda: store.save(tokens("bob")))
        if engine.dialect.name == "postgresql":
            assert sessions_idle_in_transaction(engine) == []  # no transaction, no row lock across the call
            assert advisory_locks_held(engine) == 1  # a lock all the same
        txn.save(tokens(access_token="BQ-refreshed-access", refresh_token="AQ-rotated-refresh"))

    assert store.load("alice").refresh_token == "AQ-rotated-refresh"
    assert store.load("bob").refresh_token == REFRESH + "bob"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pipeline_writes")).scalar_one() == 1
    if engine.dialect.name == "postgresql":
        assert advisory_locks_held(engine) == 0


def test_a_logout_during_the_refresh_stays_a_logout(store, engine, key) -> None:
    store.save(tokens())
    with pytest.raises(TokenStoreError, match="'alice' was logged out while its tokens were being refreshed"):
        with store.refreshing("alice") as txn:
            assert finishes_promptly(lambda: store.delete("alice"))
            txn.save(tokens(access_token="BQ-refreshed-access", refresh_token="AQ-rotated-refresh"))
    assert store.load("alice") is None and store.accounts() == []
    with SqlTokenStore(engine, key, lock_timeout_s=0.3).refreshing("alice") as again:  # the lock was released
        assert again.current is None


def test_a_login_during_the_refresh_is_kept_and_the_refresh_dropped(store, caplog) -> None:
    store.save(tokens())
    newer_login = tokens(access_token="BQ-newer-login", refresh_token="AQ-newer-login")
    with store.refreshing("alice") as txn:
        finishes_promptly(lambda: store.save(newer_login))
        txn.save(tokens(access_token="BQ-refreshed-access", refresh_token="AQ-rotated-refresh"))
    kept = store.load("alice")
    assert (kept.access_token, kept.refresh_token) == ("BQ-newer-login", "AQ-newer-login")
    assert "'alice' was logged in again while its tokens were being refreshed" in caplog.text


def test_a_refused_refresh_does_not_flag_a_login_made_meanwhile(store) -> None:
    store.save(tokens())
    with store.refreshing("alice") as txn:
        finishes_promptly(lambda: store.save(tokens(refresh_token="AQ-newer-login")))
        txn.mark_needs_reauth()  # Spotify refused the old refresh token, not the new one
    kept = store.load("alice")
    assert (kept.refresh_token, kept.needs_reauth) == ("AQ-newer-login", False)


def test_a_key_rotation_during_the_refresh_keeps_the_refreshed_tokens(engine) -> None:
    old, new = generate_token_key(), generate_token_key()
    SqlTokenStore(engine, old).save(tokens())
    both = SqlTokenStore(engine, [new, old])  # a rotation lists the new key first, the old one after it
    with both.refreshing("alice") as txn:
        assert finishes_promptly(both.rotate_keys) == 1  # new ciphertext, same refresh token
        txn.save(tokens(access_token="BQ-refreshed-access", refresh_token="AQ-rotated-refresh"))
    refreshed = SqlTokenStore(engine, new).load("alice")
    assert (refreshed.access_token, refreshed.refresh_token) == ("BQ-refreshed-access", "AQ-rotated-refresh")


def test_unmigrated_warehouse_says_to_migrate(database_url, key) -> None:
    engine = create_engine(database_url)
    with pytest.raises(TokenStoreError, match="run `spotify-pipeline migrate`"):
        SqlTokenStore(engine, key).load("alice")
    engine.dispose()


def test_analyst_role_cannot_read_the_token_table(postgres_url) -> None:
    engine = create_engine(postgres_url)
    migrate(engine)
    SqlTokenStore(engine, generate_token_key()).save(tokens())
    with engine.connect() as conn:
        conn.exec_driver_sql("SET ROLE spotify_analyst")
        assert conn.execute(sa.text("SELECT count(*) FROM songs_search")).scalar() == 0  # the role does work
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied for table spotify_oauth_tokens"):
            conn.execute(sa.text("SELECT account FROM spotify_oauth_tokens"))
    engine.dispose()


def test_the_warehouse_does_not_import_the_client() -> None:
    code = (
        "import sys, spotify_pipeline.warehouse.tokens; "
        "bad = [m for m in sys.modules if m.startswith('spotify_pipeline.spotify')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- no secret anywhere ----------------------------------------------------------------------------------------


def test_no_token_or_client_secret_in_the_table_or_any_log_line(engine, key, emulator, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.configure(refresh_rotation="always")
    store = SqlTokenStore(engine, key)
    app = app_for(emulator)
    first = login(app, store, account="alice", port=0, open_url=follow_browser, timeout_s=10)
    expire_access_token(store, "alice")
    config = SpotifyClientConfig(
        client_id=emulator.client_id, client_secret=emulator.client_secret, api_base_url=emulator.api_base_url,
        accounts_base_url=emulator.accounts_base_url, rate_limit_per_minute=60_000,
    )
    client = build_user_client(config, store, "alice")
    client.me()
    list(client.iter_saved_tracks())
    client.recently_played_since(None)
    emulator.expire_tokens()  # a 401, a refresh inside the transport
    client.me()
    emulator.advance_clock(183 * 86_400)
    expire_access_token(store, "alice")
    with pytest.raises(Exception, match="auth login --account alice"):
        UserTokenSource(store, "alice", app).token()  # invalid_grant, logged as a warning
    last = store.load("alice")

    secrets = {first.access_token, first.refresh_token, last.access_token, last.refresh_token, emulator.client_secret}
    assert len(secrets) == 5
    assert emulator.stats()["by_endpoint"]["/api/token"] >= 4
    captured = capsys.readouterr()
    lines = [r.getMessage() for r in caplog.records] + [r.exc_text or "" for r in caplog.records]
    logs = "\n".join(lines) + captured.out + captured.err
    assert "refreshed the access token" in logs and "must be connected again" in logs  # the scan sees the lines
    table = raw_bytes(engine)
    for secret in secrets:
        assert secret not in logs
        assert secret.encode() not in table


# -- the local key file ----------------------------------------------------------------------------------------


def test_ensure_local_token_key_writes_a_private_key_once(tmp_path) -> None:
    path = tmp_path / ".data" / "token.key"
    assert ensure_local_token_key(path) is True
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600
    key = path.read_text().strip()
    token_cipher(key)  # a valid Fernet key
    assert ensure_local_token_key(path) is False
    assert path.read_text().strip() == key  # never replaced: it would orphan every stored token


def test_ensure_local_token_key_does_nothing_when_a_key_is_configured(tmp_path) -> None:
    path = tmp_path / "token.key"
    assert ensure_local_token_key(path, configured_key=generate_token_key()) is False
    assert not path.exists()


def test_ensure_local_token_key_tightens_a_loose_file_and_rejects_a_bad_one(tmp_path) -> None:
    path = tmp_path / "token.key"
    path.write_text(generate_token_key())
    os.chmod(path, 0o644)
    assert ensure_local_token_key(path) is False
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("garbage")
    with pytest.raises(TokenKeyError, match=r"SPOTIFY_TOKEN_KEY \(unset; key read from .*token.key\) is not a Fernet key"):
        ensure_local_token_key(path)


def test_settings_read_the_key_file_only_when_the_variable_is_unset(tmp_path) -> None:
    path = tmp_path / "token.key"
    env = {"SPOTIFY_TOKEN_KEY_FILE": str(path)}
    assert Settings.from_env(env).token_key() is None
    ensure_local_token_key(path)
    file_key = path.read_text().strip()
    assert Settings.from_env(env).token_key() == file_key
    explicit = generate_token_key()
    assert Settings.from_env({**env, "SPOTIFY_TOKEN_KEY": explicit}).token_key() == explicit
    os.chmod(path, 0o640)
    with pytest.raises(SettingsError, match="readable by other users: chmod 600"):
        Settings.from_env(env).token_key()
    assert Settings.from_env({}).spotify_token_key_file == ".data/token.key"


def test_store_from_settings_uses_the_key_file(tmp_path, sqlite_url) -> None:
    path = tmp_path / "token.key"
    ensure_local_token_key(path)
    settings = Settings.from_env({"DATABASE_URL": sqlite_url, "SPOTIFY_TOKEN_KEY_FILE": str(path)})
    store = SqlTokenStore.from_settings(settings)
    migrate(store.engine)
    store.save(tokens())
    assert SqlTokenStore(store.engine, path.read_text()).load("alice").access_token == ACCESS + "alice"
    missing = Settings.from_env({"DATABASE_URL": sqlite_url, "SPOTIFY_TOKEN_KEY_FILE": str(tmp_path / "none")})
    with pytest.raises(TokenKeyError, match=r"SPOTIFY_TOKEN_KEY is not set"):
        SqlTokenStore.from_settings(missing).load("alice")
