from __future__ import annotations

import pytest
import sqlalchemy as sa

from spotify_pipeline.warehouse.bulk import BulkLoadError, bulk_upsert


def _artists(engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT artist_id, name, genres, followers, updated_at FROM spotify_artists"))
        return {r[0]: tuple(r[1:]) for r in rows}


def _row(artist_id: str, name: str, **extra) -> dict:
    return {"artist_id": artist_id, "name": name, "genres": extra.get("genres"), "followers": extra.get("followers")}


def test_inserts_then_updates_only_changed_rows(engine):
    assert bulk_upsert(engine, "spotify_artists", [_row("a1", "One"), _row("a2", "Two")], key=["artist_id"],
                       touch=["updated_at"]) == 2
    with engine.begin() as conn:  # make "unchanged" observable: backdate every row
        conn.execute(sa.text("UPDATE spotify_artists SET updated_at = '2000-01-01 00:00:00'"))
    bulk_upsert(engine, "spotify_artists", [_row("a1", "One"), _row("a2", "Two renamed")], key=["artist_id"],
                touch=["updated_at"])
    artists = _artists(engine)
    assert artists["a1"][0] == "One"
    assert str(artists["a1"][3]).startswith("2000-01-01")  # untouched: nothing changed
    assert artists["a2"][0] == "Two renamed"
    assert not str(artists["a2"][3]).startswith("2000-01-01")


def test_last_row_wins_when_a_key_repeats_within_one_call(engine):
    bulk_upsert(engine, "spotify_artists", [_row("a1", "first"), _row("a1", "second"), _row("a1", "third")],
                key=["artist_id"])
    assert _artists(engine)["a1"][0] == "third"


def test_values_round_trip_exactly(engine):
    awkward = "tab\there\nnew line \\ back\\slash \\N 'quote' \"dq\" émoji 🎵 日本"
    bulk_upsert(engine, "spotify_artists", [_row("a1", awkward, genres=["indie", "pop"], followers=None)],
                key=["artist_id"])
    name, genres, followers, _ = _artists(engine)["a1"]
    assert name == awkward
    assert (genres if isinstance(genres, list) else __import__("json").loads(genres)) == ["indie", "pop"]
    assert followers is None


def test_a_bad_row_loads_nothing(engine):
    bulk_upsert(engine, "spotify_artists", [_row("keep", "Kept")], key=["artist_id"])
    rows = [_row(f"a{i}", f"n{i}") for i in range(100)] + [_row("bad", None)] + [_row("a200", "late")]
    with pytest.raises(sa.exc.IntegrityError):
        bulk_upsert(engine, "spotify_artists", rows, key=["artist_id"])
    assert set(_artists(engine)) == {"keep"}


def test_joins_the_callers_transaction(engine):
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            bulk_upsert(conn, "spotify_artists", [_row("a1", "One")], key=["artist_id"])
            raise RuntimeError("caller fails after the load")
    assert _artists(engine) == {}


def test_rejects_identifiers_that_are_not_plain_names(engine):
    with pytest.raises(BulkLoadError, match="not a plain SQL identifier"):
        bulk_upsert(engine, "spotify_artists", [{"artist_id": "x", "name; DROP TABLE songs": "y"}],
                    key=["artist_id"])
    with pytest.raises(BulkLoadError, match="same columns"):
        bulk_upsert(engine, "spotify_artists", [_row("a1", "One"), {"artist_id": "a2"}], key=["artist_id"])


def test_empty_input_is_a_no_op(engine):
    assert bulk_upsert(engine, "spotify_artists", [], key=["artist_id"]) == 0
