"""Recommendation metrics: pure numpy functions plus a streaming :class:`ExposureTracker`.

Every function validates its input and raises ``ValueError`` naming the function, the argument, what was
expected and what was received. Conventions used throughout:

* An *impression* is one item shown in one slate position; a slate of size K gives K impressions.
* "No data" (CTR with zero impressions, Gini of an all-zero exposure vector, NDCG of a row whose
  candidates all have zero gain) is ``nan``, never a silent 0; aggregate with ``np.nanmean``.
* Item ids are ``int`` indices into a catalogue of ``M`` items, ``0 <= id < M``.

:class:`~recgym.experiments.exposure.ExposureTracker` (built on these functions; this module imports
nothing from it) streams batches from an evaluation loop in O(M) memory and returns the per-segment metrics
dictionary (warm/cold users; head/tail/new items).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DecileCTR",
    "NewItemCurves",
    "coverage",
    "ctr",
    "ctr_by_popularity_decile",
    "gini",
    "intra_list_diversity",
    "lorenz_curve",
    "ndcg_at_k",
    "new_item_curves",
    "new_user_ctr_curve",
    "novelty",
    "tail_ctr",
    "tail_mask_from_popularity",
    "tail_share",
]

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------------------------- validation
def _describe(a: np.ndarray) -> str:
    return f"array of shape {a.shape} and dtype {a.dtype}"


def _fail(where: str, expected: str, received: str) -> None:
    raise ValueError(f"{where}: expected {expected}, received {received}")


def _as_float(x: ArrayLike, where: str, ndim: int | None = None, *, allow_nan: bool = False,
              nonneg: bool = False) -> FloatArray:
    """``x`` as float64; checks dtype (bool/int/float), ``ndim``, finiteness and sign."""
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        _fail(where, "a numeric array", _describe(a))
    if ndim is not None and a.ndim != ndim:
        _fail(where, f"a {ndim}-d array", _describe(a))
    a = a.astype(np.float64, copy=False)
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)
    if bad.any():
        _fail(where, "finite values" + (" (nan allowed)" if allow_nan else ""),
              f"{a[bad][0]} at index {tuple(int(i) for i in np.argwhere(bad)[0])}")
    if nonneg and (a[~np.isnan(a)] < 0).any():
        _fail(where, "non-negative values", f"minimum {np.nanmin(a)}")
    return a


def _as_int(x: ArrayLike, where: str, ndim: int | None = None, *, n_items: int | None = None,
            nonneg: bool = False) -> NDArray[np.int64]:
    """``x`` as int64; rejects bool/float dtypes; optionally checks ``0 <= x < n_items``."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):
        _fail(where, "an integer array", _describe(a))
    if ndim is not None and a.ndim != ndim:
        _fail(where, f"a {ndim}-d integer array", _describe(a))
    a = a.astype(np.int64, copy=False)
    if a.size and (nonneg or n_items is not None) and a.min() < 0:
        _fail(where, "non-negative values", f"minimum {a.min()}")
    if a.size and n_items is not None and a.max() >= n_items:
        _fail(where, f"item ids in [0, {n_items})", f"maximum {a.max()}")
    return a


def _as_bool(x: ArrayLike, where: str, ndim: int | None = None) -> NDArray[np.bool_]:
    """``x`` as bool; accepts bool arrays and integer arrays holding only 0 and 1."""
    a = np.asarray(x)
    if a.dtype.kind in "iu" and a.size and not np.isin(a, (0, 1)).all():
        _fail(where, "a boolean array (or integers 0/1)", f"integer values {np.unique(a)[:5]}")
    if a.dtype.kind not in "biu" and not (a.size == 0 and a.dtype.kind == "f"):
        _fail(where, "a boolean array", _describe(a))
    if ndim is not None and a.ndim != ndim:
        _fail(where, f"a {ndim}-d boolean array", _describe(a))
    return a.astype(bool, copy=False)


