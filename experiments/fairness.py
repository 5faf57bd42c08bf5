"""Fairness of exposure: item-side exposure vs true relevance, and user-side outcome gaps.

Item side. A slate of ``K`` gives position ``j`` (0-based) the *attention* ``v_j = 1 / log2(j + 2)`` (the
DCG discount, the position-based exposure model of Singh & Joachims 2018). Each ranking (one user-step)
offers its ``N`` unmasked candidates; the simulator knows every candidate's true relevance ``rel``
(click probability, ``info["candidate_click_probs"]``). Per item ``i`` the :class:`FairnessTracker` adds up:

* ``exposure_i = sum v_j`` over the slates that showed ``i`` (at position ``j``);
* ``merit_i = sum rel_i`` over the rankings in which ``i`` was an unmasked candidate;
* ``opportunities_i``: how many rankings offered ``i``;
* Biega et al. (2018) *equity of attention*: ``A_i += v_j / sum_j v_j`` and ``R_i += rel_i / sum_cand rel``
  (attention and relevance normalised within each ranking).

Scalars (all in the ``"all"`` segment of a cell's metrics):

* ``eoa_unfairness = sum_i |A_i - R_i| / n_rankings`` in ``[0, 2]``: 0 when every item's cumulative share of
  attention equals its cumulative share of relevance (amortised individual fairness, Biega et al. eq. 3);
  a top-``K`` of ``N`` slate cannot reach 0 in one ranking, only amortised over many.
* for each item grouping ``g`` (``popularity`` deciles of the prior, primary ``genre``, ``new`` vs initial
  items): ``treatment_gap_g = 1/2 sum_G |exposure share of G - merit share of G|`` (Singh & Joachims'
  disparate treatment: exposure proportional to merit gives 0; 1 = all exposure to groups with no merit)
  and ``parity_gap_g = 1/2 sum_G |exposure share - opportunity share|`` (demographic parity of exposure per
  offered item, relevance ignored). Per group: ``exposure_share, merit_share, exposure_merit_ratio``
  (1 = fair; < 1 under-exposed for its merit), ``n_items``.

User side (:func:`user_group_metrics`): per user group (``cold`` vs warm users, and each demographic
attribute parsed from the profile text, see :func:`parse_demographics`) the CTR, mean satisfaction per
session, retention (share of sessions the user did not leave: ended by the time limit, not by the budget)
and return; gaps ``user_<metric>_gap_<attribute> = max - min`` over groups with at least ``min_sessions``
sessions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from recgym.experiments.metrics import _as_bool, _as_float, _as_int, _fail

__all__ = [
    "FairnessTracker", "Grouping", "equity_of_attention", "exposure_gaps", "item_groupings", "parse_demographics",
    "position_weights", "total_variation", "user_group_metrics", "user_groupings",
]

FloatArray = NDArray[np.float64]


def position_weights(k: int) -> FloatArray:
    """``(k,)`` attention of slate positions ``1 / log2(j + 2)``, ``j = 0..k-1`` (1, 0.63, 0.5, ...)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        _fail("position_weights(k)", "an int >= 1", repr(k))
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def total_variation(p: ArrayLike, q: ArrayLike) -> float:
    """``1/2 sum |p/sum p - q/sum q|`` in ``[0, 1]`` between two non-negative weight vectors; ``nan`` if
    either sums to 0."""
    a = _as_float(p, "total_variation(p)", 1, nonneg=True)
    b = _as_float(q, "total_variation(q)", 1, nonneg=True)
    if a.shape != b.shape:
        _fail("total_variation", "p and q of the same length", f"{a.shape} and {b.shape}")
    if a.sum() <= 0 or b.sum() <= 0:
        return float("nan")
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def equity_of_attention(attention: ArrayLike, relevance: ArrayLike, n_rankings: int) -> float:
    """Biega et al.'s amortised unfairness ``sum_i |A_i - R_i| / n_rankings`` in ``[0, 2]``.

    Args:
        attention: ``(M,)`` cumulative per-ranking-normalised attention of each item (each ranking adds 1 in
            total). relevance: ``(M,)`` cumulative per-ranking-normalised relevance (each ranking adds 1).
        n_rankings: number of rankings accumulated (``nan`` is returned for 0).
    """
    a = _as_float(attention, "equity_of_attention(attention)", 1, nonneg=True)
    r = _as_float(relevance, "equity_of_attention(relevance)", 1, nonneg=True)
    if a.shape != r.shape:
        _fail("equity_of_attention", "attention and relevance of the same length", f"{a.shape} and {r.shape}")
    if n_rankings <= 0:
        return float("nan")
    return float(np.abs(a - r).sum() / n_rankings)


