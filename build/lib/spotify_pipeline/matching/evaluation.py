"""Measure a matcher against the shipped, labelled sample catalogue (used by the tests and `bench/matching.py`).

`spotify_pipeline/data/sample_catalog.csv` holds about 1,000 local songs; `sample_catalog_labels.csv` the
Spotify track each one really is (empty when the song is not on Spotify). Only the CSV files are read: this
module knows nothing of the emulator that serves those tracks.

* precision = correct matches / matches made;
* recall = correct matches / songs that truly have a track.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from spotify_pipeline.matching.matcher import MatchResult, SearchClient, SongToMatch, TrackMatcher
from spotify_pipeline.matching.normalize import normalize_isrc, query_value

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SAMPLE_CSV = DATA_DIR / "sample_catalog.csv"
LABELS_CSV = DATA_DIR / "sample_catalog_labels.csv"


@dataclass(frozen=True)
class LabelledSong:
    song: SongToMatch
    truth: str | None  # the Spotify track id the song really is, None if it is not on Spotify
    case: str


def load_sample(sample_csv: Path = SAMPLE_CSV, labels_csv: Path = LABELS_CSV) -> list[LabelledSong]:
    """The sample songs (``song_id`` = 1-based row) with their labels, in file order."""
    with sample_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with labels_csv.open(newline="", encoding="utf-8") as f:
        labels = list(csv.DictReader(f))
    if len(rows) != len(labels):
        raise ValueError(f"{sample_csv.name} has {len(rows)} rows but {labels_csv.name} has {len(labels)}")
    out = []
    for number, (row, label) in enumerate(zip(rows, labels, strict=True), start=1):
        if int(label["row"]) != number or label["title"] != row["title"]:
            raise ValueError(f"label row {label['row']} does not describe sample row {number}")
        song = SongToMatch(
            song_id=number,
            title=row["title"],
            artist=row["artist"],
            album=row["album"] or None,
            duration_ms=int(row["duration_ms"]) if row["duration_ms"] else None,
            isrc=row["isrc"] or None,
            release_year=int(row["release_year"]) if row["release_year"] else None,
        )
        out.append(LabelledSong(song=song, truth=label["spotify_track_id"] or None, case=label["case"]))
    return out


@dataclass
class Quality:
    """Precision and recall of a set of predictions, overall and per labelled case."""

    songs: int = 0
    truly_on_spotify: int = 0
    matched: int = 0
    correct: int = 0
    wrong: list[tuple[int, str | None, str]] = field(default_factory=list)  # (song_id, truth, predicted)
    missed: list[tuple[int, str, str]] = field(default_factory=list)  # (song_id, truth, case)
    by_case: dict[str, Counter[str]] = field(default_factory=dict)

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


def evaluate(labelled: Iterable[LabelledSong], predicted: dict[int, str | None]) -> Quality:
    """Compare predicted track ids (by song id; None = no match) with the labels."""
    q = Quality()
    for item in labelled:
        song_id = item.song.song_id
        guess = predicted.get(song_id)
        q.songs += 1
        counts = q.by_case.setdefault(item.case, Counter())
        counts["songs"] += 1
        if item.truth is not None:
            q.truly_on_spotify += 1
        if guess is not None:
            q.matched += 1
            if guess == item.truth:
                q.correct += 1
                counts["correct"] += 1
            else:
                q.wrong.append((song_id, item.truth, guess))
                counts["wrong"] += 1
        elif item.truth is not None:
            q.missed.append((song_id, item.truth, item.case))
            counts["missed"] += 1
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

    def summary(self) -> dict[str, object]:
        outcomes = Counter(r.outcome for r in self.results)
        methods = Counter(r.method for r in self.results if r.matched)
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
            "search_requests": sum(len(r.queries) for r in self.results),
            "baseline_search_requests": self.baseline.songs,
        }


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
    )