def _same_shape(where: str, **arrays: np.ndarray) -> None:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        _fail(where, "arrays of the same shape", ", ".join(f"{k}{v}" for k, v in shapes.items()))


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


# ------------------------------------------------------------------------------------------ slate quality
def ndcg_at_k(slate_relevance: ArrayLike, candidate_relevance: ArrayLike | Sequence[ArrayLike],
              k: int | None = None) -> FloatArray:
    """NDCG@k of shown slates against the hidden true relevance, one value per row.

    Gain is the true relevance itself (e.g. the true click probability), the discount of position
    ``j`` (0-based) is ``1 / log2(j + 2)``. The ideal DCG uses the best ``k`` relevances among the row's
    candidates (fewer if the row has fewer candidates).

    Args:
        slate_relevance: ``(B, K)`` float, true relevance of the shown items in slate order, ``>= 0``.
        candidate_relevance: ``(B, N)`` float with ``nan`` marking absent/masked candidates, or a
            length-``B`` sequence of 1-d arrays (ragged candidate sets). Must contain the shown items.
        k: cutoff, ``1 <= k <= K``; defaults to ``K``.

    Returns:
        ``(B,)`` float64 in ``[0, 1]``. Rows whose candidates all have zero gain have no defined NDCG and
        are ``nan`` (every slate is equally good there); use ``np.nanmean`` to average.

    Raises:
        ValueError: bad shapes, negative or non-finite relevance, ``k`` out of range, or a slate whose DCG
            exceeds the ideal DCG (its items are not among the given candidates).
    """
    where = "ndcg_at_k"
    rel = _as_float(slate_relevance, f"{where}(slate_relevance)", 2, nonneg=True)
    b, slate_k = rel.shape
    k = slate_k if k is None else k
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= max(slate_k, 1):
        _fail(f"{where}(k)", f"an int in [1, {slate_k}]", repr(k))
    if isinstance(candidate_relevance, np.ndarray) or (
            len(candidate_relevance) and np.ndim(candidate_relevance[0]) == 1
            and len({len(r) for r in candidate_relevance}) == 1):  # type: ignore[arg-type]
        cand = _as_float(candidate_relevance, f"{where}(candidate_relevance)", 2, allow_nan=True, nonneg=True)
    else:  # ragged: pad with nan
        rows = [_as_float(r, f"{where}(candidate_relevance[{i}])", 1, nonneg=True)
                for i, r in enumerate(candidate_relevance)]  # type: ignore[union-attr]
        cand = np.full((len(rows), max((len(r) for r in rows), default=0)), np.nan)
        for i, r in enumerate(rows):
            cand[i, : len(r)] = r
    if cand.shape[0] != b:
        _fail(f"{where}(candidate_relevance)", f"{b} rows (one per slate)", f"{cand.shape[0]} rows")
    disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = rel[:, :k] @ disc
    best = -np.sort(-np.nan_to_num(cand, nan=0.0), axis=1)[:, :k]
    idcg = best @ disc[: best.shape[1]]
    if (dcg > idcg * (1 + 1e-6) + 1e-12).any():
        i = int(np.argmax(dcg - idcg))
        _fail(where, "each slate's DCG <= the ideal DCG of its candidates (shown items among candidates)",
              f"row {i}: DCG {dcg[i]:.6g} > ideal {idcg[i]:.6g}")
    out = np.full(b, np.nan)
    ok = idcg > 0
    out[ok] = np.minimum(dcg[ok] / idcg[ok], 1.0)
    return out


