"""pytest fixtures for the Spotify emulator (enable with `pytest_plugins = ["spotify_pipeline.emulator.pytest_plugin"]`).

* `emulator`: an extended-mode emulator with default limits (window 180 requests / 30 s per client),
  shared by the session for speed and restored before every test (counters, rate limits, config, clock).
* `emulator_factory`: `emulator_factory(**config)` starts a dedicated emulator with `EmulatorConfig`
  fields (e.g. `mode="development"`, `window_limit=300`, `error_rate=0.2`, `catalog_path="tracks.jsonl"`);
  stopped after the test.
  `emulator_factory(..., process=True)` runs it in its own OS process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from spotify_pipeline.emulator.testing import EmulatorHandle, run_emulator, run_emulator_process


@pytest.fixture(scope="session")
def _shared_emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(mode="extended") as handle:
        yield handle


@pytest.fixture
def emulator(_shared_emulator: EmulatorHandle) -> EmulatorHandle:
    _shared_emulator.reset(config=True, clock=True)
    return _shared_emulator


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorHandle]]:
    with ExitStack() as stack:

        def start(*, process: bool = False, **config: Any) -> EmulatorHandle:
            runner = run_emulator_process if process else run_emulator
            return stack.enter_context(runner(**config))

        yield start
