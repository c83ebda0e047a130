"""Shared pieces of the benchmark harness.

Where the servers are (``BENCH_DATABASE_URL`` / ``BENCH_REDIS_URL``, else 127.0.0.1), scratch PostgreSQL
databases and Redis key prefixes that the bench creates and removes itself, fresh subprocesses (so a
figure's peak memory is its own process's), and the results table: every figure beside its anchor, with
its target and a pass/fail verdict, printed and written to ``bench/results/latest.json``.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import queue as queue_module
import resource
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SERVER_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def server_url() -> str:
    """A PostgreSQL URL of a database on the benchmark server (scratch databases are created beside it)."""
    return os.environ.get("BENCH_DATABASE_URL") or DEFAULT_SERVER_URL


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL


@contextmanager
def scratch_database(label: str, server: str | None = None) -> Iterator[str]:
    """A new, empty PostgreSQL database for the `with` block (dropped afterwards, even on error)."""
    import psycopg2
    from sqlalchemy.engine import make_url

    server = server or server_url()
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    dsn = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def scratch_redis_prefix(label: str, url: str | None = None) -> Iterator[str]:
    """A key prefix no one else uses; every key under it is deleted afterwards."""
    import redis

    prefix = f"bench:{label}:{uuid.uuid4().hex[:8]}:"
    conn = redis.Redis.from_url(url or redis_url())
    try:
        yield prefix
    finally:
        keys = list(conn.scan_iter(f"{prefix}*"))
        if keys:
            conn.delete(*keys)
        conn.close()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB); ru_maxrss is in KiB on Linux."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class SubprocessError(RuntimeError):
    """A benchmark step failed in its subprocess; the message carries the remote traceback."""


def _child(target: Callable[..., Any], args: tuple, out: Any) -> None:
    try:
        out.put(("ok", target(*args)))
    except BaseException:  # noqa: BLE001 - everything goes back to the parent, which re-raises
        out.put(("error", traceback.format_exc()))


def in_subprocess(target: Callable[..., Any], *args: Any, timeout_s: float = 3600) -> Any:
    """`target(*args)` in a fresh interpreter (spawned: nothing inherited but the arguments)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    process = ctx.Process(target=_child, args=(target, args, out))
    process.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                status, value = out.get(timeout=1.0)
                break
            except queue_module.Empty:
                if not process.is_alive():
                    raise SubprocessError(f"{target.__name__} exited with code {process.exitcode}") from None
                if time.monotonic() > deadline:
                    raise SubprocessError(f"{target.__name__} did not finish within {timeout_s:.0f} s") from None
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
            process.join(timeout=10)
    if status == "error":
        raise SubprocessError(f"{target.__name__} failed in its subprocess:\n{value}")
    return value


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


# -- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    figure: str
    measure: str
    ours: str
    anchor: str
    ratio: str
    target: str
    verdict: str  # pass | FAIL | info | error

    def as_dict(self) -> dict[str, str]:
        return dict(vars(self))


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, (int, float)):
        if digits == 0:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(ours: Any, anchor: Any) -> str:
    if not isinstance(ours, (int, float)) or not isinstance(anchor, (int, float)) or not anchor:
        return "-"
    return f"{ours / anchor:.2f}x"


def _verdict(ok: bool | None) -> str:
    return "info" if ok is None else ("pass" if ok else "FAIL")


def table_rows(results: dict[str, Any]) -> list[Row]:
    """One row per target (or informative figure), in figure order; failed figures show their error."""
    rows: list[Row] = []

    def add(figure, measure, ours, anchor, ratio, target, ok):
        rows.append(Row(figure, measure, ours, anchor, ratio, target, _verdict(ok)))

    for figure, builder in _BUILDERS.items():
        if figure not in results:
            continue
        data = results[figure]
        if "error" in data:
            message = data["error"].splitlines()[0] if data["error"] else "failed"
            rows.append(Row(figure, f"error: {message[:70]}", "-", "-", "-", "-", "error"))
            continue
        builder(data, lambda *a, f=figure: add(f, *a))
    return rows


