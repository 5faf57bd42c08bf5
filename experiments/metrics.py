"""Recommendation metrics: pure numpy functions plus a streaming :class:`ExposureTracker`.

Every function validates its input and raises ``ValueError`` naming the function, the argument, what was
expected and what was received. Conventions used throughout:

* An *impression* is one item shown in one slate position; a slate of size K gives K impressions.
* "No data" (CTR with zero impressions, Gini of an all-zero exposure vector, NDCG of a row whose
  candidates all have zero gain) is ``nan``, never a silent 0; aggregate with ``np.nanmean``.
* Item ids are ``int`` indices into a catalogue of ``M`` items, ``0 <= id < M``.

:class:`ExposureTracker` (bottom of this module) streams batches from an evaluation loop in O(M) memory
and returns the per-segment metrics dictionary (warm/cold users; head/tail/new items).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DecileCTR",
    "ExposureTracker",
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
                        n_bins: int) -> DecileCTR:
    m = len(popularity)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        _fail("ctr_by_popularity_decile(n_bins)", "an int >= 1", repr(n_bins))
    rank = np.empty(m, dtype=np.int64)
    rank[np.lexsort((-np.arange(m), popularity))] = np.arange(m)  # ascending popularity, ties by id
    item_bin = rank * n_bins // max(m, 1)
    imp = np.bincount(item_bin, weights=impressions, minlength=n_bins).astype(np.int64)
    clk = np.bincount(item_bin, weights=clicks, minlength=n_bins).astype(np.int64)
    rate = np.full(n_bins, np.nan)
    np.divide(clk, imp, out=rate, where=imp > 0)
    return DecileCTR(rate, imp, clk)


def ctr_by_popularity_decile(item_ids: ArrayLike, clicks: ArrayLike, popularity: ArrayLike,
                             n_bins: int = 10) -> DecileCTR:
    """CTR of impressions grouped by the popularity decile of the shown item.

    Items are ranked by ``popularity`` over the whole catalogue (ties broken by id) and split into
    ``n_bins`` equal-count bins: item of rank ``r`` (0 = least popular) goes to bin ``r * n_bins // M``.

    Args:
        item_ids: int ids of shown items, any shape (e.g. ``(B, K)``).
        clicks: bool, same shape as ``item_ids`` (True = that impression was clicked).
        popularity: ``(M,)`` float popularity per item (any non-negative scale).
    """
    p = _as_float(popularity, "ctr_by_popularity_decile(popularity)", 1, nonneg=True)
    ids = _as_int(item_ids, "ctr_by_popularity_decile(item_ids)", n_items=len(p))
    c = _as_bool(clicks, "ctr_by_popularity_decile(clicks)")
    _same_shape("ctr_by_popularity_decile", item_ids=ids, clicks=c)
    imp = np.bincount(ids.ravel(), minlength=len(p))
    clk = np.bincount(ids.ravel(), weights=c.ravel(), minlength=len(p))
    return _decile_from_counts(imp, clk, p, n_bins)


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
                    release_steps: ArrayLike) -> NewItemCurves:
    """Time to first exposure/click of each injected item and new items' exposure share over time.

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
    return NewItemCurves(first_exp, first_clk, uniq.astype(np.int64), new_cnt / np.maximum(total, 1))



