"""The catalogue is deterministic and prefix-stable; the shipped sample CSV is what the generator writes
and every labelled track exists in the default emulator catalogue."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from spotify_pipeline.emulator.catalog import DEFAULT_CATALOG_SIZE, DEFAULT_SEED, SAMPLE_POOL_SIZE, Catalog
from spotify_pipeline.emulator.sample import CASE_COUNTS, DATA_DIR, LABELS_FILE, SAMPLE_FILE, write_sample


def test_same_seed_same_catalogue_and_a_smaller_catalogue_is_a_prefix() -> None:
    small, again, large = Catalog(7, 300), Catalog(7, 300), Catalog(7, 900)
    assert [(t.id, t.name, t.isrc, t.duration_ms) for t in small.tracks] == [
        (t.id, t.name, t.isrc, t.duration_ms) for t in again.tracks
    ]
    assert [t.id for t in large.tracks[:300]] == [t.id for t in small.tracks]
    assert [t.id for t in Catalog(8, 300).tracks] != [t.id for t in small.tracks]


def test_catalogue_records_are_realistic_and_unique() -> None:
    catalog = Catalog(DEFAULT_SEED, 2_000)
    assert len({t.id for t in catalog.tracks}) == len({t.isrc for t in catalog.tracks}) == 2_000
    assert all(len(t.id) == 22 and t.id.isalnum() for t in catalog.tracks)
    assert all(len(t.isrc) == 12 and t.isrc[:2].isalpha() and t.isrc[7:].isdigit() for t in catalog.tracks)
    assert len({a.name for a in catalog.artists}) == len(catalog.artists)
    assert {a.album_type for a in catalog.albums} == {"album", "single", "compilation"}
    assert any(" - Remastered " in t.name for t in catalog.tracks)
    assert any("(feat. " in t.name for t in catalog.tracks)
    assert any(t.preview_url for t in catalog.tracks) and any(t.preview_url is None for t in catalog.tracks)


def test_shipped_sample_is_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    write_sample(tmp_path, DEFAULT_SEED)
    for name in (SAMPLE_FILE, LABELS_FILE):
        assert (DATA_DIR / name).read_bytes() == (tmp_path / name).read_bytes(), f"regenerate {name}"


def test_sample_cases_labels_and_containment_in_the_default_catalogue() -> None:
    with (DATA_DIR / SAMPLE_FILE).open(encoding="utf-8") as f:
        reader = csv.reader(f)
        assert next(reader) == ["title", "artist", "album", "duration_ms", "isrc", "release_year"]
        songs = list(reader)
    with (DATA_DIR / LABELS_FILE).open(encoding="utf-8") as f:
        labels = list(csv.DictReader(f))
    assert len(songs) == len(labels) == sum(CASE_COUNTS.values())
    assert Counter(label["case"] for label in labels) == CASE_COUNTS
    catalog = Catalog(DEFAULT_SEED, DEFAULT_CATALOG_SIZE)
    for (title, artist, _album, duration, isrc, _year), label in zip(songs, labels):
        assert (label["title"], label["artist"]) == (title, artist)
        track = catalog.track_by_id.get(label["spotify_track_id"])
        if label["case"] == "not_on_spotify":
            assert track is None and label["spotify_track_id"] == ""
            assert isrc == "" or isrc not in catalog.tracks_by_isrc
            continue
        assert track is not None and track.index < SAMPLE_POOL_SIZE
        primary = catalog.artists[track.artist_indices[0]].name
        if label["case"] == "exact_isrc":
            assert (title, artist, int(duration), isrc) == (track.name, primary, track.duration_ms, track.isrc)
        else:
            assert isrc == ""
            assert abs(int(duration) - track.duration_ms) <= 2_000
        if label["case"] == "ambiguous":
            same_title_other_artist = [
                t for t in catalog.tracks if t.base_title == track.base_title and t.artist_indices[0] != track.artist_indices[0]
            ]
            assert same_title_other_artist
    drifted = [(s[0], catalog.track_by_id[l["spotify_track_id"]].name) for s, l in zip(songs, labels) if l["case"] == "drift"]
    assert sum(local != spotify for local, spotify in drifted) > 0.8 * len(drifted)