def intra_list_diversity(slate_embeddings: ArrayLike) -> FloatArray:
    """Mean pairwise cosine distance ``1 - cos(e_i, e_j)`` within each slate.

    Args:
        slate_embeddings: ``(B, K, d)`` float, the (LM) embeddings of the shown items; no zero vectors.

    Returns:
        ``(B,)`` float64 in ``[0, 2]``, averaged over the ``K (K - 1) / 2`` pairs; ``nan`` when ``K < 2``.
    """
    e = _as_float(slate_embeddings, "intra_list_diversity(slate_embeddings)", 3)
    norms = np.linalg.norm(e, axis=2, keepdims=True)
    if (norms == 0).any():
        _fail("intra_list_diversity(slate_embeddings)", "non-zero embedding vectors",
              f"a zero vector at (slate, position) {tuple(int(i) for i in np.argwhere(norms[..., 0] == 0)[0])}")
    u = e / norms
    b, k, _ = e.shape
    if k < 2:
        return np.full(b, np.nan)
    sim = np.einsum("bkd,bjd->b", u, u)  # sum over all ordered pairs incl. the diagonal (= K)
    return 1.0 - (sim - k) / (k * (k - 1))


# --------------------------------------------------------------------------------- clicks and exposure
def ctr(clicks: ArrayLike, impressions: ArrayLike) -> float:
    """Click-through rate ``sum(clicks) / sum(impressions)``; ``nan`` with zero impressions.

    Args:
        clicks: scalar or array of click counts (or a bool array of per-impression clicks), ``>= 0``.
        impressions: scalar or array of impression counts, ``>= 0``; totals must satisfy clicks <= impressions.
    """
    c = _as_float(clicks, "ctr(clicks)", nonneg=True).sum()
    n = _as_float(impressions, "ctr(impressions)", nonneg=True).sum()
    if c > n:
        _fail("ctr", "total clicks <= total impressions", f"{c:g} clicks for {n:g} impressions")
    return _ratio(c, n)


def coverage(exposure_counts: ArrayLike, n_items: int | None = None) -> float:
    """Catalogue coverage: fraction of the ``n_items`` catalogue items shown at least once.

    Args:
        exposure_counts: ``(m,)`` impressions per item id, ``m <= n_items`` (a ``np.bincount`` without
            ``minlength`` is fine: missing trailing ids count as never shown).
        n_items: catalogue size ``M``; defaults to ``m``.

    Returns:
        float in ``[0, 1]``; ``nan`` for an empty catalogue.
    """
    x = _as_float(exposure_counts, "coverage(exposure_counts)", 1, nonneg=True)
    m = len(x) if n_items is None else n_items
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < len(x):
        _fail("coverage(n_items)", f"an int >= len(exposure_counts) = {len(x)}", repr(n_items))
    return _ratio(np.count_nonzero(x), m)


def gini(exposure_counts: ArrayLike) -> float:
    """Gini coefficient of exposure over the catalogue (items never shown included as zeros).

    ``G = 2 * sum_i i * x_(i) / (n * sum x) - (n + 1) / n`` with ``x`` sorted ascending, ``i = 1..n``.
    0 means every item got the same exposure; the maximum, everything on one item, is ``(n - 1) / n``.

    Args:
        exposure_counts: ``(M,)`` non-negative counts (or shares) per item.

    Returns:
        float in ``[0, 1)``; ``nan`` for an empty vector or all zeros (no exposure: undefined).
    """
    x = np.sort(_as_float(exposure_counts, "gini(exposure_counts)", 1, nonneg=True))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return float("nan")
    i = np.arange(1, n + 1, dtype=np.float64)
    return max(float(2.0 * (i @ x) / (n * total) - (n + 1) / n), 0.0)