# ------------------------------------------------------------------------------------ streaming tracker
class ExposureTracker:
    """Streams evaluation batches and returns per-segment metrics in O(M) memory.

    Segments: users are ``warm_users`` or ``cold_users`` (``user_cold`` flag per row); items are
    ``new_items`` (injected ids), else ``tail_items`` (``tail_mask``), else ``head_items`` — exclusive,
    a new item counts as new even if it is also in the tail. Catalogue-level metrics (coverage, Gini) are
    over all ``M`` items, items not yet released included.

    Memory: ``(M,)`` impression/click counters, ``(J,)`` for the ``J`` new items, ``(2, n_user_steps)`` for
    the new-user curve and two ints per distinct ``step`` for the new-item exposure share series; nothing
    grows with the number of users. ``item_embeddings`` is normalised once and kept (``(M, d)`` float32).

    Args:
        n_items: catalogue size ``M`` (including items injected later).
        tail_mask: ``(M,)`` bool, True for long-tail items (see :func:`tail_mask_from_popularity`);
            ``None`` disables the head/tail segments.
        popularity: ``(M,)`` float in ``(0, 1]``; enables ``novelty`` and :meth:`ctr_by_popularity_decile`.
        new_item_ids: ``(J,)`` int distinct ids of injected items; new_item_release_steps: ``(J,)`` int.
        item_embeddings: ``(M, d)`` float, non-zero rows; enables ``ild`` (intra-list diversity).
        n_user_steps: length of the per-session-step CTR curves (:meth:`user_ctr_curve`).
        ndcg_k: NDCG cutoff; defaults to the slate size.

    Example::

        tracker = ExposureTracker(M, tail_mask=tail, popularity=pop, new_item_ids=new, new_item_release_steps=rel)
        for t in range(T):
            tracker.update(t, slates, clicks, probs, user_cold, user_step=steps, candidate_relevance=cand)
        metrics = tracker.result()   # {"all": {...}, "warm_users": {...}, ..., "new_items": {...}}
    """

    USER_SEGMENTS = ("warm_users", "cold_users")

    def __init__(self, n_items: int, *, tail_mask: ArrayLike | None = None, popularity: ArrayLike | None = None,
                 new_item_ids: ArrayLike | None = None, new_item_release_steps: ArrayLike | None = None,
                 item_embeddings: ArrayLike | None = None, n_user_steps: int = 20,
                 ndcg_k: int | None = None) -> None:
        w = "ExposureTracker"
        if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items < 1:
            _fail(f"{w}(n_items)", "an int >= 1", repr(n_items))
        if isinstance(n_user_steps, bool) or not isinstance(n_user_steps, int | np.integer) or n_user_steps < 1:
            _fail(f"{w}(n_user_steps)", "an int >= 1", repr(n_user_steps))
        self.n_items, self.n_user_steps, self.ndcg_k = int(n_items), int(n_user_steps), ndcg_k
        m = self.n_items

        def _len_m(a: np.ndarray, name: str) -> None:
            if len(a) != m:
                _fail(f"{w}({name})", f"length n_items = {m}", _describe(a))

        self.tail_mask = None if tail_mask is None else _as_bool(tail_mask, f"{w}(tail_mask)", 1)
        self.popularity = None if popularity is None else _check_popularity(popularity, f"{w}(popularity)")
        for name, a in (("tail_mask", self.tail_mask), ("popularity", self.popularity)):
            if a is not None:
                _len_m(a, name)
        if (new_item_ids is None) != (new_item_release_steps is None):
            _fail(w, "new_item_ids and new_item_release_steps given together", "only one of them")
        new = _as_int([] if new_item_ids is None else new_item_ids, f"{w}(new_item_ids)", 1, n_items=m)
        rel = _as_int([] if new_item_release_steps is None else new_item_release_steps,
                      f"{w}(new_item_release_steps)", 1, nonneg=True)
        _same_shape(w, new_item_ids=new, new_item_release_steps=rel)
        if len(np.unique(new)) != len(new):
            _fail(f"{w}(new_item_ids)", "distinct ids", f"{len(new) - len(np.unique(new))} duplicates")
        order = np.argsort(new)
        self.new_item_ids, self.new_item_release_steps = new[order], rel[order]
        self._is_new = np.zeros(m, dtype=bool)
        self._is_new[new] = True
        self._unit_emb = None
        if item_embeddings is not None:
            e = _as_float(item_embeddings, f"{w}(item_embeddings)", 2)
            _len_m(e, "item_embeddings")
            norms = np.linalg.norm(e, axis=1, keepdims=True)
            if (norms == 0).any():
                _fail(f"{w}(item_embeddings)", "non-zero rows", f"zero row {int(np.argmax(norms[:, 0] == 0))}")
            self._unit_emb = (e / norms).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far (keeps the configuration)."""
        self._imp = np.zeros(self.n_items, dtype=np.int64)
        self._clk = np.zeros(self.n_items, dtype=np.int64)
        self._u = {key: np.zeros(2) for key in ("slates", "impressions", "clicks", "true_prob", "ndcg_sum",
                                               "ndcg_rows", "ndcg_zero_ideal", "ild_sum", "ild_rows", "nov_sum")}
        self._curve = np.zeros((2, 2, self.n_user_steps))  # (impressions|clicks, warm|cold, step)
        self._first_exp = np.full(len(self.new_item_ids), np.nan)
        self._first_clk = np.full(len(self.new_item_ids), np.nan)
        self._series: dict[int, list[int]] = {}
        self._k: int | None = None

    def update(self, step: int, slate_item_ids: ArrayLike, clicks: ArrayLike, true_click_probs: ArrayLike,
               user_cold: ArrayLike, *, user_step: ArrayLike | None = None,
               candidate_relevance: ArrayLike | None = None, mask: ArrayLike | None = None) -> None:
        """Add one batch of ``B`` slates shown at time ``step``.

        Args:
            step: int ``>= 0``, the evaluation time step (clock of item releases and of the share series).
            slate_item_ids: ``(B, K)`` int item ids, distinct within a row; ``K`` fixed across updates.
            clicks: ``(B, K)`` bool. true_click_probs: ``(B, K)`` float in ``[0, 1]`` (hidden relevance).
            user_cold: ``(B,)`` bool, True for cold-start (new) users.
            user_step: ``(B,)`` int, 0-based index of this step in each user's session (for the curves).
            candidate_relevance: ``(B, N)`` float true click probability of every candidate (``nan`` =
                masked); enables ``ndcg``.
            mask: ``(B,)`` bool, rows to count (e.g. False for users whose session already ended).
        """
        w = "ExposureTracker.update"
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            _fail(f"{w}(step)", "an int >= 0", repr(step))
        ids = _as_int(slate_item_ids, f"{w}(slate_item_ids)", 2, n_items=self.n_items)
        c = _as_bool(clicks, f"{w}(clicks)", 2)
        p = _as_float(true_click_probs, f"{w}(true_click_probs)", 2, nonneg=True)
        _same_shape(w, slate_item_ids=ids, clicks=c, true_click_probs=p)
        if p.size and p.max() > 1:
            _fail(f"{w}(true_click_probs)", "probabilities in [0, 1]", f"maximum {p.max():g}")
        b, k = ids.shape
        rows = {"user_cold": _as_bool(user_cold, f"{w}(user_cold)", 1)}
        if user_step is not None:
            rows["user_step"] = _as_int(user_step, f"{w}(user_step)", 1, nonneg=True)
        if mask is not None:
            rows["mask"] = _as_bool(mask, f"{w}(mask)", 1)
        for name, a in rows.items():
            if len(a) != b:
                _fail(f"{w}({name})", f"length B = {b}", _describe(a))
        if self._k is not None and k != self._k:
            _fail(f"{w}(slate_item_ids)", f"slate size K = {self._k} as in earlier updates", f"K = {k}")
        srt = np.sort(ids, axis=1)
        if (srt[:, 1:] == srt[:, :-1]).any():
            _fail(f"{w}(slate_item_ids)", "distinct items within each slate",
                  f"a duplicate in row {int(np.argmax((srt[:, 1:] == srt[:, :-1]).any(axis=1)))}")
        cand = None
        if candidate_relevance is not None:
            cand = _as_float(candidate_relevance, f"{w}(candidate_relevance)", 2, allow_nan=True, nonneg=True)
            if len(cand) != b:
                _fail(f"{w}(candidate_relevance)", f"{b} rows", _describe(cand))
        if "mask" in rows:
            keep = rows["mask"]
            ids, c, p, rows = ids[keep], c[keep], p[keep], {n: a[keep] for n, a in rows.items()}
            cand = None if cand is None else cand[keep]
        self._k = k
        if len(ids) == 0:
            return
        self._accumulate(int(step), ids, c, p, rows["user_cold"].astype(np.int64), rows.get("user_step"), cand)

    def _accumulate(self, step: int, ids: np.ndarray, c: np.ndarray, p: np.ndarray, seg: np.ndarray,
                    user_step: np.ndarray | None, cand: np.ndarray | None) -> None:
        b, k = ids.shape
        new_j = np.searchsorted(self.new_item_ids, ids[self._is_new[ids]])
        if new_j.size and step < self.new_item_release_steps[new_j].min():
            j = new_j[np.argmin(self.new_item_release_steps[new_j])]
            _fail("ExposureTracker.update", f"new item {self.new_item_ids[j]} shown at or after its release "
                  f"step {self.new_item_release_steps[j]}", f"shown at step {step}")
        np.add.at(self._imp, ids.ravel(), 1)
        np.add.at(self._clk, ids[c], 1)
        np.fmin.at(self._first_exp, new_j, float(step))
        np.fmin.at(self._first_clk, np.searchsorted(self.new_item_ids, ids[c & self._is_new[ids]]), float(step))
        series = self._series.setdefault(step, [0, 0])
        series[0] += new_j.size
        series[1] += ids.size

        def add(key: str, per_row: np.ndarray, rows: np.ndarray | slice = slice(None)) -> None:
            self._u[key] += np.bincount(seg[rows], weights=per_row, minlength=2)

        add("slates", np.ones(b))
        add("impressions", np.full(b, float(k)))
        add("clicks", c.sum(axis=1).astype(np.float64))
        add("true_prob", p.sum(axis=1))
        if cand is not None:
            nd = ndcg_at_k(p, cand, self.ndcg_k)
            ok = ~np.isnan(nd)
            add("ndcg_sum", nd[ok], ok)
            add("ndcg_rows", np.ones(int(ok.sum())), ok)
            add("ndcg_zero_ideal", np.ones(int((~ok).sum())), ~ok)
        if self._unit_emb is not None and k >= 2:
            add("ild_sum", intra_list_diversity(self._unit_emb[ids]))
            add("ild_rows", np.ones(b))
        if self.popularity is not None:
            add("nov_sum", -np.log2(self.popularity[ids]).sum(axis=1))
        if user_step is not None:
            ok = user_step < self.n_user_steps
            np.add.at(self._curve[0], (seg[ok], user_step[ok]), float(k))
            np.add.at(self._curve[1], (seg[ok], user_step[ok]), c[ok].sum(axis=1))

    # ---------------------------------------------------------------------------------------- results
    @property
    def exposure_counts(self) -> NDArray[np.int64]:
        """``(M,)`` impressions per item so far (a copy)."""
        return self._imp.copy()

    @property
    def click_counts(self) -> NDArray[np.int64]:
        """``(M,)`` clicks per item so far (a copy)."""
        return self._clk.copy()

    def _user_metrics(self, i: int | slice) -> dict[str, float]:
        u = {key: float(np.sum(v[i])) for key, v in self._u.items()}
        out = {"n_slates": u["slates"], "n_impressions": u["impressions"], "n_clicks": u["clicks"],
               "ctr": _ratio(u["clicks"], u["impressions"]), "expected_ctr": _ratio(u["true_prob"], u["impressions"]),
               "clicks_per_slate": _ratio(u["clicks"], u["slates"])}
        out.update(ndcg=_ratio(u["ndcg_sum"], u["ndcg_rows"]), ndcg_zero_ideal_rows=u["ndcg_zero_ideal"])
        if self._unit_emb is not None:
            out["ild"] = _ratio(u["ild_sum"], u["ild_rows"])
        if self.popularity is not None:
            out["novelty"] = _ratio(u["nov_sum"], u["impressions"])
        return out

    def _item_metrics(self, members: np.ndarray) -> dict[str, float]:
        return {"n_items": float(members.sum()), "n_impressions": float(self._imp[members].sum()),
                "n_clicks": float(self._clk[members].sum()), "ctr": _ratio(self._clk[members].sum(), self._imp[members].sum()),
                "exposure_share": _ratio(self._imp[members].sum(), self._imp.sum()),
                "coverage": _ratio(np.count_nonzero(self._imp[members]), members.sum())}

    def result(self) -> dict[str, dict[str, float]]:
        """Metrics per segment as plain floats (``nan`` = no data), ready for JSON/CSV.

        Keys: ``"all"``, ``"warm_users"``, ``"cold_users"`` (user metrics: ``n_slates, n_impressions,
        n_clicks, ctr, expected_ctr`` (mean true click probability), ``clicks_per_slate, ndcg,
        ndcg_zero_ideal_rows``, and ``ild`` / ``novelty`` when embeddings / popularity were given);
        ``"all"`` adds ``coverage, gini`` and, with a tail mask, ``tail_share, tail_ctr``, with new items
        ``new_item_share``. Item segments ``"head_items"``, ``"tail_items"`` (with a tail mask) and
        ``"new_items"`` (with new items): ``n_items, n_impressions, n_clicks, ctr, exposure_share, coverage``.
        ``ndcg`` is ``nan`` unless ``candidate_relevance`` was passed to :meth:`update`.
        """
        out = {"all": self._user_metrics(slice(None))}
        out["all"].update(coverage=coverage(self._imp), gini=gini(self._imp))
        for i, name in enumerate(self.USER_SEGMENTS):
            out[name] = self._user_metrics(i)
        if self.tail_mask is not None:
            out["all"].update(tail_share=tail_share(self._imp, self.tail_mask),
                              tail_ctr=tail_ctr(self._clk, self._imp, self.tail_mask))
            out["head_items"] = self._item_metrics(~self.tail_mask & ~self._is_new)
            out["tail_items"] = self._item_metrics(self.tail_mask & ~self._is_new)
        if len(self.new_item_ids):
            out["new_items"] = self._item_metrics(self._is_new)
            out["all"]["new_item_share"] = out["new_items"]["exposure_share"]
        return out

    def user_ctr_curve(self, segment: str = "cold_users") -> FloatArray:
        """``(n_user_steps,)`` CTR at each session step for ``"cold_users"`` (new users) or ``"warm_users"``.

        Same definition as :func:`new_user_ctr_curve`; ``nan`` where no user of the segment reached that
        step (or ``user_step`` was never passed).
        """
        if segment not in self.USER_SEGMENTS:
            _fail("ExposureTracker.user_ctr_curve(segment)", f"one of {self.USER_SEGMENTS}", repr(segment))
        i = self.USER_SEGMENTS.index(segment)
        out = np.full(self.n_user_steps, np.nan)
        np.divide(self._curve[1, i], self._curve[0, i], out=out, where=self._curve[0, i] > 0)
        return out

    def new_item_curves(self) -> NewItemCurves:
        """Cold-start curves of the injected items, same definitions as :func:`new_item_curves`."""
        steps = np.array(sorted(self._series), dtype=np.int64)
        counts = np.array([self._series[s] for s in steps], dtype=np.float64).reshape(-1, 2)
        return NewItemCurves(self._first_exp - self.new_item_release_steps,
                             self._first_clk - self.new_item_release_steps, steps,
                             counts[:, 0] / np.maximum(counts[:, 1], 1))

    def ctr_by_popularity_decile(self, n_bins: int = 10) -> DecileCTR:
        """CTR per popularity bin, as :func:`ctr_by_popularity_decile` (needs ``popularity``)."""
        if self.popularity is None:
            _fail("ExposureTracker.ctr_by_popularity_decile", "a tracker built with popularity=...", "None")
        return _decile_from_counts(self._imp, self._clk, self.popularity, n_bins)  # type: ignore[arg-type]
