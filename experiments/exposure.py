"""Streaming exposure/click accumulator for evaluation: per-segment metrics in O(M) memory.

Split from :mod:`recgym.experiments.metrics` (which re-exports :class:`ExposureTracker`); the pure metric
functions live there and are reused here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from recgym.experiments.metrics import (
    DecileCTR,
    FloatArray,
    NewItemCurves,
    _as_bool,
    _as_float,
    _as_int,
    _check_popularity,
    _decile_from_counts,
    _describe,
    _fail,
    _ratio,
    _same_shape,
    coverage,
    gini,
    intra_list_diversity,
    ndcg_at_k,
    tail_ctr,
    tail_share,
)

__all__ = ["ExposureTracker"]


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
        ``"new_items"`` (with new items): ``n_items, n_impressions, n_clicks, ctr, exposure_share, coverage``,
        plus ``n_released, share_exposed, share_clicked, time_to_first_exposure, time_to_first_click``.
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
            out["new_items"].update(self._new_item_timing())
            out["all"]["new_item_share"] = out["new_items"]["exposure_share"]
        return out

    def _new_item_timing(self) -> dict[str, float]:
        """``n_released`` (new items released while the evaluation ran), ``share_exposed`` / ``share_clicked``
        (of those, shown / clicked at least once), ``time_to_first_exposure`` / ``time_to_first_click``
        (median steps from release, among the items exposed / clicked; ``nan`` when none was)."""
        curves = self.new_item_curves()
        n = len(curves.time_to_first_exposure)
        out = {"n_released": float(n)}
        for key, delays in (("exposure", curves.time_to_first_exposure), ("click", curves.time_to_first_click)):
            seen = delays[~np.isnan(delays)]
            out[f"share_{'exposed' if key == 'exposure' else 'clicked'}"] = _ratio(seen.size, n)
            out[f"time_to_first_{key}"] = float(np.median(seen)) if seen.size else float("nan")
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

    def new_item_curves(self, released_by: int | None = None) -> NewItemCurves:
        """Cold-start curves of the injected items, same definitions as :func:`new_item_curves`.

        ``released_by``: keep only the items released at or before this step (those the evaluation could
        show: an item released after it ended is not "never exposed", it did not exist); default: the last
        step seen by :meth:`update`. The exposure share
        is ``nan`` (no data) before the first release and at steps without impressions.
        """
        if released_by is None:
            released_by = max(self._series, default=-1)
        keep = self.new_item_release_steps <= released_by
        steps = np.array(sorted(self._series), dtype=np.int64)
        counts = np.array([self._series[s] for s in steps], dtype=np.float64).reshape(-1, 2)
        share = np.full(len(steps), np.nan)
        first = self.new_item_release_steps.min() if len(self.new_item_ids) else np.iinfo(np.int64).max
        ok = (counts[:, 1] > 0) & (steps >= first)
        share[ok] = counts[ok, 0] / counts[ok, 1]
        rel = self.new_item_release_steps[keep]
        return NewItemCurves(self._first_exp[keep] - rel, self._first_clk[keep] - rel, steps, share)

    def ctr_by_popularity_decile(self, n_bins: int = 10) -> DecileCTR:
        """CTR per popularity bin, as :func:`ctr_by_popularity_decile` (needs ``popularity``)."""
        if self.popularity is None:
            _fail("ExposureTracker.ctr_by_popularity_decile", "a tracker built with popularity=...", "None")
        # deciles of the initial catalogue: injected items (whose prior is a placeholder) are left out
        return _decile_from_counts(self._imp, self._clk, self.popularity, n_bins, ~self._is_new)  # type: ignore[arg-type]
