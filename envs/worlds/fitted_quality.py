"""Hidden item quality of a fitted world, derived from the train split of the data.

Quality drives dwell and satisfaction (never clicks): a clicked item with ``quality > quality_threshold``
lengthens the session, one below it shortens it. Sources, first available wins (``quality_source``):

``rating``
    the train mean rating, shrunk toward the global mean by ``shrinkage`` pseudo-ratings, min-max scaled by
    the rating scale (MovieLens: mean 3.5 of 1–5 gives 0.63).
``dwell`` / ``weight``
    implicit logs with a ``dwell`` column or a non-constant ``weight`` (play counts, watch share): each row's
    percentile rank *within its user* (so heavy users do not dominate), averaged per item.
``repeat``
    implicit logs where some (user, item) pairs occur more than once: 1 for a consumed-again pair, 0 otherwise,
    averaged per item (people come back to what satisfied them).
``continuation``
    implicit logs with timestamps only: 1 when the user's next interaction came within ``session_gap_s``
    (the item did not end the session), averaged per item.
``none``
    nothing to learn from: 0.5 everywhere (satisfaction is then always 0; a warning says so).

For the implicit sources the shrunk per-item means are turned into their percentile rank among items, so
quality is spread uniformly over [0, 1] around the default ``quality_threshold`` of 0.5: half the catalogue
keeps a user, half drives them away, and sessions have dynamics. Items without train rows get the median.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from recgym.envs.datasets import InteractionData, Split

__all__ = ["hidden_quality", "quality_source", "SESSION_GAP_S"]

log = logging.getLogger(__name__)
SESSION_GAP_S = 1800


def quality_source(data: InteractionData, split: Split) -> str:
    """Which signal :func:`hidden_quality` uses for ``data`` (see the module docstring)."""
    if data.rating_range is not None:
        return "rating"
    tr = data.interactions.iloc[split.train]
    if "dwell" in tr.columns and tr["dwell"].notna().any() and tr["dwell"].nunique() > 1:
        return "dwell"
    if tr["weight"].nunique() > 1:
        return "weight"
    if tr.duplicated(["user", "item"]).any():
        return "repeat"
    if data.has_timestamps:
        return "continuation"
    return "none"


def _within_user_rank(users: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 percentile rank in [0, 1] of each value among its user's rows (ties averaged)."""
    frame = pd.DataFrame({"u": users, "v": values})
    return frame.groupby("u")["v"].rank(pct=True, method="average").to_numpy(np.float64)


def _row_signal(data: InteractionData, split: Split, source: str) -> tuple[np.ndarray, np.ndarray]:
    """``(items, signal)`` of the train rows (one row per (user, item) pair for ``repeat``)."""
    tr = data.interactions.iloc[split.train]
    users, items = tr["user"].to_numpy(), tr["item"].to_numpy()
    if source in ("dwell", "weight"):
        return items, _within_user_rank(users, tr[source].to_numpy(np.float64))
    if source == "repeat":
        counts = tr.groupby(["user", "item"]).size()
        return counts.index.get_level_values("item").to_numpy(), (counts.to_numpy() > 1).astype(np.float64)
    order = np.lexsort((tr["timestamp"].to_numpy(), users))
    u, t = users[order], tr["timestamp"].to_numpy()[order]
    nxt_same_user = np.r_[u[1:] == u[:-1], False]
    gap = np.r_[t[1:] - t[:-1], 0]
    return items[order], (nxt_same_user & (gap <= SESSION_GAP_S)).astype(np.float64)


def hidden_quality(data: InteractionData, split: Split, shrinkage: float) -> np.ndarray:
    """``(M,)`` float32 in [0, 1]: hidden quality from the train rows (see the module docstring)."""
    source = quality_source(data, split)
    if source == "none":
        log.warning("%s: no rating, dwell, weight, repeat or timestamp signal; hidden quality is 0.5 for every "
                    "item, so satisfaction is always 0", data.name)
        return np.full(data.num_items, 0.5, np.float32)
    if source == "rating":
        tr = data.interactions.iloc[split.train]
        r = tr["rating"].to_numpy(np.float64)
        items = tr["item"].to_numpy()
    else:
        items, r = _row_signal(data, split, source)
    mu = float(r.mean()) if len(r) else 0.5
    s = np.bincount(items, weights=r, minlength=data.num_items)
    n = np.bincount(items, minlength=data.num_items).astype(np.float64)
    mean = (s + shrinkage * mu) / np.maximum(n + shrinkage, 1e-9)
    mean = np.where(n + shrinkage > 0, mean, mu)
    if source == "rating":
        assert data.rating_range is not None
        lo, hi = data.rating_range
        return np.clip((mean - lo) / max(hi - lo, 1e-9), 0.0, 1.0).astype(np.float32)
    seen = n > 0
    out = np.full(data.num_items, 0.5, np.float64)
    if seen.any():
        out[seen] = pd.Series(mean[seen]).rank(pct=True, method="average").to_numpy() - 0.5 / seen.sum()
    return np.clip(out, 0.0, 1.0).astype(np.float32)
