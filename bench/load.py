"""Load: normalize and upsert N Spotify track objects into PostgreSQL, beside raw COPY and pandas `to_sql`.

Steps, each in a fresh subprocess of its own (so each one's peak memory is its own):

1. *prepare* (untimed for the comparison): N synthetic Spotify track objects (the JSON shape the Web API
   returns) are parsed into `spotify_pipeline.spotify.Track` objects and normalized with the pipeline's
   `normalize_tracks`, CHUNK tracks at a time; the `spotify_tracks` rows are spooled to a temporary file,
   each chunk's whole catalogue (albums, artists, tracks, track artists) to another, and the albums and
   artists upserted (the tracks' foreign keys need them). Nothing holds N objects at once.
2. *ours*: the rows stream from the spool through one `bulk_upsert` call into `spotify_tracks`, with the
   arguments `upsert_catalog` uses (key, `refresh=["fetched_at"]`, `touch=["updated_at"]`): COPY into a
   temporary table, then INSERT ... ON CONFLICT, one transaction.
3. *upsert_catalog*: the pipeline's real path. From an empty catalogue, every chunk goes in as the daily job
   writes it: one `upsert_catalog` call per chunk (albums, artists, tracks and their artist links), one
   transaction each. Its rate counts tracks only, though it writes about 2.3 rows per track. Then the
   same chunks once more, read a day later (the daily job's steady state: `fetched_at` and the popularity
   read time move, artist links stay), for the record.
4. *COPY*: the same rows, written as CSV by the `csv` module, `COPY spotify_tracks FROM STDIN` (no
   conflict handling, no staging): PostgreSQL's own fastest path from Python.
5. *COPY catalogue*: every chunk's albums (new ones), artists (new ones), tracks and artist links, COPY per
   table, one transaction: the floor for upsert_catalog, which writes the same four tables.
6. *to_sql*: the same rows, a `pandas.DataFrame` per chunk, `DataFrame.to_sql(if_exists="append")`.

Every step starts from an empty `spotify_tracks` (TRUNCATE, CHECKPOINT) with its indexes and foreign keys,
reads the same spool (the row source costs the same in each), and its result is checked: row count and a
checksum of the loaded table must equal the others' (and for upsert_catalog, the number of artist links).
Rates are rows committed per second of wall time.

Run ``python -m bench.load [--tracks N] [--quick]``; `run(quick, tracks)` returns the dict.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import itertools
import json
import pickle
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.harness import in_subprocess, peak_rss_mb, scratch_database

DEFAULT_TRACKS = 1_000_000
QUICK_TRACKS = 100_000
CHUNK = 20_000
TRACKS_PER_ALBUM = 10
SEED = 20261128
FETCHED_AT = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.timezone.utc)
REREAD_AT = FETCHED_AT + dt.timedelta(days=1)
TABLE = "spotify_tracks"
CATALOG_TABLES = (TABLE, "spotify_albums", "spotify_artists")  # TRUNCATE ... CASCADE empties the links too
# The column order of normalize_tracks' track rows.
COLUMNS = (
    "track_id", "name", "album_id", "duration_ms", "explicit", "isrc", "disc_number", "track_number",
    "preview_url", "uri", "served_track_id", "popularity", "popularity_read_at", "fetched_at",
)
# What upsert_catalog passes for spotify_tracks: fetched_at moves on every read, the rest on a change.
REFRESH = ["fetched_at"]
UPDATE = [c for c in COLUMNS if c != "track_id" and c not in REFRESH]
# to_sql costs about 10x more per row than the others: in the full run it loads this many rows and its
# rate is extrapolated to N when N is larger (said so in the result). The first rows go into the emptiest
# table, so the extrapolation flatters to_sql, never us.
TO_SQL_MAX_ROWS = 1_000_000

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_WORDS = (
    "love heart night day time life world baby girl home dream fire light rain summer blue gold wild dance "
    "run fall stay away back down over again forever never always tonight tomorrow sweet lonely broken "
    "little young free high slow fast last first new old good real river city ocean echo shadow"
).split()
_ODD = ("Café", "Björk's", "naïve", "L'été", "Señor", "東京", "Ф", "rock & roll", 'say "hi"', "back\\slash", "tab\there")


def _spotify_id(kind: str, index: int) -> str:
    number = int.from_bytes(hashlib.blake2b(f"{SEED}:{kind}:{index}".encode(), digest_size=17).digest(), "big")
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


def _title(rng: random.Random, index: int) -> str:
    words = [rng.choice(_WORDS).capitalize() for _ in range(rng.randint(1, 4))]
    if index % 97 == 0:
        words.append(rng.choice(_ODD))  # escaping must be exercised, not assumed away
    return " ".join(words)


def _artist(index: int) -> dict[str, Any]:
    artist_id = _spotify_id("artist", index)
    rng = random.Random(f"{SEED}:artist:{index}")
    return {
        "external_urls": {"spotify": f"https://open.spotify.com/artist/{artist_id}"},
        "href": f"https://api.spotify.com/v1/artists/{artist_id}",
        "id": artist_id,
        "name": f"{_title(rng, index)} {index}",
        "type": "artist",
        "uri": f"spotify:artist:{artist_id}",
    }


def synthetic_track_objects(n: int) -> Iterator[dict[str, Any]]:
    """`n` track objects as the Web API returns them (Extended Quota: popularity included); 10 per album."""
    albums = max(1, n // TRACKS_PER_ALBUM)
    artists = max(10, n // 30)
    rng = random.Random(SEED)
    album: dict[str, Any] = {}
    for i in range(n):
        album_index, track_number = divmod(i, TRACKS_PER_ALBUM)
        if track_number == 0 or not album:
            album_id = _spotify_id("album", album_index % albums)
            year = rng.randint(1960, 2026)
            images = [
                {"height": size, "url": f"https://i.scdn.co/image/{album_id}{size}", "width": size}
                for size in (640, 300, 64)
            ]
            primary = _artist(rng.randrange(artists))
            album = {
                "album_type": "album",
                "artists": [primary],
                "external_urls": {"spotify": f"https://open.spotify.com/album/{album_id}"},
                "href": f"https://api.spotify.com/v1/albums/{album_id}",
                "id": album_id,
                "images": images,
                "name": _title(rng, album_index),
                "release_date": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "release_date_precision": "day",
                "total_tracks": TRACKS_PER_ALBUM,
                "type": "album",
                "uri": f"spotify:album:{album_id}",
            }
        track_id = _spotify_id("track", i)
        track_artists = [album["artists"][0]] + ([_artist(rng.randrange(artists))] if rng.random() < 0.2 else [])
        yield {
            "album": album,
            "artists": track_artists,
            "disc_number": 1,
            "duration_ms": rng.randint(90_000, 420_000),
            "explicit": rng.random() < 0.1,
            "external_ids": {"isrc": f"US{rng.choice('ABCDEFGH')}{rng.randint(10, 99)}{i % 100:02d}{i % 100_000:05d}"},
            "external_urls": {"spotify": f"https://open.spotify.com/track/{track_id}"},
            "href": f"https://api.spotify.com/v1/tracks/{track_id}",
            "id": track_id,
            "is_local": False,
            "name": _title(rng, i),
            "popularity": rng.randint(0, 100),
            "preview_url": f"https://p.scdn.co/mp3-preview/{track_id}" if rng.random() < 0.3 else None,
            "track_number": track_number + 1,
            "type": "track",
            "uri": f"spotify:track:{track_id}",
        }


# -- steps (each runs in its own subprocess) ---------------------------------------------------------------


def _spool_chunks(spool: str) -> Iterator[Any]:
    with open(spool, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


def _reset(engine: Any, tables: tuple[str, ...] = (TABLE,)) -> None:
    import sqlalchemy as sa

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        try:
            conn.execute(sa.text("CHECKPOINT"))  # start every step with no dirty pages of an earlier one
        except sa.exc.DBAPIError:
            pass  # not a superuser: the steps still start from an empty table


def _fingerprint(engine: Any) -> dict[str, int]:
    """Row count and an order-independent checksum of the loaded columns (not updated_at)."""
    import sqlalchemy as sa

    columns = ", ".join(COLUMNS)
    with engine.connect() as conn:
        count, checksum = conn.execute(
            sa.text(f"SELECT count(*), coalesce(sum(hashtext(concat_ws('|', {columns}))::bigint), 0) FROM {TABLE}")
        ).one()
    return {"rows": int(count), "checksum": int(checksum)}


def step_prepare(database_url: str, tracks: int, spool: str, catalog_spool: str) -> dict[str, Any]:
    """Parse, normalize and spool `tracks` track objects (the track rows, and each chunk's whole catalogue);
    upsert their albums and artists."""
    from spotify_pipeline.defs.catalog.normalize import normalize_tracks
    from spotify_pipeline.spotify import Track
    from spotify_pipeline.warehouse import create_engine
    from spotify_pipeline.warehouse.bulk import bulk_upsert
    from spotify_pipeline.warehouse.migrations import migrate

    engine = create_engine(database_url)
    migrate(engine)
    parse_s = normalize_s = 0.0
    written = track_artist_rows = 0
    source = synthetic_track_objects(tracks)
    with open(spool, "wb") as f, open(catalog_spool, "wb") as catalog_f:
        while raw := list(itertools.islice(source, CHUNK)):
            started = time.perf_counter()
            objects = [(Track.from_json(r, endpoint="bench"), FETCHED_AT) for r in raw]
            parse_s += time.perf_counter() - started
            started = time.perf_counter()
            rows = normalize_tracks(objects)
            normalize_s += time.perf_counter() - started
            track_rows = list(rows.tracks.values())
            assert tuple(track_rows[0]) == COLUMNS, tuple(track_rows[0])
            pickle.dump(track_rows, f, protocol=pickle.HIGHEST_PROTOCOL)
            chunk_catalog = {"albums": list(rows.albums.values()), "artists": list(rows.artists.values()),
                             "tracks": track_rows, "track_artists": rows.track_artists}
            pickle.dump(chunk_catalog, catalog_f, protocol=pickle.HIGHEST_PROTOCOL)
            written += len(track_rows)
            track_artist_rows += len(chunk_catalog["track_artists"])
            bulk_upsert(engine, "spotify_albums", chunk_catalog["albums"], key=["album_id"])
            bulk_upsert(engine, "spotify_artists", chunk_catalog["artists"], key=["artist_id"])
    engine.dispose()
    return {
        "rows": written,
        "track_artist_rows": track_artist_rows,
        "parse_rows_per_s": round(written / parse_s),
        "normalize_rows_per_s": round(written / normalize_s),
        "spool_mb": round(Path(spool).stat().st_size / 2**20, 1),
        "catalog_spool_mb": round(Path(catalog_spool).stat().st_size / 2**20, 1),
        "peak_rss_mb": peak_rss_mb(),
    }


def step_source(spool: str) -> dict[str, Any]:
    """Reading the spool alone: the share of every step's time that is the row source, not the load."""
    started = time.perf_counter()
    rows = sum(len(chunk) for chunk in _spool_chunks(spool))
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 2)}


