"""PNG plots of a run: learning curves, agent comparison bars, Lorenz curves, CTR by decile, cold start.

Figures are built with the object-oriented Matplotlib API on an Agg canvas (no pyplot, no global
backend switch, safe in worker processes) and written atomically: rendered to memory, then
:func:`recgym.common.io.atomic_write_bytes` (temp file in the same folder + ``os.replace``). Each function
returns the written path. Bands and error bars are two-sided Student-t confidence intervals over seeds
(:mod:`recgym.experiments.stats`); with a single seed no band is drawn.

Input containing nan or inf raises ``ValueError`` naming the plot, the agent and the position, except
where documented (``allow_missing=True`` for "no data" points; nan in times-to-first-exposure = never).
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
from .stats import t_quantile

__all__ = ["plot_agent_bars", "plot_cold_start_curves", "plot_ctr_by_decile", "plot_learning_curves", "plot_lorenz"]

PathLike = str | os.PathLike[str]


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
                         title: str = "Learning curves", xlabel: str = "training step",
                         ylabel: str = "evaluation return", confidence: float = 0.95) -> Path:
    """Mean learning curve per agent with a ``confidence`` CI band over seeds.

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
            ax.fill_between(steps, mean - half, mean + half, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set(title=f"{title} (mean, {confidence:.0%} CI over seeds)", xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, p)


def plot_agent_bars(rows: Sequence[Mapping[str, Any]], metric: str, path: PathLike, *,
                    label_key: str = "agent", group_key: str | None = None, title: str | None = None,
                    ylabel: str | None = None) -> Path:
    """Bar chart of one metric per agent with CI error bars, from :func:`stats.summarise` rows.

    Args:
        rows: dicts with ``label_key``, ``"metric"``, ``"mean"``, ``"low"``, ``"high"`` (and ``"n"``);
            rows of other metrics are ignored.
        metric: which metric to draw.
        group_key: optional second key (e.g. ``"segment"``): bars side by side per agent, one colour per
            group value. Without it each agent must have exactly one row for ``metric``.
        Intervals with infinite bounds (a single seed) are drawn without an error bar, marked "n=1".
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
    ax.set(title=title or f"{metric} by {label_key} (mean, CI over seeds)", xlabel=label_key, ylabel=ylabel or metric)
    ax.grid(axis="y", alpha=0.3)
    if group_key:
        ax.legend(title=group_key)
    return _save(fig, p)


def plot_lorenz(exposure_counts: Mapping[str, ArrayLike], path: PathLike, *,
                title: str = "Lorenz curve of item exposure") -> Path:
    """Lorenz curve of item exposure per agent, Gini in the legend, equality line for reference.

    Args:
        exposure_counts: ``{agent: (M,) impressions per item}``, or ``(n_seeds, M)`` (pooled over seeds).
    """
    where = "plot_lorenz"
    p = _check_path(path, where)
    _check_agents(exposure_counts, where)
    fig, (ax,) = _new_figure()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="equal exposure")
    for agent, counts in exposure_counts.items():
        c = _matrix(counts, f"{where}[{agent!r}]").sum(axis=0)
        if (c < 0).any() or c.sum() == 0:
            raise ValueError(f"{where}[{agent!r}]: expected non-negative counts with a positive total, "
                             f"received min {c.min():g}, total {c.sum():g}")
        x, y = lorenz_curve(c)
        ax.plot(x, y, label=f"{agent} (Gini {gini(c):.3f})")
    ax.set(title=title, xlabel="cumulative share of items (least exposed first)",
           ylabel="cumulative share of impressions", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, p)


def plot_ctr_by_decile(ctr_by_decile: Mapping[str, ArrayLike | DecileCTR], path: PathLike, *,
                       confidence: float = 0.95, allow_missing: bool = False,
                       title: str = "CTR by item popularity decile") -> Path:
    """CTR per popularity decile (1 = least popular) per agent, with CI error bars over seeds.

    Args:
        ctr_by_decile: ``{agent: (n_bins,) or (n_seeds, n_bins) CTR}`` or a :class:`DecileCTR`.
        allow_missing: treat nan as "no impressions in that decile" (point skipped) instead of an error.
    """
    where = "plot_ctr_by_decile"
    p = _check_path(path, where)
    _check_agents(ctr_by_decile, where)
    fig, (ax,) = _new_figure()
    for agent, v in ctr_by_decile.items():
        a = _matrix(v.ctr if isinstance(v, DecileCTR) else v, f"{where}[{agent!r}]", allow_missing)
        mean, half = _mean_band(a, confidence)
        x = np.arange(1, a.shape[1] + 1)
        ax.errorbar(x, mean, yerr=None if half is None else np.nan_to_num(half), marker="o", capsize=3,
                    label=f"{agent} (n={a.shape[0]})")
    ax.set(title=f"{title} (mean, {confidence:.0%} CI over seeds)",
           xlabel="popularity decile of the shown item (1 = least popular)", ylabel="CTR")
    ax.set_xticks(np.arange(1, a.shape[1] + 1))
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
        per_agent: ``{agent: {key: data}}`` with any of the keys (a panel is drawn for each key present):
            ``"new_user_ctr"``: ``(n_steps,)`` or ``(n_seeds, n_steps)`` CTR at session step t;
            ``"new_item_share"``: ``(steps (T,), values (T,) or (n_seeds, T))`` exposure share of new items;
            ``"time_to_first_exposure"`` / ``"time_to_first_click"``: ``(J,)`` delays pooled over items and
            seeds, nan = never (these nan are data, not errors).
        allow_missing: nan in the first two kinds means "no data at this point" (skipped).
    """
    where = "plot_cold_start_curves"
    p = _check_path(path, where)
    _check_agents(per_agent, where)
    known = ("new_user_ctr", "new_item_share", "time_to_first_exposure", "time_to_first_click")
    for agent, d in per_agent.items():
        unknown = sorted(set(d) - set(known)) if isinstance(d, Mapping) else ["<not a mapping>"]
        if unknown:
            raise ValueError(f"{where}[{agent!r}]: expected keys among {known}, received {unknown}")
    panels = [k for k in ("new_user_ctr", "new_item_share") if any(k in d for d in per_agent.values())]
    if any(k in d for d in per_agent.values() for k in known[2:]):
        panels.append("first_times")
    if not panels:
        raise ValueError(f"{where}: expected at least one of {known} for some agent, received none")
    fig, axes = _new_figure(len(panels))
    ax_of = dict(zip(panels, axes, strict=True))
    colors = {agent: f"C{i}" for i, agent in enumerate(per_agent)}
    for agent, d in per_agent.items():
        col = colors[agent]
        if "new_user_ctr" in d:
            a = _matrix(d["new_user_ctr"], f"{where}[{agent!r}]['new_user_ctr']", allow_missing)
            mean, half = _mean_band(a, confidence)
            x = np.arange(1, a.shape[1] + 1)
            ax_of["new_user_ctr"].plot(x, mean, color=col, marker=".", label=f"{agent} (n={a.shape[0]})")
            if half is not None:
                ax_of["new_user_ctr"].fill_between(x, mean - half, mean + half, color=col, alpha=0.2, linewidth=0)
        if "new_item_share" in d:
            pair = d["new_item_share"]
            steps = _matrix(pair[0], f"{where}[{agent!r}]['new_item_share'] steps")[0]
            a = _matrix(pair[1], f"{where}[{agent!r}]['new_item_share'] values", allow_missing)
            if a.shape[1] != len(steps):
                raise ValueError(f"{where}[{agent!r}]['new_item_share']: expected {len(steps)} columns, "
                                 f"received shape {a.shape}")
            mean, half = _mean_band(a, confidence)
            ax_of["new_item_share"].plot(steps, mean, color=col, label=agent)
            if half is not None:
                ax_of["new_item_share"].fill_between(steps, mean - half, mean + half, color=col, alpha=0.2,
                                                     linewidth=0)
        for key, style in (("time_to_first_exposure", "-"), ("time_to_first_click", "--")):
            if key in d:
                grid, frac = _first_time_cdf(d[key], f"{where}[{agent!r}][{key!r}]")
                ax_of["first_times"].step(grid, frac, where="post", color=col, linestyle=style,
                                          label=f"{agent}: {key.removeprefix('time_to_first_')}")
    labels = {"new_user_ctr": ("New users: CTR by session step", "step in session", "CTR"),
              "new_item_share": ("New items: share of impressions", "time step", "exposure share"),
              "first_times": ("New items: exposed / clicked within delay", "steps since release",
                              "fraction of new items")}
    for key, ax in ax_of.items():
        t, xl, yl = labels[key]
        ax.set(title=t, xlabel=xl, ylabel=yl)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Cold start (mean, {confidence:.0%} CI over seeds)")
    return _save(fig, p)