def _load_rows(d: dict[str, Any], add: Callable[..., None]) -> None:
    ours, copy, to_sql = d["ours_rows_per_s"], d["copy_rows_per_s"], d["to_sql_rows_per_s"]
    catalog = d.get("upsert_catalog_rows_per_s")
    extrapolated = " (subset)" if d.get("to_sql_extrapolated") else ""
    add(f"bulk_upsert rows/s, {d['rows']:,} tracks", f"{_num(ours)}", f"COPY {_num(copy)}", _ratio(ours, copy),
        ">= 0.5x COPY", copy and ours / copy >= 0.5)
    if catalog:  # the daily job's real path: albums, artists, tracks and artist links per call
        add("upsert_catalog tracks/s", _num(catalog), f"COPY {_num(copy)}", _ratio(catalog, copy), ">= 0.5x COPY",
            copy and catalog / copy >= 0.5)
        floor = d.get("copy_catalog_rows_per_s")
        add("upsert_catalog vs COPY of its 4 tables", _num(catalog), f"COPY catalogue {_num(floor)}",
            _ratio(catalog, floor), "- (the floor)", None)
        # Raw COPY into the same four tables (with their foreign keys) bounds every loader of that data: when
        # this is below 0.5x, so is upsert_catalog, whatever it does.
        add("ceiling: COPY catalogue vs COPY", _num(floor), f"COPY {_num(copy)}", _ratio(floor, copy),
            "- (bounds the row above)", None)
        reread = d.get("upsert_catalog_reread_rows_per_s")
        add("upsert_catalog, read again a day later", _num(reread), f"first read {_num(catalog)}",
            _ratio(reread, catalog), "-", None)
    add("rows/s vs pandas", f"{_num(ours)}", f"to_sql{extrapolated} {_num(to_sql)}", _ratio(ours, to_sql),
        ">= 2x to_sql", to_sql and ours / to_sql >= 2.0)
    add("peak RSS (MB)", _num(d["peak_rss_mb"], 1), f"COPY proc {_num(d.get('copy_peak_rss_mb'), 1)}",
        _ratio(d["peak_rss_mb"], d.get("copy_peak_rss_mb")), "streams (no target)", None)


def _search_rows(d: dict[str, Any], add: Callable[..., None]) -> None:
    add(f"p50 ms, {d['songs']:,} songs", _num(d["p50_ms"], 2), f"ILIKE scan {_num(d['seqscan_p50_ms'], 1)}",
        _ratio(d["p50_ms"], d["seqscan_p50_ms"]), "-", None)
    add("p95 ms", _num(d["p95_ms"], 2), f"ILIKE scan {_num(d['seqscan_p95_ms'], 1)}",
        _ratio(d["p95_ms"], d["seqscan_p95_ms"]), "<= 5 ms", d["p95_ms"] <= 5.0)
    add("p95 ms, Redis down", _num(d["redis_down_p95_ms"], 2), f"Redis up {_num(d['p95_ms'], 2)}",
        _ratio(d["redis_down_p95_ms"], d["p95_ms"]), "<= 5 ms", d["redis_down_p95_ms"] <= 5.0)


def _api_rows(d: dict[str, Any], add: Callable[..., None]) -> None:
    for mode in ("extended", "development"):
        ours, minimum = d[f"{mode}_cold_requests"], d[f"{mode}_minimum"]
        add(f"daily job requests, {mode}, cold", _num(ours), f"minimum {_num(minimum)}", _ratio(ours, minimum),
            "<= minimum + 1 mode probe", ours <= minimum + 1)
        add("  track calls / tracks matched", f"{_num(d[f'{mode}_track_calls'])}",
            f"tracks {_num(d[f'{mode}_tracks_matched'])}", "-", "-", None)
        add(f"daily job requests, {mode}, warm", _num(d[f"{mode}_warm_requests"]), f"cold {_num(ours)}", "-", "0",
            d[f"{mode}_warm_requests"] == 0)
        recorded, seen = d[f"{mode}_usage_recorded"], d[f"{mode}_emulator_total"]
        add(f"spotify_api_usage sum, {mode}", _num(recorded), f"emulator {_num(seen)}", _ratio(recorded, seen),
            "= emulator", recorded == seen)


def _limiter_rows(d: dict[str, Any], add: Callable[..., None]) -> None:
    naive = d.get("naive", {})
    add(f"utilization, {d['processes']} procs", _num(d["utilization"], 3),
        f"naive {_num(naive.get('utilization'), 3)}", _ratio(d["utilization"], naive.get("utilization")),
        ">= 0.95", d["utilization"] >= 0.95)
    add("peak window / budget", _num(d["peak_window_ratio"], 3), f"naive {_num(d['naive_peak_window_ratio'], 3)}",
        _ratio(d["peak_window_ratio"], d["naive_peak_window_ratio"]), "<= 1.0", d["peak_window_ratio"] <= 1.0)
    add("emulator 429s", _num(d["emulator_429s"]), f"naive {_num(d.get('naive_emulator_429s'))}", "-", "0",
        d["emulator_429s"] == 0)


