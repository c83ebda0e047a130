"""Dagster's own tools on this project, as a data engineer uses them: the CLI in the repository root with
nothing set, and the UI (webserver GraphQL) materializing an asset in the local profile that `.env` holds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from spotify_pipeline.demo import prepare_local_profile
from spotify_pipeline.emulator.server import free_port
from spotify_pipeline.warehouse.catalog import load_catalog

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "spotify_pipeline"


def _clean_env() -> dict[str, str]:
    """The environment of a user who exported nothing: no Dagster, Spotify or warehouse settings."""
    prefixes = ("DAGSTER_", "SPOTIFY_", "DATABASE_URL", "REDIS_")
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ["dagster", "definitions", "validate"],
        ["dg", "check", "defs"],
        ["dg", "list", "defs"],
        ["dagster", "job", "list", "-m", "spotify_pipeline.definitions"],
    ],
    ids=lambda command: " ".join(command[:3]),
)
def test_dagster_commands_work_in_the_repository_root_with_nothing_set(command):
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=REPO_ROOT, env=_clean_env(), capture_output=True, text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert "DAGSTER_PG" not in output  # the production instance is not what a fresh clone loads
    assert "BetaWarning" not in output
    if command[:2] == ["dg", "list"]:
        assert "spotify_track_matches" in output and "spotify_enrichment_requests" in output


@pytest.fixture
def dagster_dev(local_project) -> Iterator[str]:
    """`dagster dev` serving the code location in a folder set up for the local profile (what `make dev`
    runs), with nothing exported: everything comes from the `.env` that the local setup wrote."""
    engine, _ = prepare_local_profile(local_project.settings, local_project.directory, echo=lambda line: None)
    load_catalog(engine)
    engine.dispose()
    shutil.copy(REPO_ROOT / "workspace.yaml", local_project.directory)  # names the location as `dg dev` does
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "--port", str(port)],
        cwd=local_project.directory, env=_clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, "dagster dev exited during start-up"
            try:
                if requests.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("dagster dev did not answer within 180 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _graphql(url: str, query: str, **variables) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


ASSET_CHECKS = """query ($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
  ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name } } } } } }"""
LAUNCH = """mutation ($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN = """query ($id: ID!) { runOrError(runId: $id) { ... on Run { status repositoryOrigin { repositoryLocationName } } } }"""
STEP_FAILURES = """query ($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  __typename ... on ExecutionStepFailureEvent { error { message } } } } } }"""


@pytest.mark.slow
def test_ui_materialize_of_spotify_track_matches_succeeds_in_the_local_profile(dagster_dev, local_project):
    key = {"path": ["spotify_track_matches"]}
    # The UI's Materialize button selects the asset and its checks.
    checks = _graphql(dagster_dev, ASSET_CHECKS, key=key)["assetNodeOrError"]["assetChecksOrError"]["checks"]
    params = {
        "selector": {
            "repositoryLocationName": LOCATION, "repositoryName": "__repository__", "jobName": "__ASSET_JOB",
            "assetSelection": [key], "assetCheckSelection": [{"assetKey": key, "name": c["name"]} for c in checks],
        },
        "mode": "default",
        "executionMetadata": {"tags": []},
    }
    launched = _graphql(dagster_dev, LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    deadline = time.monotonic() + 240
    run = {}
    while time.monotonic() < deadline:  # queued, then dequeued by the daemon `dagster dev` runs, then executed
        run = _graphql(dagster_dev, RUN, id=run_id)["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    failures = [
        e["error"]["message"] for e in _graphql(dagster_dev, STEP_FAILURES, id=run_id)["logsForRun"]["events"]
        if e["__typename"] == "ExecutionStepFailureEvent"
    ]
    assert run["status"] == "SUCCESS", failures
    assert run["repositoryOrigin"]["repositoryLocationName"] == LOCATION

    engine = sa.create_engine(local_project.settings.database_url)
    with engine.connect() as conn:
        matched = conn.execute(sa.text("SELECT count(*) FROM spotify_track_matches")).scalar_one()
    engine.dispose()
    assert matched == 850  # the sample catalogue's songs that are on (the emulator's) Spotify
