"""Multimodal item features: load extra per-item vectors, encode item table columns, fuse them with the text vector.

An item may carry modalities beside its text: a per-item vector file (``item_vectors.npy``: image or audio
embeddings made elsewhere), numeric and categorical columns of ``items.csv``, or (synthetic world) a generated
``image`` vector. :func:`fuse_item_vectors` turns them and the LM text vector into one *observable* item vector,
by a fixed, documented rule (no learned weights):

1. text block ``t_i``: the LM vector, L2-normalised;
2. every other block ``v_i`` ``(M, f_j)``: centred by its mean over the fitting items (an offset shared by all
   items carries no ranking information but dominates the cosines of e.g. CLIP vectors), projected onto its
   first ``max_dim`` principal components when ``f_j > max_dim`` (a PCA fitted once on the fitting items,
   signs fixed; keeps the fused vector small and drops noise directions), then L2-normalised per row (an
   all-zero row - the modality is missing for that item - stays zero);
3. ``fused_i = normalise(concat(sqrt(w_text) t_i, sqrt(w_1) v_1i, ...))`` with the weights ``w`` divided by
   their sum, so the squared share of each modality in the unit vector is its weight.

User profile vectors have text only: :func:`pad_profiles` appends zeros, so ``cos(profile, item)`` is the text
cosine times ``sqrt(w_text)`` (for items with every modality) while the history vector (the mean of the fused
vectors of consumed items) carries every modality. Every agent reads the fused table unchanged - the
similarity baselines, the bandits, the CTR model and the RL scorer alike - which is why the fusion is fixed
here instead of a gate learned inside one agent's scorer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from recgym.common.errors import DataError

__all__ = ["ITEM_VECTORS_FILE", "MAX_VECTOR_DIM", "load_item_vectors", "tabular_features", "fuse_item_vectors",
           "pad_profiles"]

ITEM_VECTORS_FILE = "item_vectors.npy"
MAX_VECTOR_DIM = 65_536
"""Widest per-item vector accepted from a file (wider is a mistake, e.g. a flattened image)."""
_CLIP_STD = 5.0  # standardised numeric columns are clipped to +-5 std: one outlier must not own the block
_MAX_LEVELS = 64  # most frequent levels of a categorical column that get a one-hot column


def load_item_vectors(path: str | os.PathLike[str], n_items: int) -> np.ndarray:
    """Read ``(n_items, f)`` float32 per-item vectors from a ``.npy`` file (row ``i`` = item ``i``).

    Read with ``allow_pickle=False`` (a file holding Python objects is refused, never executed) and memory-mapped
    first, so the header's shape is checked before the data is read.

    Raises:
        DataError: missing or unreadable file, not a 2-D numeric array, wrong row count, no or too many columns,
            non-finite values (the message names the file, what was expected and what was received).
    """
    path = Path(path)

    def fail(expected: str, received: object) -> DataError:
        return DataError(f"{path}: expected {expected}, received {received}")

    if not path.is_file():
        raise fail(f"a .npy file of shape ({n_items}, f)", "no such file")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:  # object arrays need pickle: refused
        raise fail("a numeric .npy array (saved without pickle)", f"an unreadable or pickled array ({e})") from None
    except (OSError, EOFError) as e:
        raise fail("a .npy array file", f"an unreadable file ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise fail("a single .npy array", type(arr).__name__)
    if arr.dtype.kind not in "fiu":
        raise fail("a float or integer array", f"dtype {arr.dtype}")
    if arr.ndim != 2:
        raise fail(f"a 2-D array of shape ({n_items}, f)", f"shape {arr.shape}")
    if arr.shape[0] != n_items:
        raise fail(f"one row per item of items.csv ({n_items} rows, in its order)", f"{arr.shape[0]} rows")
    if not 1 <= arr.shape[1] <= MAX_VECTOR_DIM:
        raise fail(f"1 to {MAX_VECTOR_DIM} columns", f"{arr.shape[1]} columns")
    out = np.array(arr, dtype=np.float32)
    bad = np.argwhere(~np.isfinite(out))
    if bad.size:
        r, c = (int(x) for x in bad[0])
        raise fail("finite values (float32)", f"{out[r, c]} at row {r} (item {r}), column {c}")
    return out


def tabular_features(numeric: Mapping[str, np.ndarray], categorical: Mapping[str, Sequence[tuple[str, ...]]],
                     n_items: int) -> tuple[np.ndarray, list[str]]:
    """Encode item table columns as one ``(M, F)`` float32 block and its column names.

    Numeric columns (float arrays, NaN = missing): standardised (mean 0, std 1 over the present values; a constant
    column gives 0), clipped to +-5, missing values 0 plus a ``NAME:missing`` indicator column when any is missing.
    Categorical columns (per item a tuple of levels, e.g. ``"a|b"`` split): one-hot (multi-hot) columns for the 64
    most frequent levels that occur on at least two items (a level seen once identifies an item, not a group).
    """
    cols: list[np.ndarray] = []
    names: list[str] = []
    for name, values in numeric.items():
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        if x.shape[0] != n_items:
            raise ValueError(f"tabular_features: numeric column {name!r}: expected {n_items} values, received {x.shape[0]}")
        present = np.isfinite(x)
        if present.any():
            mu, sd = x[present].mean(), x[present].std()
            z = np.where(present, (x - mu) / (sd if sd > 0 else 1.0), 0.0)
            cols.append(np.clip(z, -_CLIP_STD, _CLIP_STD))
            names.append(name)
        if not present.all():
            cols.append((~present).astype(np.float64))
            names.append(f"{name}:missing")
    for name, levels in categorical.items():
        if len(levels) != n_items:
            raise ValueError(f"tabular_features: categorical column {name!r}: expected {n_items} rows, received {len(levels)}")
        counts: dict[str, int] = {}
        for row in levels:
            for v in set(row):
                counts[v] = counts.get(v, 0) + 1
        keep = sorted((v for v, c in counts.items() if c >= 2), key=lambda v: (-counts[v], v))[:_MAX_LEVELS]
        for v in keep:
            cols.append(np.array([v in row for row in levels], dtype=np.float64))
            names.append(f"{name}={v}")
    block = np.stack(cols, axis=1) if cols else np.zeros((n_items, 0))
    return block.astype(np.float32), names


def _unit_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _block(v: np.ndarray, fit: np.ndarray, max_dim: int) -> np.ndarray:
    v = v.astype(np.float64)
    mean = v[fit].mean(axis=0)
    c = v - mean
    if v.shape[1] > max_dim:
        _, _, vt = np.linalg.svd(c[fit], full_matrices=False)
        comps = vt[:max_dim]
        signs = np.sign(comps[np.arange(comps.shape[0]), np.argmax(np.abs(comps), axis=1)])
        c = c @ (comps * np.where(signs == 0, 1.0, signs)[:, None]).T
    c[~v.any(axis=1)] = 0.0  # a missing modality stays missing (not minus the mean)
    return _unit_rows(c)


def fuse_item_vectors(text: np.ndarray, blocks: Mapping[str, np.ndarray], weights: Mapping[str, float], *,
                      max_dim: int = 32, fit_mask: np.ndarray | None = None) -> np.ndarray:
    """Fuse the text vectors with other modalities by the module's rule.

    Args:
        text: ``(M, d)`` LM item vectors.
        blocks: modality name -> ``(M, f)`` per-item vectors (fused in this order).
        weights: modality name (``"text"`` and every block) -> weight ``>= 0``, not all zero.
        max_dim: PCA dim cap of each non-text block.
        fit_mask: ``(M,)`` bool, the items the centring and PCA are fitted on (default all; a run passes the
            initial items, so items injected later do not shape the projection).

    Returns:
        ``(M, d + sum_j min(f_j, max_dim))`` float32 with unit rows.
    """
    m = text.shape[0]
    fit = np.ones(m, dtype=bool) if fit_mask is None else np.asarray(fit_mask, dtype=bool)
    names = ["text", *blocks]
    missing = [n for n in names if n not in weights]
    if missing:
        raise ValueError(f"fuse_item_vectors: weights: expected a weight for {names}, missing {missing}")
    w = np.array([float(weights[n]) for n in names])
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        got = dict(zip(names, w.tolist(), strict=True))
        raise ValueError(f"fuse_item_vectors: weights: expected finite values >= 0 with a positive sum, received {got}")
    if not fit.any():
        raise ValueError("fuse_item_vectors: fit_mask: expected at least one fitting item, received none")
    parts = [_unit_rows(text.astype(np.float64))]
    for name, v in blocks.items():
        if v.ndim != 2 or v.shape[0] != m:
            raise ValueError(f"fuse_item_vectors: modality {name!r}: expected shape ({m}, f), received {v.shape}")
        parts.append(_block(v, fit, max_dim))
    share = np.sqrt(w / w.sum())
    fused = np.concatenate([s * p for s, p in zip(share, parts, strict=True)], axis=1)
    return _unit_rows(fused).astype(np.float32)


def pad_profiles(profiles: np.ndarray, fused_dim: int) -> np.ndarray:
    """``(U, fused_dim)`` float32: the text profile vectors with zeros for the non-text modalities (users have
    text only), so they live in the fused item space."""
    u, d = profiles.shape
    if fused_dim < d:
        raise ValueError(f"pad_profiles: fused_dim: expected >= profile dim {d}, received {fused_dim}")
    return np.concatenate([profiles, np.zeros((u, fused_dim - d), dtype=profiles.dtype)], axis=1).astype(np.float32)
