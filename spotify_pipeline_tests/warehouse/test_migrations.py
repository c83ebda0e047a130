from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from spotify_pipeline.cli import main
from spotify_pipeline.warehouse import catalog, create_engine
from spotify_pipeline.warehouse.migrations import (
    SQL_ROOT,
    MigrationError,
    applied,
    discover,
    latest_version,
    migrate,
    split_statements,
)
from spotify_pipeline.warehouse.search import search

EXPECTED_TABLES = {
    "songs",
    "schema_migrations",
    "spotify_raw_responses",
    "spotify_tracks",
    "spotify_artists",
    "spotify_albums",
    "spotify_track_artists",
    "spotify_popularity_snapshots",
    "spotify_match_attempts",
    "spotify_match_overrides",
    "spotify_oauth_tokens",
    "spotify_api_usage",
}


def test_both_backends_carry_the_same_migration_numbers_and_names():
    postgres = [(m.version, m.name) for m in discover("postgresql")]
    sqlite = [(m.version, m.name) for m in discover("sqlite")]
    assert postgres == sqlite
    assert [v for v, _ in postgres] == list(range(1, len(postgres) + 1))


def test_migrate_builds_the_schema_and_a_second_run_applies_nothing(empty_engine):
    first = migrate(empty_engine)
    assert [m.version for m in first] == [m.version for m in discover(empty_engine.dialect.name)]
    assert migrate(empty_engine) == []
    inspector = sa.inspect(empty_engine)
    assert EXPECTED_TABLES <= set(inspector.get_table_names())
    assert "songs_search" in inspector.get_view_names()
    assert {"spotify_track_id", "spotify_popularity", "spotify_synced_at"} <= {
        c["name"] for c in inspector.get_columns("songs")
    }
    history = applied(empty_engine)
    assert [(h.version, h.name, h.checksum) for h in history] == [(m.version, m.name, m.checksum) for m in first]


def test_cli_migrate_twice(database_url):
    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    first = runner.invoke(main, ["migrate"], env=env)
    assert first.exit_code == 0, first.output
    assert "applied 0001_songs.sql" in first.output
    second = runner.invoke(main, ["migrate"], env=env)
    assert second.exit_code == 0, second.output
    assert "nothing to apply" in second.output
    assert "applied" not in second.output


