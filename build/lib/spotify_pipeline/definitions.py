"""The Dagster code location: every asset, check, job, schedule, sensor and resource of the pipeline.

Definitions are discovered from the `spotify_pipeline.defs` package, one folder per concern (the
dagster-open-platform layout): `dg.load_from_defs_folder` reads `[tool.dg.project]` from pyproject.toml. An
installed wheel has no pyproject.toml, so there the same tree is loaded from the package itself
(`dg.ComponentTree.from_module`, which is what `load_from_defs_folder` builds once it has found the config).
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import dagster as dg

PACKAGE_DIR = Path(__file__).resolve().parent
DEFS_MODULE = "spotify_pipeline.defs"


def _source_checkout_root() -> Path | None:
    """The project root when running from a source checkout (its pyproject.toml names this package)."""
    pyproject = PACKAGE_DIR.parent / "pyproject.toml"
    if not pyproject.is_file():
        return None
    with pyproject.open("rb") as f:
        project = tomllib.load(f).get("tool", {}).get("dg", {}).get("project", {})
    return PACKAGE_DIR.parent if project.get("defs_module") == DEFS_MODULE else None


def load_defs_folder() -> dg.Definitions:
    """Everything under `spotify_pipeline/defs/`, with the resources configured from the environment."""
    root = _source_checkout_root()
    if root is not None:
        return dg.load_from_defs_folder(path_within_project=root)
    tree = dg.ComponentTree.from_module(
        defs_module=importlib.import_module(DEFS_MODULE), project_root=PACKAGE_DIR.parent
    )
    return tree.build_defs()


def build_definitions(
    resources: dict[str, Any] | None = None, loggers: dict[str, dg.LoggerDefinition] | None = None
) -> dg.Definitions:
    """The code location's definitions; `resources` replace the environment-configured ones by key (tests,
    benchmarks), `loggers` are added."""
    defs = load_defs_folder()
    if not resources and not loggers:
        return defs
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources={**(defs.resources or {}), **(resources or {})},
        loggers={**(defs.loggers or {}), **(loggers or {})},
        executor=defs.executor,
        metadata=defs.metadata,
        component_tree=defs.component_tree,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
