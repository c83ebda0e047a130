"""The sample local catalogue shipped with the package, and its answer key.

`python -m spotify_pipeline.emulator.sample [--seed S] [--out-dir DIR]` writes

* `sample_catalog.csv`: ``title,artist,album,duration_ms,isrc,release_year``, about 1,000 songs as a
  real local library holds them (``isrc`` and ``album`` may be empty);
* `sample_catalog_labels.csv`: ``row,title,artist,spotify_track_id,case``, one line per sample row in the
  same order (``row`` is the 1-based data row), with the emulator track the song really is, or empty.

Cases (the ``case`` column):

* ``exact_isrc``: the song as Spotify has it, ISRC included (album sometimes empty).
* ``drift``: no ISRC, and the title/artist/duration drift the way hand-kept libraries do: the
  "- Remastered 2011" suffix dropped, "(feat. X)" added or dropped, case changed, accents stripped,
  punctuation changed, a small typo, the duration off by a second or two.
* ``ambiguous``: no ISRC, and Spotify holds another song with the same title by another artist; the
  labelled id is the one by the local artist.
* ``not_on_spotify``: songs the emulator does not have (some carry an ISRC no catalogue uses, some
  share a title with a Spotify song by a different artist, as a trap for title-only matching).

Every labelled track comes from the first `SAMPLE_POOL_SIZE` catalogue tracks, so the default emulator
catalogue (and any catalogue at least that large, same seed) contains all of them.
"""

from __future__ import annotations

import argparse
import csv
import random
import string
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from spotify_pipeline.emulator import names
from spotify_pipeline.emulator.catalog import DEFAULT_SEED, SAMPLE_POOL_SIZE, Catalog, Track

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SAMPLE_FILE = "sample_catalog.csv"
LABELS_FILE = "sample_catalog_labels.csv"
SAMPLE_HEADER = ("title", "artist", "album", "duration_ms", "isrc", "release_year")
LABELS_HEADER = ("row", "title", "artist", "spotify_track_id", "case")
CASE_COUNTS = {"exact_isrc": 450, "drift": 300, "ambiguous": 100, "not_on_spotify": 150}


@dataclass(frozen=True)
class SampleSong:
    title: str
    artist: str
    album: str
    duration_ms: int
    isrc: str
    release_year: int
    spotify_track_id: str  # empty when the song is not on Spotify
    case: str


def build_sample(seed: int = DEFAULT_SEED) -> list[SampleSong]:
    """The sample songs for `seed`, shuffled so that cases interleave as in a real library."""
    catalog = Catalog(seed, SAMPLE_POOL_SIZE)
    rng = random.Random(f"{seed}:sample")
    pool = list(catalog.tracks)
    rng.shuffle(pool)

    primary_artists_by_title: dict[str, set[int]] = defaultdict(set)
    for track in catalog.tracks:
        primary_artists_by_title[track.base_title.casefold()].add(track.artist_indices[0])
    shared_titles = [t for t in pool if len(primary_artists_by_title[t.base_title.casefold()]) > 1]
    ambiguous = shared_titles[: CASE_COUNTS["ambiguous"]]
    taken = {t.index for t in ambiguous}
    rest = [t for t in pool if t.index not in taken]
    exact = rest[: CASE_COUNTS["exact_isrc"]]
    drifted = rest[CASE_COUNTS["exact_isrc"] : CASE_COUNTS["exact_isrc"] + CASE_COUNTS["drift"]]

    songs = [_exact_song(catalog, t, rng) for t in exact]
    songs += [_drifted_song(catalog, t, rng) for t in drifted]
    songs += [_ambiguous_song(catalog, t, rng) for t in ambiguous]
    songs += _songs_not_on_spotify(catalog, seed, CASE_COUNTS["not_on_spotify"])
    rng.shuffle(songs)
    return songs


def _artist_name(catalog: Catalog, track: Track) -> str:
    return catalog.artists[track.artist_indices[0]].name


def _album_of(catalog: Catalog, track: Track) -> tuple[str, int]:
    album = catalog.albums[track.album_index]
    return album.name, album.release_year


def _exact_song(catalog: Catalog, track: Track, rng: random.Random) -> SampleSong:
    album, year = _album_of(catalog, track)
    return SampleSong(
        title=track.name,
        artist=_artist_name(catalog, track),
        album=album if rng.random() < 0.8 else "",
        duration_ms=track.duration_ms,
        isrc=track.isrc,
        release_year=year,
        spotify_track_id=track.id,
        case="exact_isrc",
    )


def _drifted_song(catalog: Catalog, track: Track, rng: random.Random) -> SampleSong:
    album, year = _album_of(catalog, track)
    title, artist = track.name, _artist_name(catalog, track)
    drifts = [_drop_suffix, _feature_drift, _case_drift, _strip_accents, _punctuation_drift]
    if rng.random() < 0.4:  # typos are the rarer slip, and the hardest for a matcher
        drifts.append(_typo)
    applicable = [d for d in drifts if d(title, catalog, track, rng) != title] or [_case_drift]
    for drift in rng.sample(applicable, k=min(len(applicable), rng.choice((1, 1, 2)))):
        title = drift(title, catalog, track, rng)
    if rng.random() < 0.25:
        artist = _strip_accents_text(artist) if rng.random() < 0.5 else artist.lower()
    duration = track.duration_ms + (rng.choice((-1, 1)) * rng.randint(1_000, 2_000) if rng.random() < 0.7 else 0)
    return SampleSong(
        title=title,
        artist=artist,
        album=album if rng.random() < 0.6 else "",
        duration_ms=duration,
        isrc="",
        release_year=year,
        spotify_track_id=track.id,
        case="drift",
    )