def step_ours(database_url: str, spool: str) -> dict[str, Any]:
    from spotify_pipeline.warehouse import create_engine
    from spotify_pipeline.warehouse.bulk import bulk_upsert

    engine = create_engine(database_url)
    _reset(engine)
    start_rss = peak_rss_mb()
    started = time.perf_counter()
    rows = bulk_upsert(
        engine, TABLE, (row for chunk in _spool_chunks(spool) for row in chunk),
        key=["track_id"], update=UPDATE, refresh=REFRESH, touch=["updated_at"],
    )
    seconds = time.perf_counter() - started
    result = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
              "peak_rss_mb": peak_rss_mb(), "start_rss_mb": start_rss, **_fingerprint(engine)}
    engine.dispose()
    return result


def _read_again(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chunk as the next day's pull reads it: same content, later read times."""
    for track in chunk["tracks"]:
        track["fetched_at"] = REREAD_AT
        if track["popularity_read_at"] is not None:
            track["popularity_read_at"] = REREAD_AT
    return chunk


def _count_links(engine: Any) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM spotify_track_artists")).scalar_one())


def _upsert_catalog_chunks(engine: Any, catalog_spool: str, read: Callable[[Any], Any]) -> tuple[int, int, float]:
    """Every spooled chunk through `upsert_catalog`, one call and transaction each: (tracks, calls, seconds)."""
    from spotify_pipeline.warehouse.enrichment import upsert_catalog

    rows = calls = 0
    started = time.perf_counter()
    for chunk in _spool_chunks(catalog_spool):
        with engine.begin() as conn:
            rows += upsert_catalog(conn, **read(chunk))["tracks"]
        calls += 1
    return rows, calls, time.perf_counter() - started


def step_upsert_catalog(database_url: str, catalog_spool: str) -> dict[str, Any]:
    """The daily job's write into an empty catalogue (the albums and artists the other steps rely on are
    written again on the way), then the same chunks read again a day later."""
    import sqlalchemy as sa

    from spotify_pipeline.warehouse import create_engine

    engine = create_engine(database_url)
    _reset(engine, CATALOG_TABLES)
    start_rss = peak_rss_mb()
    rows, calls, seconds = _upsert_catalog_chunks(engine, catalog_spool, lambda chunk: chunk)
    loaded = {**_fingerprint(engine), "track_artist_rows": _count_links(engine)}
    reread_rows, _, reread_seconds = _upsert_catalog_chunks(engine, catalog_spool, _read_again)
    with engine.connect() as conn:
        reread_tracks = sa.text(f"SELECT count(*) FROM {TABLE} WHERE fetched_at = :t")
        moved = conn.execute(reread_tracks, {"t": REREAD_AT}).scalar_one()
    if moved != reread_rows or _count_links(engine) != loaded["track_artist_rows"]:
        raise RuntimeError(f"the re-read moved fetched_at of {moved} of {reread_rows} tracks or changed artist links")
    result = {"rows": rows, "calls": calls, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
              "reread_rows_per_s": round(reread_rows / reread_seconds), "reread_seconds": round(reread_seconds, 2),
              "peak_rss_mb": peak_rss_mb(), "start_rss_mb": start_rss, **loaded}
    engine.dispose()
    return result


def step_copy_catalog(database_url: str, catalog_spool: str) -> dict[str, Any]:
    """COPY of every chunk's new albums and artists, its tracks and their artist links, one transaction: no
    conflict handling, no staging (the floor for upsert_catalog)."""
    from spotify_pipeline.warehouse import create_engine

    engine = create_engine(database_url)
    _reset(engine, CATALOG_TABLES)
    start_rss = peak_rss_mb()
    raw = engine.raw_connection()
    seen: dict[str, set[str]] = {"spotify_albums": set(), "spotify_artists": set()}
    rows = 0
    started = time.perf_counter()
    cursor = raw.cursor()
    for chunk in _spool_chunks(catalog_spool):
        for table, key, table_rows in (("spotify_albums", "album_id", chunk["albums"]),
                                       ("spotify_artists", "artist_id", chunk["artists"])):
            new = [r for r in table_rows if r[key] not in seen[table]]
            seen[table].update(r[key] for r in new)
            _copy_rows(cursor, table, new)
        _copy_rows(cursor, TABLE, chunk["tracks"])
        _copy_rows(cursor, "spotify_track_artists", chunk["track_artists"])
        rows += len(chunk["tracks"])
    raw.commit()
    seconds = time.perf_counter() - started
    raw.close()
    result = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
              "peak_rss_mb": peak_rss_mb(), "start_rss_mb": start_rss, "track_artist_rows": _count_links(engine),
              **_fingerprint(engine)}
    engine.dispose()
    return result


