"""Loaders for MovieLens 100K and MovieLens latest-small (2018) into :class:`InteractionData`.

Positives (documented threshold): ml-100k ``rating >= 4`` (of 1–5); ml-latest-small ``rating >= 4.0`` (of
0.5–5.0). Item text: title, year, genres (+ up to 10 most frequent user tags for latest-small; tags are item
metadata and are used whatever their timestamp). Profile text: ml-100k demographics (age, gender,
occupation) plus the first liked titles of the *train* history; latest-small has no demographics, so its
profiles come from train history only (built by :func:`recgym.envs.datasets.split.profile_texts`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.encoders.text import item_text
from recgym.envs.datasets.logs import InteractionData, SchemaError

__all__ = ["load_movielens_100k", "load_ml_latest_small", "ML100K_GENRES", "split_title_year"]

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
_YEAR = re.compile(r"\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_GENDER = {"M": "male", "F": "female"}
MAX_TAGS = 10


def split_title_year(raw: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` → ``("Toy Story", 1995)``; a title without a year keeps ``None``."""
    raw = raw.strip()
    m = _YEAR.search(raw)
    if not m:
        return raw, None
    title = raw[: m.start()].strip()
    return (title or raw), int(m.group(1))


def _folder(data_dir: str | os.PathLike[str], sub: str, required: tuple[str, ...]) -> Path:
    root = Path(data_dir)
    for cand in (root / sub, root):
        if all((cand / f).is_file() for f in required):
            return cand
    raise FileNotFoundError(
        f"{sub}: expected files {list(required)} in {root / sub} or {root}, received none there; "
        f"pass data_dir=, set RECGYM_DATA, or run `recgym data download {sub}`"
    )


def load_movielens_100k(data_dir: str | os.PathLike[str]) -> InteractionData:
    """Load MovieLens 100K from ``data_dir/ml-100k`` (or ``data_dir`` itself).

    Returns 943 users, 1,682 items and 100,000 interactions (ratings 1–5, Unix timestamps).
    """
    folder = _folder(data_dir, "ml-100k", ("u.data", "u.item", "u.user"))
    ratings = pd.read_csv(folder / "u.data", sep="\t", header=None, names=["u", "i", "r", "t"], dtype=np.int64)
    item_cols = ["item_id", "title", "release", "video", "url", *[f"g{k}" for k in range(19)]]
    items = pd.read_csv(folder / "u.item", sep="|", header=None, names=item_cols, encoding="latin-1",
                        dtype=str, keep_default_na=False)
    users = pd.read_csv(folder / "u.user", sep="|", header=None,
                        names=["user_id", "age", "gender", "occupation", "zip"], dtype=str, keep_default_na=False)
    if len(items.columns) != 24 or items["g18"].eq("").any():
        raise SchemaError(f"{folder / 'u.item'}: expected 24 '|'-separated fields per line, received a short line")
    flags = items[[f"g{k}" for k in range(19)]].to_numpy(dtype=np.int64)
    titles, years, genres, texts = [], [], [], []
    for k in range(len(items)):
        title, year = split_title_year(items["title"].iloc[k])
        if year is None and items["release"].iloc[k]:
            year = int(items["release"].iloc[k][-4:])
        gs = tuple(ML100K_GENRES[g] for g in np.flatnonzero(flags[k]) if g != 0)
        titles.append(title)
        years.append(year)
        genres.append(gs)
        texts.append(item_text(title, year=year, genres=gs))
    item_ids = items["item_id"].astype(np.int64).to_numpy()
    user_ids = users["user_id"].astype(np.int64).to_numpy()
    item_index = pd.Series(np.arange(len(item_ids)), index=item_ids)
    user_index = pd.Series(np.arange(len(user_ids)), index=user_ids)
    rating = ratings["r"].to_numpy(np.float32)
    inter = pd.DataFrame({
        "user": user_index.loc[ratings["u"]].to_numpy(np.int64), "item": item_index.loc[ratings["i"]].to_numpy(np.int64),
        "rating": rating, "weight": np.ones(len(ratings), np.float32), "timestamp": ratings["t"].to_numpy(np.int64),
        "positive": rating >= 4,
    })
    users_df = pd.DataFrame({
        "user_id": pd.Series(user_ids, dtype=object), "age": users["age"].astype(int),
        "gender": users["gender"].map(_GENDER).fillna(users["gender"]), "occupation": users["occupation"],
    })
    items_df = pd.DataFrame({
        "item_id": pd.Series(item_ids, dtype=object), "title": titles, "year": pd.array(years, dtype="Int64"),
        "genres": genres, "text": texts,
    })
    return InteractionData(
        name="movielens-100k", users=users_df, items=items_df, interactions=inter, genre_names=ML100K_GENRES,
        has_timestamps=True, positive_rule="rating >= 4 (of 1-5)", profile_fields=("age", "gender", "occupation"),
        history_titles_in_profile=5, rating_range=(1.0, 5.0), source={"folder": str(folder.resolve())},
    )


