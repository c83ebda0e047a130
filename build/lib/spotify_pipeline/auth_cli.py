"""`spotify-pipeline auth ...`: connect Spotify user accounts and manage their encrypted tokens.

A thin face over `spotify_pipeline.spotify.user_auth` (the OAuth flow) and
`spotify_pipeline.warehouse.tokens` (the encrypted store). No command ever prints a token.
"""

from __future__ import annotations

import json
import sys
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from spotify_pipeline.settings import Settings, SettingsError
from spotify_pipeline.spotify.config import SpotifyClientConfig
from spotify_pipeline.spotify.errors import SpotifyError
from spotify_pipeline.spotify.user_auth import (
    DEFAULT_ACCOUNT,
    DEFAULT_CALLBACK_TIMEOUT_S,
    DEFAULT_PORT,
    DEFAULT_SCOPES,
    OAuthApp,
    assess_refresh_token,
    login,
    normalize_scopes,
    validate_account,
)
from spotify_pipeline.warehouse.tokens import SqlTokenStore, TokenStoreError, TokenSummary, generate_token_key


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _store(settings: Settings) -> SqlTokenStore:
    try:
        return SqlTokenStore.from_settings(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def open_browser(url: str) -> bool:
    """Open ``url`` in the user's browser (module-level so tests can replace it)."""
    try:
        return bool(webbrowser.open(url))
    except webbrowser.Error:
        return False


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group("auth")
def auth_group() -> None:
    """Connect Spotify user accounts (Authorization Code with PKCE) and manage their stored tokens."""


@auth_group.command("login")
@click.option("--account", default=DEFAULT_ACCOUNT, show_default=True, help="Name to store the connection under.")
@click.option(
    "--scopes",
    multiple=True,
    help=f"Scopes to request (space- or comma-separated, repeatable). Default: {' '.join(DEFAULT_SCOPES)}.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
    help="Loopback port of the redirect URI http://127.0.0.1:PORT/callback (register it in the Spotify app).",
)
@click.option("--no-browser", is_flag=True, help="Print the URL and read the redirect URL you paste back (servers).")
@click.option(
    "--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=DEFAULT_CALLBACK_TIMEOUT_S, show_default=True,
    help="Seconds to wait for the browser's callback.",
)
def login_command(account: str, scopes: tuple[str, ...], port: int, no_browser: bool, timeout_s: float) -> None:
    """Connect a Spotify account: consent in the browser, then the tokens are stored encrypted."""
    try:
        validate_account(account)
        wanted = normalize_scopes(scopes) if scopes else DEFAULT_SCOPES
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    settings = _settings()
    store = _store(settings)
    try:
        store.verify()  # key set and right, table present: fail before the user consents, not after
        app = OAuthApp.from_config(SpotifyClientConfig.from_settings(settings))
    except (TokenStoreError, SpotifyError) as exc:
        raise _fail(exc) from None

    def announce(url: str) -> None:
        click.echo("Opening the Spotify consent page in your browser. If it does not open, visit:")
        click.echo(f"  {url}")
        click.echo(f"Waiting up to {timeout_s:g} s for the callback on http://127.0.0.1:{port}/callback ...")
        open_browser(url)

    def paste(url: str) -> str:
        click.echo("Open this URL in a browser, on any machine, and approve access:")
        click.echo(f"  {url}")
        click.echo("The browser then goes to an http://127.0.0.1 address that may not load: that is expected.")
        return str(click.prompt("Paste the full address it went to", prompt_suffix=": "))

    read_redirect: Callable[[str], str] | None = paste if no_browser else None
    try:
        tokens = login(
            app,
            store,
            account=account,
            scopes=wanted,
            port=port,
            open_url=None if no_browser else announce,
            read_redirect=read_redirect,
            timeout_s=timeout_s,
        )
    except (SpotifyError, TokenStoreError) as exc:
        raise _fail(exc) from None
    click.echo(
        f"connected account {tokens.account!r} (Spotify user {tokens.spotify_user_id}); scopes: "
        f"{' '.join(tokens.scopes)}; refresh token valid until {tokens.refresh_token_expires_at:%Y-%m-%d}"
    )


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _state(summary: TokenSummary, now: datetime) -> tuple[str, str]:
    if summary.readable is False:
        return "error", "tokens cannot be decrypted with SPOTIFY_TOKEN_KEY"
    health = assess_refresh_token(summary, now=now)
    return health.level, health.message


@auth_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status_command(as_json: bool) -> None:
    """List connected accounts: scopes, token expiry, and whether a new login is needed. Never a token."""
    store = _store(_settings())
    try:
        summaries = store.summaries()
    except TokenStoreError as exc:
        raise _fail(exc) from None
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for s in summaries:
        level, message = _state(s, now)
        rows.append(
            {
                "account": s.account,
                "spotify_user_id": s.spotify_user_id,
                "scopes": list(s.scopes),
                "access_token_expires_at": s.access_token_expires_at.isoformat(),
                "access_token_expired": s.access_token_expires_at <= now,
                "refresh_token_expires_at": s.refresh_token_expires_at.isoformat(),
                "consented_at": s.consented_at.isoformat(),
                "needs_reauth": s.needs_reauth,
                "key_ok": s.readable,
                "status": level,
                "message": message,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no Spotify accounts connected: run `spotify-pipeline auth login`")
        return
    headers = ("account", "spotify user", "scopes", "access token expires", "refresh token expires", "status")
    table = [
        (
            r["account"],
            r["spotify_user_id"] or "-",
            " ".join(r["scopes"]),
            _when(s.access_token_expires_at) + (" (expired; renewed on next use)" if r["access_token_expired"] else ""),
            _when(s.refresh_token_expires_at),
            {"ok": "ok", "warn": "expiring soon", "error": "needs login"}[r["status"]],
        )
        for r, s in zip(rows, summaries, strict=True)
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    for r in rows:
        if r["status"] != "ok":
            click.echo(f"{r['status'].upper()}: {r['message']}")


@auth_group.command("logout")
@click.option("--account", required=True, help="The account to disconnect.")
def logout_command(account: str) -> None:
    """Remove an account's stored tokens (revoke the app's access at spotify.com/account/apps too)."""
    store = _store(_settings())
    try:
        removed = store.delete(account)
    except TokenStoreError as exc:
        raise _fail(exc) from None
    if not removed:
        raise click.ClickException(f"no Spotify account {account!r} is connected")
    click.echo(f"removed the stored tokens of account {account!r}")


@auth_group.command("rotate-key")
def rotate_key_command() -> None:
    """Re-encrypt every stored token with the first key of SPOTIFY_TOKEN_KEY.

    To rotate: set SPOTIFY_TOKEN_KEY=NEW,OLD, run this, then set SPOTIFY_TOKEN_KEY=NEW everywhere.
    """
    store = _store(_settings())
    try:
        count = store.rotate_keys()
    except TokenStoreError as exc:
        raise _fail(exc) from None
    click.echo(f"re-encrypted the tokens of {count} account(s) with the first key of SPOTIFY_TOKEN_KEY")


@auth_group.command("generate-key")
def generate_key_command() -> None:
    """Print a new random token key (for SPOTIFY_TOKEN_KEY; keep it secret)."""
    click.echo(generate_token_key())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(auth_group())