def _copy_rows(cursor: Any, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    out = io.StringIO()
    # As in step_copy: no empty strings in the synthetic rows, so the unquoted empty field is NULL.
    csv.writer(out, lineterminator="\n").writerows([row[c] for c in columns] for row in rows)
    out.seek(0)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", out, size=1 << 16)


class _CsvStream:
    """A read()-able stream of CSV text over the spooled chunks, one chunk rendered at a time."""

    def __init__(self, spool: str) -> None:
        self._chunks = _spool_chunks(spool)
        self._buffer = ""

    def read(self, size: int = -1) -> str:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows([row[c] for c in COLUMNS] for row in chunk)
            self._buffer += out.getvalue()
        if size < 0:
            data, self._buffer = self._buffer, ""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def step_copy(database_url: str, spool: str) -> dict[str, Any]:
    from spotify_pipeline.warehouse import create_engine

    engine = create_engine(database_url)
    _reset(engine)
    start_rss = peak_rss_mb()
    raw = engine.raw_connection()
    started = time.perf_counter()
    cursor = raw.cursor()
    # The synthetic rows hold no empty strings, so CSV's unquoted empty field can stand for NULL.
    cursor.copy_expert(f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN WITH (FORMAT csv)", _CsvStream(spool),
                       size=1 << 16)
    raw.commit()
    seconds = time.perf_counter() - started
    rows = cursor.rowcount
    raw.close()
    result = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
              "peak_rss_mb": peak_rss_mb(), "start_rss_mb": start_rss, **_fingerprint(engine)}
    engine.dispose()
    return result


