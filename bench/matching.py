"""Benchmark: track matching quality and speed on real metadata and on the synthetic sample, against a naive
baseline, in both app modes.

**Corpus row (the one the targets apply to).** A fresh offline emulator in its own process serves the matching
corpus's 27,782 real track objects (``--corpus DIR``, default ``../shared/matching-corpus`` from the project
root: ``catalog.jsonl.gz``, ``local_catalog.csv``, ``labels.csv``), with no rolling-window limit, so the limits
under test are the matcher's, not Spotify's. `TrackMatcher` matches the corpus's 2,000 local songs through the
real client over HTTP, first in Extended Quota mode, then in Development Mode (search limit 10 and no
popularity, both detected by the client), and the matches are scored against the labels, overall, per drift
kind (a song with several kinds counts under each) and on each half of the corpus (odd and even rows: a rule
that helps only one half is fitted to rows, not general). When the directory is absent the bench says so and
reports the synthetic row only.

**Synthetic row.** The same on the ~1,000 songs of `spotify_pipeline/data/sample_catalog.csv`, served by the
emulator's synthetic catalogue and scored against `sample_catalog_labels.csv`.

The baseline sends one query per song (``isrc:`` or ``track:"" artist:""``) and takes the first hit.

- ``precision`` = correct matches / matches made; ``recall`` = correct matches / songs that truly have a track;
- ``seconds``: wall time of the matcher over all songs; ``searches_per_song``: its search requests per song.

Run ``python -m bench.matching [--quick] [--corpus DIR]`` (``--quick``: every third corpus row and the first
250 sample songs); `run(quick, corpus_dir)` returns the dict.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

QUICK_SAMPLE_SONGS = 250
#: Quick runs keep corpus rows 1, 4, 7, ...: a fixed subset spread over the whole file, odd and even rows alike.
QUICK_CORPUS_STRIDE = 3
DEFAULT_CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "matching-corpus"
MODES = ("extended", "development")
HALF_FIGURES = ("precision", "recall", "baseline_precision", "baseline_recall")


def measure_mode(mode: str, labelled: list[Any], catalog_path: Path | None = None) -> Any:
    """Matcher and baseline over ``labelled`` against a fresh emulator in ``mode``; the `Comparison`."""
    from spotify_pipeline.emulator.testing import run_emulator, run_emulator_process
    from spotify_pipeline.matching.evaluation import compare_with_baseline
    from spotify_pipeline.spotify import SpotifyClientConfig, build_client

    # The corpus catalogue is large: its emulator gets its own process (own GIL), as Spotify is elsewhere.
    serve = run_emulator_process if catalog_path is not None else run_emulator
    with serve(mode=mode, window_limit=None, catalog_path=catalog_path) as emulator:
        config = SpotifyClientConfig(
            client_id=emulator.client_id,
            client_secret=emulator.client_secret,
            api_base_url=emulator.api_base_url,
            accounts_base_url=emulator.accounts_base_url,
            rate_limit_per_minute=1_000_000,  # the client's own limiter must not be the bottleneck here
        )
        with build_client(config) as client:
            comparison = compare_with_baseline(client, labelled)
            search_limit = client.capabilities.max_search_limit
    return comparison, search_limit


def _figures(comparison: Any, search_limit: int) -> dict[str, Any]:
    summary = comparison.summary()
    summary["search_limit"] = search_limit
    summary["songs_per_second"] = round(summary["songs"] / summary["seconds"], 1) if summary["seconds"] else None
    return summary


def _halves(comparison: Any, labelled: list[Any]) -> dict[str, dict[str, Any]]:
    halves = {
        "odd_rows": [item for item in labelled if item.song.song_id % 2],
        "even_rows": [item for item in labelled if not item.song.song_id % 2],
    }
    out = {}
    for name, half in halves.items():
        summary = comparison.restricted_to(half).summary()
        out[name] = {key: summary[key] for key in ("songs", *HALF_FIGURES)}
    return out


def measure_corpus(corpus_dir: Path, quick: bool = False) -> dict[str, Any]:
    """The corpus row in both modes: ``{"extended": {...}, "development": {...}, "directory", "rows"}``."""
    from spotify_pipeline.matching.evaluation import CORPUS_CATALOG, load_corpus

    labelled = load_corpus(corpus_dir)
    if quick:
        labelled = labelled[::QUICK_CORPUS_STRIDE]
    subset = f"rows 1, {1 + QUICK_CORPUS_STRIDE}, {1 + 2 * QUICK_CORPUS_STRIDE}, ..." if quick else "all rows"
    out: dict[str, Any] = {"songs": len(labelled), "subset": subset}
    for mode in MODES:
        comparison, search_limit = measure_mode(mode, labelled, corpus_dir / CORPUS_CATALOG)
        out[mode] = {**_figures(comparison, search_limit), "halves": _halves(comparison, labelled)}
    return out


def measure_synthetic(quick: bool = False) -> dict[str, Any]:
    """The synthetic-sample row in both modes."""
    from spotify_pipeline.matching.evaluation import load_sample

    labelled = load_sample()
    if quick:
        labelled = labelled[:QUICK_SAMPLE_SONGS]
    out: dict[str, Any] = {"songs": len(labelled)}
    for mode in MODES:
        out[mode] = _figures(*measure_mode(mode, labelled))
    return out


def corpus_missing(corpus_dir: Path) -> str | None:
    """Why ``corpus_dir`` cannot be measured (names only, no machine paths), None when it can."""
    from spotify_pipeline.matching.evaluation import CORPUS_CATALOG, CORPUS_LABELS, CORPUS_SONGS

    missing = [name for name in (CORPUS_CATALOG, CORPUS_SONGS, CORPUS_LABELS) if not (corpus_dir / name).is_file()]
    return f"no {', '.join(missing)} in {corpus_dir.name}/" if missing else None


def run(quick: bool = False, corpus_dir: Path | None = None) -> dict[str, Any]:
    """``{"corpus": {...} | None, "corpus_missing": str | None, "synthetic": {...}}``; each row holds
    ``extended`` and ``development`` figures: precision, recall, baseline_precision, baseline_recall, songs,
    seconds, searches_per_song, by_kind (the corpus row also halves)."""
    corpus_dir = corpus_dir or DEFAULT_CORPUS_DIR
    results: dict[str, Any] = {"corpus": None, "corpus_missing": corpus_missing(corpus_dir)}
    if results["corpus_missing"]:
        print(f"matching: {results['corpus_missing']}; measuring the synthetic sample only "
              "(python -m bench.matching --corpus DIR)", file=sys.stderr)
    else:
        results["corpus"] = measure_corpus(corpus_dir, quick)
    results["synthetic"] = measure_synthetic(quick)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fixed third of the corpus, 250 sample songs")
    parser.add_argument("--corpus", type=Path, default=None, metavar="DIR",
                        help="the matching corpus directory (default: ../shared/matching-corpus from the project root)")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, corpus_dir=args.corpus), indent=2))
