"""The `.env` file of the local profile: what Dagster's own commands need to run the pipeline offline.

Dagster loads `.env` from the folder it is started in (`dagster dev`, `dg dev`, `dagster asset materialize`,
the daemon and the code server), so `make demo` records there the emulator's URL and test credentials and
the absolute paths of the local instance, warehouse and cache. Only the keys this module manages are
rewritten; any other line a user added is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

ENV_FILE_NAME = ".env"
HEADER = (
    "# Local profile for Dagster's commands (dagster dev, dg dev, dagster asset materialize), written by\n"
    "# `spotify-pipeline demo`. Against real Spotify, remove SPOTIFY_EMULATOR and set real credentials.\n"
)
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def read_env_file(path: Path) -> dict[str, str]:
    """The assignments in `path` (empty when the file does not exist)."""
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Set `values` in `path`: lines assigning these keys are replaced in place, missing keys appended,
    every other line kept. Written 0600: the file holds client credentials (the emulator's, locally)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else HEADER.splitlines()
    pending = dict(values)
    kept: list[str] = []
    for line in lines:
        match = _ASSIGNMENT.match(line)
        if match and match.group(1) in values:
            key = match.group(1)
            if key in pending:
                kept.append(_format(key, pending.pop(key)))
            continue  # a second assignment of a managed key: drop it
        kept.append(line)
    kept.extend(_format(key, value) for key, value in pending.items())
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


def _format(key: str, value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:@%+,=-]*", value):
        return f"{key}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key}="{escaped}"'
