"""The common interaction container and the generic bring-your-own log format.

Every dataset (MovieLens 100K, MovieLens latest-small, a user's own log) is loaded into one
:class:`InteractionData`; splitting, fitting and the fidelity report consume only that.

Generic log format (``world="log"``, ``data_dir=FOLDER``):

* ``FOLDER/interactions.csv`` — required columns ``user_id, item_id`` and at least one row; optional
  ``timestamp`` (Unix time as a number — seconds, or a finer unit used consistently, ``|t| < 2**63`` — or an
  ISO-8601 date/time), optional ``rating`` (a number, ``|r| <= 1e9``; positive when ``>= positive_threshold``,
  default 4.0) and/or ``weight`` (a number in ``[0, 1e9]``; positive when ``> 0``; e.g. play counts), optional
  ``dwell`` (non-negative number: time spent; a quality signal for implicit logs). With the two id columns
  alone every row is an implicit positive. At least one row must be positive.
* ``FOLDER/items.csv`` — required ``item_id`` and at least one text column. ``title`` (if present) is the display
  title; ``year`` (optional) an integer; ``genres``/``category`` or any ``cat_*`` column are categorical
  (``|``-separated values); any ``num_*`` column is a numeric feature (a number, or an empty cell for missing);
  every other column is text. Each item needs a non-empty text.
* ``FOLDER/item_vectors.npy`` (optional) — a float array ``(number of items, f)``, row ``i`` for row ``i`` of
  ``items.csv`` (e.g. image or audio embeddings made elsewhere; saved without pickle).
  The ``num_*`` and ``cat_*`` columns (encoded by :func:`recgym.encoders.fusion.tabular_features`) and the vector
  file become the item modalities ``"columns"`` and ``"vectors"``; a run fuses them into the observable item
  vector (``features:`` section of an experiment, :mod:`recgym.experiments.multimodal`).
* ``FOLDER/users.csv`` (optional) — ``user_id`` plus any columns; all of them are rendered into the profile text
  as demographics. When given, every interaction's user must be listed.

Files are UTF-8 (a byte-order mark is fine). Ids are read as strings (``"42"`` and ``"u-42"`` both work).
Violations raise :class:`SchemaError` (a :class:`~recgym.common.errors.DataError`) naming the file, the
column, the (1-based, header = line 1) line and what was expected vs received.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.common.config import ConfigError
from recgym.common.errors import DataError
from recgym.encoders.fusion import ITEM_VECTORS_FILE, load_item_vectors, tabular_features
from recgym.encoders.text import item_text

__all__ = ["InteractionData", "SchemaError", "load_log", "LOG_CATEGORICAL_COLUMNS"]

LOG_CATEGORICAL_COLUMNS = ("genres", "genre", "category", "categories")
_RESERVED_ITEM_COLUMNS = ("item_id", "title", "year")


MAX_ABS_VALUE = 1e9
"""Largest magnitude of a rating or weight (stored as float32; larger values are data errors, not scales)."""
_TS_LIMIT = 2.0**63  # numeric timestamps are stored as int64


class SchemaError(DataError):
    """A data file does not follow its documented schema (message: where, expected, received)."""


@dataclass(frozen=True, eq=False)
class InteractionData:
    """A dataset in the common form.

    Attributes:
        name: dataset name (``"movielens-100k"``, ``"ml-latest-small"``, ``"log"``).
        users: ``U`` rows; column ``user_id`` (external id, object dtype) plus profile columns named in
            ``profile_fields``. Row ``u`` is user index ``u``.
        items: ``M`` rows; columns ``item_id`` (object), ``title`` (str), ``year`` (Int64, nullable),
            ``genres`` (tuple[str, ...]), ``text`` (str, the item text fed to the encoder). Row ``i`` is item ``i``.
        interactions: ``N`` rows; ``user`` (int64 index), ``item`` (int64 index), ``rating`` (float32, NaN when
            absent), ``weight`` (float32, 1 when absent), ``timestamp`` (int64 Unix seconds; 0 when absent),
            ``positive`` (bool); optionally ``dwell`` (float32, time spent; logs with a ``dwell`` column).
        genre_names: genre vocabulary (the primary genre of an item indexes into it).
        has_timestamps: whether ``timestamp`` is meaningful (else splits are seeded-random).
        positive_rule: human-readable rule that made ``positive`` (documented in reports).
        profile_fields: user columns rendered as demographics in the profile text.
        history_titles_in_profile: how many liked *train* titles the profile text lists (0: none).
        rating_range: ``(min, max)`` of the rating scale, or ``None`` for implicit data.
        source: provenance (paths, file sha256 where known).
        item_modalities: observable per-item features beside the text, name -> ``(M, f)`` float32 (logs:
            ``"columns"`` from ``num_*``/``cat_*`` columns, ``"vectors"`` from ``item_vectors.npy``).
    """

    name: str
    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame
    genre_names: tuple[str, ...]
    has_timestamps: bool
    positive_rule: str
    profile_fields: tuple[str, ...] = ()
    history_titles_in_profile: int = 0
    rating_range: tuple[float, float] | None = None
    source: dict[str, str] = field(default_factory=dict)
    item_modalities: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_interactions(self) -> int:
        return len(self.interactions)

    def primary_genres(self) -> np.ndarray:
        """``(M,)`` int64: index into ``genre_names`` of each item's first genre (``"unknown"`` when none)."""
        index = {g: k for k, g in enumerate(self.genre_names)}
        unknown = index["unknown"]
        return np.array([index[g[0]] if g else unknown for g in self.items["genres"]], dtype=np.int64)


