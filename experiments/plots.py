"""PNG plots of a run: learning curves, agent comparison bars, Lorenz curves, CTR by decile, cold start.

Figures are built with the object-oriented Matplotlib API on an Agg canvas (no pyplot, no global
backend switch, safe in worker processes) and written atomically: rendered to memory, then
:func:`recgym.common.io.atomic_write_bytes` (temp file in the same folder + ``os.replace``). Each function
returns the written path. Bands and error bars are two-sided Student-t confidence intervals over seeds
(:mod:`recgym.experiments.stats`); with a single seed no band is drawn.

Input containing nan or inf raises ``ValueError`` naming the plot, the agent and the position, except
where documented (``allow_missing=True`` for "no data" points; nan in times-to-first-exposure = never).

Conventions every plot follows: "no data" is drawn as a gap, never as 0; confidence bands and error bars
are clipped to the metric's range (:data:`METRIC_RANGES`; a CTR band never goes below 0); axis labels are
words with units (:func:`metric_label`); popularity deciles are numbered 1 (least popular) to 10 (most
popular) over the initial catalogue; the Lorenz legend shows the same Gini as the tables (the mean of the
per-seed Gini coefficients, which is the Gini of the mean Lorenz curve: the Gini is linear in the curve).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from recgym.common.io import atomic_write_bytes

from .metrics import DecileCTR, gini, lorenz_curve
from .stats import mean_ci, t_quantile

__all__ = ["plot_agent_bars", "plot_cold_start_curves", "plot_ctr_by_decile", "plot_learning_curves", "plot_lorenz",
           "METRIC_LABELS", "METRIC_RANGES", "metric_label", "lorenz_summary"]

PathLike = str | os.PathLike[str]
Range = tuple[float | None, float | None]

UNIT = (0.0, 1.0)
METRIC_RANGES: dict[str, Range] = {
    "ctr": UNIT, "ndcg": UNIT, "coverage": UNIT, "gini": UNIT, "tail_share": UNIT, "tail_ctr": UNIT,
    "exposure_share": UNIT, "new_item_share": UNIT, "mean_relevance": UNIT, "ild": (0.0, 2.0),
    "novelty": (0.0, None), "session_length": (0.0, None), "engagement": (0.0, None), "clicks_per_slate": (0.0, None),
}
"""Range of each metric: bands and error bars are clipped to it (``None`` = unbounded on that side)."""

METRIC_LABELS: dict[str, str] = {
    "return": "session return (reward summed over a session)",
    "ctr": "click-through rate (clicks per impression)",
    "ndcg": "NDCG@K vs hidden relevance (1 = the best slate)",
    "coverage": "catalogue coverage (share of items shown)",
    "gini": "Gini of item exposure (0 = equal, 1 = one item)",
    "tail_share": "long-tail share of impressions",
    "tail_ctr": "CTR of long-tail items (clicks per impression)",
    "exposure_share": "share of impressions",
    "new_item_share": "new items' share of impressions",
    "novelty": "novelty (mean -log2 popularity of shown items, bits)",
    "ild": "intra-list diversity (mean cosine distance within a slate)",
    "session_length": "session length (slates per session)",
    "satisfaction": "satisfaction per session (sum of quality - threshold over clicks)",
    "engagement": "engagement per session (total dwell)",
    "mean_relevance": "mean hidden click probability of shown items",
    "time_to_first_click": "slates from release to first click",
}


def metric_label(metric: str, reward: str | None = None) -> str:
    """Axis label of ``metric`` in words with its unit; ``return`` names the reward when it is given."""
    if metric == "return" and reward:
        unit = {"clicks": "clicks", "engagement": "dwell", "satisfaction": "satisfaction", "mix": "mixed reward"}
        return f"session return ({unit.get(reward, reward)} per session)"
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def _clip(lo: np.ndarray, hi: np.ndarray, value_range: Range | None) -> tuple[np.ndarray, np.ndarray]:
    """Band bounds clipped to ``value_range``."""
    if value_range is None:
        return lo, hi
    low, high = value_range
    return (lo if low is None else np.maximum(lo, low)), (hi if high is None else np.minimum(hi, high))


# -------------------------------------------------------------------------------------------- helpers
def _check_path(path: PathLike, where: str) -> Path:
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise ValueError(f"{where}(path): expected a path ending in .png, received {str(p)!r}")
    return p


def _check_agents(data: Mapping[str, Any], where: str) -> None:
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{where}: expected a non-empty mapping agent -> data, received {type(data).__name__} "
                         f"with {len(data) if isinstance(data, Mapping) else 'no'} entries")


def _matrix(values: ArrayLike, where: str, allow_missing: bool = False) -> np.ndarray:
    """``values`` as a float ``(n_seeds, T)`` matrix (1-d input = one seed); rejects nan/inf."""
    a = np.asarray(values)
    if a.dtype.kind not in "biuf" or a.ndim not in (1, 2) or a.size == 0:
        raise ValueError(f"{where}: expected a non-empty numeric (T,) or (n_seeds, T) array, "
                         f"received shape {a.shape} dtype {a.dtype}")
    a = np.atleast_2d(a.astype(np.float64))
    bad = np.isinf(a) | (np.isnan(a) & (not allow_missing))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where}: expected finite values, received {a[idx]} at (seed, index) {idx}"
                         + ("" if allow_missing else " (nan = no data? pass allow_missing=True)"))
    return a


def _mean_band(a: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Column means and t half-widths (``None`` with one seed); nan columns are ignored per column."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns (allow_missing) give nan, fine
        mean = np.nanmean(a, axis=0)
        n = np.sum(~np.isnan(a), axis=0)
        if a.shape[0] < 2:
            return mean, None
        sd = np.nanstd(a, axis=0, ddof=1)
    tq = np.array([t_quantile(0.5 + confidence / 2, k - 1) if k >= 2 else np.nan for k in n])
    return mean, tq * sd / np.sqrt(np.maximum(n, 1))


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _new_figure(ncols: int = 1) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(6.4 * ncols, 4.4), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


# ------------------------------------------------------------------------------------------------ plots
def plot_learning_curves(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: PathLike, *,
                         title: str = "Learning curves",
                         xlabel: str = "training env steps (slates shown, summed over users)",
                         ylabel: str = "held-out session return", confidence: float = 0.95,
                         value_range: Range | None = None) -> Path:
    """Mean learning curve per agent with a ``confidence`` CI band over seeds, clipped to ``value_range``.

    Args:
        curves: ``{agent: (steps (T,), values (n_seeds, T))}``; 1-d values = one seed (no band).
        path: destination ``.png``.
    """
    where = "plot_learning_curves"
    p = _check_path(path, where)
    _check_agents(curves, where)
    fig, (ax,) = _new_figure()
    for agent, pair in curves.items():
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{where}[{agent!r}]: expected a (steps, values) pair, received {type(pair).__name__}")
        steps = _matrix(pair[0], f"{where}[{agent!r}] steps")[0]
        vals = _matrix(pair[1], f"{where}[{agent!r}] values")
        if vals.shape[1] != len(steps):
            raise ValueError(f"{where}[{agent!r}]: expected values with {len(steps)} columns (one per step), "
                             f"received shape {vals.shape}")
        mean, half = _mean_band(vals, confidence)
        (line,) = ax.plot(steps, mean, label=f"{agent} (n={vals.shape[0]})")
        if half is not None:
            lo, hi = _clip(mean - half, mean + half, value_range)
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set(title=f"{title} (mean, {confidence:.0%} CI over seeds)", xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, p)


def plot_agent_bars(rows: Sequence[Mapping[str, Any]], metric: str, path: PathLike, *,
                    label_key: str = "agent", group_key: str | None = None, title: str | None = None,
                    ylabel: str | None = None, value_range: Range | None = None) -> Path:
    """Bar chart of one metric per agent with CI error bars, from :func:`stats.summarise` rows.

    Args:
        rows: dicts with ``label_key``, ``"metric"``, ``"mean"``, ``"low"``, ``"high"`` (and ``"n"``);
            rows of other metrics are ignored.
        metric: which metric to draw.
        group_key: optional second key (e.g. ``"segment"``): bars side by side per agent, one colour per
            group value. Without it each agent must have exactly one row for ``metric``.
        Intervals with infinite bounds (a single seed) are drawn without an error bar, marked "n=1".
        value_range: error bars are clipped to it (default: :data:`METRIC_RANGES` of ``metric``).
    """
    where = "plot_agent_bars"
    p = _check_path(path, where)
    sel = [r for r in rows if r.get("metric") == metric]
    if not sel:
        raise ValueError(f"{where}(metric): expected one of {sorted({str(r.get('metric')) for r in rows})}, "
                         f"received {metric!r}")
    for r in sel:
        for k in (label_key, "mean", "low", "high") + ((group_key,) if group_key else ()):
            if k not in r:
                raise ValueError(f"{where}(rows): expected key {k!r} in every row, received keys {sorted(r)}")
        if not math.isfinite(float(r["mean"])) or math.isnan(float(r["low"])) or math.isnan(float(r["high"])):
            raise ValueError(f"{where}: expected a finite mean and bounds, received {r!r}")
    agents = list(dict.fromkeys(r[label_key] for r in sel))
    groups = list(dict.fromkeys(r[group_key] for r in sel)) if group_key else [None]
    cell: dict[tuple[Any, Any], Mapping[str, Any]] = {}
    for r in sel:
        key = (r[label_key], r[group_key] if group_key else None)
        if key in cell:
            raise ValueError(f"{where}: expected one row per {label_key}" + (f" and {group_key}" if group_key else "")
                             + f", received several for {key} (pass group_key=...?)")
        cell[key] = r
    rng = value_range if value_range is not None else METRIC_RANGES.get(metric)
    fig, (ax,) = _new_figure()
    width = 0.8 / len(groups)
    for gi, g in enumerate(groups):
        xs, means, err, single = [], [], [[], []], []
        for ai, a in enumerate(agents):
            if (a, g) not in cell:
                continue
            r = cell[(a, g)]
            m, lo, hi = float(r["mean"]), float(r["low"]), float(r["high"])
            x = ai - 0.4 + width * (gi + 0.5)
            finite = math.isfinite(lo) and math.isfinite(hi)
            if finite:
                lo_a, hi_a = _clip(np.array([lo]), np.array([hi]), rng)
                lo, hi = float(lo_a[0]), float(hi_a[0])
            xs.append(x)
            means.append(m)
            err[0].append(m - lo if finite else 0.0)
            err[1].append(hi - m if finite else 0.0)
            if not finite:
                single.append((x, m))
        ax.bar(xs, means, width=width * 0.95, yerr=err, capsize=4, label=None if g is None else str(g))
        for x, m in single:
            ax.annotate("n=1, no CI", (x, m), xytext=(0, 4), textcoords="offset points", ha="center",
                        va="bottom", fontsize=8)
    ax.set_xticks(range(len(agents)), [str(a) for a in agents], rotation=20 if len(agents) > 4 else 0)
    ax.set(title=title or f"{metric} by {label_key} (mean, CI over seeds)", xlabel=label_key,
           ylabel=ylabel or metric_label(metric))
    ax.grid(axis="y", alpha=0.3)
    if group_key:
        ax.legend(title=group_key)
    return _save(fig, p)


def lorenz_summary(counts: ArrayLike, confidence: float = 0.95, where: str = "lorenz_summary"
                   ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """``(x (M+1,), mean Lorenz curve (M+1,), (mean Gini, CI half-width))`` of per-seed exposure counts.

    ``counts``: ``(M,)`` or ``(n_seeds, M)`` impressions per item. The Gini pair is the mean over seeds of
    :func:`~recgym.experiments.metrics.gini` (what the tables report) with its Student-t half-width (``inf``
    for one seed); it equals the Gini of the mean curve.
    """
    c = _matrix(counts, where)
    if (c < 0).any() or (c.sum(axis=1) == 0).any():
        raise ValueError(f"{where}: expected non-negative counts with a positive total in every seed, "
                         f"received min {c.min():g}, totals {c.sum(axis=1).tolist()}")
    curves = [lorenz_curve(row) for row in c]
    ginis = [gini(row) for row in c]
    ci = mean_ci(ginis, confidence)
    return curves[0][0], np.mean([y for _, y in curves], axis=0), (ci.mean, ci.half_width)


def plot_lorenz(exposure_counts: Mapping[str, ArrayLike], path: PathLike, *,
                title: str = "Lorenz curve of item exposure", confidence: float = 0.95) -> Path:
    """Mean Lorenz curve of item exposure per agent over seeds, with the mean Gini ± CI half-width in the
    legend (the figure the tables show), and the equality line for reference.

    Args:
        exposure_counts: ``{agent: (M,) impressions per item}``, or ``(n_seeds, M)`` (one curve per seed,
            averaged).
    """
    where = "plot_lorenz"
    p = _check_path(path, where)
    _check_agents(exposure_counts, where)
    fig, (ax,) = _new_figure()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="equal exposure")
    for agent, counts in exposure_counts.items():
        x, y, (g, half) = lorenz_summary(counts, confidence, f"{where}[{agent!r}]")
        ci = f" ± {half:.3f}" if math.isfinite(half) else ""
        ax.plot(x, y, label=f"{agent} (Gini {g:.3f}{ci})")
    ax.set(title=f"{title} (mean over seeds)", xlabel="cumulative share of items (least exposed first)",
           ylabel="cumulative share of impressions", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, p)


def plot_ctr_by_decile(ctr_by_decile: Mapping[str, ArrayLike | DecileCTR], path: PathLike, *,
                       confidence: float = 0.95, allow_missing: bool = False,
                       title: str = "CTR by item popularity decile") -> Path:
    """CTR per popularity decile (1 = least popular, 10 = most popular) per agent, with CI error bars over
    seeds clipped to [0, 1].

    Args:
        ctr_by_decile: ``{agent: (n_bins,) or (n_seeds, n_bins) CTR}`` or a :class:`DecileCTR`.
        allow_missing: treat nan as "no impressions in that decile" (no point drawn) instead of an error.
    """
    where = "plot_ctr_by_decile"
    p = _check_path(path, where)
    _check_agents(ctr_by_decile, where)
    fig, (ax,) = _new_figure()
    n_bins = 0
    for agent, v in ctr_by_decile.items():
        a = _matrix(v.ctr if isinstance(v, DecileCTR) else v, f"{where}[{agent!r}]", allow_missing)
        mean, half = _mean_band(a, confidence)
        n_bins = a.shape[1]
        x = np.arange(1, n_bins + 1)
        yerr = None
        if half is not None:
            h = np.where(np.isfinite(half), half, 0.0)
            lo, hi = _clip(mean - h, mean + h, UNIT)
            yerr = np.vstack([mean - lo, hi - mean])
        ax.errorbar(x, mean, yerr=yerr, marker="o", capsize=3, label=f"{agent} (n={a.shape[0]})")
    ax.set(title=f"{title} (mean, {confidence:.0%} CI over seeds)",
           xlabel="popularity decile of the shown item (1 = least popular, 10 = most popular)",
           ylabel=metric_label("ctr"), ylim=(0, None))
    ax.set_xticks(np.arange(1, n_bins + 1))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, p)


def _first_time_cdf(times: ArrayLike, where: str) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=np.float64).ravel()
    if np.isinf(t).any() or (t[~np.isnan(t)] < 0).any() or t.size == 0:
        raise ValueError(f"{where}: expected non-empty times >= 0 (nan = never), received {t[:5]}...")
    grid = np.unique(np.concatenate([[0.0], t[~np.isnan(t)]]))
    return grid, np.searchsorted(np.sort(t[~np.isnan(t)]), grid, side="right") / t.size


def plot_cold_start_curves(per_agent: Mapping[str, Mapping[str, Any]], path: PathLike, *,
                           confidence: float = 0.95, allow_missing: bool = False) -> Path:
    """Cold-start panels per agent: new-user CTR by session step, new items' exposure share over time,
    and the fraction of new items exposed / clicked within a delay after release.

    Args:
        per_agent: ``{agent: {key: data}}`` with any of the keys (a panel is drawn for each kind that has
            data for some agent; a kind with no finite value anywhere gets no panel):
            ``"new_user_ctr"``: ``(n_steps,)`` or ``(n_seeds, n_steps)`` CTR at session step t;
            ``"new_item_share"``: ``(steps (T,), values (T,) or (n_seeds, T))`` exposure share of new items;
            ``"time_to_first_exposure"`` / ``"time_to_first_click"``: ``(J,)`` delays pooled over items and
            seeds, nan = never (these nan are data, not errors).
        allow_missing: nan in the first two kinds means "no data at this point" (a gap in the line).

    Raises:
        ValueError: no kind has any data (the caller says why in its report).
    """
    where = "plot_cold_start_curves"
    p = _check_path(path, where)
    _check_agents(per_agent, where)
    known = ("new_user_ctr", "new_item_share", "time_to_first_exposure", "time_to_first_click")
    for agent, d in per_agent.items():
        unknown = sorted(set(d) - set(known)) if isinstance(d, Mapping) else ["<not a mapping>"]
        if unknown:
            raise ValueError(f"{where}[{agent!r}]: expected keys among {known}, received {unknown}")

    def has_data(key: str) -> bool:
        """Some agent has a finite value of ``key`` (``new_user_ctr`` or ``new_item_share``)."""
        for agent, d in per_agent.items():
            if key not in d:
                continue
            a = np.asarray(d[key][1] if key == "new_item_share" else d[key], dtype=np.float64)
            if np.isfinite(a).any():
                return True
            if not allow_missing:  # let _matrix raise its clear error on nan input
                _matrix(a, f"{where}[{agent!r}][{key!r}]")
        return False

    panels = [k for k in ("new_user_ctr", "new_item_share") if has_data(k)]
    if any(np.asarray(d[k]).size for d in per_agent.values() for k in known[2:] if k in d):
        panels.append("first_times")
    if not panels:
        raise ValueError(f"{where}: expected data for at least one of {known}, received none with data")
    fig, axes = _new_figure(len(panels))
    ax_of = dict(zip(panels, axes, strict=True))
    colors = {agent: f"C{i}" for i, agent in enumerate(per_agent)}
    for agent, d in per_agent.items():
        col = colors[agent]
        if "new_user_ctr" in d and "new_user_ctr" in ax_of:
            a = _matrix(d["new_user_ctr"], f"{where}[{agent!r}]['new_user_ctr']", allow_missing)
            mean, half = _mean_band(a, confidence)
            x = np.arange(1, a.shape[1] + 1)
            ax_of["new_user_ctr"].plot(x, mean, color=col, marker=".", label=f"{agent} (n={a.shape[0]})")
            if half is not None:
                lo, hi = _clip(mean - half, mean + half, UNIT)
                ax_of["new_user_ctr"].fill_between(x, lo, hi, color=col, alpha=0.2, linewidth=0)
        if "new_item_share" in d and "new_item_share" in ax_of:
            pair = d["new_item_share"]
            steps = _matrix(pair[0], f"{where}[{agent!r}]['new_item_share'] steps")[0]
            a = _matrix(pair[1], f"{where}[{agent!r}]['new_item_share'] values", allow_missing)
            if a.shape[1] != len(steps):
                raise ValueError(f"{where}[{agent!r}]['new_item_share']: expected {len(steps)} columns, "
                                 f"received shape {a.shape}")
            mean, half = _mean_band(a, confidence)
            ax_of["new_item_share"].plot(steps, mean, color=col, label=agent)
            if half is not None:
                lo, hi = _clip(mean - half, mean + half, UNIT)
                ax_of["new_item_share"].fill_between(steps, lo, hi, color=col, alpha=0.2, linewidth=0)
        for key, style in (("time_to_first_exposure", "-"), ("time_to_first_click", "--")):
            if key in d and "first_times" in ax_of and np.asarray(d[key]).size:
                grid, frac = _first_time_cdf(d[key], f"{where}[{agent!r}][{key!r}]")
                ax_of["first_times"].step(grid, frac, where="post", color=col, linestyle=style,
                                          label=f"{agent}: {key.removeprefix('time_to_first_')}")
    labels = {"new_user_ctr": ("New users: CTR by session step", "slate number in the session (1 = first)",
                               metric_label("ctr")),
              "new_item_share": ("New items: share of impressions",
                                 "env step since the evaluation began (slates per user)", "new items' share of impressions"),
              "first_times": ("New items: exposed / clicked within a delay", "slates since the item's release",
                              "share of released new items")}
    for key, ax in ax_of.items():
        t, xl, yl = labels[key]
        ax.set(title=t, xlabel=xl, ylabel=yl, ylim=(0, None))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Cold start (mean, {confidence:.0%} CI over seeds)")
    return _save(fig, p)
