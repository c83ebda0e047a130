"""`spotify-pipeline auth ...` end to end against the emulator, on a temporary SQLite warehouse."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from spotify_pipeline import auth_cli
from spotify_pipeline.auth_cli import auth_group
from spotify_pipeline.warehouse import create_engine
from spotify_pipeline.warehouse.migrations import migrate
from spotify_pipeline.warehouse.tokens import SqlTokenStore, generate_token_key, token_cipher
from spotify_pipeline_tests.servers import free_port
from spotify_pipeline_tests.spotify.test_user_auth_support import follow_browser, redirect_location


@pytest.fixture
def env(emulator, sqlite_url, tmp_path) -> dict[str, str | None]:
    migrate(create_engine(sqlite_url))
    return {
        "DATABASE_URL": sqlite_url,
        "SPOTIFY_CLIENT_ID": emulator.client_id,
        "SPOTIFY_CLIENT_SECRET": emulator.client_secret,
        "SPOTIFY_ACCOUNTS_BASE_URL": emulator.accounts_base_url,
        "SPOTIFY_API_BASE_URL": emulator.api_base_url,
        "SPOTIFY_TOKEN_KEY": generate_token_key(),
        "SPOTIFY_TOKEN_KEY_FILE": str(tmp_path / "no-such.key"),
        "REDIS_URL": None,
    }


@pytest.fixture
def browser(monkeypatch) -> list[str]:
    """Replaces the real browser with one that follows the emulator's consent redirect."""
    opened: list[str] = []

    def fake(url: str) -> bool:
        opened.append(url)
        follow_browser(url)
        return True

    monkeypatch.setattr(auth_cli, "open_browser", fake)
    return opened


def run(env, *args: str):
    return CliRunner().invoke(auth_group, list(args), env=env, catch_exceptions=False)


def stored(env, account: str = "me"):
    return SqlTokenStore(create_engine(env["DATABASE_URL"]), env["SPOTIFY_TOKEN_KEY"]).load(account)


def login(env, *extra: str):
    return run(env, "login", "--account", "me", "--port", str(free_port()), "--timeout", "10", *extra)


def test_login_status_logout(env, browser, emulator) -> None:
    result = login(env, "--scopes", "user-library-read,user-read-recently-played", "--scopes", "user-read-email")
    assert result.exit_code == 0, result.output
    assert "connected account 'me' (Spotify user emulator-test-user)" in result.output
    assert browser and browser[0] in result.output  # also printed, for when no browser opens
    tokens = stored(env)
    assert tokens.scopes == ("user-library-read", "user-read-email", "user-read-recently-played")

    status = run(env, "status")
    assert status.exit_code == 0, status.output
    assert "me" in status.output and "emulator-test-user" in status.output and "ok" in status.output
    assert tokens.refresh_token_expires_at.strftime("%Y-%m-%d") in status.output
    as_json = json.loads(run(env, "status", "--json").output)
    assert as_json[0]["account"] == "me" and as_json[0]["status"] == "ok" and as_json[0]["key_ok"] is True
    assert as_json[0]["refresh_token_expires_at"] == tokens.refresh_token_expires_at.isoformat()

    for output in (result.output, status.output, json.dumps(as_json)):
        for secret in (tokens.access_token, tokens.refresh_token, emulator.client_secret):
            assert secret not in output

    assert run(env, "logout", "--account", "me").exit_code == 0
    assert stored(env) is None
    assert "no Spotify accounts connected" in run(env, "status").output
    gone = run(env, "logout", "--account", "me")
    assert gone.exit_code == 1 and "no Spotify account 'me' is connected" in gone.output


def test_status_flags_an_account_that_needs_a_new_login(env, browser) -> None:
    assert login(env).exit_code == 0
    SqlTokenStore(create_engine(env["DATABASE_URL"]), env["SPOTIFY_TOKEN_KEY"]).mark_needs_reauth("me")
    status = run(env, "status")
    assert "needs login" in status.output
    assert "ERROR: account 'me'" in status.output and "spotify-pipeline auth login --account me" in status.output


