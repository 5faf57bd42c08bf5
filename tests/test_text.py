"""Item and profile text builders: exact format, determinism, empty parts, bad input."""

from __future__ import annotations

import pytest

from recgym.encoders import item_text, profile_text


def test_item_text_full() -> None:
    text = item_text("  Star Voyage ", year=1995, genres=["sci-fi", "adventure"],
                     description="A crew crosses the galaxy", tags=["space", "ships"])
    assert text == "Star Voyage (1995). Genres: sci-fi, adventure. A crew crosses the galaxy. Tags: space, ships."


def test_item_text_minimal_and_no_double_period() -> None:
    assert item_text("Alone") == "Alone."
    assert item_text("Alone", description="Ends here.") == "Alone. Ends here."
    assert item_text("Alone", description="   ", genres=()) == "Alone."
    assert item_text("Alone", year=0) == "Alone (0)."  # 0 is a year, not "missing"


@pytest.mark.parametrize("title", ["", "   "])
def test_item_text_rejects_empty_title(title: str) -> None:
    with pytest.raises(ValueError, match=r"item_text: expected a non-empty title"):
        item_text(title, year=2000)


def test_profile_text_full_and_sorted() -> None:
    text = profile_text(
        demographics={"occupation": "engineer", "age": 34, "zip": None, "gender": " "},
        likes=["space operas", "jazz", "cooking shows"],
        dislikes=["horror"],
        history_titles=["Star Voyage", "Night City"],
    )
    assert text == ("User age: 34; occupation: engineer. Likes space operas, jazz and cooking shows. "
                    "Dislikes horror. Recently watched: Star Voyage; Night City.")


def test_profile_text_deterministic_over_dict_order() -> None:
    a = profile_text(demographics={"b": 2, "a": 1}, likes=["x", "y"])
    b = profile_text(demographics={"a": 1, "b": 2}, likes=("x", "y"))
    assert a == b == "User a: 1; b: 2. Likes x and y."


def test_profile_text_empty_parts() -> None:
    assert profile_text() == "A user with no stated profile."
    assert profile_text(demographics={"age": None}) == "A user with no stated profile."
    assert profile_text(likes=["jazz"]) == "Likes jazz."
    assert profile_text(likes=["", "jazz"]) == "Likes jazz."
