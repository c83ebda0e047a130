"""The command line's manners: short, actionable errors instead of tracebacks, --debug, --version, progress."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from importlib.metadata import version

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url

from spotify_pipeline import cli
from spotify_pipeline.cli import main, progress_reporter
from spotify_pipeline.warehouse import catalog
from spotify_pipeline.warehouse import engine as engine_module
from spotify_pipeline.warehouse.migrations import latest_version
from spotify_pipeline_tests.servers import free_port

PASSWORD = "hunter2-secret"


def _run(args: list[str], **env: str) -> Result:
    return CliRunner().invoke(main, args, env=env)


def _assert_short_error(result: Result, expected: str) -> None:
    """Exit status 1, the message on stderr in one or two lines, nothing on stdout, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # click's exit, not a crash
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.output and PASSWORD not in result.output


def test_version_prints_the_installed_package_version():
    result = _run(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"spotify-pipeline {version('spotify_pipeline')}"


@pytest.mark.parametrize("command", [["search", "bjorn"], ["seed-catalog"]])
def test_an_unmigrated_sqlite_warehouse_says_to_migrate(sqlite_url, command):
    result = _run(command, DATABASE_URL=sqlite_url)
    _assert_short_error(result, f"the warehouse at {sqlite_url} has no schema: run `spotify-pipeline migrate`")


def test_a_warehouse_behind_this_release_says_to_migrate(database_url):
    assert _run(["migrate", "--to", "13"], DATABASE_URL=database_url).exit_code == 0  # before the search keys
    result = _run(["search", "bjorn"], DATABASE_URL=database_url)
    needed = latest_version(make_url(database_url).get_backend_name())
    _assert_short_error(
        result, f"is at schema version 13, this release needs {needed}: run `spotify-pipeline migrate`"
    )


def test_a_postgres_database_that_does_not_exist(postgres_server_url):
    url = make_url(postgres_server_url).set(database="spt_no_such_database", password=PASSWORD)
    result = _run(["search", "bjorn"], DATABASE_URL=url.render_as_string(hide_password=False))
    _assert_short_error(result, "has no database 'spt_no_such_database': create it (createdb spt_no_such_database)")


def test_a_wrong_port(postgres_server_url):
    url = make_url(postgres_server_url).set(port=free_port(), password=PASSWORD)
    result = _run(["migrate"], DATABASE_URL=url.render_as_string(hide_password=False))
    _assert_short_error(result, f"PostgreSQL at {url.host}:{url.port} refused the connection: is the server running?")
    assert "check the host and port in DATABASE_URL" in result.stderr


@pytest.fixture
def silent_server_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung server, a firewall's tarpit)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_server_that_does_not_answer_times_out_with_advice(monkeypatch, silent_server_port):
    monkeypatch.setattr(engine_module, "POSTGRES_CONNECT_TIMEOUT_S", 2)  # libpq's minimum; the default is 10 s
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{silent_server_port}/warehouse"
    result = _run(["search", "bjorn"], DATABASE_URL=url)
    _assert_short_error(result, f"PostgreSQL at 127.0.0.1:{silent_server_port} did not answer in time")


def test_a_database_url_that_is_not_a_url():
    result = _run(["search", "bjorn"], DATABASE_URL="notaurl")
    _assert_short_error(result, "DATABASE_URL is not a database URL: expected sqlite:///")


def test_an_unsupported_database_url_hides_its_password():
    result = _run(["migrate"], DATABASE_URL=f"mysql://analyst:{PASSWORD}@db.example/warehouse")
    _assert_short_error(result, "DATABASE_URL must be a sqlite:/// or postgresql:// URL, got 'mysql://analyst:***@")


def test_a_sqlite_warehouse_whose_folder_cannot_be_created(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = _run(["migrate"], DATABASE_URL=f"sqlite:///{tmp_path / 'a_file' / 'warehouse.db'}")
    _assert_short_error(result, f"cannot create the folder {tmp_path / 'a_file'} for the SQLite warehouse")


def test_a_settings_error(sqlite_url):
    result = _run(["search", "bjorn"], DATABASE_URL=sqlite_url, SPOTIFY_RATE_LIMIT_PER_MINUTE="lots")
    _assert_short_error(result, "SPOTIFY_RATE_LIMIT_PER_MINUTE must be a whole number, got 'lots'")


def test_debug_shows_the_original_exception_instead(sqlite_url):
    result = _run(["--debug", "search", "bjorn"], DATABASE_URL=sqlite_url)
    assert isinstance(result.exception, sa.exc.OperationalError)  # uncaught: Python prints its traceback
    assert "no such table: songs" in str(result.exception)


def test_an_unexpected_failure_keeps_its_traceback(sqlite_url, monkeypatch):
    def broken_search(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "search", broken_search)
    result = _run(["search", "bjorn"], DATABASE_URL=sqlite_url)
    assert isinstance(result.exception, RuntimeError)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_a_bar():
    screen = _Terminal()
    with progress_reporter("copying", total=None, stream=screen) as update:
        update(5, total=10, status="5 files")
        update(10, status="10 files")
    assert "copying" in screen.getvalue() and "100%" in screen.getvalue() and "10 files" in screen.getvalue()


def test_progress_without_a_terminal_is_a_log_line_every_few_seconds(monkeypatch):
    log = io.StringIO()
    with progress_reporter("copying", total=10, stream=log) as update:
        update(1, status="1 file")  # within the first interval: quiet
        monkeypatch.setattr(cli, "PROGRESS_LOG_INTERVAL_S", 0.0)
        update(5, status="5 files")
        update(20, total=40)
    assert log.getvalue().splitlines() == ["copying: 50% (5 files)", "copying: 50%"]


def test_seed_catalog_reports_progress_on_stderr_and_results_on_stdout(sqlite_url, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_LOG_INTERVAL_S", 0.0)
    monkeypatch.setattr(catalog, "PROGRESS_EVERY_ROWS", 250)
    assert _run(["migrate"], DATABASE_URL=sqlite_url).exit_code == 0
    result = _run(["seed-catalog"], DATABASE_URL=sqlite_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["read 1000 rows: 1000 loaded (1000 new songs), 0 skipped"]
    lines = result.stderr.splitlines()
    assert lines[0].startswith("seed-catalog sample_catalog.csv: ") and lines[0].endswith("(250 rows read)")
    assert lines[-1] == "seed-catalog sample_catalog.csv: 100% (1,000 rows read, writing to the warehouse)"
    assert len(lines) == 5