def _ambiguous_song(catalog: Catalog, track: Track, rng: random.Random) -> SampleSong:
    album, year = _album_of(catalog, track)
    return SampleSong(
        title=track.name if rng.random() < 0.7 else track.base_title,
        artist=_artist_name(catalog, track),
        album=album if rng.random() < 0.5 else "",
        duration_ms=track.duration_ms + rng.choice((0, 0, -1_000, 1_000)),
        isrc="",
        release_year=year,
        spotify_track_id=track.id,
        case="ambiguous",
    )


def _songs_not_on_spotify(catalog: Catalog, seed: int, count: int) -> list[SampleSong]:
    rng = random.Random(f"{seed}:sample:absent")
    taken_artists = {a.name for a in Catalog(seed, catalog.size * 3).artists}  # wider than the pool on purpose
    songs = []
    for number in range(count):
        artist = names.artist_name(rng)
        while artist in taken_artists:
            artist = names.artist_name(rng)
        taken_artists.add(artist)
        # One in five borrows a real Spotify title, to catch matchers that ignore the artist.
        title = catalog.tracks[rng.randrange(catalog.size)].base_title if rng.random() < 0.2 else names.track_title(rng)
        year = rng.randint(1965, 2025)
        isrc = f"{rng.choice(('US', 'GB', 'DE', 'FR'))}Z{rng.randint(10, 99)}{year % 100:02d}{number:05d}" if rng.random() < 0.4 else ""
        songs.append(
            SampleSong(
                title=title,
                artist=artist,
                album=names.album_title(rng) if rng.random() < 0.7 else "",
                duration_ms=int(rng.triangular(105_000, 420_000, 205_000)),
                isrc=isrc,
                release_year=year,
                spotify_track_id="",
                case="not_on_spotify",
            )
        )
    return songs


# -- title drifts: each returns the title unchanged when it does not apply ----------------------------


def _drop_suffix(title: str, catalog: Catalog, track: Track, rng: random.Random) -> str:
    """A remaster suffix is dropped (the same recording); another version (live, acoustic, radio edit) is a
    different recording, which a local library still names, in its own style: "Title (Live)"."""
    if " - " not in title:
        return title
    base, suffix = title.split(" - ", 1)
    return base if suffix.casefold().startswith("remastered") else f"{base} ({suffix})"


def _feature_drift(title: str, catalog: Catalog, track: Track, rng: random.Random) -> str:
    if len(track.artist_indices) < 2:
        return title
    guest = catalog.artists[track.artist_indices[1]].name
    if "(feat." in title:
        return title.replace(f" (feat. {guest})", "")
    return f"{title} ({rng.choice(('feat.', 'ft.', 'featuring'))} {guest})"


def _case_drift(title: str, catalog: Catalog, track: Track, rng: random.Random) -> str:
    return rng.choice((title.lower(), title.upper(), string.capwords(title)))


def _strip_accents(title: str, catalog: Catalog, track: Track, rng: random.Random) -> str:
    return _strip_accents_text(title)


def _strip_accents_text(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _punctuation_drift(title: str, catalog: Catalog, track: Track, rng: random.Random) -> str:
    return title.replace("'", "").replace(" & ", " and ").replace(",", "")


def _typo(title: str, catalog: Catalog, track: Track, rng: random.Random) -> str:
    # Only inside words (letter before and after), where hand-typed titles slip.
    letters = [i for i in range(2, len(title) - 1) if title[i - 1 : i + 2].isalpha()]
    if len(title) < 6 or not letters:
        return title
    i = rng.choice(letters)
    if rng.random() < 0.5:  # swap two neighbouring letters
        return title[:i] + title[i + 1] + title[i] + title[i + 2 :]
    return title[:i] + title[i + 1 :]  # drop one letter


# -- files -----------------------------------------------------------------------------------------------


def write_sample(out_dir: Path = DATA_DIR, seed: int = DEFAULT_SEED) -> tuple[Path, Path]:
    """Write both CSV files (UTF-8, `\\n` line ends) and return their paths."""
    songs = build_sample(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    sample_path, labels_path = out_dir / SAMPLE_FILE, out_dir / LABELS_FILE
    with sample_path.open("w", newline="", encoding="utf-8") as sample_file, labels_path.open(
        "w", newline="", encoding="utf-8"
    ) as labels_file:
        sample_writer = csv.writer(sample_file, lineterminator="\n")
        labels_writer = csv.writer(labels_file, lineterminator="\n")
        sample_writer.writerow(SAMPLE_HEADER)
        labels_writer.writerow(LABELS_HEADER)
        for row, song in enumerate(songs, start=1):
            sample_writer.writerow([song.title, song.artist, song.album, song.duration_ms, song.isrc, song.release_year])
            labels_writer.writerow([row, song.title, song.artist, song.spotify_track_id, song.case])
    return sample_path, labels_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the sample local catalogue and its labels.")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    for path in write_sample(args.out_dir, args.seed):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
