"""Normalisation rules: each drift a hand-kept library shows must fold away, and nothing more."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spotify_pipeline.matching.normalize import (
    artist_variants,
    describe_suffix,
    first_artist,
    fold,
    fold_artist,
    looks_like_several_artists,
    normalize_isrc,
    query_value,
    search_words,
    significant_tokens,
    split_artists,
    split_title,
    strip_credits,
    strip_track_number,
    unsort_artist,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hold Me Closer", "hold me closer"),
        ("HOLD ME CLOSER", "hold me closer"),
        ("Amélie Lefèvre", "amelie lefevre"),  # accents
        ("Søren Sørensen", "soren sorensen"),  # letters NFKD does not decompose
        ("Björn Ibáñez", "bjorn ibanez"),
        ("Straße", "strasse"),
        ("Don't Wait", "dont wait"),  # apostrophes vanish instead of splitting the word
        ("Don’t Wait", "dont wait"),  # typographic apostrophe
        ("River & Jungle", "river and jungle"),  # & == and
        ("River and Jungle", "river and jungle"),
        ("Golden Heart, Golden Roses", "golden heart golden roses"),  # punctuation
        ("  spaced   out  ", "spaced out"),
        ("snake_case-title!", "snake case title"),
        ("", ""),
        (None, ""),
    ],
)
def test_fold(text: str | None, expected: str) -> None:
    assert fold(text) == expected


def test_fold_artist_drops_a_leading_the_and_reads_a_sort_form() -> None:
    assert fold_artist("The Burning Letters") == fold_artist("burning letters") == "burning letters"
    assert fold_artist("Burning Letters, The") == fold_artist("Burning Letters (The)") == "burning letters"
    assert fold_artist("Theo Kim") == "theo kim"
    assert fold_artist("Nina & the Wolves") == "nina and the wolves"


def test_unsort_artist() -> None:
    assert unsort_artist("Beatles, The") == "The Beatles"
    assert unsort_artist("Beatles,The ") == "The Beatles"
    assert unsort_artist("Tyler, The Creator") == "Tyler, The Creator"  # no trailing article: a name
    assert unsort_artist(", The") == ", The"
    assert unsort_artist(None) == ""


@pytest.mark.parametrize(
    ("title", "core", "featured", "versions"),
    [
        ("Hold Me Home - Remastered 2011", "hold me home", (), set()),
        ("Hold Me Home - 2011 Remaster", "hold me home", (), set()),
        ("Hold Me Home (Remastered 2009)", "hold me home", (), set()),
        ("Hold Me Home (feat. Ava Hart)", "hold me home", ("ava hart",), set()),
        ("Hold Me Home (ft. Ava Hart)", "hold me home", ("ava hart",), set()),
        ("Hold Me Home [featuring Ava Hart]", "hold me home", ("ava hart",), set()),
        ("Hold Me Home feat. Ava Hart", "hold me home", ("ava hart",), set()),
        ("Hold Me Home (with Ava Hart)", "hold me home", ("ava hart",), set()),
        ("Hold Me Home (feat. Ava Hart) - Remastered 2011", "hold me home", ("ava hart",), set()),
        ("Hold Me Home feat. Ava Hart - Live", "hold me home", ("ava hart",), {"live"}),
        ("Static - Live", "static", (), {"live"}),
        ("Static (Live)", "static", (), {"live"}),
        ("Static - Live at Wembley 1986", "static", (), {"live"}),
        ("Static [Deluxe]", "static", (), set()),
        ("Static (Live) [Deluxe Edition]", "static", (), {"live"}),
        ("Static - Radio Edit", "static", (), {"edit"}),
        ("Static - Acoustic", "static", (), {"acoustic"}),
        ("STATIC - ACOUSTC", "static", (), {"acoustic"}),  # a typo in the suffix keeps its meaning
        ("Static (Club Remix)", "static", (), {"remix"}),
        ("Static - Mono", "static", (), set()),
        ("Static - Original Mix", "static", (), set()),  # a dance release's name for the song itself
        ("Static - Origianl Mix", "static", (), set()),
        ("Static - Original Club Mix", "static", (), {"remix"}),
        ("Static - Remasterd 2011", "static", (), set()),  # a typo in a release description too
        ("Static (Lvie)", "static", (), {"live"}),  # a swap even in a four-letter word
        ("Static - Ao Vivo", "static", (), {"live"}),
        ("Static - Tiësto Remix", "static", (), {"remix"}),
        ("Static - Radio Mix", "static", (), {"edit", "remix"}),
        ("Static - Alternate Take", "static", (), {"alternate"}),
        ("07 - Static", "static", (), set()),  # track-number prefixes
        ("07. Static (Live)", "static", (), {"live"}),
        ("7 Rings", "7 rings", (), set()),  # a number that belongs to the title
        ("1-2-3", "1 2 3", (), set()),
        # Suffixes that do not describe a release are part of the title.
        ("Static (Part 2)", "static part 2", (), set()),
        ("Static - The Other Side", "static the other side", (), set()),
        # A title is never emptied.
        ("(Live)", "live", (), set()),
        ("Remastered 2011", "remastered 2011", (), set()),
    ],
)
def test_split_title(title: str, core: str, featured: tuple[str, ...], versions: set[str]) -> None:
    parts = split_title(title)
    assert parts.core == core
    assert parts.featured == featured
    assert parts.versions == versions
    assert parts.full == fold(title)
    assert fold(parts.core_raw) == core


def test_split_title_keeps_the_typed_core_for_queries() -> None:
    assert split_title("Hôtel Café (feat. Zoë Kim) - Remastered 2011").core_raw == "Hôtel Café"
    assert split_title("07 - Hôtel Café").core_raw == "Hôtel Café"


def test_split_title_keeps_the_names_that_say_which_version() -> None:
    assert split_title("Static (feat. Ava Hart) - Oliver Heldens Remix").version_names == ("oliver", "heldens")
    assert split_title("Static - Live at Wembley 1986").version_names == ("wembley",)
    assert split_title("Static - Spanish Version").version_names == ("spanish",)
    assert split_title("Static - Remastered 2011").version_names == ()


@pytest.mark.parametrize(
    ("title", "expected"),
    [("07 - Song", "Song"), ("07. Song", "Song"), ("7) Song", "Song"), ("07 Song", "Song"), ("7 Rings", "7 Rings"),
     ("1-2-3", "1-2-3"), ("22 Acacia Avenue", "22 Acacia Avenue"), ("07 - ", "07 - "), ("1999", "1999")],
)
def test_strip_track_number(title: str, expected: str) -> None:
    assert strip_track_number(title) == expected


def test_describe_suffix() -> None:
    assert describe_suffix("Remastered 2011") == frozenset()
    assert describe_suffix("2011") == frozenset()
    assert describe_suffix("Live at Wembley") == {"live"}
    assert describe_suffix("Part 2") is None
    assert describe_suffix("Reprise") == {"reprise"}


def test_strip_credits_removes_brackets_naming_the_tracks_other_artists() -> None:
    names = ["Bruno Oyelaran"]
    assert strip_credits("Chase Me Again (fat. Bruno Oyelaran) (feat. Bruno Oyelaran)", names) == "Chase Me Again"
    assert strip_credits("Chase Me Again (Bruno's Song)", names) == "Chase Me Again (Bruno's Song)"
    assert strip_credits("Chase Me Again (Live)", names) == "Chase Me Again (Live)"
    assert strip_credits("(Bruno Oyelaran)", names) == "(Bruno Oyelaran)"  # never emptied


def test_artists() -> None:
    assert first_artist("Ava Hart feat. Theo Kim") == "Ava Hart"
    assert first_artist("Ava Hart, Theo Kim") == "Ava Hart"
    assert first_artist("Nina & the Wolves") == "Nina & the Wolves"  # & is not split: could be one band
    assert artist_variants("Ava Hart feat. Theo Kim") == ("ava hart feat theo kim", "ava hart")
    assert artist_variants("The Wild Saints") == ("wild saints",)
    assert artist_variants("") == ()
    assert looks_like_several_artists("Ava Hart & Theo Kim")
    assert looks_like_several_artists("Ava Hart feat. Theo Kim")
    assert not looks_like_several_artists("Ava Hart")
    assert not looks_like_several_artists("Xander Hart")  # "x" only as a separate word
    assert not looks_like_several_artists("X Ambassadors")  # ... between two names
    assert first_artist("X Ambassadors") == "X Ambassadors"
    assert first_artist("Ava Hart x Theo Kim") == "Ava Hart"
    assert first_artist("Ava Hart with Theo Kim") == "Ava Hart"
    assert first_artist("Wolves, The") == "The Wolves"
    assert not looks_like_several_artists("Wolves, The")


def test_split_artists_in_the_order_typed() -> None:
    assert split_artists("Theo Kim & Ava Hart") == ("theo kim", "ava hart")
    assert split_artists("Ava Hart feat. Theo Kim and Kim Sato") == ("ava hart", "theo kim", "kim sato")
    assert split_artists("Theo Kim, Ava Hart / The Wolves") == ("theo kim", "ava hart", "wolves")
    assert split_artists("Wolves, The") == ("wolves",)
    assert split_artists("") == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Zion and Lennox", "Zion Lennox"), ("Chainsmokers, The", "Chainsmokers"), ("Don't Stop & Go!", "Don't Stop Go"),
     ("Hôtel Café", "Hôtel Café"), ("mr_slace", "mr_slace"), ("S.A.X.", "S A X"), ("The The", "The The"), ("", "")],
)
def test_search_words(text: str, expected: str) -> None:
    assert search_words(text) == expected


def test_query_value_and_significant_tokens() -> None:
    assert query_value('Say "Hello" \\ Goodbye') == "Say Hello Goodbye"
    assert significant_tokens("sae me now") == []  # short words may hide a typo a search cannot forgive
    assert significant_tokens("highway and harbor") == ["highway", "harbor"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("USRC17607839", "USRC17607839"), ("us-rc1-76-07839", "USRC17607839"), (" gbaye 99 00001 ", "GBAYE9900001"),
     ("", None), (None, None), ("USRC1760783", None), ("not an isrc", None), ("12RC17607839", None)],
)
def test_normalize_isrc(raw: str | None, expected: str | None) -> None:
    assert normalize_isrc(raw) == expected


@given(st.text(max_size=60))
def test_fold_is_idempotent_and_clean(text: str) -> None:
    folded = fold(text)
    assert fold(folded) == folded
    assert folded == folded.strip() and "  " not in folded


@given(st.text(max_size=60))
def test_split_title_never_raises_and_core_is_folded(text: str) -> None:
    parts = split_title(text)
    assert fold(parts.core) == parts.core
    assert bool(parts.core) == bool(fold(text))