def lorenz_curve(counts: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Lorenz curve of exposure: ``(x, y)``, both ``(M + 1,)`` float64 from ``(0, 0)`` to ``(1, 1)``.

    ``x[i] = i / M`` is the poorest fraction of items, ``y[i]`` their share of the exposure (items sorted
    ascending). Raises ``ValueError`` for an empty or all-zero vector (the curve is undefined).
    """
    x = np.sort(_as_float(counts, "lorenz_curve(counts)", 1, nonneg=True))
    if len(x) == 0 or x.sum() == 0:
        _fail("lorenz_curve(counts)", "a non-empty vector with positive total exposure",
              f"{len(x)} items with total {x.sum():g}")
    return (np.arange(len(x) + 1) / len(x), np.concatenate([[0.0], np.cumsum(x) / x.sum()]))


def tail_mask_from_popularity(popularity: ArrayLike, head_fraction: float = 0.2) -> NDArray[np.bool_]:
    """``(M,)`` bool: True for long-tail items, i.e. all but the ``ceil(head_fraction * M)`` most popular.

    Ties are broken by item id (lower id = more popular among equals), so the split is deterministic.
    """
    p = _as_float(popularity, "tail_mask_from_popularity(popularity)", 1, nonneg=True)
    if not 0.0 <= head_fraction <= 1.0:
        _fail("tail_mask_from_popularity(head_fraction)", "a float in [0, 1]", repr(head_fraction))
    order = np.lexsort((np.arange(len(p)), -p))  # most popular first
    tail = np.ones(len(p), dtype=bool)
    tail[order[: int(np.ceil(head_fraction * len(p) - 1e-9))]] = False
    return tail


def tail_share(exposure_counts: ArrayLike, tail_mask: ArrayLike) -> float:
    """Share of all impressions that went to long-tail items; ``nan`` with no impressions.

    Args:
        exposure_counts: ``(M,)`` impressions per item. tail_mask: ``(M,)`` bool, True for tail items.
    """
    x = _as_float(exposure_counts, "tail_share(exposure_counts)", 1, nonneg=True)
    m = _as_bool(tail_mask, "tail_share(tail_mask)", 1)
    _same_shape("tail_share", exposure_counts=x, tail_mask=m)
    return _ratio(x[m].sum(), x.sum())


def tail_ctr(click_counts: ArrayLike, exposure_counts: ArrayLike, tail_mask: ArrayLike) -> float:
    """CTR restricted to long-tail items: tail clicks / tail impressions; ``nan`` if no tail impressions.

    Args: ``(M,)`` clicks per item, ``(M,)`` impressions per item, ``(M,)`` bool tail mask.
    """
    m = _as_bool(tail_mask, "tail_ctr(tail_mask)", 1)
    c = _as_float(click_counts, "tail_ctr(click_counts)", 1, nonneg=True)
    x = _as_float(exposure_counts, "tail_ctr(exposure_counts)", 1, nonneg=True)
    _same_shape("tail_ctr", click_counts=c, exposure_counts=x, tail_mask=m)
    return ctr(c[m], x[m])


def novelty(shown_items: ArrayLike, popularity: ArrayLike) -> float:
    """Mean self-information ``-log2 popularity[i]`` over the shown items (any shape of item ids).

    Args:
        shown_items: int item ids, any shape (e.g. ``(B, K)`` slates); each impression counts once.
        popularity: ``(M,)`` float in ``(0, 1]``, e.g. the fraction of users who consumed the item.
            Zeros are rejected (infinite novelty): smooth the estimate first.

    Returns:
        float ``>= 0`` in bits; ``nan`` if nothing was shown.
    """
    p = _check_popularity(popularity, "novelty(popularity)")
    ids = _as_int(shown_items, "novelty(shown_items)", n_items=len(p))
    return float(np.mean(-np.log2(p[ids]))) if ids.size else float("nan")


def _check_popularity(popularity: ArrayLike, where: str) -> FloatArray:
    p = _as_float(popularity, where, 1)
    if p.size and (p.min() <= 0 or p.max() > 1):
        _fail(where, "popularity values in (0, 1]", f"range [{p.min():g}, {p.max():g}]")
    return p


class DecileCTR(NamedTuple):
    """CTR per popularity bin; bin 0 holds the least popular items. All arrays ``(n_bins,)``."""

    ctr: FloatArray
    """clicks / impressions per bin, ``nan`` where the bin got no impressions."""
    impressions: NDArray[np.int64]
    clicks: NDArray[np.int64]


def _decile_from_counts(impressions: np.ndarray, clicks: np.ndarray, popularity: FloatArray,
                        n_bins: int, eligible: np.ndarray | None = None) -> DecileCTR:
    """Bins over the ``eligible`` items only (default: all); others (e.g. injected new items) are left out."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        _fail("ctr_by_popularity_decile(n_bins)", "an int >= 1", repr(n_bins))
    keep = np.flatnonzero(np.ones(len(popularity), bool) if eligible is None else eligible)
    m = len(keep)
    rank = np.empty(m, dtype=np.int64)
    rank[np.lexsort((-keep, popularity[keep]))] = np.arange(m)  # ascending popularity, ties by id
    item_bin = rank * n_bins // max(m, 1)
    imp = np.bincount(item_bin, weights=impressions[keep], minlength=n_bins).astype(np.int64)
    clk = np.bincount(item_bin, weights=clicks[keep], minlength=n_bins).astype(np.int64)
    rate = np.full(n_bins, np.nan)
    np.divide(clk, imp, out=rate, where=imp > 0)
    return DecileCTR(rate, imp, clk)


def ctr_by_popularity_decile(item_ids: ArrayLike, clicks: ArrayLike, popularity: ArrayLike,
                             n_bins: int = 10, eligible: ArrayLike | None = None) -> DecileCTR:
    """CTR of impressions grouped by the popularity decile of the shown item.

    Items are ranked by ``popularity`` over the whole catalogue (ties broken by id) and split into
    ``n_bins`` equal-count bins: item of rank ``r`` (0 = least popular) goes to bin ``r * n_bins // M``.

    Args:
        item_ids: int ids of shown items, any shape (e.g. ``(B, K)``).
        clicks: bool, same shape as ``item_ids`` (True = that impression was clicked).
        popularity: ``(M,)`` float popularity per item (any non-negative scale).
        eligible: ``(M,)`` bool, the items binned (default all); e.g. the initial catalogue without the
            injected new items, whose prior is a placeholder. Decile 1 (bin 0) = least popular.
    """
    p = _as_float(popularity, "ctr_by_popularity_decile(popularity)", 1, nonneg=True)
    ids = _as_int(item_ids, "ctr_by_popularity_decile(item_ids)", n_items=len(p))
    c = _as_bool(clicks, "ctr_by_popularity_decile(clicks)")
    _same_shape("ctr_by_popularity_decile", item_ids=ids, clicks=c)
    imp = np.bincount(ids.ravel(), minlength=len(p))
    clk = np.bincount(ids.ravel(), weights=c.ravel(), minlength=len(p))
    keep = None if eligible is None else _as_bool(eligible, "ctr_by_popularity_decile(eligible)", 1)
    if keep is not None and len(keep) != len(p):
        _fail("ctr_by_popularity_decile(eligible)", f"length {len(p)} like popularity", _describe(keep))
    return _decile_from_counts(imp, clk, p, n_bins, keep)


# ------------------------------------------------------------------------------------------ cold start
def new_user_ctr_curve(step_index: ArrayLike, clicks: ArrayLike, impressions: ArrayLike,
                       n_steps: int) -> FloatArray:
    """CTR of new users at each of their first ``n_steps`` steps.

    Args:
        step_index: ``(N,)`` int, 0-based index of the step within the user's session (one record per
            user-step). Records with ``step_index >= n_steps`` are ignored.
        clicks: ``(N,)`` clicks in that step's slate. impressions: ``(N,)`` items shown (usually K).
        n_steps: curve length.

    Returns:
        ``(n_steps,)`` float64; entry ``t`` = sum of clicks / sum of impressions over records with
        ``step_index == t``; ``nan`` where no user reached step ``t``.
    """
    t = _as_int(step_index, "new_user_ctr_curve(step_index)", 1, nonneg=True)
    c = _as_float(clicks, "new_user_ctr_curve(clicks)", 1, nonneg=True)
    n = _as_float(impressions, "new_user_ctr_curve(impressions)", 1, nonneg=True)
    _same_shape("new_user_ctr_curve", step_index=t, clicks=c, impressions=n)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int | np.integer) or n_steps < 1:
        _fail("new_user_ctr_curve(n_steps)", "an int >= 1", repr(n_steps))
    if (c > n).any():
        _fail("new_user_ctr_curve", "clicks <= impressions in every record", f"record {int(np.argmax(c > n))}")
    keep = t < n_steps
    imp = np.bincount(t[keep], weights=n[keep], minlength=n_steps)
    clk = np.bincount(t[keep], weights=c[keep], minlength=n_steps)
    out = np.full(n_steps, np.nan)
    np.divide(clk, imp, out=out, where=imp > 0)
    return out


