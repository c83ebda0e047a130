"""`python -m bench [--quick] [--only NAME[,NAME]]`: every benchmark figure beside its anchor, in one run.

Prints a table (figure, ours, anchor, ratio, target, pass/fail) to stdout and writes every figure to
``bench/results/latest.json`` (nested by figure; ``"quick": true`` marks a reduced run). Progress goes to
stderr. Figures, in the order they run:

  load      normalize + upsert N track objects into PostgreSQL vs raw COPY and pandas to_sql (bench/load.py)
  search    search p50/p95 at N songs vs an ILIKE seq scan, and with Redis down       (bench/search.py)
  api       the daily job's Spotify requests per mode (multiprocess), cold and warm, vs the emulator (bench/api.py)
  limiter   four processes on one Redis limiter vs naive per-process limiters        (bench/limiter.py)
  pipeline  spotify_daily_refresh for N songs against the emulator                    (bench/pipeline.py)
  matching  matcher precision/recall vs the first-hit baseline                        (bench/matching.py)
  emulator  single-track GETs per second the emulator serves                          (bench/emulator_rps.py)
  scale     a 1,000,000-song catalogue over simulated days: budget, backlog, on-demand wait (bench/scale.py)

PostgreSQL and Redis: BENCH_DATABASE_URL / BENCH_REDIS_URL, else 127.0.0.1:5432 (user postgres) and
127.0.0.1:6379. Every figure works in scratch databases and key prefixes it creates and removes.
Exit status 1 when a figure could not be measured (its error is in the JSON); missed targets show as FAIL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from bench import harness

QUICK_SIZES = {"load_tracks": 100_000, "search_songs": 50_000, "pipeline_songs": 1_000}
FULL_SIZES = {"load_tracks": 1_000_000, "search_songs": 1_000_000, "pipeline_songs": 10_000}


def _runners(quick: bool) -> dict[str, Callable[[], dict[str, Any]]]:
    sizes = QUICK_SIZES if quick else FULL_SIZES

    def load() -> dict[str, Any]:
        from bench import load as module

        return module.run(quick=quick, tracks=sizes["load_tracks"])

    def search() -> dict[str, Any]:
        from bench import search as module

        return module.run(quick=quick, songs=sizes["search_songs"], server_url=harness.server_url())

    def api() -> dict[str, Any]:
        from bench import api as module

        return module.run(quick=quick)

    def limiter() -> dict[str, Any]:
        from bench import limiter as module

        return module.run(quick=quick, redis_url=harness.redis_url())

    def pipeline() -> dict[str, Any]:
        from bench import pipeline as module

        return module.run(quick=quick, songs=sizes["pipeline_songs"])

    def matching() -> dict[str, Any]:
        from bench import matching as module

        return module.run(quick=quick)

    def emulator() -> dict[str, Any]:
        from bench import emulator_rps as module

        return module.run(quick=quick)

    def scale() -> dict[str, Any]:
        from bench import scale as module

        return module.run(quick=quick)

    runners = {"load": load, "search": search, "api": api, "limiter": limiter, "pipeline": pipeline,
               "matching": matching, "emulator": emulator, "scale": scale}
    assert tuple(runners) == harness.FIGURES
    return runners


def _parse_only(value: str | None) -> list[str]:
    if not value:
        return list(harness.FIGURES)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in harness.FIGURES]
    if unknown:
        raise SystemExit(f"unknown figure(s) {unknown}; choose from {', '.join(harness.FIGURES)}")
    return [n for n in harness.FIGURES if n in names]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes and durations (under two minutes)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"run a subset of: {', '.join(harness.FIGURES)}")
    args = parser.parse_args(argv)
    names = _parse_only(args.only)
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")

    results: dict[str, Any] = {
        "quick": args.quick,
        "only": None if args.only is None else names,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.system()},
        "sizes": QUICK_SIZES if args.quick else FULL_SIZES,
        "seconds": {},
    }
    runners = _runners(args.quick)
    started = time.perf_counter()
    failed = []
    for n, name in enumerate(names, start=1):
        _log(f"[{n}/{len(names)}] {name} ...")
        t = time.perf_counter()
        try:
            results[name] = runners[name]()
        except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the others
            failed.append(name)
            # Paths in the traceback relative to the project, so the results name no machine directories.
            trace = traceback.format_exc().replace(str(harness.RESULTS_DIR.parents[1]) + os.sep, "")
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": trace}
            _log(f"      {name} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        results["seconds"][name] = round(time.perf_counter() - t, 1)
        _log(f"      {name} done in {results['seconds'][name]:.1f} s")
    results["seconds"]["total"] = round(time.perf_counter() - started, 1)

    rows = harness.table_rows(results)
    results["table"] = [r.as_dict() for r in rows]
    path = harness.write_json(results)
    mode = "quick run" if args.quick else "full run"
    print(f"spotify_pipeline benchmarks ({mode}, {results['seconds']['total']:.0f} s, {os.cpu_count()} CPUs)")
    print(harness.format_table(rows))
    passed = sum(r.verdict == "pass" for r in rows)
    missed = sum(r.verdict == "FAIL" for r in rows)
    print(f"\n{passed} targets met, {missed} missed, {len(failed)} figure(s) failed to run; "
          f"results in {path.relative_to(path.parents[2])}")
    notes = _notes(results)
    if notes:
        print("\n".join(notes))
    return 1 if failed else 0


def _notes(results: dict[str, Any]) -> list[str]:
    """How the less obvious figures are defined, printed under the table."""
    notes = []
    load = results.get("load", {})
    if "method" in load:
        notes.append(f"load: {load['method']}.")
    pipeline = results.get("pipeline", {})
    if "overhead_definition" in pipeline:
        notes.append(f"pipeline: Dagster overhead = {pipeline['overhead_definition']}.")
    api = results.get("api", {})
    if "executor" in api:
        notes.append(
            "api: spotify_daily_refresh on the sample catalogue through Dagster's multiprocess executor, Redis "
            "cache and limiter, counted by the emulator; minimum = the run's searches + the track calls its "
            "matched tracks need (50 per call in extended mode, 1 in development) + one token."
        )
    search = results.get("search", {})
    if "redis_down_p95_ms" in search:
        notes.append(
            "search: Redis down = REDIS_URL on a dead port, search() as the CLI calls it "
            f"(with --enrich's failed enqueue added: p95 {search['redis_down_enrich_p95_ms']} ms)."
        )
    scale = results.get("scale", {})
    if "simulated_days" in scale:
        notes.append(
            f"scale: {scale['catalog_songs']:,} songs at {scale['rate_limit_per_minute']} requests/minute over "
            f"{scale['simulated_days']} simulated days (virtual clock, seeded Spotify answers), the real planner and "
            "ledgers; utilization over the budget-bound runs (more work than budget); physical min = searches needed / daily "
            "budget; on-demand runs assumed not to wait for the daily run's spotify_api pool slot."
        )
    return notes


if __name__ == "__main__":
    sys.exit(main())