@dataclass(frozen=True)
class Grouping:
    """A partition of items (or users): ``groups`` ``(n,)`` int64 in ``[-1, len(labels))``; ``-1`` = not in
    any group of this grouping (e.g. new items in the popularity deciles of the initial catalogue)."""

    groups: NDArray[np.int64]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        g = np.asarray(self.groups)
        if g.ndim != 1 or g.dtype.kind not in "iu" or (g.size and (g.min() < -1 or g.max() >= len(self.labels))):
            _fail("Grouping.groups", f"a 1-d int array in [-1, {len(self.labels)})", f"{g.dtype} {g.shape}")

    def sums(self, values: np.ndarray) -> FloatArray:
        """``(G,)`` sum of ``values`` ``(n,)`` per group (entries in no group ignored)."""
        keep = self.groups >= 0
        return np.bincount(self.groups[keep], weights=values[keep], minlength=len(self.labels))


def exposure_gaps(exposure: ArrayLike, merit: ArrayLike, opportunities: ArrayLike,
                  grouping: Grouping) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Group-level disparity of exposure (see the module docstring).

    Args: ``(M,)`` per-item exposure, merit and opportunities (non-negative); ``grouping`` over the M items.

    Returns:
        ``({"treatment_gap": ..., "parity_gap": ...}, {label: {"exposure_share", "merit_share",
        "opportunity_share", "exposure_merit_ratio", "n_items"}})``; shares are within the grouping's items.
    """
    e = _as_float(exposure, "exposure_gaps(exposure)", 1, nonneg=True)
    m = _as_float(merit, "exposure_gaps(merit)", 1, nonneg=True)
    o = _as_float(opportunities, "exposure_gaps(opportunities)", 1, nonneg=True)
    if not (len(e) == len(m) == len(o) == len(grouping.groups)):
        _fail("exposure_gaps", "exposure, merit, opportunities and groups of one length",
              f"{len(e)}, {len(m)}, {len(o)}, {len(grouping.groups)}")
    ge, gm, go = grouping.sums(e), grouping.sums(m), grouping.sums(o)
    gn = grouping.sums(np.ones(len(e)))
    scalars = {"treatment_gap": total_variation(ge, gm), "parity_gap": total_variation(ge, go)}
    es = ge / ge.sum() if ge.sum() > 0 else np.full(len(ge), np.nan)
    ms = gm / gm.sum() if gm.sum() > 0 else np.full(len(gm), np.nan)
    os_ = go / go.sum() if go.sum() > 0 else np.full(len(go), np.nan)
    per = {}
    for j, label in enumerate(grouping.labels):
        ratio = es[j] / ms[j] if np.isfinite(ms[j]) and ms[j] > 0 else float("nan")
        per[label] = {"exposure_share": float(es[j]), "merit_share": float(ms[j]), "opportunity_share": float(os_[j]),
                      "exposure_merit_ratio": float(ratio), "n_items": float(gn[j])}
    return scalars, per


# ------------------------------------------------------------------------------------------- tracker
class FairnessTracker:
    """Streams evaluation rankings; per-item exposure, merit and Biega attention/relevance in O(M) memory.

    Args:
        n_items: catalogue size ``M``.

    Example::

        ft = FairnessTracker(M)
        ft.update(slate_items, candidate_ids, candidate_relevance, mask=active)   # every step
        scalars, per_group = ft.result(item_groupings(world.catalog))
    """

    def __init__(self, n_items: int) -> None:
        if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items < 1:
            _fail("FairnessTracker(n_items)", "an int >= 1", repr(n_items))
        self.n_items = int(n_items)
        z = np.zeros
        self.exposure, self.merit, self.opportunities = z(self.n_items), z(self.n_items), z(self.n_items)
        self.attention, self.relevance = z(self.n_items), z(self.n_items)
        self.n_rankings = 0

    def update(self, slate_item_ids: ArrayLike, candidate_ids: ArrayLike, candidate_relevance: ArrayLike,
               mask: ArrayLike | None = None) -> None:
        """Add ``B`` rankings.

        Args:
            slate_item_ids: ``(B, K)`` int item ids shown, best position first.
            candidate_ids: ``(B, N)`` int item ids offered. candidate_relevance: ``(B, N)`` float true relevance
                in ``[0, 1]`` with ``nan`` for masked candidates (not offered). The shown items must be offered.
            mask: ``(B,)`` bool rows to count (e.g. False for sessions that already ended).
        """
        w = "FairnessTracker.update"
        ids = _as_int(slate_item_ids, f"{w}(slate_item_ids)", 2, n_items=self.n_items)
        cand = _as_int(candidate_ids, f"{w}(candidate_ids)", 2, n_items=self.n_items)
        rel = _as_float(candidate_relevance, f"{w}(candidate_relevance)", 2, allow_nan=True, nonneg=True)
        if rel.shape != cand.shape or len(ids) != len(cand):
            _fail(w, "slate (B, K), candidates (B, N) and relevance (B, N) with one B",
                  f"{ids.shape}, {cand.shape}, {rel.shape}")
        if mask is not None:
            keep = _as_bool(mask, f"{w}(mask)", 1)
            if len(keep) != len(ids):
                _fail(f"{w}(mask)", f"length B = {len(ids)}", f"length {len(keep)}")
            ids, cand, rel = ids[keep], cand[keep], rel[keep]
        if len(ids) == 0:
            return
        offered = ~np.isnan(rel)
        offered_items = np.where(offered, cand, -1)
        if not (offered_items[:, :, None] == ids[:, None, :]).any(axis=1).all():
            _fail(w, "every shown item among the row's unmasked candidates", "a shown item that was not offered")
        v = position_weights(ids.shape[1])
        vb = np.broadcast_to(v, ids.shape)
        np.add.at(self.exposure, ids.ravel(), vb.ravel())
        np.add.at(self.attention, ids.ravel(), (vb / v.sum()).ravel())
        r = np.where(offered, rel, 0.0)
        np.add.at(self.merit, cand[offered], r[offered])
        np.add.at(self.opportunities, cand[offered], 1.0)
        total = r.sum(axis=1, keepdims=True)
        share = np.divide(r, total, out=np.zeros_like(r), where=total > 0)
        np.add.at(self.relevance, cand[offered], share[offered])
        self.n_rankings += len(ids)

    def result(self, groupings: Mapping[str, Grouping]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """``(scalars, per_group)``: ``eoa_unfairness`` and ``treatment_gap_<g>`` / ``parity_gap_<g>`` per
        grouping; per-group metrics under segment names ``"items:<g>=<label>"``."""
        scalars = {"eoa_unfairness": equity_of_attention(self.attention, self.relevance, self.n_rankings)}
        per_group: dict[str, dict[str, float]] = {}
        for name, grouping in groupings.items():
            if len(grouping.groups) != self.n_items:
                _fail(f"FairnessTracker.result(groupings[{name!r}])", f"groups of length {self.n_items}",
                      f"length {len(grouping.groups)}")
            s, per = exposure_gaps(self.exposure, self.merit, self.opportunities, grouping)
            scalars[f"treatment_gap_{name}"] = s["treatment_gap"]
            scalars[f"parity_gap_{name}"] = s["parity_gap"]
            per_group.update({f"items:{name}={label}": m for label, m in per.items()})
        return scalars, per_group


# ------------------------------------------------------------------------------------------- groupings
def item_groupings(catalog: object, n_bins: int = 10) -> dict[str, Grouping]:
    """Item groupings of a :class:`~recgym.envs.world.Catalog`: ``popularity`` (deciles of the prior among
    initial items, ``d0`` = least popular; new items in no decile), ``genre`` (primary genre) and ``new``
    (``new`` injected vs ``initial`` items)."""
    pop = np.asarray(catalog.popularity, dtype=np.float64)  # type: ignore[attr-defined]
    is_new = np.asarray(catalog.is_new, dtype=bool)  # type: ignore[attr-defined]
    m = len(pop)
    initial = np.flatnonzero(~is_new)
    order = initial[np.lexsort((-initial, pop[initial]))]  # ascending popularity, ties by id
    dec = np.full(m, -1, dtype=np.int64)
    dec[order] = np.arange(len(order)) * n_bins // max(len(order), 1)
    genres = np.asarray(catalog.genres, dtype=np.int64)  # type: ignore[attr-defined]
    return {
        "popularity": Grouping(dec, tuple(f"d{j}" for j in range(n_bins))),
        "genre": Grouping(genres, tuple(str(g) for g in catalog.genre_names)),  # type: ignore[attr-defined]
        "new": Grouping(is_new.astype(np.int64), ("initial", "new")),
    }


_DEMO = re.compile(r"^User ([^.]*?)\.(?:\s|$)")


def parse_demographics(text: str) -> dict[str, str]:
    """Demographics of a profile text written by :func:`recgym.encoders.profile_text`
    (``"User age: 34; gender: f. Likes ..."`` -> ``{"age": "34", "gender": "f"}``); ``{}`` when absent."""
    m = _DEMO.match(text.strip())
    if not m:
        return {}
    out = {}
    for part in m.group(1).split("; "):
        key, sep, value = part.partition(": ")
        if sep and key.strip() and value.strip():
            out[key.strip()] = value.strip()
    return out


def _numeric(values: Sequence[str]) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in values])
    except ValueError:
        return None


def user_groupings(population: object, max_levels: int = 8, max_distinct: int = 40,
                   n_quantiles: int = 4) -> dict[str, Grouping]:
    """User groupings: ``cold`` (``warm`` / ``cold``) and one per demographic attribute parsed from the
    profile texts (:func:`parse_demographics`).

    Numeric attributes (e.g. age) are cut at their population quantiles into ``n_quantiles`` bins labelled
    ``"[lo, hi)"``; categorical ones keep their ``max_levels - 1`` most frequent values plus ``other``.
    Attributes with a single value, or more than ``max_distinct`` distinct non-numeric values (ids, zip
    codes), are skipped; users without the attribute are in no group of it.
    """
    cold = np.asarray(population.cold, dtype=bool)  # type: ignore[attr-defined]
    out = {"cold": Grouping(cold.astype(np.int64), ("warm", "cold"))}
    demos = [parse_demographics(t) for t in population.texts]  # type: ignore[attr-defined]
    keys = sorted({k for d in demos for k in d})
    for key in keys:
        has = np.array([key in d for d in demos])
        vals = [d[key] for d in demos if key in d]
        groups = np.full(len(demos), -1, dtype=np.int64)
        num = _numeric(vals)
        if num is not None and len(np.unique(num)) > max_levels:
            edges = np.unique(np.quantile(num, np.linspace(0, 1, n_quantiles + 1)[1:-1]))
            groups[has] = np.searchsorted(edges, num, side="right")
            bounds = [num.min(), *edges, num.max()]
            labels = tuple(f"[{bounds[j]:g}, {bounds[j + 1]:g}{']' if j == len(edges) else ')'}"
                           for j in range(len(edges) + 1))
        else:
            uniq, counts = np.unique(vals, return_counts=True)
            if len(uniq) < 2 or (num is None and len(uniq) > max_distinct):
                continue
            top = [str(u) for u in uniq[np.lexsort((uniq, -counts))][: max_levels - 1 if len(uniq) > max_levels else None]]
            labels = tuple(top + (["other"] if len(uniq) > len(top) else []))
            index = {v: j for j, v in enumerate(top)}
            groups[has] = [index.get(v, len(top)) for v in vals]
        out[key] = Grouping(groups, labels)
    return out


def user_group_metrics(users: ArrayLike, clicks: ArrayLike, impressions: ArrayLike, satisfaction: ArrayLike,
                       left: ArrayLike, returns: ArrayLike, groupings: Mapping[str, Grouping],
                       min_sessions: int = 5) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """User-side fairness over ``S`` evaluated sessions.

    Args:
        users: ``(S,)`` int population index of each session's user. clicks / impressions: ``(S,)`` totals per
            session. satisfaction / returns: ``(S,)`` per-session sums. left: ``(S,)`` bool, the user left
            (``terminated``) rather than reaching the time limit.
        groupings: user groupings over the population (:func:`user_groupings`).
        min_sessions: groups with fewer sessions get their metrics but are left out of the gaps.

    Returns:
        ``(scalars, per_group)``: ``user_{ctr,satisfaction,retention}_gap_<attribute>`` (max - min over
        groups); per group (segment ``"users:<attribute>=<label>"``) ``ctr, satisfaction, retention, return,
        n_sessions``.
    """
    w = "user_group_metrics"
    u = _as_int(users, f"{w}(users)", 1, nonneg=True)
    cols = {name: _as_float(x, f"{w}({name})", 1) for name, x in
            (("clicks", clicks), ("impressions", impressions), ("satisfaction", satisfaction), ("returns", returns))}
    stay = ~_as_bool(left, f"{w}(left)", 1)
    if any(len(c) != len(u) for c in (*cols.values(), stay)):
        _fail(w, f"per-session arrays of length S = {len(u)}", str({k: len(v) for k, v in cols.items()}))
    scalars: dict[str, float] = {}
    per_group: dict[str, dict[str, float]] = {}
    for name, grouping in groupings.items():
        if len(u) and u.max() >= len(grouping.groups):
            _fail(f"{w}(users)", f"indices < {len(grouping.groups)} (grouping {name!r})", f"maximum {u.max()}")
        g = grouping.groups[u]
        stats = {"ctr": [], "satisfaction": [], "retention": []}
        for j, label in enumerate(grouping.labels):
            rows = g == j
            n = int(rows.sum())
            imp = cols["impressions"][rows].sum()
            m = {"ctr": float(cols["clicks"][rows].sum() / imp) if imp > 0 else float("nan"),
                 "satisfaction": float(cols["satisfaction"][rows].mean()) if n else float("nan"),
                 "retention": float(stay[rows].mean()) if n else float("nan"),
                 "return": float(cols["returns"][rows].mean()) if n else float("nan"), "n_sessions": float(n)}
            per_group[f"users:{name}={label}"] = m
            if n >= min_sessions:
                for key in stats:
                    if np.isfinite(m[key]):
                        stats[key].append(m[key])
        for key, vals in stats.items():
            scalars[f"user_{key}_gap_{name}"] = float(max(vals) - min(vals)) if len(vals) >= 2 else float("nan")
    return scalars, per_group