def _err(file: Path, column: str | None, expected: str, received: object, line: int | None = None) -> SchemaError:
    where = f"{file}"
    if column is not None:
        where += f", column {column!r}"
    if line is not None:
        where += f", line {line}"
    return SchemaError(f"{where}: expected {expected}, received {received}")


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise SchemaError(f"{path}: expected a CSV file, received nothing (file not found)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, ValueError) as exc:
        raise SchemaError(f"{path}: expected a UTF-8 CSV with a header row, received unreadable data ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise _err(path, None, f"columns {list(required)} (missing {missing})", f"columns {list(df.columns)}")
    for col in df.columns:
        df[col] = df[col].str.strip()
    return df


def _check_ids(df: pd.DataFrame, path: Path, column: str, unique: bool) -> None:
    empty = np.flatnonzero((df[column] == "").to_numpy())
    if empty.size:
        raise _err(path, column, "a non-empty id", "''", int(empty[0]) + 2)
    if unique:
        dup = df[column].duplicated(keep="first").to_numpy()
        if dup.any():
            k = int(np.flatnonzero(dup)[0])
            raise _err(path, column, "unique ids", f"duplicate id {df[column].iloc[k]!r}", k + 2)


def _parse_float(df: pd.DataFrame, path: Path, column: str, low: float = -MAX_ABS_VALUE) -> np.ndarray:
    """``(N,)`` float32 of a numeric column; every cell finite and in ``[low, MAX_ABS_VALUE]``."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        k = int(bad[0])
        raise _err(path, column, "a finite number", f"{df[column].iloc[k]!r}", k + 2)
    bad = np.flatnonzero((values < low) | (values > MAX_ABS_VALUE))
    if bad.size:
        k = int(bad[0])
        raise _err(path, column, f"a number in [{low:g}, {MAX_ABS_VALUE:g}]", f"{df[column].iloc[k]!r}", k + 2)
    return values.astype(np.float32)


def _parse_timestamps(df: pd.DataFrame, path: Path) -> np.ndarray:
    """``(N,)`` int64 Unix seconds; each cell is integer seconds or an ISO-8601 date/time."""
    raw = df["timestamp"]
    as_num = pd.to_numeric(raw, errors="coerce")
    out = np.zeros(len(raw), dtype=np.int64)
    num = as_num.notna().to_numpy()
    values = as_num[num].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~(np.abs(values) < _TS_LIMIT))  # also catches inf
    if bad.size:
        k = int(np.flatnonzero(num)[bad[0]])
        raise _err(path, "timestamp", "Unix time as a finite number with |t| < 2**63 (seconds or a finer unit) or "
                   "an ISO-8601 date/time", f"{raw.iloc[k]!r}", k + 2)
    out[num] = values.astype(np.int64)
    if not num.all():
        rest = raw[~num]
        parsed = pd.to_datetime(rest, errors="coerce", utc=True, format="ISO8601")
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if bad.size:
            k = int(np.flatnonzero(~num)[bad[0]])
            raise _err(path, "timestamp", "Unix seconds or an ISO-8601 date/time",
                       f"unparsable timestamp {raw.iloc[k]!r}", k + 2)
        out[~num] = ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    return out


def _split_cats(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split("|") if v.strip())


def load_log(folder: str | os.PathLike[str], *, positive_threshold: float = 4.0) -> InteractionData:
    """Load and validate a generic log folder (see the module docstring for the format).

    Raises:
        SchemaError: missing file/columns, wrong types, duplicate ids, empty texts, unknown users/items,
            unparsable timestamps.
    """
    if isinstance(positive_threshold, bool) or not isinstance(positive_threshold, (int, float)) \
            or not math.isfinite(positive_threshold):
        raise ConfigError(f"positive_threshold: expected a finite number, received {positive_threshold!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise SchemaError(f"{folder}: expected a folder with interactions.csv and items.csv, received no such folder")
    ipath, mpath, upath = folder / "interactions.csv", folder / "items.csv", folder / "users.csv"
    inter = _read_csv(ipath, ("user_id", "item_id"))
    items = _read_csv(mpath, ("item_id",))
    for df, path, what in ((inter, ipath, "interaction"), (items, mpath, "item")):
        if len(df) == 0:
            raise _err(path, None, f"at least one {what} row below the header", "a header only")
    _check_ids(items, mpath, "item_id", unique=True)
    _check_ids(inter, ipath, "user_id", unique=False)
    _check_ids(inter, ipath, "item_id", unique=False)

    # --- items: text, categorical and year columns
    cat_cols = [c for c in items.columns if c in LOG_CATEGORICAL_COLUMNS or c.startswith("cat_")]
    num_cols = [c for c in items.columns if c.startswith("num_")]
    text_cols = [c for c in items.columns if c not in _RESERVED_ITEM_COLUMNS and c not in cat_cols and c not in num_cols]
    if "title" in items.columns:
        text_cols = ["title", *text_cols]
    if not text_cols:
        raise _err(mpath, None, "at least one text column besides item_id (e.g. 'title')", f"columns {list(items.columns)}")
    years: list[int | None] = [None] * len(items)
    if "year" in items.columns:
        y = pd.to_numeric(items["year"].replace("", np.nan), errors="coerce")
        yv = y.to_numpy(dtype=np.float64)
        given = (items["year"] != "").to_numpy()
        bad = np.flatnonzero(given & ~((np.abs(yv) <= 9999) & (np.round(yv) == yv)))  # NaN fails both
        if bad.size:
            k = int(bad[0])
            raise _err(mpath, "year", "an integer year in [-9999, 9999] or an empty cell", f"{items['year'].iloc[k]!r}", k + 2)
        years = [None if pd.isna(v) else int(v) for v in y]
    titles, texts, genres = [], [], []
    for k in range(len(items)):
        row = items.iloc[k]
        parts = [row[c] for c in text_cols if row[c]]
        if not parts:
            raise _err(mpath, "/".join(text_cols), "a non-empty text in at least one text column", "an empty text", k + 2)
        title = parts[0]
        description = " ".join(parts[1:]) or None
        cats: tuple[str, ...] = ()
        for c in cat_cols:
            cats += _split_cats(row[c])
        titles.append(title)
        genres.append(cats)
        texts.append(item_text(title, year=years[k], genres=cats, description=description))

    # --- users
    if upath.exists():
        users = _read_csv(upath, ("user_id",))
        if len(users) == 0:
            raise _err(upath, None, "at least one user row below the header (or no users.csv)", "a header only")
        _check_ids(users, upath, "user_id", unique=True)
        profile_fields = tuple(c for c in users.columns if c != "user_id")
    else:
        users = pd.DataFrame({"user_id": pd.unique(inter["user_id"])})
        profile_fields = ()

    # --- interactions: references
    item_index = {v: k for k, v in enumerate(items["item_id"])}
    user_index = {v: k for k, v in enumerate(users["user_id"])}
    item_col = inter["item_id"].map(item_index)
    bad = np.flatnonzero(item_col.isna().to_numpy())
    if bad.size:
        k = int(bad[0])
        raise _err(ipath, "item_id", f"an item_id listed in {mpath.name}", f"unknown item {inter['item_id'].iloc[k]!r}", k + 2)
    user_col = inter["user_id"].map(user_index)
    bad = np.flatnonzero(user_col.isna().to_numpy())
    if bad.size:
        k = int(bad[0])
        raise _err(ipath, "user_id", f"a user_id listed in {upath.name}", f"unknown user {inter['user_id'].iloc[k]!r}", k + 2)

    n = len(inter)
    has_rating, has_weight = "rating" in inter.columns, "weight" in inter.columns
    rating = _parse_float(inter, ipath, "rating") if has_rating else np.full(n, np.nan, np.float32)
    weight = _parse_float(inter, ipath, "weight", low=0.0) if has_weight else np.ones(n, np.float32)
    has_ts = "timestamp" in inter.columns
    ts = _parse_timestamps(inter, ipath) if has_ts else np.zeros(n, np.int64)
    if has_rating:
        positive = rating >= positive_threshold
        rule = f"rating >= {positive_threshold:g}"
        rating_range: tuple[float, float] | None = (float(rating.min()), float(rating.max()))
    elif has_weight:
        positive, rule, rating_range = weight > 0, "weight > 0", None
    else:
        positive, rule, rating_range = np.ones(n, bool), "every logged interaction (implicit feedback)", None
    if not positive.any():
        column = "rating" if has_rating else "weight"
        seen = f"max {float(rating.max()):g}" if has_rating else "every weight 0"
        raise _err(ipath, column, f"at least one positive row ({rule})", f"none ({seen})")
    frame = pd.DataFrame({
        "user": user_col.to_numpy(dtype=np.int64), "item": item_col.to_numpy(dtype=np.int64),
        "rating": rating, "weight": weight, "timestamp": ts, "positive": positive,
    })
    if "dwell" in inter.columns:
        frame["dwell"] = _parse_float(inter, ipath, "dwell", low=0.0)
    genre_names = tuple(sorted({g for gs in genres for g in gs} | {"unknown"}))
    items_df = pd.DataFrame({
        "item_id": items["item_id"].astype(object), "title": titles,
        "year": pd.array(years, dtype="Int64"), "genres": genres, "text": texts,
    })
    return InteractionData(
        name="log", users=users.reset_index(drop=True), items=items_df, interactions=frame,
        genre_names=genre_names, has_timestamps=has_ts, positive_rule=rule, profile_fields=profile_fields,
        history_titles_in_profile=5, rating_range=rating_range, source={"folder": str(folder.resolve())},
        item_modalities=_item_modalities(items, mpath, folder / ITEM_VECTORS_FILE, num_cols,
                                         [c for c in cat_cols if c.startswith("cat_")]),
    )


def _item_modalities(items: pd.DataFrame, mpath: Path, vpath: Path, num_cols: list[str],
                     cat_cols: list[str]) -> dict[str, np.ndarray]:
    """The ``"columns"`` modality (``num_*``, ``cat_*`` columns) and the ``"vectors"`` one (``item_vectors.npy``)."""
    out: dict[str, np.ndarray] = {}
    numeric = {}
    for c in num_cols:
        given = (items[c] != "").to_numpy()
        values = pd.to_numeric(items[c].where(given, np.nan), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(given & ~(np.abs(values) <= MAX_ABS_VALUE))  # NaN and inf fail
        if bad.size:
            k = int(bad[0])
            raise _err(mpath, c, f"a number in [-{MAX_ABS_VALUE:g}, {MAX_ABS_VALUE:g}] or an empty cell (missing)",
                       f"{items[c].iloc[k]!r}", k + 2)
        numeric[c] = values
    categorical = {c: [_split_cats(v) for v in items[c]] for c in cat_cols}
    block, _names = tabular_features(numeric, categorical, len(items))
    if block.shape[1]:
        out["columns"] = block
    if vpath.exists():
        out["vectors"] = load_item_vectors(vpath, len(items))
    return out