def step_to_sql(database_url: str, spool: str, max_rows: int) -> dict[str, Any]:
    import pandas as pd

    from spotify_pipeline.warehouse import create_engine

    engine = create_engine(database_url)
    _reset(engine)
    start_rss = peak_rss_mb()
    rows = 0
    frame_s = 0.0
    started = time.perf_counter()
    for chunk in _spool_chunks(spool):
        if rows >= max_rows:
            break
        chunk = chunk[: max_rows - rows]
        t = time.perf_counter()
        frame = pd.DataFrame.from_records(chunk, columns=list(COLUMNS))
        frame_s += time.perf_counter() - t
        frame.to_sql(TABLE, engine, if_exists="append", index=False)
        rows += len(chunk)
    seconds = time.perf_counter() - started
    result = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
              "dataframe_s": round(frame_s, 2), "peak_rss_mb": peak_rss_mb(), "start_rss_mb": start_rss,
              **_fingerprint(engine)}
    engine.dispose()
    return result


# -- the figure ----------------------------------------------------------------------------------------------


def run(quick: bool = False, tracks: int | None = None, server_url: str | None = None) -> dict[str, Any]:
    tracks = tracks or (QUICK_TRACKS if quick else DEFAULT_TRACKS)
    to_sql_rows = min(tracks, TO_SQL_MAX_ROWS)
    with scratch_database("load", server_url) as url, tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        spool = str(Path(tmp) / "tracks.pickle")
        catalog_spool = str(Path(tmp) / "catalog.pickle")
        prepared = in_subprocess(step_prepare, url, tracks, spool, catalog_spool)
        source = in_subprocess(step_source, spool)
        copy = in_subprocess(step_copy, url, spool)
        ours = in_subprocess(step_ours, url, spool)
        copy_catalog = in_subprocess(step_copy_catalog, url, catalog_spool)
        catalog = in_subprocess(step_upsert_catalog, url, catalog_spool)
        to_sql = in_subprocess(step_to_sql, url, spool, to_sql_rows)
    for name, step in (("ours", ours), ("COPY", copy), ("upsert_catalog", catalog), ("COPY catalogue", copy_catalog)):
        if step["rows"] != tracks:
            raise RuntimeError(f"{name} loaded {step['rows']} of {tracks} rows")
    if (ours["rows"], ours["checksum"]) != (copy["rows"], copy["checksum"]):
        raise RuntimeError("ours and COPY loaded different table contents")
    for name, step in (("upsert_catalog", catalog), ("COPY catalogue", copy_catalog)):
        if step["checksum"] != copy["checksum"]:
            raise RuntimeError(f"{name} and COPY loaded different spotify_tracks contents")
        if step["track_artist_rows"] != prepared["track_artist_rows"]:
            raise RuntimeError(
                f"{name} left {step['track_artist_rows']} of {prepared['track_artist_rows']} artist links"
            )
    if to_sql["rows"] == tracks and to_sql["checksum"] != ours["checksum"]:
        raise RuntimeError("to_sql and ours loaded different table contents")
    return {
        "rows": tracks,
        "ours_rows_per_s": ours["rows_per_s"],
        "copy_rows_per_s": copy["rows_per_s"],
        "to_sql_rows_per_s": to_sql["rows_per_s"],
        "ratio_vs_copy": round(ours["rows_per_s"] / copy["rows_per_s"], 3),
        "ratio_vs_to_sql": round(ours["rows_per_s"] / to_sql["rows_per_s"], 3),
        "to_sql_rows": to_sql["rows"],
        "to_sql_extrapolated": to_sql["rows"] < tracks,
        "peak_rss_mb": ours["peak_rss_mb"],
        "start_rss_mb": ours["start_rss_mb"],
        "copy_peak_rss_mb": copy["peak_rss_mb"],
        "to_sql_peak_rss_mb": to_sql["peak_rss_mb"],
        "ours_s": ours["seconds"],
        "copy_s": copy["seconds"],
        "to_sql_s": to_sql["seconds"],
        "to_sql_dataframe_s": to_sql["dataframe_s"],
        "source_s": source["seconds"],
        "parse_rows_per_s": prepared["parse_rows_per_s"],
        "normalize_rows_per_s": prepared["normalize_rows_per_s"],
        "prepare_peak_rss_mb": prepared["peak_rss_mb"],
        # The pipeline's real path: tracks per second through upsert_catalog (which also writes their albums,
        # artists and artist links), over all N tracks.
        "upsert_catalog_rows": catalog["rows"],
        "upsert_catalog_rows_per_s": catalog["rows_per_s"],
        "upsert_catalog_ratio_vs_copy": round(catalog["rows_per_s"] / copy["rows_per_s"], 3),
        "upsert_catalog_s": catalog["seconds"],
        "upsert_catalog_calls": catalog["calls"],
        "upsert_catalog_peak_rss_mb": catalog["peak_rss_mb"],
        "upsert_catalog_reread_rows_per_s": catalog["reread_rows_per_s"],
        "upsert_catalog_reread_s": catalog["reread_seconds"],
        # Raw COPY of the same four tables upsert_catalog writes: what it could at best approach.
        "copy_catalog_rows_per_s": copy_catalog["rows_per_s"],
        "copy_catalog_s": copy_catalog["seconds"],
        "upsert_catalog_ratio_vs_copy_catalog": round(catalog["rows_per_s"] / copy_catalog["rows_per_s"], 3),
        "track_artist_rows": catalog["track_artist_rows"],
        "spool_mb": prepared["spool_mb"],
        "catalog_spool_mb": prepared["catalog_spool_mb"],
        "chunk_rows": CHUNK,
        "checksums_equal": True,
        "method": (
            "rows = normalize_tracks() output of synthetic Track objects, spooled once; each loader reads the same "
            "spool into an empty spotify_tracks (indexes, FKs) in its own process; rate = rows / wall seconds "
            "incl. reading the spool (source_s); ours = one streaming bulk_upsert (upsert_catalog's arguments); "
            f"upsert_catalog = the daily job's call per {CHUNK:,} tracks (albums, artists, tracks, artist links; "
            "one transaction each) from an empty catalogue, rate in tracks (re-read: the same again a day later); "
            "COPY = csv module + COPY FROM STDIN; COPY catalogue = the same into upsert_catalog's four tables; "
            "to_sql = DataFrame per chunk + to_sql(append)"
            + (f"; to_sql loaded the first {to_sql['rows']:,} rows only, its rate is extrapolated to all"
               if to_sql["rows"] < tracks else "")
        ),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, tracks=args.tracks), indent=2))