def _pipeline_rows(d: dict[str, Any], add: Callable[..., None]) -> None:
    add(f"tracks/s, {d['songs']:,} songs", _num(d["tracks_per_s"], 1),
        f"asset bodies only {_num(d['tracks_per_s_asset_bodies'], 1)}",
        _ratio(d["tracks_per_s"], d["tracks_per_s_asset_bodies"]), "-", None)
    add("wall s", _num(d["wall_s"], 1), f"asset bodies {_num(d['asset_body_s'], 1)}",
        _ratio(d["wall_s"], d["asset_body_s"]), "-", None)
    add("peak RSS (MB)", _num(d["peak_rss_mb"], 1), f"before run {_num(d.get('start_rss_mb'), 1)}",
        _ratio(d["peak_rss_mb"], d.get("start_rss_mb")), "-", None)
    add("Dagster overhead share", _num(d["dagster_overhead_share"], 3), "-", "-", "-", None)
    add("songs matched / snapshotted", f"{d['songs_matched']:,} / {d['snapshots']:,}", f"songs {d['songs']:,}",
        _ratio(d["snapshots"], d["songs"]), "-", None)


#: Matching targets on the real-metadata corpus (recall is lower in Development Mode: search limit 10).
MATCHING_MIN_PRECISION = 0.99
MATCHING_MIN_RECALL = {"extended": 0.95, "development": 0.92}
MATCHING_MAX_SECONDS_PER_2000_SONGS = 60.0
MATCHING_MAX_SEARCHES_PER_SONG = 2.0


def _matching_rows(d: dict[str, Any], add: Callable[..., None]) -> None:
    corpus = d.get("corpus")
    if corpus is None:
        add(f"corpus not measured ({d.get('corpus_missing') or 'no corpus'})", "synthetic only", "-", "-", "-", None)
    else:
        for mode in ("extended", "development"):
            m, short = corpus[mode], mode[:3]
            add(f"corpus precision ({short}), {m['songs']:,} songs", _num(m["precision"], 4),
                f"first hit {_num(m['baseline_precision'], 4)}", _ratio(m["precision"], m["baseline_precision"]),
                f">= {MATCHING_MIN_PRECISION}", m["precision"] >= MATCHING_MIN_PRECISION)
            add(f"corpus recall ({short})", _num(m["recall"], 4), f"first hit {_num(m['baseline_recall'], 4)}",
                _ratio(m["recall"], m["baseline_recall"]), f">= {MATCHING_MIN_RECALL[mode]}",
                m["recall"] >= MATCHING_MIN_RECALL[mode])
            scale = 2000 / m["songs"] if m["songs"] else 0.0  # a quick run measures a subset
            seconds, baseline_seconds = m["seconds"] * scale, m["baseline_seconds"] * scale
            add(f"  seconds per 2,000 songs ({short})", _num(seconds, 1), f"first hit {_num(baseline_seconds, 1)}",
                _ratio(seconds, baseline_seconds), f"<= {MATCHING_MAX_SECONDS_PER_2000_SONGS:g} s",
                seconds <= MATCHING_MAX_SECONDS_PER_2000_SONGS)
            add(f"  searches per song ({short})", _num(m["searches_per_song"], 2), "first hit 1.00",
                _ratio(m["searches_per_song"], 1.0), f"<= {MATCHING_MAX_SEARCHES_PER_SONG:g}",
                m["searches_per_song"] <= MATCHING_MAX_SEARCHES_PER_SONG)
        extended, development = corpus["extended"]["by_kind"], corpus["development"]["by_kind"]
        for kind, ext in extended.items():  # a song with several drift kinds counts under each
            dev = development.get(kind, {})
            if ext["on_spotify"]:
                add(f"  recall: {kind} ({ext['songs']:,})", f"{_num(ext['recall'], 3)} / {_num(dev.get('recall'), 3)}",
                    f"first hit {_num(ext['baseline_recall'], 3)}", _ratio(ext["recall"], ext["baseline_recall"]),
                    "- (ext / dev)", None)
            else:  # songs not on Spotify: only wrong matches count
                add(f"  wrong: {kind}", f"{ext['wrong']} / {dev.get('wrong', '-')}", f"first hit {ext['baseline_wrong']}",
                    "-", "0 (ext / dev)", ext["wrong"] == 0 and dev.get("wrong", 0) == 0)
    synthetic = d["synthetic"]["extended"]
    add(f"synthetic precision, {synthetic['songs']:,} songs", _num(synthetic["precision"], 4),
        f"first hit {_num(synthetic['baseline_precision'], 4)}", _ratio(synthetic["precision"], synthetic["baseline_precision"]),
        f">= {MATCHING_MIN_PRECISION}", synthetic["precision"] >= MATCHING_MIN_PRECISION)
    add("synthetic recall", _num(synthetic["recall"], 4), f"first hit {_num(synthetic['baseline_recall'], 4)}",
        _ratio(synthetic["recall"], synthetic["baseline_recall"]), ">= 0.95", synthetic["recall"] >= 0.95)


