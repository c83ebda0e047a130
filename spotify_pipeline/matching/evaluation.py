"""Measure a matcher against a labelled catalogue (used by the tests and `bench/matching.py`).

Two label sets, one evaluator:

* the shipped synthetic sample (`load_sample`): `spotify_pipeline/data/sample_catalog.csv` holds about 1,000
  local songs, `sample_catalog_labels.csv` the one Spotify track each one is (empty when it is not on
  Spotify); the emulator's synthetic catalogue serves those tracks;
* a matching corpus of real metadata (`load_corpus`): a directory with ``local_catalog.csv`` (the local
  songs) and ``labels.csv`` (``row,accept_ids,case``: the space-separated ids of every release of the song's
  recording, any of which is correct, empty when the song is not on Spotify, and the drift kinds applied,
  joined by ``+``); its ``catalog.jsonl.gz`` is what an emulator serves for it.

Only the CSV files are read: this module knows nothing of the emulator that serves the tracks.

* precision = correct matches / matches made;
* recall = correct matches / songs that truly have a track.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spotify_pipeline.matching.matcher import MatchResult, SearchClient, SongToMatch, TrackMatcher
from spotify_pipeline.matching.normalize import normalize_isrc, query_value

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SAMPLE_CSV = DATA_DIR / "sample_catalog.csv"
LABELS_CSV = DATA_DIR / "sample_catalog_labels.csv"
#: Files of a matching corpus directory (see the module docstring).
CORPUS_SONGS = "local_catalog.csv"
CORPUS_LABELS = "labels.csv"
CORPUS_CATALOG = "catalog.jsonl.gz"
#: Separator of several drift kinds in one label's ``case``.
KIND_SEPARATOR = "+"


@dataclass(frozen=True)
class LabelledSong:
    song: SongToMatch
    accept_ids: frozenset[str]  # every Spotify track id that is a correct match; empty if not on Spotify
    case: str  # the drift kinds applied to the song, joined by "+"

    @property
    def truth(self) -> str | None:
        """One correct track id (the smallest), None when the song is not on Spotify."""
        return min(self.accept_ids) if self.accept_ids else None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind in self.case.split(KIND_SEPARATOR) if kind) or ("unlabelled",)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _song(song_id: int, row: dict[str, str]) -> SongToMatch:
    return SongToMatch(
        song_id=song_id,
        title=row["title"],
        artist=row["artist"],
        album=row["album"] or None,
        duration_ms=int(row["duration_ms"]) if row["duration_ms"] else None,
        isrc=row["isrc"] or None,
        release_year=int(row["release_year"]) if row["release_year"] else None,
    )


def _check_rows(songs_csv: Path, labels_csv: Path, rows: Sequence[object], labels: Sequence[dict[str, str]]) -> None:
    if len(rows) != len(labels):
        raise ValueError(f"{songs_csv.name} has {len(rows)} rows but {labels_csv.name} has {len(labels)}")
    for number, label in enumerate(labels, start=1):
        if int(label["row"]) != number:
            raise ValueError(f"{labels_csv.name}: label {number} describes row {label['row']}, expected {number}")


def load_sample(sample_csv: Path = SAMPLE_CSV, labels_csv: Path = LABELS_CSV) -> list[LabelledSong]:
    """The sample songs (``song_id`` = 1-based row) with their labels, in file order."""
    rows, labels = _read_csv(sample_csv), _read_csv(labels_csv)
    _check_rows(sample_csv, labels_csv, rows, labels)
    out = []
    for number, (row, label) in enumerate(zip(rows, labels, strict=True), start=1):
        if label["title"] != row["title"]:
            raise ValueError(f"label row {label['row']} does not describe sample row {number}")
        truth = label["spotify_track_id"]
        out.append(LabelledSong(_song(number, row), frozenset({truth} if truth else ()), label["case"]))
    return out


def load_corpus(directory: Path) -> list[LabelledSong]:
    """A matching corpus's songs (``song_id`` = 1-based data row of ``local_catalog.csv``) with their labels,
    in file order. Raises `FileNotFoundError` when the directory lacks either file."""
    songs_csv, labels_csv = directory / CORPUS_SONGS, directory / CORPUS_LABELS
    rows, labels = _read_csv(songs_csv), _read_csv(labels_csv)
    _check_rows(songs_csv, labels_csv, rows, labels)
    return [
        LabelledSong(_song(number, row), frozenset(label["accept_ids"].split()), label["case"])
        for number, (row, label) in enumerate(zip(rows, labels, strict=True), start=1)
    ]


@dataclass
class Quality:
    """Precision and recall of a set of predictions, overall and per drift kind (a song with several kinds
    counts under each of them)."""

    songs: int = 0
    truly_on_spotify: int = 0
    matched: int = 0
    correct: int = 0
    wrong: list[tuple[int, str | None, str]] = field(default_factory=list)  # (song_id, a correct id, predicted)
    missed: list[tuple[int, str, str]] = field(default_factory=list)  # (song_id, a correct id, case)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return self.correct / self.matched if self.matched else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.truly_on_spotify if self.truly_on_spotify else 1.0

    def summary(self) -> dict[str, object]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "songs": self.songs,
            "matched": self.matched,
            "correct": self.correct,
            "wrong": len(self.wrong),
            "missed": len(self.missed),
        }

    def kind_summary(self) -> dict[str, dict[str, Any]]:
        """Per drift kind: songs, of them on Spotify, matched correctly, wrongly, missed, and the kind's recall
        (None for kinds of songs not on Spotify, where only ``wrong`` counts)."""
        out: dict[str, dict[str, Any]] = {}
        for kind, counts in sorted(self.by_kind.items()):
            on_spotify = counts["on_spotify"]
            out[kind] = {
                "songs": counts["songs"],
                "on_spotify": on_spotify,
                "correct": counts["correct"],
                "wrong": counts["wrong"],
                "missed": counts["missed"],
                "recall": round(counts["correct"] / on_spotify, 4) if on_spotify else None,
            }
        return out


def evaluate(labelled: Iterable[LabelledSong], predicted: dict[int, str | None]) -> Quality:
    """Compare predicted track ids (by song id; None = no match) with the labels."""
    q = Quality()
    for item in labelled:
        song_id = item.song.song_id
        guess = predicted.get(song_id)
        outcome: str | None = None
        if guess is not None:
            outcome = "correct" if guess in item.accept_ids else "wrong"
        elif item.accept_ids:
            outcome = "missed"
        q.songs += 1
        if item.accept_ids:
            q.truly_on_spotify += 1
        for kind in item.kinds:
            counts = q.by_kind.setdefault(kind, Counter())
            counts["songs"] += 1
            counts["on_spotify"] += bool(item.accept_ids)
            if outcome:
                counts[outcome] += 1
        if guess is not None:
            q.matched += 1
            if outcome == "correct":
                q.correct += 1
            else:
                q.wrong.append((song_id, item.truth, guess))
        elif item.accept_ids:
            q.missed.append((song_id, item.truth or "", item.case))
    return q


def evaluate_results(labelled: Iterable[LabelledSong], results: Iterable[MatchResult]) -> Quality:
    return evaluate(labelled, {r.song_id: r.track_id for r in results})


def first_hit_baseline(client: SearchClient) -> Callable[[SongToMatch], str | None]:
    """The naive matcher to beat: ``isrc:CODE`` when the song has an ISRC, else ``track:"title" artist:"artist"``
    with the title as typed, and take the first hit, whatever it is."""

    def match(song: SongToMatch) -> str | None:
        isrc = normalize_isrc(song.isrc)
        query = f"isrc:{isrc}" if isrc else f'track:"{query_value(song.title)}" artist:"{query_value(song.artist)}"'
        page = client.search_tracks(query, limit=1)
        return page.items[0].id if page.items else None

    return match


@dataclass(frozen=True)
class Comparison:
    """The matcher and the first-hit baseline on the same songs and client."""

    matcher: Quality
    baseline: Quality
    results: list[MatchResult]
    seconds: float
    baseline_seconds: float
    baseline_guesses: dict[int, str | None] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        outcomes = Counter(r.outcome for r in self.results)
        methods = Counter(r.method for r in self.results if r.matched)
        searches = sum(len(r.queries) for r in self.results)
        baseline_kinds = self.baseline.kind_summary()
        by_kind = {
            kind: {**figures, "baseline_recall": baseline_kinds.get(kind, {}).get("recall"),
                   "baseline_wrong": baseline_kinds.get(kind, {}).get("wrong")}
            for kind, figures in self.matcher.kind_summary().items()
        }
        return {
            "precision": round(self.matcher.precision, 4),
            "recall": round(self.matcher.recall, 4),
            "baseline_precision": round(self.baseline.precision, 4),
            "baseline_recall": round(self.baseline.recall, 4),
            "songs": self.matcher.songs,
            "seconds": round(self.seconds, 3),
            "baseline_seconds": round(self.baseline_seconds, 3),
            "matched": self.matcher.matched,
            "wrong": len(self.matcher.wrong),
            "missed": len(self.matcher.missed),
            "outcomes": dict(sorted(outcomes.items())),
            "matched_by_method": dict(sorted(methods.items())),
            "search_requests": searches,
            "searches_per_song": round(searches / len(self.results), 3) if self.results else 0.0,
            "baseline_search_requests": self.baseline.songs,
            "by_kind": by_kind,
        }

    def restricted_to(self, labelled: Sequence[LabelledSong]) -> Comparison:
        """The same runs judged on a subset of their songs (a half of a corpus, say), without new requests;
        ``seconds`` are scaled by the share of songs kept."""
        wanted = {item.song.song_id for item in labelled}
        results = [r for r in self.results if r.song_id in wanted]
        share = len(results) / len(self.results) if self.results else 0.0
        guesses = {song_id: guess for song_id, guess in self.baseline_guesses.items() if song_id in wanted}
        return Comparison(
            matcher=evaluate_results(labelled, results),
            baseline=evaluate(labelled, guesses),
            results=results,
            seconds=self.seconds * share,
            baseline_seconds=self.baseline_seconds * share,
            baseline_guesses=guesses,
        )


def compare_with_baseline(
    client: SearchClient, labelled: list[LabelledSong], matcher: TrackMatcher | None = None
) -> Comparison:
    """Run ``matcher`` (default: `TrackMatcher(client)`) and `first_hit_baseline` over ``labelled``; time both."""
    matcher = matcher or TrackMatcher(client)
    started = time.perf_counter()
    results = list(matcher.match_many(item.song for item in labelled))
    seconds = time.perf_counter() - started
    baseline = first_hit_baseline(client)
    started = time.perf_counter()
    guesses = {item.song.song_id: baseline(item.song) for item in labelled}
    baseline_seconds = time.perf_counter() - started
    return Comparison(
        matcher=evaluate_results(labelled, results),
        baseline=evaluate(labelled, guesses),
        results=results,
        seconds=seconds,
        baseline_seconds=baseline_seconds,
        baseline_guesses=guesses,
    )
