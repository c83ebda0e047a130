"""`spotify-pipeline emulator` started as a user would: it prints what to configure, then serves."""

from __future__ import annotations

import subprocess
import sys
import time

import requests
from click.testing import CliRunner

from spotify_pipeline.emulator.cli import emulator_command
from spotify_pipeline.emulator.server import free_port

OPTIONS = ("--host", "--port", "--mode", "--catalog-size", "--catalog", "--seed", "--window-limit", "--quota",
           "--error-rate", "--reset-rate", "--latency-ms", "--date")


def test_help_lists_every_option_and_bad_values_are_usage_errors() -> None:
    runner = CliRunner()
    help_text = runner.invoke(emulator_command, ["--help"]).output
    assert all(option in help_text for option in OPTIONS)
    assert emulator_command.name == "emulator"
    assert runner.invoke(emulator_command, ["--date", "2026-13-01"]).exit_code == 2
    assert runner.invoke(emulator_command, ["--mode", "premium"]).exit_code == 2
    assert runner.invoke(emulator_command, ["--error-rate", "1.5"]).exit_code == 2


def test_started_by_hand_it_answers_a_token_request_and_a_search() -> None:
    port = free_port()
    command = [sys.executable, "-c", "from spotify_pipeline.emulator.cli import emulator_command; emulator_command()",
               "--port", str(port), "--catalog-size", "2000", "--mode", "development", "--date", "2026-03-01"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed = {}
        assert process.stdout is not None
        while "SPOTIFY_CLIENT_SECRET" not in printed:
            line = process.stdout.readline()
            assert line, "the emulator exited before printing its settings"
            if "=" in line:
                key, value = line.strip().split("=", 1)
                printed[key] = value
        assert printed["SPOTIFY_API_BASE_URL"] == f"http://127.0.0.1:{port}/v1"
        assert printed["SPOTIFY_ACCOUNTS_BASE_URL"] == f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                token = requests.post(f"{printed['SPOTIFY_ACCOUNTS_BASE_URL']}/api/token", data={"grant_type": "client_credentials"},
                                      auth=(printed["SPOTIFY_CLIENT_ID"], printed["SPOTIFY_CLIENT_SECRET"]), timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the emulator never accepted a connection"
                time.sleep(0.05)
        assert token.status_code == 200
        found = requests.get(f"{printed['SPOTIFY_API_BASE_URL']}/search", params={"q": "the", "type": "track", "limit": 3},
                             headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=5)
        assert found.status_code == 200 and len(found.json()["tracks"]["items"]) == 3
        assert "popularity" not in found.json()["tracks"]["items"][0]  # --mode development took effect
    finally:
        process.terminate()
        process.wait(timeout=10)
