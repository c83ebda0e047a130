"""String normalisation for matching local songs to Spotify tracks (pure functions, no I/O).

Hand-kept libraries drift from Spotify's spelling in predictable ways; each function here undoes one of them
so that two spellings of one song compare equal before any fuzzy scoring:

* case, accents, letters Unicode does not decompose (``ø``, ``æ``, ``ß`` ...), apostrophes and punctuation,
  ``&`` spelled ``and``: `fold`;
* a library's sort form of an artist, ``Beatles, The``, and a leading "The": `fold_artist`;
* several artists in one field, in any order and with any separator (``A feat. B``, ``B, A``, ``A & B``):
  `split_artists`, `first_artist`;
* a track-number prefix, ``07 - Title``, ``07. Title``: `split_title`;
* featured artists in the title, ``(feat. X)``, ``ft. X``, ``featuring X``, ``(with X)``: `split_title`;
* version and edition suffixes, ``- Remastered 2011``, ``- Radio Edit``, ``(Live)``, ``[Deluxe]``:
  `split_title`. Only suffixes that *describe a release* are removed (they contain a word such as remastered,
  live, edit, deluxe, version, or a year): ``(Part 2)`` or ``- The Reprise of Nothing`` stay in the title.
  The suffix's *version tags* (live, acoustic, remix ...) and its other words (a remixer's name) are kept,
  so that a live take or another DJ's remix is never silently taken for the song; remasters, deluxe
  editions, mono/stereo, years and a DJ track's "Original Mix" carry no tag.

Search queries are built from the same folding (`search_words`): a word is only put in a query when the
song's own spelling cannot make it miss, since Spotify requires every query word to match.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz.distance import OSA

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
_STOPWORDS = frozenset("a an and the of in on at to for by with me my i im you your it is".split())

#: Words in a title suffix meaning "another recording or edit of the song", and the tag each stands for.
VERSION_WORDS: dict[str, str] = {
    "live": "live",
    "vivo": "live",  # "ao vivo", "en vivo"
    "directo": "live",  # "en directo"
    "acoustic": "acoustic",
    "unplugged": "acoustic",
    "stripped": "acoustic",
    "remix": "remix",
    "mix": "remix",
    "rmx": "remix",
    "dub": "remix",
    "vip": "remix",
    "rework": "remix",
    "bootleg": "remix",
    "mashup": "remix",
    "club": "remix",  # "Club Mix", "Original Club Mix"
    "edit": "edit",
    "radio": "edit",  # "Radio Mix", "Radio Version": cut for airplay
    "demo": "demo",
    "instrumental": "instrumental",
    "karaoke": "karaoke",
    "acapella": "acapella",
    "cappella": "acapella",
    "orchestral": "orchestral",
    "extended": "extended",
    "reprise": "reprise",
    "alternate": "alternate",
    "alternative": "alternate",
    "outtake": "alternate",
    "sped": "sped up",
    "slowed": "slowed",
    "nightcore": "sped up",
    "cover": "cover",
}
#: Words that make a suffix a release description without changing the recording.
NEUTRAL_SUFFIX_WORDS = frozenset(
    "remastered remaster remasters remastering version deluxe edition expanded anniversary mono stereo bonus "
    "single album original explicit clean edited digital recorded session sessions soundtrack ost "
    "motion picture".split()
)
#: "Original Mix" (and a mono or stereo mixdown) names the song itself on DJ and dance releases, not a remix.
_ORIGINAL_MIX_WORDS = ("original", "mono", "stereo")
_MIX_WORDS = frozenset({"mix", "mixed"})


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


#: A library's sort form of a band name: "Beatles, The" (and "Beatles (The)").
_TRAILING_ARTICLE = re.compile(r"\s*(?:,\s*|\(\s*)the\s*\)?\s*$", re.IGNORECASE)


def unsort_artist(name: str | None) -> str:
    """An artist's name in reading order: ``"Beatles, The"`` -> ``"The Beatles"``; any other name unchanged
    (``"Tyler, The Creator"`` ends in no article and stays as it is)."""
    text = (name or "").strip()
    match = _TRAILING_ARTICLE.search(text)
    if match is None or not text[: match.start()].strip():
        return text
    return f"The {text[: match.start()].strip()}"


def fold_artist(name: str | None) -> str:
    """`fold`, without a leading "the" or a library's trailing ", The" (``The Beatles`` == ``Beatles`` ==
    ``Beatles, The``)."""
    folded = fold(unsort_artist(name))
    return folded[4:] if folded.startswith("the ") else folded


def _is_word(word: str, known: str) -> bool:
    """Whether ``word`` is ``known`` up to one typo: any one edit in words of five letters or more, a swap of
    two adjacent letters in four-letter ones ("lvie"); shorter words must match exactly."""
    if word == known:
        return True
    if min(len(word), len(known)) < 4 or OSA.distance(word, known, score_cutoff=1) > 1:
        return False
    return len(known) >= 5 or sorted(word) == sorted(known)


def _version_word(word: str) -> str | None:
    """The version tag a suffix word stands for, forgiving one typo (`_is_word`)."""
    if word in VERSION_WORDS:
        return VERSION_WORDS[word]
    for known, tag in VERSION_WORDS.items():
        if _is_word(word, known):
            return tag
    return None


#: Neutral words long enough that one typo cannot make them another common word ("clean" is one from "clear").
_TYPO_TOLERANT_NEUTRAL_WORDS = tuple(w for w in sorted(NEUTRAL_SUFFIX_WORDS) if len(w) >= 6)


def _neutral_word(word: str) -> bool:
    """Whether a suffix word describes a release without changing the recording ("Remasterd" too)."""
    if word in NEUTRAL_SUFFIX_WORDS or _YEAR.match(word):
        return True
    return any(_is_word(word, known) for known in _TYPO_TOLERANT_NEUTRAL_WORDS)


def describe_suffix(suffix: str) -> frozenset[str] | None:
    """The version tags of a title suffix (``"Live at Wembley"`` -> ``{"live"}``, ``"Remastered 2011"`` -> ``{}``,
    ``"Original Mix"`` -> ``{}``), or None when the suffix does not describe a release at all (``"Part 2"``) and
    so belongs to the title."""
    words = fold(suffix).split()
    tagged = {word: tag for word in words if (tag := _version_word(word))}
    if tagged and set(tagged) <= _MIX_WORDS and any(_is_word(w, k) for w in words for k in _ORIGINAL_MIX_WORDS):
        return frozenset()  # "Original Mix": the song as first released
    if tagged or any(_neutral_word(w) for w in words):
        return frozenset(tagged.values())
    return None


def _version_names(suffix: str) -> tuple[str, ...]:
    """The words of a release suffix that name *which* version it is (a remixer, a venue, a language):
    ``"Oliver Heldens Remix"`` -> ``("oliver", "heldens")``, ``"Spanish Version"`` -> ``("spanish",)``;
    generic words and years are left out (``"Remastered 2011"`` -> ``()``)."""
    return tuple(
        w for w in fold(suffix).split()
        if w not in _STOPWORDS and not _version_word(w) and not _neutral_word(w)
    )


@dataclass(frozen=True)
class TitleParts:
    """A title taken apart.

    ``full``: the whole title folded; ``core``: folded, without track-number prefix, feature credits and
    release suffixes; ``core_raw``: the same core as typed (accents and case kept), what goes into a search
    query; ``featured``: folded featured artists; ``versions``: version tags of the removed suffixes;
    ``version_names``: the words of those suffixes that say which version it is (a remixer's name, "spanish"
    in "- Spanish Version").
    """

    full: str
    core: str
    core_raw: str
    featured: tuple[str, ...]
    versions: frozenset[str]
    version_names: tuple[str, ...] = ()


# "07 - Title", "07. Title", "7) Title", "07 Title": a track number a file name or tagger left in the title.
# A separator followed by a space is required, or a leading zero, so that "7 Rings", "1-2-3" and
# "22 Acacia Avenue" keep their numbers.
_TRACK_NUMBER = re.compile(r"^\s*(?:\d{1,3}\s*[-–—.)]\s+|0\d{1,2}\s+)(?=\S)")


def strip_track_number(title: str) -> str:
    """The title without a leading track number (``"07 - Hold Me"`` -> ``"Hold Me"``); never emptied."""
    stripped = _TRACK_NUMBER.sub("", title, count=1)
    return stripped if fold(stripped) else title


def split_title(title: str | None) -> TitleParts:
    """Take a title apart (see `TitleParts`).

    ``split_title("Hold Me (feat. Ava Hart) - Remastered 2011")`` has core ``"hold me"``, featured
    ``("ava hart",)`` and no version tags; ``split_title("Static - Live")`` has core ``"static"`` and versions
    ``{"live"}``; ``split_title("Song (Part 2)")`` keeps ``"song part 2"``; ``split_title("07 - Song")`` has
    core ``"song"``. A title never becomes empty.
    """
    raw = _SPACES.sub(" ", (title or "").strip())
    featured: list[str] = []
    versions: set[str] = set()
    names: list[str] = []

    def take_feat(match: re.Match[str]) -> str:
        featured.append(fold(match.group(1)))
        return ""

    core = _FEAT_BARE.sub(take_feat, _FEAT_BRACKETED.sub(take_feat, strip_track_number(raw)))
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
        names[:0] = _version_names(match.group(1))
        core = remaining
    core = _SPACES.sub(" ", core).strip()
    return TitleParts(
        full=fold(raw),
        core=fold(core) or fold(raw),
        core_raw=core if fold(core) else raw,
        featured=tuple(f for f in featured if f),
        versions=frozenset(versions),
        version_names=tuple(names),
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
# Wolves" is one band (a duo typed "A & B" is compared with all of the track's artists instead). Word
# separators need a name before them: "X Ambassadors" is one artist, "A x B" two.
_ARTIST_SPLIT = re.compile(
    r"\s*[,;/]\s*|\s+(?:feat\.?|ft\.?|featuring|with|x|vs\.?)\s+", re.IGNORECASE
)
_ARTIST_SPLIT_ALL = re.compile(
    r"\s*[,;/&+]\s*|\s+(?:feat\.?|ft\.?|featuring|with|x|vs\.?|and)\s+", re.IGNORECASE
)
_MULTI_ARTIST = re.compile(
    r"(?:[,;/&+]|\s(?:and|feat\.?|ft\.?|featuring|with|x|vs\.?)\s)", re.IGNORECASE
)


def first_artist(name: str | None) -> str:
    """The first artist of a local artist field as typed (``"Ava Hart feat. Theo Kim"`` -> ``"Ava Hart"``;
    ``"Beatles, The"`` -> ``"The Beatles"``)."""
    text = _SPACES.sub(" ", unsort_artist(name))
    return _ARTIST_SPLIT.split(text, maxsplit=1)[0].strip() if text else ""


def split_artists(name: str | None) -> tuple[str, ...]:
    """Every artist a local field may name, folded as `fold_artist` does, in the order typed:
    ``"Theo Kim & Ava Hart"`` -> ``("theo kim", "ava hart")``. "&" and "and" split too, so a band such as
    "Nina & the Wolves" comes out in pieces: compare the whole field as well (`artist_variants`)."""
    text = _SPACES.sub(" ", unsort_artist(name))
    names = (fold_artist(part) for part in _ARTIST_SPLIT_ALL.split(text) if part)
    return tuple(dict.fromkeys(n for n in names if n))


def looks_like_several_artists(name: str | None) -> bool:
    """Whether a local artist field may list several artists (it has ``&``, ``,``, ``feat.`` ...)."""
    return bool(name and _MULTI_ARTIST.search(unsort_artist(name)))


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


#: Words a library and Spotify spell differently often enough ("and" for "&", a leading or trailing "The")
#: that a query requiring them would miss the song.
_UNRELIABLE_QUERY_WORDS = frozenset({"and", "the"})
# A query word: letters, digits and underscores with the apostrophes inside it ("Don't" and "mr_slace" stay one
# word each, as Spotify reads them).
_QUERY_WORD = re.compile(r"\w+(?:['’]\w+)*")


def search_words(text: str | None) -> str:
    """The words of ``text`` that a Spotify search may require without missing another spelling of it: as
    typed (accents kept), without punctuation, "&" or the words "and" and "the" (``"Zion and Lennox"`` ->
    ``"Zion Lennox"``, ``"Chainsmokers, The"`` -> ``"Chainsmokers"``). Leaving a word out only widens a
    search, whose every word must match; the scoring then judges what it finds. Text made only of such
    words is kept whole."""
    words = _QUERY_WORD.findall(text or "")
    kept = [w for w in words if fold(w) and fold(w) not in _UNRELIABLE_QUERY_WORDS]
    return " ".join(kept or [w for w in words if fold(w)])




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