def _emulator_rows(d: dict[str, Any], add: Callable[..., None]) -> None:
    add("single-track GET/s", _num(d["rps"]), f"health route {_num(d.get('health_rps'))}",
        _ratio(d["rps"], d.get("health_rps")), ">= 2,000", d["rps"] >= 2000)
    if "catalog_load_s" in d:  # measured when the matching corpus is present
        add(f"catalogue load s ({d['catalog_tracks']:,} tracks)", _num(d["catalog_load_s"], 2), "-", "-", "<= 10 s",
            d["catalog_load_s"] <= 10)


#: Scale targets (issue 15): the daily run spends its budget while there is work, never more, and a song a
#: user searched for is enriched within the hour at p95.
SCALE_MIN_BUDGET_UTILIZATION = 0.95
SCALE_MAX_PRIORITY_P95_MINUTES = 60.0


def _scale_rows(d: dict[str, Any], add: Callable[..., None]) -> None:
    for mode in ("extended", "development"):
        m = d[mode]
        add(f"budget utilization, {mode}, {d['catalog_songs']:,} songs, {d['simulated_days']} d",
            _num(m["budget_utilization"], 3), f"all runs {_num(m['budget_utilization_all_runs'], 3)}", "-",
            f">= {SCALE_MIN_BUDGET_UTILIZATION}", (m["budget_utilization"] or 0) >= SCALE_MIN_BUDGET_UTILIZATION)
        add("  requests over budget", _num(m["requests_over_budget"]), f"budget/run {_num(d['run_request_budget'])}",
            "-", "0", m["requests_over_budget"] == 0)
        projected = " (projected)" if m["days_to_match_all_projected"] else ""
        add("  days to match all", f"{_num(m['days_to_match_all'], 1)}{projected}",
            f"physical min {_num(m['physical_min_days'], 1)}", _ratio(m["days_to_match_all"], m["physical_min_days"]),
            "-", None)
        add("  on-demand p95 minutes", _num(m["priority_p95_minutes"], 1), f"p50 {_num(m['priority_p50_minutes'], 1)}",
            "-", f"<= {SCALE_MAX_PRIORITY_P95_MINUTES:g}",
            m["priority_p95_minutes"] is not None and m["priority_p95_minutes"] <= SCALE_MAX_PRIORITY_P95_MINUTES)
        popularity = m["popularity_freshness"]
        fresh = popularity if isinstance(popularity, str) else f"{popularity['under_1d']:.1%} < 1 d"
        add("  popularity fresh / metadata < 7 d", fresh, f"metadata {m['metadata_freshness']['under_7d']:.1%}",
            "-", "-", None)
    queued = d.get("if_on_demand_waits_for_daily_run")
    if queued:
        add(f"on-demand p95 min if queued behind the daily run, {queued['mode']}", _num(queued["priority_p95_minutes"], 1),
            f"side by side {_num(d[queued['mode']]['priority_p95_minutes'], 1)}", "-", "-", None)


_BUILDERS: dict[str, Callable[[dict[str, Any], Callable[..., None]], None]] = {
    "load": _load_rows,
    "search": _search_rows,
    "api": _api_rows,
    "limiter": _limiter_rows,
    "pipeline": _pipeline_rows,
    "matching": _matching_rows,
    "emulator": _emulator_rows,
    "scale": _scale_rows,
}
FIGURES = tuple(_BUILDERS)


def format_table(rows: list[Row]) -> str:
    headers = ("figure", "measure", "ours", "anchor", "ratio", "target", "result")
    cells = [headers] + [(r.figure, r.measure, r.ours, r.anchor, r.ratio, r.target, r.verdict) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        figure = row[0] if n == 0 or row[0] != cells[n - 1][0] else ""
        lines.append("  ".join(c.ljust(w) for c, w in zip((figure, *row[1:]), widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path | None = None) -> Path:
    path = path or RESULTS_DIR / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return path