def load_ml_latest_small(data_dir: str | os.PathLike[str]) -> InteractionData:
    """Load MovieLens latest-small (2018) from ``data_dir/ml-latest-small`` (or ``data_dir`` itself).

    Returns 610 users, 9,742 items (18 never rated) and 100,836 interactions (ratings 0.5–5.0).
    """
    folder = _folder(data_dir, "ml-latest-small", ("ratings.csv", "movies.csv", "tags.csv"))
    ratings = pd.read_csv(folder / "ratings.csv", dtype={"userId": np.int64, "movieId": np.int64,
                                                         "rating": np.float32, "timestamp": np.int64})
    movies = pd.read_csv(folder / "movies.csv", dtype={"movieId": np.int64, "title": str, "genres": str},
                         keep_default_na=False)
    tags = pd.read_csv(folder / "tags.csv", dtype={"movieId": np.int64, "tag": str}, keep_default_na=False)
    tags["tag"] = tags["tag"].str.strip()
    tags = tags[tags["tag"] != ""]
    counts = tags.groupby(["movieId", "tag"]).size().reset_index(name="n")
    counts = counts.sort_values(["movieId", "n", "tag"], ascending=[True, False, True])
    top_tags = counts.groupby("movieId")["tag"].apply(lambda s: tuple(s.iloc[:MAX_TAGS])).to_dict()
    titles, years, genres, texts = [], [], [], []
    for mid, raw, gstr in zip(movies["movieId"], movies["title"], movies["genres"], strict=True):
        title, year = split_title_year(raw)
        gs = tuple(g for g in gstr.split("|") if g and g != "(no genres listed)")
        titles.append(title)
        years.append(year)
        genres.append(gs)
        texts.append(item_text(title, year=year, genres=gs, tags=top_tags.get(int(mid), ())))
    item_ids = movies["movieId"].to_numpy(np.int64)
    user_ids = np.sort(ratings["userId"].unique())
    item_index = pd.Series(np.arange(len(item_ids)), index=item_ids)
    user_index = pd.Series(np.arange(len(user_ids)), index=user_ids)
    unknown = ~ratings["movieId"].isin(item_index.index)
    if unknown.any():
        k = int(np.flatnonzero(unknown.to_numpy())[0])
        raise SchemaError(f"{folder / 'ratings.csv'}, line {k + 2}: expected a movieId in movies.csv, "
                          f"received unknown movie {ratings['movieId'].iloc[k]}")
    rating = ratings["rating"].to_numpy(np.float32)
    inter = pd.DataFrame({
        "user": user_index.loc[ratings["userId"]].to_numpy(np.int64),
        "item": item_index.loc[ratings["movieId"]].to_numpy(np.int64),
        "rating": rating, "weight": np.ones(len(ratings), np.float32),
        "timestamp": ratings["timestamp"].to_numpy(np.int64), "positive": rating >= 4.0,
    })
    all_genres = sorted({g for gs in genres for g in gs})
    items_df = pd.DataFrame({
        "item_id": pd.Series(item_ids, dtype=object), "title": titles, "year": pd.array(years, dtype="Int64"),
        "genres": genres, "text": texts,
    })
    return InteractionData(
        name="ml-latest-small", users=pd.DataFrame({"user_id": pd.Series(user_ids, dtype=object)}), items=items_df,
        interactions=inter, genre_names=("unknown", *all_genres), has_timestamps=True,
        positive_rule="rating >= 4.0 (of 0.5-5.0)", profile_fields=(), history_titles_in_profile=10,
        rating_range=(0.5, 5.0), source={"folder": str(folder.resolve())},
    )
