"""String normalisation for matching local songs to Spotify tracks (pure functions, no I/O).

Hand-kept libraries drift from Spotify's spelling in predictable ways; each function here undoes one of them
so that two spellings of one song compare equal before any fuzzy scoring:

* case, accents, letters Unicode does not decompose (``ø``, ``æ``, ``ß`` ...), apostrophes and punctuation,
  ``&`` spelled ``and``: `fold`;
* featured artists in the title, ``(feat. X)``, ``ft. X``, ``featuring X``, ``(with X)``: `split_title`;
* version and edition suffixes, ``- Remastered 2011``, ``- Radio Edit``, ``(Live)``, ``[Deluxe]``:
  `split_title`. Only suffixes that *describe a release* are removed (they contain a word such as remastered,
  live, edit, deluxe, version, or a year): ``(Part 2)`` or ``- The Reprise of Nothing`` stay in the title.
  The suffix's *version tags* (live, acoustic, remix ...) are kept, so that a live take is never silently
  taken for the studio song; remasters, deluxe editions, mono/stereo and years carry no tag.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from spotify_pipeline.text import ASCII_LETTERS

_APOSTROPHES = re.compile(r"['’‘`´]")
_AMPERSAND = re.compile(r"\s*(?:&|\+)\s*")
_NON_WORD = re.compile(r"[\W_]+")
_SPACES = re.compile(r"\s+")

# "(feat. X)", "[ft. X]", "(featuring X)", "(with X)" anywhere; "feat. X" / "ft. X" unbracketed up to the end,
# a " - " suffix or a bracket.
_FEAT_BRACKETED = re.compile(r"\s*[(\[]\s*(?:feat\.?|ft\.?|featuring|with)\s+([^)\]]*)[)\]]", re.IGNORECASE)
_FEAT_BARE = re.compile(r"\s+(?:feat\.?|ft\.|featuring)\s+(.+?)(?=\s+[-–—]\s+|\s*[(\[]|$)", re.IGNORECASE)
_DASH_SUFFIX = re.compile(r"\s+[-–—]\s+([^-–—]+)$")
_BRACKET_SUFFIX = re.compile(r"\s*[(\[]([^()\[\]]*)[)\]]\s*$")
_YEAR = re.compile(r"^(?:19|20)\d\d$")

#: Words in a title suffix meaning "another recording or edit of the song", and the tag each stands for.
VERSION_WORDS: dict[str, str] = {
    "live": "live",
    "acoustic": "acoustic",
    "unplugged": "acoustic",
    "remix": "remix",
    "mix": "remix",
    "rmx": "remix",
    "edit": "edit",
    "demo": "demo",
    "instrumental": "instrumental",
    "karaoke": "karaoke",
    "acapella": "acapella",
    "cappella": "acapella",
    "orchestral": "orchestral",
    "extended": "extended",
    "reprise": "reprise",
    "sped": "sped up",
    "slowed": "slowed",
    "cover": "cover",
}
#: Words that make a suffix a release description without changing the recording.
NEUTRAL_SUFFIX_WORDS = frozenset(
    "remastered remaster remasters remastering version deluxe edition expanded anniversary mono stereo bonus "
    "single album original explicit clean digital recorded rerecorded session sessions soundtrack ost "
    "motion picture".split()
)


def fold(text: str | None) -> str:
    """Lower-case words separated by single spaces, with case, accents, apostrophes and punctuation gone and
    ``&``/``+`` spelled ``and``: ``fold("Don't Stop & Gö!") == "dont stop and go"``."""
    if not text:
        return ""
    text = text.translate(ASCII_LETTERS)
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    stripped = _APOSTROPHES.sub("", stripped.casefold())
    stripped = _AMPERSAND.sub(" and ", stripped)
    return _SPACES.sub(" ", _NON_WORD.sub(" ", stripped)).strip()


def fold_artist(name: str | None) -> str:
    """`fold`, without a leading "the" (``The Beatles`` == ``Beatles``)."""
    folded = fold(name)
    return folded[4:] if folded.startswith("the ") else folded


def _version_word(word: str) -> str | None:
    """The version tag a suffix word stands for, forgiving one typo in words of five letters or more."""
    if word in VERSION_WORDS:
        return VERSION_WORDS[word]
    if len(word) >= 5:
        for known, tag in VERSION_WORDS.items():
            if len(known) >= 5 and Levenshtein.distance(word, known, score_cutoff=1) <= 1:
                return tag
    return None


def describe_suffix(suffix: str) -> frozenset[str] | None:
    """The version tags of a title suffix (``"Live at Wembley"`` -> ``{"live"}``, ``"Remastered 2011"`` -> ``{}``),
    or None when the suffix does not describe a release at all (``"Part 2"``) and so belongs to the title."""
    words = fold(suffix).split()
    tags = {tag for tag in map(_version_word, words) if tag}
    if tags or any(w in NEUTRAL_SUFFIX_WORDS or _YEAR.match(w) for w in words):
        return frozenset(tags)
    return None


@dataclass(frozen=True)
class TitleParts:
    """A title taken apart.

    ``full``: the whole title folded; ``core``: folded, without feature credits and release suffixes;
    ``core_raw``: the same core as typed (accents and case kept), what goes into a search query;
    ``featured``: folded featured artists; ``versions``: version tags of the removed suffixes.
    """

    full: str
    core: str
    core_raw: str
    featured: tuple[str, ...]
    versions: frozenset[str]


def split_title(title: str | None) -> TitleParts:
    """Take a title apart (see `TitleParts`).

    ``split_title("Hold Me (feat. Ava Hart) - Remastered 2011")`` has core ``"hold me"``, featured
    ``("ava hart",)`` and no version tags; ``split_title("Static - Live")`` has core ``"static"`` and versions
    ``{"live"}``; ``split_title("Song (Part 2)")`` keeps ``"song part 2"``. A title never becomes empty.
    """
    raw = _SPACES.sub(" ", (title or "").strip())
    featured: list[str] = []
    versions: set[str] = set()

    def take_feat(match: re.Match[str]) -> str:
        featured.append(fold(match.group(1)))
        return ""

    core = _FEAT_BARE.sub(take_feat, _FEAT_BRACKETED.sub(take_feat, raw))
    # Peel release suffixes from the right: "Song (Live) - Remastered 2011", "Song [Deluxe] (Live)".
    while True:
        match = _DASH_SUFFIX.search(core) or _BRACKET_SUFFIX.search(core)
        if match is None:
            break
        remaining = core[: match.start()].strip()
        tags = describe_suffix(match.group(1))
        if tags is None or not fold(remaining):
            break
        versions |= tags
        core = remaining
    core = _SPACES.sub(" ", core).strip()
    return TitleParts(
        full=fold(raw),
        core=fold(core) or fold(raw),
        core_raw=core if fold(core) else raw,
        featured=tuple(f for f in featured if f),
        versions=frozenset(versions),
    )


_BRACKET_GROUP = re.compile(r"\s*[(\[]([^()\[\]]*)[)\]]")


def strip_credits(title: str | None, artist_names: Iterable[str]) -> str:
    """The title without bracketed groups that name one of ``artist_names``: ``"Song (fat. Ava Hart)"`` with
    ``["Ava Hart"]`` -> ``"Song"``. Catches feature credits however they are spelled (``fat.``, ``w/``, ``con``).
    """
    names = [n for n in (fold(a) for a in artist_names) if len(n) >= 3]
    if not title or not names:
        return title or ""

    def drop(match: re.Match[str]) -> str:
        group = f" {fold(match.group(1))} "
        return "" if any(f" {n} " in group for n in names) else match.group(0)

    stripped = _SPACES.sub(" ", _BRACKET_GROUP.sub(drop, title)).strip()
    return stripped if fold(stripped) else title


# Separators of several artists in one local artist field. "&" and "and" are not among them: "Nina & the
# Wolves" is one band (a duo typed "A & B" is compared with all of the track's artists instead).
_ARTIST_SPLIT = re.compile(r"\s*(?:,|;|/|\bfeat\.?|\bft\.?|\bfeaturing\b|\bwith\b|\bx\b|\bvs\.?)\s+", re.IGNORECASE)
_MULTI_ARTIST = re.compile(r"(?:,|;|/|&|\+|\band\b|\bfeat\.?\s|\bft\.?\s|\bfeaturing\b|\bwith\b|\bx\b|\bvs\.?\s)", re.IGNORECASE)


def first_artist(name: str | None) -> str:
    """The first artist of a local artist field as typed (``"Ava Hart feat. Theo Kim"`` -> ``"Ava Hart"``)."""
    text = _SPACES.sub(" ", (name or "").strip())
    return _ARTIST_SPLIT.split(text, maxsplit=1)[0].strip() if text else ""


def looks_like_several_artists(name: str | None) -> bool:
    """Whether a local artist field may list several artists (it has ``&``, ``,``, ``feat.`` ...)."""
    return bool(name and _MULTI_ARTIST.search(name))


def artist_variants(name: str | None) -> tuple[str, ...]:
    """Folded spellings a local artist field stands for: the whole field and, when it lists several artists,
    its first one (``"Ava Hart feat. Theo Kim"`` -> ``("ava hart feat theo kim", "ava hart")``)."""
    whole = fold_artist(name)
    if not whole:
        return ()
    first = fold_artist(first_artist(name))
    return (whole, first) if first and first != whole else (whole,)


_QUERY_UNSAFE = re.compile(r'["\\]')


def query_value(text: str | None) -> str:
    """Text safe inside the double quotes of a Spotify search filter (no quotes or backslashes, single spaces)."""
    return _SPACES.sub(" ", _QUERY_UNSAFE.sub(" ", text or "")).strip()


_STOPWORDS = frozenset("a an and the of in on at to for by with me my i im you your it is".split())


def significant_tokens(folded: str, min_length: int = 4) -> list[str]:
    """The words of a folded title that identify it best: no stopwords, none shorter than ``min_length``
    (a typo in a short word changes it beyond what a search engine forgives)."""
    return [t for t in folded.split() if t not in _STOPWORDS and len(t) >= min_length]


def normalize_isrc(isrc: str | None) -> str | None:
    """Upper-case ISRC without separators (``us-abc-11-00001`` -> ``USABC1100001``); None unless 12 characters
    of the form CC XXX YY NNNNN."""
    if not isrc:
        return None
    code = re.sub(r"[\s\-_.]", "", isrc).upper()
    return code if re.fullmatch(r"[A-Z]{2}[A-Z0-9]{3}\d{7}", code) else None