class NewItemCurves(NamedTuple):
    """Cold-start curves of injected items (``J`` new items, ``T`` observed time steps)."""

    time_to_first_exposure: FloatArray
    """``(J,)`` steps from release to the first impression; ``nan`` if never shown."""
    time_to_first_click: FloatArray
    """``(J,)`` steps from release to the first click; ``nan`` if never clicked."""
    steps: NDArray[np.int64]
    """``(T,)`` sorted time steps at which impressions were observed."""
    exposure_share: FloatArray
    """``(T,)`` share of that step's impressions that went to the new items."""


def new_item_curves(steps: ArrayLike, item_ids: ArrayLike, clicked: ArrayLike, new_item_ids: ArrayLike,
                    release_steps: ArrayLike, released_by: int | None = None) -> NewItemCurves:
    """Time to first exposure/click of each injected item and new items' exposure share over time.

    Only items released at or before ``released_by`` (default: the last step in ``steps``) are timed: an
    item released after the evaluation ended did not exist, it was not "never exposed". The share is ``nan``
    (no data) at steps before the first release.

    Args:
        steps: ``(E,)`` int time step of each impression event (all items, not only new ones).
        item_ids: ``(E,)`` int shown item. clicked: ``(E,)`` bool.
        new_item_ids: ``(J,)`` int distinct ids of injected items. release_steps: ``(J,)`` int release time.

    Raises:
        ValueError: on shape/dtype problems, duplicate new ids, or a new item shown before its release.
    """
    where = "new_item_curves"
    s = _as_int(steps, f"{where}(steps)", 1, nonneg=True)
    ids = _as_int(item_ids, f"{where}(item_ids)", 1, nonneg=True)
    c = _as_bool(clicked, f"{where}(clicked)", 1)
    _same_shape(where, steps=s, item_ids=ids, clicked=c)
    new = _as_int(new_item_ids, f"{where}(new_item_ids)", 1, nonneg=True)
    rel = _as_int(release_steps, f"{where}(release_steps)", 1, nonneg=True)
    _same_shape(where, new_item_ids=new, release_steps=rel)
    if len(np.unique(new)) != len(new):
        uniq, cnt = np.unique(new, return_counts=True)
        _fail(f"{where}(new_item_ids)", "distinct ids", f"duplicates {uniq[cnt > 1]}")
    first_exp, first_clk = np.full(len(new), np.nan), np.full(len(new), np.nan)
    for j, (item, r) in enumerate(zip(new, rel, strict=True)):
        shown = s[ids == item]
        if shown.size and shown.min() < r:
            _fail(where, f"new item {item} shown at or after its release step {r}", f"shown at step {shown.min()}")
        if shown.size:
            first_exp[j] = shown.min() - r
        hit = s[(ids == item) & c]
        if hit.size:
            first_clk[j] = hit.min() - r
    uniq, inv = np.unique(s, return_inverse=True)
    total = np.bincount(inv, minlength=len(uniq))
    new_cnt = np.bincount(inv, weights=np.isin(ids, new), minlength=len(uniq))
    share = np.where((total > 0) & (uniq >= (rel.min() if rel.size else np.iinfo(np.int64).max)),
                     new_cnt / np.maximum(total, 1), np.nan)
    keep = rel <= (int(s.max()) if s.size else -1) if released_by is None else rel <= released_by
    return NewItemCurves(first_exp[keep], first_clk[keep], uniq.astype(np.int64), share)

