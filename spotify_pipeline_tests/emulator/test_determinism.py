"""Same seed, same bytes; popularity drifts from day to day."""

from __future__ import annotations

from typing import Any

import requests

from spotify_pipeline.emulator.testing import EmulatorHandle


def _responses(emu: EmulatorHandle) -> list[bytes]:
    emu.set_today("2026-03-01")
    headers = emu.bearer(emu.client_credentials_token())
    found = requests.get(f"{emu.api_base_url}/search", params={"q": "the", "type": "track", "limit": 50}, headers=headers, timeout=10)
    tracks = found.json()["tracks"]["items"]
    paths = [f"/tracks/{t['id']}" for t in tracks[:10]]
    paths += [f"/tracks?ids={','.join(t['id'] for t in tracks)}&market=US"]
    paths += [f"/albums/{tracks[0]['album']['id']}", f"/artists/{tracks[0]['artists'][0]['id']}"]
    bodies = [found.content.replace(emu.base_url.encode(), b"BASE")]
    bodies += [requests.get(f"{emu.api_base_url}{p}", headers=headers, timeout=10).content for p in paths]
    return bodies


def test_same_seed_gives_byte_identical_responses(emulator_factory: Any) -> None:
    first = _responses(emulator_factory(seed=11, catalog_size=3_000, window_limit=None))
    second = _responses(emulator_factory(seed=11, catalog_size=3_000, window_limit=None))
    other = _responses(emulator_factory(seed=12, catalog_size=3_000, window_limit=None))
    assert first == second
    assert first[1] != other[1]


def test_same_seed_gives_identical_tokens(emulator_factory: Any) -> None:
    a = emulator_factory(seed=5, catalog_size=500)
    b = emulator_factory(seed=5, catalog_size=500)
    assert a.client_credentials_token() == b.client_credentials_token()


def test_popularity_drifts_from_day_to_day(emulator: EmulatorHandle) -> None:
    headers = emulator.bearer(emulator.client_credentials_token())
    found = requests.get(f"{emulator.api_base_url}/search", params={"q": "the", "type": "track", "limit": 50}, headers=headers, timeout=10)
    ids = ",".join(t["id"] for t in found.json()["tracks"]["items"])

    def popularity_on(day: str) -> list[int]:
        emulator.set_today(day)
        tracks = requests.get(f"{emulator.api_base_url}/tracks", params={"ids": ids}, headers=headers, timeout=10).json()["tracks"]
        return [t["popularity"] for t in tracks]

    monday, tuesday = popularity_on("2026-03-02"), popularity_on("2026-03-03")
    assert popularity_on("2026-03-02") == monday  # pinned day: stable
    changed = sum(a != b for a, b in zip(monday, tuesday))
    assert changed > len(monday) / 2
    assert max(abs(a - b) for a, b in zip(monday, tuesday)) <= 10  # drift, not noise
    # Unpinned, "today" follows the emulator clock across UTC midnight.
    emulator.set_today(None)
    emulator.freeze_clock()
    emulator.set_clock(1_772_452_800)  # 2026-03-02T12:00:00Z
    tokens = emulator.bearer(emulator.client_credentials_token())
    by_clock = requests.get(f"{emulator.api_base_url}/tracks", params={"ids": ids}, headers=tokens, timeout=10).json()["tracks"]
    assert [t["popularity"] for t in by_clock] == monday