def test_migrate_refuses_when_an_applied_file_changed(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 3"))
    with pytest.raises(MigrationError, match="0003_spotify_raw_responses.sql was changed after it was applied"):
        migrate(engine)


def test_migrate_to_a_target_then_the_rest(empty_engine):
    assert [m.version for m in migrate(empty_engine, target=1)] == [1]
    assert "spotify_track_id" not in {c["name"] for c in sa.inspect(empty_engine).get_columns("songs")}
    assert [m.version for m in migrate(empty_engine)][0] == 2


def test_migrate_to_a_version_past_the_last_is_an_error_naming_the_last(database_url):
    last = discover(create_engine(database_url).dialect.name)[-1]
    result = CliRunner().invoke(main, ["migrate", "--to", "99"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr == f"Error: there is no migration 0099 to migrate to; the last available is {last.filename}\n"


def test_migrate_to_a_version_below_the_applied_one_is_an_error(empty_engine):
    migrate(empty_engine, target=3)
    with pytest.raises(MigrationError, match="already at version 0003, past 0002; migrations only go forward"):
        migrate(empty_engine, target=2)
    assert migrate(empty_engine, target=3) == []  # the applied version itself is fine
    assert [h.version for h in applied(empty_engine)] == [1, 2, 3]


HAND_WRITTEN_SONGS = [("Jóga", "Björk", "Homogenic"), ("Halo", "Beyoncé", None), ("Love", "Kendrick Lamar", "DAMN."),
                      ("Ørsted Waltz", "Søren Strand", None), ("Plain", "Plain", "Plain")]


def test_the_search_keys_migration_folds_the_songs_already_there(empty_engine, monkeypatch):
    migrate(empty_engine, target=13)
    with empty_engine.begin() as conn:  # songs as the releases before search keys wrote them
        for n, (title, artist, album) in enumerate(HAND_WRITTEN_SONGS):
            conn.execute(
                sa.text("INSERT INTO songs (title, artist, album, catalog_key) VALUES (:t, :a, :al, :k)"),
                {"t": title, "a": artist, "al": album, "k": f"k{n}"},
            )
    monkeypatch.setattr(catalog, "BACKFILL_BATCH_ROWS", 2)  # several batches
    assert [m.version for m in migrate(empty_engine)][0] == 14
    with empty_engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT search_title, search_artist, search_album FROM songs ORDER BY id")).all()
    assert keys[:2] == [("joga", "bjork", "homogenic"), ("halo", "beyonce", None)]
    assert all(title is not None for title, _, _ in keys)
    assert [r.artist for r in search("bjork", engine=empty_engine)] == ["Björk"]
    assert [r.artist for r in search("beyonce", engine=empty_engine)] == ["Beyoncé"]
    assert [r.title for r in search("orsted", engine=empty_engine)] == ["Ørsted Waltz"]
    if empty_engine.dialect.name == "sqlite":  # the FTS index learned every backfilled song exactly once
        with empty_engine.connect() as conn:
            conn.exec_driver_sql("INSERT INTO songs_fts (songs_fts) VALUES ('integrity-check')")
            assert conn.exec_driver_sql("PRAGMA integrity_check").all() == [("ok",)]


def test_the_sqlite_shell_can_write_a_migrated_warehouse(sqlite_url):
    engine = create_engine(sqlite_url)
    migrate(engine)
    catalog.upsert_songs(
        engine, [{"title": t, "artist": a, "album": al, "catalog_key": t} for t, a, al in HAND_WRITTEN_SONGS]
    )
    engine.dispose()
    # A plain connection, like the sqlite3 shell's: no function of this package registered on it.
    shell = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    with shell:
        shell.execute("INSERT INTO songs (title, artist, catalog_key) VALUES ('Typed By Hand', 'Analyst', 'hand')")
        shell.execute("UPDATE songs SET album = 'Homogenic (Remastered)', release_year = 1997 WHERE title = 'Jóga'")
        shell.execute("DELETE FROM songs WHERE title = 'Halo'")
        shell.execute("INSERT INTO songs_fts (songs_fts) VALUES ('integrity-check')")
        assert shell.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    shell.close()
    engine = create_engine(sqlite_url)
    try:
        assert search("beyonce", engine=engine) == []
        assert [r.album for r in search("bjork", engine=engine)] == ["Homogenic (Remastered)"]
        assert search("typed by hand", engine=engine) == []  # no search keys: written outside the application
    finally:
        engine.dispose()


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "no-transaction"])
def test_a_failing_post_migration_step_is_not_recorded_and_runs_again(empty_engine, tmp_path, transactional):
    folder = "postgres" if empty_engine.dialect.name == "postgresql" else "sqlite"
    header = "" if transactional else "-- migrate: no-transaction\n"
    sql = header + "CREATE TABLE IF NOT EXISTS first_table (id INTEGER PRIMARY KEY);"
    _write_migrations(tmp_path, folder, {"0001_first.sql": sql})
    runs = []

    def step(conn) -> None:
        conn.execute("INSERT INTO first_table (id) VALUES (?)", (len(runs),))
        runs.append(conn.dialect)
        if len(runs) == 1:
            raise RuntimeError("disk full")

    with pytest.raises(MigrationError, match="0001_first.sql, step step: disk full"):
        migrate(empty_engine, root=tmp_path, steps={1: step})
    assert applied(empty_engine) == []
    # In a transaction the file and its step are undone together; without one, each statement stays done.
    assert ("first_table" in sa.inspect(empty_engine).get_table_names()) is not transactional
    assert [m.version for m in migrate(empty_engine, root=tmp_path, steps={1: step})] == [1]
    with empty_engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM first_table ORDER BY id")).scalars().all()
    assert ids == ([1] if transactional else [0, 1])


def test_the_search_keys_migration_is_online_and_needs_no_extension_on_postgres():
    [search_keys] = [m for m in discover("postgresql") if m.version == 14]
    assert not search_keys.transactional
    assert search_keys.sql.count("CREATE INDEX CONCURRENTLY") == 4
    assert "CREATE EXTENSION" not in search_keys.sql and "unaccent" not in search_keys.sql
    assert latest_version("postgresql") == latest_version("sqlite") >= 14


def _write_migrations(root: Path, dialect_folder: str, files: dict[str, str]) -> None:
    folder = root / dialect_folder
    folder.mkdir(parents=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)


def test_a_failing_migration_rolls_back_and_names_the_file(empty_engine, tmp_path):
    folder = "postgres" if empty_engine.dialect.name == "postgresql" else "sqlite"
    _write_migrations(
        tmp_path,
        folder,
        {
            "0001_first.sql": "CREATE TABLE first_table (id INTEGER PRIMARY KEY);",
            "0002_broken.sql": "CREATE TABLE half_done (id INTEGER);\nINSERT INTO no_such_table VALUES (1);",
        },
    )
    with pytest.raises(MigrationError, match="0002_broken.sql"):
        migrate(empty_engine, root=tmp_path)
    tables = set(sa.inspect(empty_engine).get_table_names())
    assert "first_table" in tables
    assert "half_done" not in tables  # the failed file's earlier statement was rolled back
    assert [h.version for h in applied(empty_engine)] == [1]


def test_badly_named_migration_file_is_refused(tmp_path):
    _write_migrations(tmp_path, "sqlite", {"1_oops.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="1_oops.sql"):
        discover("sqlite", tmp_path)


def test_the_spotify_columns_migration_opts_out_of_the_transaction_on_postgres():
    by_version = {m.version: m for m in discover("postgresql")}
    assert not by_version[2].transactional
    assert "CREATE INDEX CONCURRENTLY" in by_version[2].sql
    assert all(m.transactional for m in discover("sqlite"))


def test_split_statements_respects_quotes_comments_and_dollar_bodies():
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE t (note TEXT DEFAULT 'a;b', "odd;name" INT);
    DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;
    /* block; comment */ SELECT 'it''s; fine';
    """
    statements = split_statements(sql, "postgresql")
    assert len(statements) == 3
    assert statements[1].startswith("DO $$") and statements[1].endswith("END $$")
    assert statements[2].endswith("SELECT 'it''s; fine'")


def test_split_statements_keeps_sqlite_triggers_whole():
    sql = (SQL_ROOT / "sqlite" / "0001_songs.sql").read_text()
    statements = split_statements(sql, "sqlite")
    triggers = [s for s in statements if "CREATE TRIGGER" in s]
    assert len(triggers) == 3
    assert all(t.rstrip().endswith("END;") for t in triggers)


def test_concurrent_migrate_processes_do_not_collide(postgres_url):
    env = {**os.environ, "DATABASE_URL": postgres_url}
    command = [sys.executable, "-m", "spotify_pipeline.cli", "migrate"]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(code == 0 for _, _, code in results), results
    outputs = [out for out, _, _ in results]
    assert sum("applied 0001_songs.sql" in out for out in outputs) == 1
    engine = create_engine(postgres_url)
    try:
        assert len(applied(engine)) == len(discover("postgresql"))
    finally:
        engine.dispose()


def test_analyst_role_reads_catalogue_but_not_tokens_and_cannot_write(postgres_url):
    engine = create_engine(postgres_url)
    migrate(engine)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SET ROLE spotify_analyst"))
            for relation in ("songs_search", "songs", "spotify_tracks", "spotify_popularity_snapshots"):
                conn.execute(sa.text(f"SELECT count(*) FROM {relation}")).scalar_one()
        for forbidden in (
            "SELECT * FROM spotify_oauth_tokens",
            "INSERT INTO songs (title, artist, catalog_key) VALUES ('t', 'a', 'k')",
            "DELETE FROM spotify_tracks",
        ):
            with engine.connect() as conn:
                conn.execute(sa.text("SET ROLE spotify_analyst"))
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.execute(sa.text(forbidden))
    finally:
        engine.dispose()
