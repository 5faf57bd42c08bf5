"""Deterministic text builders for items and user profiles.

The same builders serve the synthetic world, MovieLens and user logs, so an item or a profile reads alike
whatever its source, and the language model sees comparable texts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["item_text", "profile_text"]


def _join(words: Sequence[str]) -> str:
    words = [w for w in words if w]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def item_text(
    title: str,
    *,
    year: int | None = None,
    genres: Sequence[str] = (),
    description: str | None = None,
    tags: Sequence[str] = (),
) -> str:
    """Build an item's text: ``"Title (1995). Genres: a, b. Description. Tags: x, y."``.

    Raises:
        ValueError: ``title`` is empty.
    """
    title = title.strip()
    if not title:
        raise ValueError("item_text: expected a non-empty title, received ''")
    parts = [f"{title} ({year})." if year is not None else f"{title}."]
    if genres:
        parts.append(f"Genres: {', '.join(genres)}.")
    if description and description.strip():
        d = description.strip()
        parts.append(d if d.endswith(".") else d + ".")
    if tags:
        parts.append(f"Tags: {', '.join(tags)}.")
    return " ".join(parts)


def profile_text(
    *,
    demographics: Mapping[str, object] | None = None,
    likes: Sequence[str] = (),
    dislikes: Sequence[str] = (),
    history_titles: Sequence[str] = (),
) -> str:
    """Build a user's profile text from demographics, stated interests and recent history titles.

    Keys of ``demographics`` are rendered in sorted order (``"age: 34; occupation: engineer."``) so the text is
    deterministic. Returns ``"A user with no stated profile."`` when every part is empty, never an empty text.
    """
    parts: list[str] = []
    if demographics:
        items = [f"{k}: {v}" for k, v in sorted(demographics.items()) if v is not None and str(v).strip()]
        if items:
            parts.append("User " + "; ".join(items) + ".")
    if likes:
        parts.append(f"Likes {_join(list(likes))}.")
    if dislikes:
        parts.append(f"Dislikes {_join(list(dislikes))}.")
    if history_titles:
        parts.append(f"Recently watched: {'; '.join(history_titles)}.")
    return " ".join(parts) if parts else "A user with no stated profile."
