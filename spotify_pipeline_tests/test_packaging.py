"""The built wheel is the whole product: installed into a fresh virtual environment, in an empty folder, it
migrates, seeds, searches and loads its Dagster definitions, and it brings no test tool along."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 900
NOT_SOURCES = (".git", ".venv", ".data", ".dagster", ".env", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
               ".hypothesis", ".tmp_dagster_home_*")


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.mark.slow
def test_the_wheel_installs_and_runs_in_a_fresh_venv_and_an_empty_folder(tmp_path):
    # Built from a copy of the sources: setuptools writes its build/ folder beside them.
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    dist = tmp_path / "dist"
    built = _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)], cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("spotify_pipeline-*.whl")

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path).returncode == 0
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    installed = _run([*pip, "install", "--disable-pip-version-check", "--quiet", str(wheel)], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    for test_tool in ("pytest", "responses", "hypothesis"):
        assert _run([*pip, "show", test_tool], cwd=tmp_path).returncode != 0, f"{test_tool} is a runtime dependency"

    empty = tmp_path / "empty"
    empty.mkdir()
    # Nothing from this checkout or this test process: no settings, no source tree on the path.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SPOTIFY_", "DATABASE_URL", "REDIS_", "DAGSTER_", "PYTHON"))}
    cli = str(venv / "bin" / "spotify-pipeline")

    version = _run([cli, "--version"], cwd=empty, env=env)
    assert version.returncode == 0 and "spotify-pipeline" in version.stdout, version.stderr

    migrated = _run([cli, "migrate"], cwd=empty, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0001_songs.sql" in migrated.stdout

    seeded = _run([cli, "seed-catalog"], cwd=empty, env=env)
    assert seeded.returncode == 0, seeded.stderr
    assert "1000 new songs" in seeded.stdout

    found = _run([cli, "search", "bjorn", "--json"], cwd=empty, env=env)
    assert found.returncode == 0, found.stderr
    assert "Björn" in found.stdout

    # The Dagster code location loads from the installed package (no pyproject.toml next to it).
    validated = _run([str(venv / "bin" / "dagster"), "definitions", "validate", "-m", "spotify_pipeline.definitions"],
                     cwd=empty, env=env)
    assert validated.returncode == 0, validated.stdout[-2000:] + validated.stderr[-2000:]
    assert (empty / ".data" / "warehouse.db").is_file()
