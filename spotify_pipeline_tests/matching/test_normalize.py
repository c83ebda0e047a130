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
    significant_tokens,
    split_title,
    strip_credits,
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


def test_fold_artist_drops_a_leading_the_only() -> None:
    assert fold_artist("The Burning Letters") == fold_artist("burning letters") == "burning letters"
    assert fold_artist("Theo Kim") == "theo kim"
    assert fold_artist("Nina & the Wolves") == "nina and the wolves"


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