def test_login_no_browser_reads_the_pasted_url_from_stdin(env) -> None:
    """A real process: the URL is read from its stdout and the redirect is typed into its stdin."""
    child_env = {k: v for k, v in os.environ.items() if k not in env}
    child_env.update({k: v for k, v in env.items() if v is not None})
    process = subprocess.Popen(
        [sys.executable, "-m", "spotify_pipeline.auth_cli", "login", "--account", "me", "--no-browser"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        url = None
        while url is None:
            line = lines.get(timeout=30)
            seen.append(line)
            if line.strip().startswith("http"):
                url = line.strip()
        assert "code_challenge_method=S256" in url
        process.stdin.write(redirect_location(url) + "\n")
        process.stdin.close()
        process.wait(timeout=30)
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    while not lines.empty():
        seen.append(lines.get())
    out = "".join(seen)
    assert process.returncode == 0, out
    assert "connected account 'me'" in out
    assert stored(env) is not None


def test_denied_consent(env, browser, emulator) -> None:
    emulator.configure(deny_authorization=True)
    result = login(env)
    assert result.exit_code == 1
    assert "Error: consent denied" in result.output and "nothing was stored" in result.output
    assert stored(env) is None


def test_port_in_use(env, browser) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run(env, "login", "--port", str(port))
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "--port N" in result.output
    assert browser == []


def test_callback_timeout(env, monkeypatch) -> None:
    monkeypatch.setattr(auth_cli, "open_browser", lambda url: True)  # a browser that never comes back
    result = run(env, "login", "--port", str(free_port()), "--timeout", "0.3")
    assert result.exit_code == 1
    assert "no callback on http://127.0.0.1:" in result.output and "within 0.3 s" in result.output


def test_wrong_client_secret(env, browser) -> None:
    result = login({**env, "SPOTIFY_CLIENT_SECRET": "wrong-secret-value"})
    assert result.exit_code == 1
    assert "rejected the app's client credentials" in result.output and "SPOTIFY_CLIENT_SECRET" in result.output
    assert "wrong-secret-value" not in result.output
    assert stored(env) is None


def test_missing_and_wrong_keys_fail_before_consent(env, browser) -> None:
    missing = login({**env, "SPOTIFY_TOKEN_KEY": None})
    assert missing.exit_code == 1 and "SPOTIFY_TOKEN_KEY is not set" in missing.output
    malformed = login({**env, "SPOTIFY_TOKEN_KEY": "abc"})
    assert malformed.exit_code == 1 and "SPOTIFY_TOKEN_KEY is not a Fernet key" in malformed.output
    assert browser == []

    assert login(env).exit_code == 0
    browser.clear()
    wrong = {**env, "SPOTIFY_TOKEN_KEY": generate_token_key()}
    again = login(wrong)
    assert again.exit_code == 1 and "cannot decrypt the stored Spotify tokens of account 'me'" in again.output
    assert "SPOTIFY_TOKEN_KEY" in again.output and browser == []
    status = run(wrong, "status")
    assert status.exit_code == 0 and "cannot be decrypted with SPOTIFY_TOKEN_KEY" in status.output
    for result in (missing, malformed, again, status):
        assert "Traceback" not in result.output and "padding" not in result.output.lower()


def test_rotate_key(env, browser) -> None:
    assert login(env).exit_code == 0
    old = env["SPOTIFY_TOKEN_KEY"]
    new = run(env, "generate-key").output.strip()
    token_cipher(new)
    result = run({**env, "SPOTIFY_TOKEN_KEY": f"{new},{old}"}, "rotate-key")
    assert result.exit_code == 0 and "re-encrypted the tokens of 1 account(s)" in result.output
    assert stored({**env, "SPOTIFY_TOKEN_KEY": new}) is not None
    stale = run(env, "status", "--json")
    assert json.loads(stale.output)[0]["key_ok"] is False


def test_unmigrated_warehouse(env, browser, tmp_path) -> None:
    result = login({**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.exit_code == 1 and "run `spotify-pipeline migrate`" in result.output


def test_key_file_is_used_when_the_variable_is_unset(env, browser, tmp_path) -> None:
    from spotify_pipeline.warehouse.tokens import ensure_local_token_key

    key_file = tmp_path / "token.key"
    assert ensure_local_token_key(key_file)
    file_env = {**env, "SPOTIFY_TOKEN_KEY": None, "SPOTIFY_TOKEN_KEY_FILE": str(key_file)}
    assert login(file_env).exit_code == 0
    assert stored({**env, "SPOTIFY_TOKEN_KEY": Path(key_file).read_text().strip()}) is not None


def test_invalid_account_name(env, browser) -> None:
    result = run(env, "login", "--account", "no spaces please")
    assert result.exit_code == 2 and "invalid account name" in result.output
